#!/usr/bin/env bash
# Exact user-space instructions per proxied request, for comparing changes to
# the proxy's hot path when wall-clock figures move too much to tell.
#
#   bash benches/callgrind.sh            # HTTP/1.1
#   PROTO=h2 bash benches/callgrind.sh   # HTTP/2 (h2c)
#
# Runs `meshtop proxy --threads 1` under valgrind's callgrind in front of
# examples/bench_backend, sends WARMUP requests, zeroes the counters, sends
# REQUESTS more with h2load (50 HTTP/1.1 connections, or 10 h2 connections
# × 10 streams), and prints instructions per request and the costliest
# functions (inclusive). SUBSCRIBER=1 attaches examples/bench_subscriber.
# MESHTOP=/path/to/meshtop measures another build (say, of main) instead.
# PATHS="/a /users/1 /users/2" spreads the requests over these paths (each
# connection asks for them in turn), so that the per-route aggregates
# have several routes to count.
# Counts repeat within about 0.3 % between runs, where wall-clock figures on
# this shared machine move by ±20 % (docs/benchmarks.md).
set -euo pipefail

PROTO=${PROTO:-h1}
REQUESTS=${REQUESTS:-20000}
WARMUP=${WARMUP:-5000}
SUBSCRIBER=${SUBSCRIBER:-0}
PATHS=${PATHS:-/}
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/bench-callgrind}
MESHTOP=${MESHTOP:-$ROOT/target/release/meshtop}
BACKEND=$ROOT/target/release/examples/bench_backend
SUBSCRIBE=$ROOT/target/release/examples/bench_subscriber

say() { printf '%s\n' "$*" >&2; }
die() { say "callgrind.sh: $*"; exit 1; }

for tool in valgrind callgrind_control callgrind_annotate h2load curl; do
    command -v "$tool" >/dev/null || die "needs $tool (Debian: valgrind, nghttp2-client, curl)"
done
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release --bin meshtop --example bench_backend --example bench_subscriber
fi
rm -rf "$OUT"
mkdir -p "$OUT"

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # URL, tries
    for _ in $(seq "${2:-300}"); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.2
    done
    die "$1 did not answer"
}

"$BACKEND" 127.0.0.1:0 >"$OUT/backend.out" 2>"$OUT/backend.err" &
PIDS+=($!)
for _ in $(seq 100); do
    grep -q '^listening on ' "$OUT/backend.out" 2>/dev/null && break
    sleep 0.1
done
BACKEND_ADDR=$(sed -n 's/^listening on //p' "$OUT/backend.out")
[[ -n $BACKEND_ADDR ]] || die "the backend did not start"

PORT=$(free_port)
ADMIN=127.0.0.1:$(free_port)
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
    "$MESHTOP" proxy --threads 1 --inbound "127.0.0.1:$PORT=$BACKEND_ADDR" \
    --admin "$ADMIN" --name bench >"$OUT/proxy.out" 2>"$OUT/proxy.err" &
PIDS+=($!)
PROXY_PID=$!
wait_for "http://$ADMIN/readyz"

if [[ $SUBSCRIBER == 1 ]]; then
    "$SUBSCRIBE" "$ADMIN" >"$OUT/subscriber.out" 2>"$OUT/subscriber.err" &
    PIDS+=($!)
    for _ in $(seq 100); do
        curl -sf "http://$ADMIN/metrics" | grep -q '^meshtop_subscribers 1$' && break
        sleep 0.2
    done
fi

URIS=()
for path in $PATHS; do URIS+=("http://127.0.0.1:$PORT$path"); done
load() { # requests
    if [[ $PROTO == h2 ]]; then
        h2load -n "$1" -c 10 -m 10 "${URIS[@]}" >"$OUT/h2load.out"
    else
        h2load --h1 -n "$1" -c 50 "${URIS[@]}" >"$OUT/h2load.out"
    fi
    grep -q "succeeded, 0 failed, 0 errored" "$OUT/h2load.out" ||
        grep -q "$1 succeeded" "$OUT/h2load.out" || die "load failed: $(grep requests: "$OUT/h2load.out")"
}

load "$WARMUP"
callgrind_control -z "$PROXY_PID" >/dev/null
load "$REQUESTS"
callgrind_control -d "$PROXY_PID" >/dev/null
# The dump is written when callgrind_control returns; the file name carries
# a sequence number.
DUMP=$(ls -t "$OUT"/callgrind.out.* | head -1)
TOTAL=$(sed -n 's/^summary: *//p;s/^totals: *//p' "$DUMP" | head -1)
say "$MESHTOP: proto $PROTO, $REQUESTS requests, subscriber $SUBSCRIBER, paths $PATHS"
printf 'instructions per request: %d\n' $((TOTAL / REQUESTS))
callgrind_annotate --inclusive=yes "$DUMP" >"$OUT/inclusive.txt" 2>/dev/null
callgrind_annotate "$DUMP" >"$OUT/self.txt" 2>/dev/null
say "profiles: $OUT/inclusive.txt, $OUT/self.txt"
