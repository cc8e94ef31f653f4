#!/usr/bin/env bash
# `meshtop inject` on ever larger Lists, to show that its time and memory
# grow linearly with the input (issue #15).
#
#   bash benches/inject.sh
#
# For each size N it writes a `kind: List` of N Deployments (about 110 bytes
# each, none with init containers yet: every one gets meshtop), runs the
# release binary's `meshtop inject` on it once per round, and prints the
# input's size, the median wall time and peak RSS of the rounds, and both
# per item and per input byte: constant ratios down the table mean linear
# growth. docs/benchmarks.md has the figures and how they were taken.
#
# Peak RSS comes from GNU time (`/usr/bin/time -v`): on Debian and Ubuntu,
# `apt-get install time` when it is missing (the shell's `time` builtin does
# not measure memory).
#
# Environment (defaults in brackets):
#   SIZES       items per List [1000 10000 50000 100000]
#   ROUNDS      runs per size; the report gives the median [3]
#   TIMEOUT     seconds one run may take before it is stopped [120]
#   OUT         where the generated Lists and the raw results go [target/bench-inject]
#   BIN         the meshtop binary to measure; building it is skipped when
#               set (say, a build of main, to compare) [target/release/meshtop]
set -euo pipefail

SIZES=${SIZES:-"1000 10000 50000 100000"}
ROUNDS=${ROUNDS:-3}
TIMEOUT=${TIMEOUT:-120}
OUT=${OUT:-target/bench-inject}

cd "$(dirname "$0")/.."

if [[ ! -x /usr/bin/time ]]; then
    echo "benches/inject.sh needs GNU time for peak RSS: apt-get install time" >&2
    exit 2
fi
if [[ -z "${BIN:-}" ]]; then
    cargo build --release --quiet --bin meshtop
    BIN=target/release/meshtop
fi
mkdir -p "$OUT"

# A List of $1 Deployments, each with a container and no init containers.
generate() {
    awk -v n="$1" 'BEGIN {
        print "apiVersion: v1"
        print "kind: List"
        print "items:"
        for (i = 0; i < n; i++) {
            print "- apiVersion: apps/v1"
            print "  kind: Deployment"
            printf "  metadata: {name: app-%d}\n", i
            print "  spec:"
            print "    template:"
            print "      spec:"
            print "        containers:"
            print "        - name: app"
            print "          image: example/app:1"
        }
    }'
}

# The median of the numbers on standard input.
median() {
    sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

printf '%8s %10s %9s %10s %10s %9s %9s\n' \
    items "input KiB" "wall s" "µs/item" "peak MiB" "KiB/item" "RSS/input"
for n in $SIZES; do
    input="$OUT/list-$n.yml"
    [[ -s "$input" ]] || generate "$n" > "$input"
    bytes=$(stat -c %s "$input")
    walls=()
    rss=()
    for ((round = 0; round < ROUNDS; round++)); do
        log="$OUT/time-$n-$round.txt"
        if ! timeout "$TIMEOUT" /usr/bin/time -v "$BIN" inject "$input" \
            > "$OUT/out-$n.yml" 2> "$log"; then
            echo "$n items: failed or over ${TIMEOUT}s (see $log)" >&2
            continue 2
        fi
        # "Elapsed (wall clock) time (h:mm:ss or m:ss): 0:01.23"
        walls+=("$(awk -F': ' '/Elapsed \(wall clock\)/ {
            n = split($2, t, ":"); s = 0
            for (i = 1; i <= n; i++) s = s * 60 + t[i]
            print s }' "$log")")
        rss+=("$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$log")")
    done
    wall=$(printf '%s\n' "${walls[@]}" | median)
    kib=$(printf '%s\n' "${rss[@]}" | median)
    awk -v n="$n" -v bytes="$bytes" -v wall="$wall" -v kib="$kib" 'BEGIN {
        printf "%8d %10.0f %9.2f %10.1f %10.1f %9.2f %9.1f\n",
            n, bytes / 1024, wall, wall * 1e6 / n, kib / 1024, kib / n, kib * 1024 / bytes
    }'
done
