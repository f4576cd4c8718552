#!/usr/bin/env bash
# Benchmark driver: runs the load generator's scenarios against sockeye's
# examples/echo_server and the reference Node server (npm socket.io) in the
# same run, each server pinned to CPU 0 and the generator to CPU 1, a fresh
# server per scenario, and prints a markdown table
#   metric | sockeye | reference | ratio
# (ratio > 1 means sockeye is better, whichever way the metric goes).
#
#   tests/bench/run.sh --sockeye _build/examples/echo_server \
#       --node-ref tests/bench/ref_server.mjs [--bench _build/tests/bench/sockeye-bench]
#   tests/bench/run.sh --smoke --sockeye _build/examples/echo_server
#
# Options:
#   --sockeye PATH    the echo_server binary (default: $top_builddir or _build)
#   --node-ref PATH   the reference server script (default: tests/bench/ref_server.mjs)
#   --bench PATH      the generator (default: next to --sockeye's build tree)
#   --node PATH       node executable (default: node)
#   --only "A B"      run only these scenarios (idle connect echo echo-paced fanout
#                     fanout-paced slow)
#   --out DIR         keep results there (default: a new directory under /tmp)
#   --repeat N        run every scenario N times (interleaved); the table shows
#                     the median of each metric (default 1)
#   --smoke           tiny runs against sockeye only; exit 1 if any check fails
#   --no-ref          skip the reference server (sockeye only, full size)
#   --ref             include the reference server even with --smoke
# Exit status: 0 when every scenario passed its checks on every server, 1 if
# one failed, 2 on a usage or set-up error. The driver builds nothing.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${top_builddir:-$root/_build}

sockeye="" ref="$here/ref_server.mjs" bench="" node=node only="" out="" smoke=0 with_ref=1 repeat=1 force_ref=0
die() { echo "run.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    --sockeye) sockeye=${2:?}; shift 2 ;;
    --node-ref) ref=${2:?}; shift 2 ;;
    --bench) bench=${2:?}; shift 2 ;;
    --node) node=${2:?}; shift 2 ;;
    --only) only=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --repeat) repeat=${2:?}; shift 2 ;;
    --smoke) smoke=1; with_ref=0; shift ;;
    --no-ref) with_ref=0; shift ;;
    --ref) force_ref=1; shift ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
done

[ $force_ref = 1 ] && with_ref=1
case $repeat in '' | *[!0-9]* | 0) die "--repeat needs a positive number" ;; esac
[ -n "$sockeye" ] || sockeye=$build/examples/echo_server
[ -n "$bench" ] || bench=$(dirname "$(dirname "$sockeye")")/tests/bench/sockeye-bench
[ -x "$sockeye" ] || die "sockeye server not found or not executable: $sockeye (build it, or pass --sockeye)"
[ -x "$bench" ] || die "generator not found: $bench (build tests/bench/sockeye-bench, or pass --bench)"
if [ $with_ref = 1 ]; then
    [ -f "$ref" ] || die "reference server not found: $ref"
    command -v "$node" >/dev/null || die "node not found ($node): needed for the reference server"
fi
made_out=0
[ -n "$out" ] || { out=$(mktemp -d /tmp/sockeye-bench.XXXXXX) && made_out=1; }
mkdir -p "$out" || die "cannot create $out"

# Scenario name -> generator arguments. Full size, then the smoke sizes.
declare -A args
if [ $smoke = 0 ]; then
    args[idle]="idle --clients 10000 --concurrency 100 --settle 1000 --duration 2000"
    args[connect]="connect --clients 5000 --concurrency 50"
    args[echo]="echo --clients 100 --warmup 1000 --duration 5000"
    args[echo-paced]="echo --clients 100 --rate 10000 --warmup 1000 --duration 5000"
    args[fanout]="fanout --clients 1000 --messages 1000"
    args[fanout-paced]="fanout --clients 1000 --messages 500 --rate 50"
    args[slow]="slow --clients 1000 --messages 1000 --slow-percent 10"
    common="--timeout 60000 --deadline 240000"
else
    args[idle]="idle --clients 50 --settle 200 --duration 300"
    args[connect]="connect --clients 50 --concurrency 10"
    args[echo]="echo --clients 10 --warmup 200 --duration 1000"
    args[echo-paced]="echo --clients 10 --rate 500 --warmup 200 --duration 1000"
    args[fanout]="fanout --clients 50 --messages 20"
    args[fanout-paced]="fanout --clients 50 --messages 20 --rate 50"
    args[slow]="slow --clients 50 --messages 20 --slow-percent 10"
    common="--timeout 5000 --deadline 15000"
fi
order="idle connect echo echo-paced fanout fanout-paced slow"
[ -n "$only" ] || only=$order
for s in $only; do [ -n "${args[$s]:-}" ] || die "unknown scenario '$s' (one of: $order)"; done

