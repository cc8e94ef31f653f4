#!/usr/bin/env bash
# The proxy comparison of issue #8: meshtop against a direct connection,
# nginx and haproxy, over HTTP/1.1 and h2c, on this machine.
#
#   bash benches/run.sh
#
# For each candidate: maximum requests/s (wrk for HTTP/1.1, h2load for
# HTTP/2), p50/p99 latency at a fixed rate (examples/bench_load.rs), CPU
# seconds of the proxy per 10,000 requests, the proxy's peak RSS, and the
# maxima again with the proxy capped at CAP % of a core (a CPU cgroup).
# Rounds alternate the order of the candidates; the report gives the median
# of the rounds. docs/benchmarks.md explains every figure.
#
# Environment (defaults in brackets):
#   DURATION    seconds per measurement [5]
#   ROUNDS      rounds over all candidates [3]
#   RATE        total requests/s of the fixed-rate latency runs [5000]
#   CANDIDATES  which to run [direct meshtop meshtop-sub nginx haproxy]
#   PROXY_CPU   the core of the proxy [0]
#   LOAD_CPU    the core of the load generator, backend and subscriber [1]
#   CAP         percent of one core each proxy may use in the capped
#               maximum runs, which make the proxy the limit rather than
#               the load generator; 0 skips them [50]
#   SUBSCRIBER  count: examples/bench_subscriber reads and counts every
#               event; record: `meshtop record -o FILE` [count]
#   OUT         where logs, raw results and the report go [target/bench-proxies]
#   SKIP_BUILD  set to 1 to use the binaries already built
#   BASELINE    another meshtop binary (say, a build of main), run as the
#               candidate meshtop-base, to compare a change in one run:
#               BASELINE=/tmp/main/meshtop CANDIDATES="meshtop meshtop-base"
set -euo pipefail

DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-5000}
CANDIDATES=${CANDIDATES:-"direct meshtop meshtop-sub nginx haproxy"}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CAP=${CAP:-50}
SUBSCRIBER=${SUBSCRIBER:-count}
H1_CONNS=50
H2_CLIENTS=10
H2_STREAMS=10

cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/bench-proxies}
MESHTOP=$ROOT/target/release/meshtop
BACKEND=$ROOT/target/release/examples/bench_backend
LOAD=$ROOT/target/release/examples/bench_load
SUBSCRIBE=$ROOT/target/release/examples/bench_subscriber

say() { printf '%s\n' "$*" >&2; }
die() { say "run.sh: $*"; exit 1; }

# --- tools -----------------------------------------------------------------

install_tools() {
    local missing=()
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v nginx >/dev/null || missing+=(nginx)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v python3 >/dev/null || missing+=(python3)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]})); then
        say "installing ${missing[*]}"
        [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run as root or install them"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

install_tools
(($(nproc) >= 2)) || die "needs two cores (proxy on one, load on the other)"
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    cargo build --release --bin meshtop --example bench_backend --example bench_load \
        --example bench_subscriber
fi
for bin in "$MESHTOP" "$BACKEND" "$LOAD" "$SUBSCRIBE"; do
    [[ -x $bin ]] || die "$bin is missing: run without SKIP_BUILD"
done
[[ $SUBSCRIBER == count || $SUBSCRIBER == record ]] || die "SUBSCRIBER is count or record"
[[ $CAP =~ ^[0-9]+$ ]] && ((CAP <= 100)) || die "CAP is a percentage of one core, 0 to 100"
if [[ " $CANDIDATES " == *" meshtop-base "* ]]; then
    [[ -x ${BASELINE:-} ]] || die "the candidate meshtop-base needs BASELINE=/path/to/meshtop"
fi

rm -rf "$OUT"
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv
printf 'round\tcandidate\tproto\tmetric\tvalue\n' >"$RESULTS"

# --- processes ---------------------------------------------------------------

# Every process started here, stopped on any exit.
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
}
trap 'cleanup; uncap_cleanup' EXIT
trap 'exit 130' INT TERM

