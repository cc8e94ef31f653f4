#!/usr/bin/env bash
# Peak memory of the sidecar and of the terminal UI under the attacks of
# issue #15, against the limits the issue sets: the sidecar under 64 MiB
# (so the 128Mi limit `meshtop inject` sets holds), the UI under 256 MiB
# against any fake sidecar.
#
#   bash benches/hostile.sh
#
# Sidecar: a backend, two subscribers that never read, and clients sending
# requests with 60 KB paths (finding 2), then idle clients that send nothing
# (finding 7). UI: `meshtop attach --headless` against fake sidecars sending
# request events with 1 MB paths (finding 11), histogram bombs (finding 1)
# and large stats (finding 11). Peak RSS is the kernel's high-water mark
# (VmHWM) of each process. docs/benchmarks.md has the figures.
#
# Needs python3 with the `websockets` package (pip install websockets) for
# the fake sidecars and the clients.
#
# Environment (defaults in brackets):
#   REQUESTS   requests with 60 KB paths [6000]
#   IDLE       idle client connections [1000]
#   SECONDS_UI how long each fake sidecar is attached to [20]
#   BIN        the meshtop binary [target/release/meshtop, built if unset]
set -euo pipefail

REQUESTS=${REQUESTS:-6000}
IDLE=${IDLE:-1000}
SECONDS_UI=${SECONDS_UI:-20}
SIDECAR_LIMIT_MIB=64
UI_LIMIT_MIB=256

cd "$(dirname "$0")/.."
if ! python3 -c 'import websockets' 2>/dev/null; then
    echo "benches/hostile.sh needs python3 with websockets: pip install websockets" >&2
    exit 2
fi
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet --bin meshtop
    BIN=target/release/meshtop
fi
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The high-water mark of a process's resident memory, in KiB.
hwm() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }

wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

verdict() { # name KiB limit-MiB
    awk -v name="$1" -v kib="$2" -v limit="$3" 'BEGIN {
        mib = kib / 1024
        printf "%-44s %8.1f MiB  (limit %d MiB) %s\n", name, mib, limit,
            mib < limit ? "ok" : "OVER"
    }'
}

cat > "$WORK/attacks.py" <<'PY'
import asyncio, base64, json, socket, struct, sys, threading, time, zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def backend(port):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        def do_GET(self):
            self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
            self.wfile.write(b"ok")
        def log_message(self, *a): pass
    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()

def stalled_subscriber(admin):
    # A WebSocket handshake, then never a read: the socket's receive
    # buffer fills and the sidecar's queue for it with it.
    s = socket.create_connection(("127.0.0.1", admin))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    return s

