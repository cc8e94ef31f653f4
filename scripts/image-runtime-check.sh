#!/usr/bin/env bash
# Checks the run stage of the Dockerfile where no Docker engine runs: builds
# the same root file system (Debian bookworm, minbase, with debootstrap, plus
# the packages, the user and the binary the Dockerfile's run stage adds) and
# runs in it what the pod runs:
#
#   - the init container: `meshtop init` as root in a fresh network
#     namespace, with the image's own iptables;
#   - the sidecar: `meshtop proxy` as UID 1337, until /readyz answers 200;
#   - the kubectl plugin name, `kubectl-meshtop`.
#
# Root only (debootstrap, chroot, ip netns). Usage:
#   sudo scripts/image-runtime-check.sh [ROOTFS]   (default /tmp/meshtop-rootfs, kept for reruns)
set -euo pipefail
cd "$(dirname "$0")/.."

root=${1:-/tmp/meshtop-rootfs}
netns=meshtop-image-check-$$
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "$(id -u)" != 0 ]; then
  echo "image-runtime-check: needs root (debootstrap, chroot, network namespaces)" >&2
  exit 2
fi
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cleanup() {
  [ -n "${proxy_pid:-}" ] && kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null
  ip netns del "$netns" 2>/dev/null || true
  mountpoint -q "$root/proc" && umount "$root/proc"
  true
}
trap cleanup EXIT

step() { printf '== %s\n' "$*"; }

if [ ! -x "$root/bin/sh" ]; then
  step "debootstrap bookworm (minbase) into $root"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
fi

step "the run stage: iptables, ca-certificates, user 1337"
cp /etc/resolv.conf "$root/etc/resolv.conf"
chroot "$root" apt-get update -qq
# (apt's complaints about the chroot's missing /dev/pts and apt-utils are noise)
chroot "$root" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends iptables ca-certificates 2>&1 >/dev/null \
  | { grep -v -e posix_openpt -e apt-utils >&2 || true; }
chroot "$root" id -u 1337 >/dev/null 2>&1 \
  || chroot "$root" useradd --uid 1337 --no-create-home --shell /usr/sbin/nologin meshtop

step "the build stage's binary (cargo build --release --locked --bin meshtop, stripped)"
cargo build -q --release --locked --bin meshtop
strip -o "$root/usr/local/bin/meshtop" target/release/meshtop
ln -sf /usr/local/bin/meshtop "$root/usr/local/bin/kubectl-meshtop"
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
echo "size: $(du -h "$root/usr/local/bin/meshtop" | cut -f1); libraries:"
chroot "$root" ldd /usr/local/bin/meshtop | sed 's/^/  /'

step "init container: meshtop init as root in a new network namespace"
ip netns add "$netns"
ip netns exec "$netns" ip link set lo up
ip netns exec "$netns" chroot "$root" /usr/local/bin/meshtop init >/dev/null
rules=$(ip netns exec "$netns" chroot "$root" iptables-save -t nat)
for expected in ':MESHTOP_INBOUND' ':MESHTOP_OUTPUT' '-A PREROUTING -p tcp -j MESHTOP_INBOUND' \
  '-A OUTPUT -p tcp -j MESHTOP_OUTPUT' '-m owner --uid-owner 1337 -j RETURN'; do
  if ! grep -q -- "$expected" <<<"$rules"; then
    echo "missing rule: $expected" >&2
    echo "$rules" >&2
    exit 1
  fi
done
echo "rules installed ($(grep -c -- '^-A MESHTOP_' <<<"$rules") in the meshtop chains)"

step "sidecar: meshtop proxy as UID 1337"
ip netns exec "$netns" chroot --userspec=1337:1337 "$root" /usr/local/bin/meshtop proxy --name image-check \
  >/dev/null 2>&1 &
proxy_pid=$!
for _ in $(seq 100); do
  if ip netns exec "$netns" curl -fsS -o /dev/null http://127.0.0.1:15090/readyz 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ -z "${ready:-}" ]; then
  echo "the sidecar did not become ready" >&2
  exit 1
fi
ip netns exec "$netns" curl -fsS http://127.0.0.1:15090/ | head -c 300
echo
echo "ready"

step "kubectl plugin name"
chroot "$root" /usr/local/bin/kubectl-meshtop --version

step "ok: the run stage of the image works"