stop() {
    local pid=$1 keep=() p
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits until `url` answers 200 (h1, or h2c with prior knowledge).
wait_http() {
    local url=$1 flag=${2:-}
    for _ in $(seq 100); do
        if curl -sf $flag -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        sleep 0.1
    done
    die "nothing answers at $url"
}

check_body() {
    local url=$1 flag=${2:-} body
    body=$(curl -sf $flag --max-time 2 "$url") || die "request to $url ($flag) failed"
    [[ $body == "hello, world" ]] || die "unexpected body from $url: $body"
}

# The process and its children (nginx's workers).
family() {
    local pid=$1
    echo "$pid"
    pgrep -P "$pid" || true
}

# utime+stime of a process and its children, in clock ticks.
cpu_ticks() {
    local total=0 pid stat
    for pid in $(family "$1"); do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        stat=${stat##*) }
        read -r -a fields <<<"$stat"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

# Peak resident set (VmHWM, KiB) summed over a process and its children.
peak_rss_kib() {
    local total=0 pid kib
    for pid in $(family "$1"); do
        kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${kib:-0}))
    done
    echo "$total"
}

# Busy jiffies of one core (everything but idle and iowait) and its total.
core_jiffies() {
    awk -v cpu="cpu$1" '$1 == cpu {busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6}' /proc/stat
}

describe_placement() {
    local name=$1 pid=$2 p
    for p in $(family "$pid"); do
        say "    $name pid $p: $(taskset -cp "$p" | sed 's/.*: /cores /'), threads: $(cat /proc/"$p"/task/*/comm | sort | uniq -c | awk '{printf "%s%s×%s", sep, $1, $2; sep=", "}')"
    done
}

TICKS=$(getconf CLK_TCK)

# --- the CPU cap ------------------------------------------------------------
# On two cores the load generator saturates its core about when a proxy
# does, so an uncapped maximum often measures the load generator. A CPU
# cgroup holding the proxy at CAP % of a core (in 10 ms periods) leaves the
# load core room, and the capped maximum is then the proxy's own.

CAP_DIR=
CAP_PARENT=
setup_cap() {
    ((CAP > 0)) || {
        say "CAP=0: no capped runs"
        return 0
    }
    local period=10000 quota=$((CAP * 100))
    if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
        CAP_PARENT=/sys/fs/cgroup
        CAP_DIR=$CAP_PARENT/meshtop-bench
        mkdir -p "$CAP_DIR" 2>/dev/null && echo "$quota $period" >"$CAP_DIR/cpu.max" 2>/dev/null ||
            CAP_DIR=
    elif [[ -d /sys/fs/cgroup/cpu ]]; then
        CAP_PARENT=/sys/fs/cgroup/cpu
        CAP_DIR=$CAP_PARENT/meshtop-bench
        mkdir -p "$CAP_DIR" 2>/dev/null && echo "$period" >"$CAP_DIR/cpu.cfs_period_us" 2>/dev/null &&
            echo "$quota" >"$CAP_DIR/cpu.cfs_quota_us" 2>/dev/null || CAP_DIR=
    fi
    if [[ -z $CAP_DIR ]]; then
        say "no writable CPU cgroup (needs root and the cpu controller): no capped runs"
    else
        say "capped runs: each proxy limited to $CAP % of a core by $CAP_DIR"
    fi
}

# Moves a proxy (with its children and threads) into the capped group.
cap() {
    local pid
    for pid in $(family "$1"); do
        echo "$pid" >"$CAP_DIR/cgroup.procs" || die "could not move $pid into $CAP_DIR"
    done
}

uncap_cleanup() {
    [[ -n $CAP_DIR && -d $CAP_DIR ]] || return 0
    local pid
    for pid in $(cat "$CAP_DIR/cgroup.procs" 2>/dev/null); do
        echo "$pid" >"$CAP_PARENT/cgroup.procs" 2>/dev/null || true
    done
    rmdir "$CAP_DIR" 2>/dev/null || true
}

# --- the backend ----------------------------------------------------------------

taskset -c "$LOAD_CPU" "$BACKEND" 127.0.0.1:0 >"$OUT/backend.out" 2>"$OUT/backend.err" &
PIDS+=($!)
BACKEND_PID=$!
for _ in $(seq 100); do
    grep -q '^listening on ' "$OUT/backend.out" 2>/dev/null && break
    sleep 0.1
done
BACKEND_ADDR=$(sed -n 's/^listening on //p' "$OUT/backend.out")
[[ -n $BACKEND_ADDR ]] || die "the backend did not start: $(cat "$OUT/backend.err")"
BACKEND_PORT=${BACKEND_ADDR##*:}

say "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), load $(cut -d' ' -f1-3 /proc/loadavg)"
say "placement: proxy on core $PROXY_CPU; load generator, backend and subscriber on core $LOAD_CPU"
setup_cap
describe_placement backend "$BACKEND_PID"

# --- candidates -------------------------------------------------------------------
# start_X sets PROXY_PID (empty for direct), H1_URL and H2_URL.

start_direct() {
    PROXY_PID=
    H1_URL=http://$BACKEND_ADDR/
    H2_URL=http://$BACKEND_ADDR/
}

start_meshtop() {
    local port admin
    port=$(free_port)
    admin=$(free_port)
    taskset -c "$PROXY_CPU" "${MESHTOP_BIN:-$MESHTOP}" proxy \
        --inbound "127.0.0.1:$port=127.0.0.1:$BACKEND_PORT" \
        --admin "127.0.0.1:$admin" --name bench \
        >"$OUT/$1.out" 2>"$OUT/$1.err" &
    PIDS+=($!)
    PROXY_PID=$!
    ADMIN=127.0.0.1:$admin
    wait_http "http://$ADMIN/readyz"
    H1_URL=http://127.0.0.1:$port/
    H2_URL=http://127.0.0.1:$port/
}

start_meshtop_sub() {
    start_meshtop "$1"
    SUBSCRIBER_OUT=$OUT/r$ROUND-$1-subscriber.out
    if [[ $SUBSCRIBER == record ]]; then
        taskset -c "$LOAD_CPU" "$MESHTOP" record -o "$OUT/events.jsonl" "$ADMIN" \
            >"$SUBSCRIBER_OUT" 2>"$OUT/$1-subscriber.err" &
    else
        taskset -c "$LOAD_CPU" "$SUBSCRIBE" "$ADMIN" >"$SUBSCRIBER_OUT" 2>"$OUT/$1-subscriber.err" &
    fi
    PIDS+=($!)
    SUBSCRIBER_PID=$!
    for _ in $(seq 50); do
        curl -sf "http://$ADMIN/metrics" | grep -q '^meshtop_subscribers 1$' && return 0
        sleep 0.1
    done
    die "the subscriber did not connect: $(cat "$OUT/$1-subscriber.err")"
}

start_nginx() {
    local h1 h2 dir=$OUT/nginx
    h1=$(free_port)
    h2=$(free_port)
    mkdir -p "$dir"
    # keepalive_requests: nginx closes a connection after 1000 requests by
    # default (and h2load does not reconnect); the others never do.
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 10000000;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream h1_backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 128;
        keepalive_requests 10000000;
    }
    upstream h2_backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 128;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:$h1;
        location / {
            proxy_pass http://h1_backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    # h2c with prior knowledge in, h2c out: nginx's only HTTP/2 upstream is
    # the gRPC module, which works for any request but opens one upstream
    # connection per concurrent stream (no multiplexing).
    server {
        listen 127.0.0.1:$h2 http2;
        location / {
            grpc_pass grpc://h2_backend;
        }
    }
}
EOF
    taskset -c "$PROXY_CPU" nginx -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf" \
        >"$OUT/$1.out" 2>"$OUT/$1.err" &
    PIDS+=($!)
    PROXY_PID=$!
    H1_URL=http://127.0.0.1:$h1/
    H2_URL=http://127.0.0.1:$h2/
    wait_http "$H1_URL"
    # The worker is forked after the port is bound; wait for it.
    for _ in $(seq 50); do
        [[ -n $(pgrep -P "$PROXY_PID") ]] && return 0
        sleep 0.1
    done
    die "nginx started no worker"
}

start_haproxy() {
    local h1 h2 cfg=$OUT/haproxy.cfg
    h1=$(free_port)
    h2=$(free_port)
    cat >"$cfg" <<EOF
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend h1
    bind 127.0.0.1:$h1
    default_backend h1_backend

frontend h2
    bind 127.0.0.1:$h2 proto h2
    default_backend h2_backend

backend h1_backend
    http-reuse safe
    server backend 127.0.0.1:$BACKEND_PORT

backend h2_backend
    http-reuse safe
    server backend 127.0.0.1:$BACKEND_PORT proto h2
EOF
    taskset -c "$PROXY_CPU" haproxy -db -f "$cfg" >"$OUT/$1.out" 2>"$OUT/$1.err" &
    PIDS+=($!)
    PROXY_PID=$!
    H1_URL=http://127.0.0.1:$h1/
    H2_URL=http://127.0.0.1:$h2/
    wait_http "$H1_URL"
}

# --- measurements -------------------------------------------------------------------

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$ROUND" "$CANDIDATE" "$1" "$2" "$3" >>"$RESULTS"; }

# Runs a load generator (on the load core) while sampling the proxy's CPU
# and both cores' busy time; sets REQUESTS from the caller's parser.
LOAD_LOG=
measure() {
    local proto=$1 kind=$2
    shift 2
    local log=$OUT/r$ROUND-$CANDIDATE-$proto-$kind.txt
    local before after c0 c1 c0b c1b
    before=$([[ -n $PROXY_PID ]] && cpu_ticks "$PROXY_PID" || echo 0)
    read -r c0 c0t < <(core_jiffies "$PROXY_CPU")
    read -r c1 c1t < <(core_jiffies "$LOAD_CPU")
    taskset -c "$LOAD_CPU" "$@" >"$log" 2>&1 || die "load generator failed: $* (see $log)"
    read -r c0b c0tb < <(core_jiffies "$PROXY_CPU")
    read -r c1b c1tb < <(core_jiffies "$LOAD_CPU")
    after=$([[ -n $PROXY_PID ]] && cpu_ticks "$PROXY_PID" || echo 0)
    PROXY_TICKS=$((after - before))
    CORE_PROXY_BUSY=$(((c0b - c0) * 100 / (c0tb - c0t)))
    CORE_LOAD_BUSY=$(((c1b - c1) * 100 / (c1tb - c1t)))
    LOAD_LOG=$log
}

# CPU seconds of the proxy per 10,000 requests.
record_cpu() {
    local proto=$1 kind=$2 requests=$3
    [[ -n $PROXY_PID && $requests -gt 0 ]] || return 0
    record "$proto" "cpu_per_10k_$kind" "$(python3 -c "print(f'{$PROXY_TICKS / $TICKS / $requests * 10000:.4f}')")"
}

# The maximum, uncapped, or with `capped` as $1 once the proxy is capped.
h1_max() {
    local kind=max${1:+_$1} suffix=${1:+_$1}
    measure h1 "$kind" wrk -t1 -c"$H1_CONNS" -d"${DURATION}s" "$H1_URL"
    local rps requests errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$LOAD_LOG")
    requests=$(awk '/requests in/ {print $1}' "$LOAD_LOG")
    errors=$(awk '/Non-2xx|Socket errors/' "$LOAD_LOG")
    [[ -z $errors ]] || say "    wrk reported errors: $errors"
    record h1 "rps$suffix" "$rps"
    record h1 "core_busy_proxy$suffix" "$CORE_PROXY_BUSY"
    record h1 "core_busy_load$suffix" "$CORE_LOAD_BUSY"
    record_cpu h1 "$kind" "$requests"
    say "    HTTP/1.1 ${1:+$1 }max: $rps req/s (core $PROXY_CPU ${CORE_PROXY_BUSY}% busy, core $LOAD_CPU ${CORE_LOAD_BUSY}%)"
}

h2_max() {
    local kind=max${1:+_$1} suffix=${1:+_$1}
    measure h2 "$kind" h2load -t1 -c"$H2_CLIENTS" -m"$H2_STREAMS" -D "$DURATION" --warm-up-time 1 "$H2_URL"
    local rps succeeded failed
    rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$LOAD_LOG")
    read -r succeeded failed < <(sed -n 's/^requests: .* \([0-9]*\) succeeded, \([0-9]*\) failed.*/\1 \2/p' "$LOAD_LOG")
    ((failed == 0)) || say "    h2load: $failed requests failed"
    record h2 "rps$suffix" "$rps"
    record h2 "core_busy_proxy$suffix" "$CORE_PROXY_BUSY"
    record h2 "core_busy_load$suffix" "$CORE_LOAD_BUSY"
    # The CPU sample spans the warm-up second too: count its requests.
    record_cpu h2 "$kind" "$(python3 -c "print(round($rps * ($DURATION + 1)))")"
    say "    HTTP/2 ${1:+$1 }max: $rps req/s (core $PROXY_CPU ${CORE_PROXY_BUSY}% busy, core $LOAD_CPU ${CORE_LOAD_BUSY}%)"
}

# Latency at a fixed rate: examples/bench_load.rs spreads RATE requests/s
# evenly over the connections (h2load --rps sends every client's request on
# the same tick, so its latency is the queue of a 50-request burst).
fixed_rate() {
    local proto=$1 url addr clients streams
    if [[ $proto == h1 ]]; then
        url=$H1_URL clients=$H1_CONNS streams=1
    else
        url=$H2_URL clients=$H2_CLIENTS streams=$H2_STREAMS
    fi
    addr=${url#http://}
    addr=${addr%/}
    measure "$proto" rate "$LOAD" "$proto" "$addr" "$clients" "$streams" "$RATE" "$DURATION"
    local line n errors p50 p99
    line=$(tail -n1 "$LOAD_LOG")
    n=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$line")
    errors=$(sed -n 's/.*errors=\([0-9]*\).*/\1/p' <<<"$line")
    p50=$(sed -n 's/.*p50_us=\([0-9]*\).*/\1/p' <<<"$line")
    p99=$(sed -n 's/.*p99_us=\([0-9]*\).*/\1/p' <<<"$line")
    [[ -n $n && -n $p99 ]] || die "bench_load printed no result (see $LOAD_LOG)"
    ((errors == 0)) || say "    bench_load: $errors requests failed"
    record "$proto" p50_us "$p50"
    record "$proto" p99_us "$p99"
    record "$proto" rate_done "$(python3 -c "print(round($n / $DURATION))")"
    # The CPU sample spans the warm-up second too, at the same rate.
    record_cpu "$proto" rate "$(python3 -c "print(round($n * ($DURATION + 1) / $DURATION))")"
    say "    $proto at $RATE req/s: $n requests, p50 ${p50} µs, p99 ${p99} µs"
}

run_candidate() {
    CANDIDATE=$1
    PROXY_PID=
    SUBSCRIBER_PID=
    say "  $CANDIDATE"
    case $CANDIDATE in
    direct) start_direct ;;
    meshtop) start_meshtop "$CANDIDATE" ;;
    meshtop-base) MESHTOP_BIN=$BASELINE start_meshtop "$CANDIDATE" ;;
    meshtop-sub) start_meshtop_sub "$CANDIDATE" ;;
    nginx) start_nginx "$CANDIDATE" ;;
    haproxy) start_haproxy "$CANDIDATE" ;;
    *) die "unknown candidate $CANDIDATE" ;;
    esac
    check_body "$H1_URL"
    check_body "$H2_URL" --http2-prior-knowledge
    if [[ -n $PROXY_PID && $ROUND == 1 ]]; then
        describe_placement "$CANDIDATE" "$PROXY_PID"
        [[ -z $SUBSCRIBER_PID ]] || describe_placement subscriber "$SUBSCRIBER_PID"
    fi

    h1_max
    fixed_rate h1
    if [[ -n $PROXY_PID ]]; then
        record h1 peak_rss_kib "$(peak_rss_kib "$PROXY_PID")"
    fi
    h2_max
    fixed_rate h2
    if [[ -n $PROXY_PID ]]; then
        record h2 peak_rss_kib "$(peak_rss_kib "$PROXY_PID")"
        say "    peak RSS: $(($(peak_rss_kib "$PROXY_PID") / 1024)) MiB"
    fi
    # Last, since the proxy stays capped until it stops.
    if [[ -n $PROXY_PID && -n $CAP_DIR ]]; then
        cap "$PROXY_PID"
        h1_max capped
        h2_max capped
    fi
    if [[ -n $SUBSCRIBER_PID ]]; then
        local metrics
        metrics=$(curl -sf "http://$ADMIN/metrics" || true)
        record all events_dropped "$(awk '/^meshtop_events_dropped_total / {print $2}' <<<"$metrics")"
        record all records_dropped "$(awk '/^meshtop_records_dropped_total / {print $2}' <<<"$metrics")"
        stop "$SUBSCRIBER_PID"
        if [[ $SUBSCRIBER == record ]]; then
            record all events_recorded "$(grep -c '"type":"request"' "$OUT/events.jsonl" || true)"
            rm -f "$OUT/events.jsonl"
        else
            record all events_recorded "$(sed -n 's/^requests=\([0-9]*\).*/\1/p' "$SUBSCRIBER_OUT")"
        fi
    fi
    [[ -z $PROXY_PID ]] || stop "$PROXY_PID"
    sleep 1
}