# Each client needs a descriptor in the generator and one in the server.
max_clients=0
for s in $only; do
    n=$(echo "${args[$s]}" | sed -n 's/.*--clients \([0-9]*\).*/\1/p')
    [ "${n:-0}" -gt "$max_clients" ] && max_clients=$n
done
need=$((max_clients + 256))
ulimit -n 65535 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
have=$(ulimit -n)
[ "$have" = unlimited ] || [ "$have" -ge $need ] ||
    die "need $need open files per process for $max_clients clients, ulimit -n is $have and the hard limit $(ulimit -Hn): raise it (as root: ulimit -Hn 65535) or run fewer clients"

# Server on CPU 0, generator on CPU 1. Arrays, not a function, so that $! is
# the server's own pid (taskset execs it).
pin0=() pin1=()
if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    pin0=(taskset -c 0) pin1=(taskset -c 1)
fi
[ "$(nproc)" -ge 2 ] || echo "run.sh: warning: fewer than 2 CPUs, server and generator share one" >&2

# Is something listening on 127.0.0.1:PORT? ss does not disturb the server;
# without it, a bash /dev/tcp probe (one connection the server sees close).
if command -v ss >/dev/null; then
    listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q LISTEN; }
else
    listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
fi

pid=""
start_server() { # start_server KIND LOG: sets pid and port, or returns 1
    local kind=$1 log=$2 _try
    for _try in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 20000))
        listening "$port" && continue
        if [ "$kind" = sockeye ]; then
            "${pin0[@]}" "$sockeye" --port "$port" >"$log" 2>&1 &
        else
            "${pin0[@]}" "$node" "$ref" --port "$port" >"$log" 2>&1 &
        fi
        pid=$!
        local waited=0
        while [ $waited -lt 100 ]; do
            listening "$port" && return 0
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1; waited=$((waited + 1))
        done
        stop_server
    done
    echo "run.sh: $kind server did not start listening; log:" >&2
    tail -20 "$log" >&2
    return 1
}

stop_server() {
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    local waited=0
    while kill -0 "$pid" 2>/dev/null && [ $waited -lt 50 ]; do sleep 0.1; waited=$((waited + 1)); done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=""
}
trap 'stop_server' EXIT
trap 'exit 130' INT TERM

servers="sockeye"
[ $with_ref = 1 ] && servers="sockeye reference"
failures=0
run_one() { # run_one SCENARIO SERVER ROUND
    local s=$1 kind=$2 base="$out/$1.$2.$3"
    if ! start_server "$kind" "$base.server.log"; then
        echo "{\"scenario\":\"$s\",\"ok\":false,\"first_error\":\"server did not start\"}" >"$base.json"
        failures=$((failures + 1)); return
    fi
    # shellcheck disable=SC2086 # the argument strings are meant to split
    "${pin1[@]}" "$bench" ${args[$s]} $common --port "$port" --server-pid "$pid" \
        >"$base.out" 2>"$base.err"
    local rc=$?
    local alive=1
    kill -0 "$pid" 2>/dev/null || alive=0
    stop_server
    grep '^{' "$base.out" | tail -1 >"$base.json"
    printf '%-9s %-12s ' "$kind" "$s"
    grep '^# ' "$base.out" | tail -1 | sed 's/^# //'
    [ -s "$base.json" ] || echo "{\"scenario\":\"$s\",\"ok\":false,\"first_error\":\"generator exit $rc\"}" >"$base.json"
    if [ $alive = 0 ]; then
        echo "  the $kind server died during the run; its log:"; tail -5 "$base.server.log"
        echo "{\"scenario\":\"$s\",\"ok\":false,\"first_error\":\"server died\"}" >"$base.json"
        failures=$((failures + 1))
    elif [ $rc -ne 0 ]; then
        echo "  generator exit $rc:"; head -5 "$base.err"
        failures=$((failures + 1))
    fi
}

loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null; }
echo "results in $out; load average at start: $(loadavg) (other jobs on these CPUs skew the numbers)"
for round in $(seq 1 "$repeat"); do
    [ "$repeat" -gt 1 ] && echo "round $round of $repeat"
    for s in $only; do
        for kind in $servers; do run_one "$s" "$kind" "$round"; done
    done
done

echo "load average at end: $(loadavg)"
if [ $with_ref = 1 ]; then
    echo
    # shellcheck disable=SC2086 # one argument per scenario
    "$node" "$here/report.mjs" "$out" $only
fi
if [ $failures -gt 0 ]; then
    echo "run.sh: $failures scenario run(s) failed their checks" >&2
    exit 1
fi
echo "run.sh: all scenario runs passed their checks"
# A passing smoke run leaves nothing behind unless --out asked to keep it.
[ $smoke = 1 ] && [ $made_out = 1 ] && rm -rf "$out"
exit 0