def long_paths(port, n, threads=8):
    path = "/" + "p" * 60_000
    def run(count):
        s = socket.create_connection(("127.0.0.1", port))
        f = s.makefile("rb")
        for i in range(count):
            s.sendall(f"GET {path}?{i} HTTP/1.1\r\nHost: attack\r\n\r\n".encode())
            while f.readline() not in (b"\r\n", b""): pass
            f.read(2)
    ts = [threading.Thread(target=run, args=(n // threads,)) for _ in range(threads)]
    [t.start() for t in ts]; [t.join() for t in ts]

def idle_clients(port, n):
    return [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]

HELLO = json.dumps({"type": "hello", "schema": 1, "sidecar": {"name": "fake", "namespace": None,
        "version": "0.0.0", "started_at": "2026-11-30T03:42:30.123456Z"}, "listeners": []})

def request(i, path):
    return json.dumps({"type": "request", "ts": "2026-12-01T00:00:00.000000Z", "sidecar": "fake",
        "direction": "outbound", "protocol": "http/1.1", "client": "10.0.0.1:1", "server": None,
        "authority": "svc-%d:80" % (i % 5000), "method": "GET", "path": path, "status": 200,
        "grpc_status": None, "grpc_message": None, "error": None, "duration_ms": 1.0,
        "ttfb_ms": 1.0, "req_bytes": 0, "resp_bytes": 0})

def bomb():
    header = struct.pack(">IIIIQQd", 0x1c849313, 0xFFFFFFFF, 0, 3, 1, 2, 1.0)
    return base64.b64encode(header).decode()

def stats(n, upstreams, latency):
    ups = [{"direction": "outbound", "authority": "svc-%d-%d:80" % (n, i), "requests": 1, "failures": 0,
            "status": {"1xx": 0, "2xx": 1, "3xx": 0, "4xx": 0, "5xx": 0}, "grpc_status": {},
            "errors": {}, "req_bytes": 0, "resp_bytes": 0, "latency": latency}
           for i in range(upstreams)]
    return json.dumps({"type": "stats", "ts": "2026-12-01T00:00:%02d.000000Z" % (n % 60),
        "sidecar": "fake", "interval_ms": 1000, "upstreams": ups})

async def fake_sidecar(port, mode):
    import websockets
    big = "/" + "x" * 1_000_000
    ok = "HISTFAAAADh4nC3GMQ0AIAxE0et1JWkCK14whwMmhKClNjBAYCh/eb/2UQAYIv1KYLftOE+c5FEuoWc+oCAHvg=="
    async def serve(ws):
        await ws.send(HELLO)
        n = 0
        while True:
            if mode == "paths":
                await ws.send(request(n, big + str(n)))
            elif mode == "bombs":
                await ws.send(stats(n, 50, bomb()))
            else:
                await ws.send(stats(n, 2000, ok))
            n += 1
            await asyncio.sleep(0)
    async with websockets.serve(serve, "127.0.0.1", port, max_size=None):
        await asyncio.Future()

if __name__ == "__main__":
    what = sys.argv[1]
    if what == "backend":
        backend(int(sys.argv[2]))
    elif what == "sidecar-attack":
        port, admin, n, idle = map(int, sys.argv[2:6])
        subscribers = [stalled_subscriber(admin) for _ in range(2)]
        long_paths(port, n)
        held = idle_clients(port, idle)
        time.sleep(2)
        print("attack done", flush=True)
        time.sleep(3600)
    elif what == "fake":
        asyncio.run(fake_sidecar(int(sys.argv[2]), sys.argv[3]))
PY

echo "meshtop under attack ($(nproc) cores; $(date -u +%FT%TZ))"

# --- The sidecar.
backend=$(free_port); inbound=$(free_port); admin=$(free_port)
python3 "$WORK/attacks.py" backend "$backend" & PIDS+=($!)
wait_port "$backend"
"$BIN" proxy --inbound "127.0.0.1:$inbound=127.0.0.1:$backend" --outbound 127.0.0.1:0 \
    --admin "127.0.0.1:$admin" 2> "$WORK/proxy.log" & proxy=$!; PIDS+=($proxy)
wait_port "$admin"
before=$(hwm "$proxy")
python3 "$WORK/attacks.py" sidecar-attack "$inbound" "$admin" "$REQUESTS" "$IDLE" \
    > "$WORK/attack.log" & PIDS+=($!)
until grep -q "attack done" "$WORK/attack.log"; do
    kill -0 "$proxy" || { echo "the proxy died" >&2; exit 1; }
    sleep 0.5
done
verdict "sidecar at start" "$before" "$SIDECAR_LIMIT_MIB"
verdict "sidecar: $REQUESTS × 60 KB paths, 2 stalled subs, $IDLE idle" "$(hwm "$proxy")" "$SIDECAR_LIMIT_MIB"

# --- The UI, against each fake sidecar.
for mode in paths bombs stats; do
    port=$(free_port)
    python3 "$WORK/attacks.py" fake "$port" "$mode" & fake=$!; PIDS+=($fake)
    wait_port "$port"
    "$BIN" attach "ws://127.0.0.1:$port/events" --headless --duration "${SECONDS_UI}s" \
        > /dev/null 2> "$WORK/attach-$mode.log" & ui=$!
    peak=0
    while kill -0 "$ui" 2>/dev/null; do
        now=$(hwm "$ui" 2>/dev/null || echo 0)
        [[ -n "$now" && "$now" -gt "$peak" ]] && peak=$now
        sleep 0.5
    done
    wait "$ui" || true
    kill "$fake" 2>/dev/null || true
    case $mode in
        paths) name="UI: request events with 1 MB paths" ;;
        bombs) name="UI: histogram bombs, 50 per message" ;;
        stats) name="UI: stats of 2,000 upstreams each" ;;
    esac
    verdict "$name (${SECONDS_UI}s)" "$peak" "$UI_LIMIT_MIB"
done