read -r -a LIST <<<"$CANDIDATES"
for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
    order=("${LIST[@]:$(((ROUND - 1) % ${#LIST[@]}))}" "${LIST[@]:0:$(((ROUND - 1) % ${#LIST[@]}))}")
    say "round $ROUND of $ROUNDS: ${order[*]}"
    for candidate in "${order[@]}"; do
        run_candidate "$candidate"
    done
done

report() {
    python3 - "$RESULTS" "$RATE" "$DURATION" "$ROUNDS" "$PROXY_CPU" "$LOAD_CPU" "$CAP" <<'EOF'
import csv
import statistics
import sys

path, rate, duration, rounds, proxy_cpu, load_cpu, cap = sys.argv[1:]
values = {}
for row in csv.DictReader(open(path), delimiter="\t"):
    if row["value"] == "":
        continue
    key = (row["candidate"], row["proto"], row["metric"])
    values.setdefault(key, []).append(float(row["value"]))


def med(candidate, proto, metric):
    got = values.get((candidate, proto, metric))
    return statistics.median(got) if got else None


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "–"


def num(v, fmt="{:,.0f}"):
    return fmt.format(v) if v is not None else "–"


candidates = [c for c in ["direct", "meshtop", "meshtop-base", "meshtop-sub", "nginx", "haproxy"]
              if any(k[0] == c for k in values)]
names = {
    "direct": "direct (no proxy)",
    "meshtop": "meshtop",
    "meshtop-base": "meshtop (baseline build)",
    "meshtop-sub": "meshtop + 1 subscriber",
    "nginx": "nginx 1.22",
    "haproxy": "haproxy 2.6",
}
protos = {"h1": "HTTP/1.1", "h2": "HTTP/2 (h2c)"}

print(f"Medians of {rounds} rounds, {duration} s per measurement; fixed rate {int(rate):,} req/s; "
      f"proxy on core {proxy_cpu}, load generator + backend (+ subscriber) on core {load_cpu}.")
print()
print("| candidate | protocol | max req/s | p50 µs | p99 µs | p99 added µs | CPU s/10k req (max) | CPU s/10k req (fixed rate) | peak RSS MiB |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for proto in protos:
    direct_p99 = med("direct", proto, "p99_us")
    for c in candidates:
        p99 = med(c, proto, "p99_us")
        added = p99 - direct_p99 if p99 is not None and direct_p99 is not None and c != "direct" else None
        rss = med(c, proto, "peak_rss_kib")
        print(f"| {names[c]} | {protos[proto]} | {num(med(c, proto, 'rps'))} | {num(med(c, proto, 'p50_us'))} "
              f"| {num(p99)} | {num(added)} | {num(med(c, proto, 'cpu_per_10k_max'), '{:.3f}')} "
              f"| {num(med(c, proto, 'cpu_per_10k_rate'), '{:.3f}')} | {num(rss / 1024 if rss else None, '{:.1f}')} |")
print()
print("Ratios (of the medians):")
print()
print("| candidate | protocol | req/s × haproxy | req/s × nginx | req/s × direct | p99 × haproxy | p99 × direct | CPU/10k (max) × haproxy | peak RSS × haproxy |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for proto in protos:
    for c in candidates:
        get = lambda cand, metric: med(cand, proto, metric)
        print(f"| {names[c]} | {protos[proto]} | {ratio(get(c, 'rps'), get('haproxy', 'rps'))} "
              f"| {ratio(get(c, 'rps'), get('nginx', 'rps'))} | {ratio(get(c, 'rps'), get('direct', 'rps'))} "
              f"| {ratio(get(c, 'p99_us'), get('haproxy', 'p99_us'))} | {ratio(get(c, 'p99_us'), get('direct', 'p99_us'))} "
              f"| {ratio(get(c, 'cpu_per_10k_max'), get('haproxy', 'cpu_per_10k_max'))} "
              f"| {ratio(get(c, 'peak_rss_kib'), get('haproxy', 'peak_rss_kib'))} |")
capped = [c for c in candidates if any(med(c, p, "rps_capped") is not None for p in protos)]
if capped:
    print()
    print(f"Maximum with each proxy capped at {cap} % of one core (a CPU cgroup), so that the proxy "
          "and not the load generator is the limit:")
    print()
    print("| candidate | protocol | capped max req/s | × haproxy | × nginx | CPU s/10k req | busy % proxy core / load core |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for proto in protos:
        for c in capped:
            get = lambda cand: med(cand, proto, "rps_capped")
            print(f"| {names[c]} | {protos[proto]} | {num(get(c))} | {ratio(get(c), get('haproxy'))} "
                  f"| {ratio(get(c), get('nginx'))} | {num(med(c, proto, 'cpu_per_10k_max_capped'), '{:.3f}')} "
                  f"| {num(med(c, proto, 'core_busy_proxy_capped'))} / {num(med(c, proto, 'core_busy_load_capped'))} |")
print()
print("Busy share of each core during the max-throughput runs (median %, proxy core / load core):")
print()
for proto in protos:
    parts = [f"{c} {num(med(c, proto, 'core_busy_proxy'))}/{num(med(c, proto, 'core_busy_load'))}" for c in candidates]
    print(f"- {protos[proto]}: " + ", ".join(parts))
if values.get(("meshtop-sub", "all", "events_recorded")):
    print(f"- subscriber: events recorded per round {', '.join(num(v) for v in values[('meshtop-sub', 'all', 'events_recorded')])}; "
          f"events dropped {', '.join(num(v) for v in values.get(('meshtop-sub', 'all', 'events_dropped'), []))}; "
          f"records dropped {', '.join(num(v) for v in values.get(('meshtop-sub', 'all', 'records_dropped'), []))}")


def by_round(candidate, proto, metric):
    out = {}
    for row in csv.DictReader(open(path), delimiter="\t"):
        if (row["candidate"], row["proto"], row["metric"]) == (candidate, proto, metric) and row["value"]:
            out[row["round"]] = float(row["value"])
    return out


def paired(a, b, proto, metric):
    """The median over rounds of a ÷ b measured in the same round."""
    x, y = by_round(a, proto, metric), by_round(b, proto, metric)
    ratios = [x[r] / y[r] for r in x if r in y and y[r]]
    return f"{statistics.median(ratios):.2f}× (rounds: {', '.join(f'{v:.2f}' for v in ratios)})" if ratios else "–"


if "meshtop-base" in candidates:
    print()
    print("This build against the baseline build (each round's ratio, then their median):")
    print()
    for proto in protos:
        print(f"- {protos[proto]}: max req/s {paired('meshtop', 'meshtop-base', proto, 'rps')}; "
              f"CPU per request at the maximum {paired('meshtop', 'meshtop-base', proto, 'cpu_per_10k_max')}; "
              f"at the fixed rate {paired('meshtop', 'meshtop-base', proto, 'cpu_per_10k_rate')}")
if "meshtop-sub" in candidates and "meshtop" in candidates:
    print()
    print("With a subscriber against without, round by round (the same pairing):")
    print()
    for proto in protos:
        print(f"- {protos[proto]}: max req/s {paired('meshtop-sub', 'meshtop', proto, 'rps')}")
        if capped:
            print(f"  capped: {paired('meshtop-sub', 'meshtop', proto, 'rps_capped')}")
print()
print("Targets:")
print()


def verdict(ok):
    return "MET" if ok else "MISSED"


def target(label, a, b, need):
    if a is None or b is None or not b:
        print(f"- {label}: not measured")
        return
    print(f"- {label}: {a / b:.2f}× (needs ≥ {need}) — {verdict(a / b >= need)}")


def limits(proto, other):
    """Where a maximum was not the proxy's own: its core was not saturated,
    so the figure is a floor; and the CPU per request, which holds either way."""
    notes = []
    for c in ("meshtop", other):
        busy = med(c, proto, "core_busy_proxy")
        if busy is not None and busy < 90:
            notes.append(f"{c}'s core {busy:.0f} % busy: its maximum is a floor")
    cpu = ratio(med("meshtop", proto, "cpu_per_10k_max"), med(other, proto, "cpu_per_10k_max"))
    if cpu != "–":
        notes.append(f"CPU per request {cpu} {other}'s")
    if notes:
        print(f"  ({'; '.join(notes)})")


for proto in protos:
    m = med("meshtop", proto, "rps")
    for other in ("haproxy", "nginx"):
        target(f"{protos[proto]} meshtop req/s vs {other}", m, med(other, proto, "rps"), 1.0)
        if m is not None and med(other, proto, "rps") is not None:
            limits(proto, other)
        if capped:
            target(f"{protos[proto]} meshtop req/s vs {other}, capped at {cap} % of a core",
                   med("meshtop", proto, "rps_capped"),
                   med(other, proto, "rps_capped"), 1.0)
for proto in protos:
    d, m, h = (med(c, proto, "p99_us") for c in ("direct", "meshtop", "haproxy"))
    if None in (d, m, h):
        print(f"- {protos[proto]} p99 added over direct: not measured")
    else:
        print(f"- {protos[proto]} p99 added over direct: meshtop {m - d:,.0f} µs, haproxy {h - d:,.0f} µs "
              f"(needs meshtop ≤ haproxy) — {verdict(m - d <= h - d)}")
for proto in protos:
    target(f"{protos[proto]} req/s with a subscriber vs without", med("meshtop-sub", proto, "rps"),
           med("meshtop", proto, "rps"), 0.95)
    if capped:
        target(f"{protos[proto]} req/s with a subscriber vs without, capped at {cap} % of a core",
               med("meshtop-sub", proto, "rps_capped"),
               med("meshtop", proto, "rps_capped"), 0.95)
for c in ("meshtop", "meshtop-sub"):
    rss = med(c, "h1", "peak_rss_kib")
    if rss is not None:
        print(f"- {names[c]} peak RSS under the HTTP/1.1 load: {rss / 1024:.1f} MiB (needs ≤ 20 MiB) — {verdict(rss <= 20 * 1024)}")
EOF
}

report | tee "$OUT/report.md"
say "raw results: $RESULTS; logs: $OUT"
