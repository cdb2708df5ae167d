#!/usr/bin/env bash
# weft's main job: `bash tools/demo.sh` - weft-kv, the sharded Redis-protocol
# server (docs/kv.md), against Debian's redis-server, driven by Debian's
# redis-benchmark.
#
#  1. tools/deps.sh (redis-server, redis-tools among them);
#  2. bazel build -c opt //apps/kv:weft-kv;
#  3. weft-kv on every loop (one per allowed CPU) on a free loopback port,
#     checked with redis-cli PING / SET / GET;
#  4. Debian's redis-server 7.0 without persistence on another loopback
#     port;
#  5. redis-benchmark's default tests with random keys (-r 1000000),
#     pipelined (-P 16) then not, 50 clients, against each server in turn
#     (test by test, so that a row's two figures come from the same
#     minute), one progress line per test and server;
#  6. a table: test, weft-kv ops/s, redis ops/s, ratio, p50/p99 of each;
#     and the same as JSON in kv-demo.json; then the memory each takes per
#     key for 1,000,000 keys of 16-byte values.
#
# Runs are bounded: KV_DEMO_N requests per pipelined test (default 200000),
# KV_DEMO_N1 per unpipelined one (default 20000); the LRANGE tests, which
# move 100-600 elements per request, get a tenth. About 2-4 minutes on this
# 2-core machine. redis-benchmark shares the cores with the server it
# drives (and, on a shared machine, with whatever else runs): figures move
# from run to run (docs/kv.md, "Measured").
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
bash tools/deps.sh || exit 1

N=${KV_DEMO_N:-200000}
N1=${KV_DEMO_N1:-20000}
CLIENTS=${KV_DEMO_CLIENTS:-50}
TESTS="ping set get incr lpush rpush lpop rpop sadd hset spop zadd zpopmin lrange mset"

echo "=== build: bazel build -c opt //apps/kv:weft-kv"
bazel build -c opt //apps/kv:weft-kv 2>&1 | tail -n 1
bin=$(bazel info -c opt bazel-bin 2>/dev/null)/apps/kv/weft-kv
[ -x "$bin" ] || { echo "demo: no weft-kv binary at $bin"; exit 1; }

tmp=$(mktemp -d)
kv_pid=""
redis_pid=""
cleanup() {
    local p
    for p in $kv_pid $redis_pid; do
        { kill "$p" && wait "$p"; } 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

echo "=== weft-kv on every loop"
"$bin" --port 0 --bind 127.0.0.1 >"$tmp/kv.log" 2>&1 &
kv_pid=$!
kv_port=""
for _ in $(seq 1 100); do
    kv_port=$(sed -n 's/^weft-kv ready: [^ ]*:\([0-9]*\),.*/\1/p' "$tmp/kv.log")
    [ -n "$kv_port" ] && break
    sleep 0.1
done
[ -n "$kv_port" ] || { cat "$tmp/kv.log"; echo "demo: weft-kv did not start"; exit 1; }
cat "$tmp/kv.log"
pong=$(redis-cli -p "$kv_port" PING)
set_ok=$(redis-cli -p "$kv_port" SET demo:key hello)
got=$(redis-cli -p "$kv_port" GET demo:key)
echo "redis-cli: PING -> $pong, SET -> $set_ok, GET -> $got"
if [ "$pong" != PONG ] || [ "$set_ok" != OK ] || [ "$got" != hello ]; then
    echo "demo: weft-kv did not answer as expected"
    exit 1
fi

# bench NAME PORT MODE TEST: one redis-benchmark run; its rows (one per
# test it reports) to $tmp/NAME.csv as "mode,test,rps,p50,p99", and one
# progress line each.
bench() {
    local name=$1 port=$2 mode=$3 t=$4 pipe=${3#P} n
    n=$N
    [ "$pipe" = 1 ] && n=$N1
    [ "$t" = lrange ] && n=$((n / 10))
    if ! redis-benchmark -p "$port" -t "$t" -n "$n" -r 1000000 -c "$CLIENTS" \
        -P "$pipe" --csv >"$tmp/run.csv" 2>"$tmp/run.err"; then
        echo "demo: redis-benchmark failed against $name ($t, -P $pipe):"
        cat "$tmp/run.err" "$tmp/run.csv"
        exit 1
    fi
    # "test","rps","avg","min","p50","p95","p99","max"
    tail -n +2 "$tmp/run.csv" | tr -d '"' |
        while IFS=, read -r test rps _avg _min p50 _p95 p99 _max; do
            printf '%-8s %-3s %-36s %12s ops/s  p50 %7s ms  p99 %7s ms\n' \
                "$name" "$mode" "$test" "$rps" "$p50" "$p99"
            echo "$mode,$test,$rps,$p50,$p99" >>"$tmp/$name.csv"
        done
}

# mem_per_key NAME PORT: load 1,000,000 keys of 16-byte values (SET
# key:<12 digits> <16 bytes>, through redis-cli --pipe) into an empty
# server; print used_memory (the allocator's count) and RSS per key.
mem_per_key() {
    local name=$1 port=$2 keys used rss used0 rss0
    redis-cli -p "$port" FLUSHALL >/dev/null
    used0=$(redis-cli -p "$port" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
    rss0=$(redis-cli -p "$port" INFO memory | tr -d '\r' | sed -n 's/^used_memory_rss://p')
    awk 'BEGIN { for (i = 0; i < 1000000; i++)
                 printf "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$16\r\nvalue:%010d\r\n", i, i }' |
        redis-cli -p "$port" --pipe >/dev/null
    keys=$(redis-cli -p "$port" DBSIZE)
    used=$(redis-cli -p "$port" INFO memory | tr -d '\r' | sed -n 's/^used_memory://p')
    rss=$(redis-cli -p "$port" INFO memory | tr -d '\r' | sed -n 's/^used_memory_rss://p')
    awk -v n="$name" -v k="$keys" -v u="$used" -v u0="$used0" -v r="$rss" -v r0="$rss0" 'BEGIN {
        printf "%-8s memory: %d keys of 16-byte values: used_memory %.1f bytes/key, RSS %.1f bytes/key\n",
               n, k, (u - u0) / k, (r - r0) / k }' | tee -a "$tmp/mem.txt"
    redis-cli -p "$port" FLUSHALL >/dev/null
}

echo "=== redis-server without persistence"
redis_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 7399)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
    >"$tmp/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" PING >/dev/null 2>&1 && break
    sleep 0.1
done
echo "$(redis-server --version | cut -d' ' -f1-3) on port $redis_port"

# Each test runs against weft-kv and then at once against redis-server, so
# that both figures of a row come from the same minute: on a shared VM
# the speed drifts by up to 2x over the minutes a whole suite takes.
echo "=== redis-benchmark: weft-kv (port $kv_port), redis-server (port $redis_port)"
: >"$tmp/weft-kv.csv"
: >"$tmp/redis.csv"
for mode in P16 P1; do
    redis-cli -p "$kv_port" FLUSHALL >/dev/null
    redis-cli -p "$redis_port" FLUSHALL >/dev/null
    for t in $TESTS; do
        bench weft-kv "$kv_port" "$mode" "$t"
        bench redis "$redis_port" "$mode" "$t"
    done
done
redis-cli -p "$kv_port" INFO weft | tr -d '\r' | grep -v '^#'
mem_per_key weft-kv "$kv_port"
mem_per_key redis "$redis_port"
redis-cli -p "$kv_port" SHUTDOWN >/dev/null 2>&1
wait "$kv_pid" 2>/dev/null
kv_pid=""
redis-cli -p "$redis_port" SHUTDOWN NOSAVE >/dev/null 2>&1
wait "$redis_pid" 2>/dev/null
redis_pid=""

echo "=== weft-kv vs redis-server ($(nproc) CPUs, $CLIENTS clients, -r 1000000)"
awk -F, -v json="kv-demo.json" '
    NR == FNR { k = $1 "," $2; wr[k] = $3; w50[k] = $4; w99[k] = $5; order[++n] = k; next }
    { k = $1 "," $2; rr[k] = $3; r50[k] = $4; r99[k] = $5 }
    END {
        printf "%-4s %-36s %12s %12s %6s %15s %15s\n", "mode", "test", "weft-kv ops/s",
               "redis ops/s", "ratio", "weft p50/p99", "redis p50/p99"
        printf "[\n" > json
        for (i = 1; i <= n; i++) {
            k = order[i]
            split(k, p, ",")
            ratio = rr[k] > 0 ? wr[k] / rr[k] : 0
            printf "%-4s %-36s %12.0f %12.0f %5.2fx %7s/%-7s %7s/%-7s\n", p[1], p[2], wr[k],
                   rr[k], ratio, w50[k], w99[k], r50[k], r99[k]
            printf "  {\"mode\": \"%s\", \"test\": \"%s\", \"weft_ops\": %s, \"redis_ops\": %s, " \
                   "\"ratio\": %.3f, \"weft_p50_ms\": %s, \"weft_p99_ms\": %s, " \
                   "\"redis_p50_ms\": %s, \"redis_p99_ms\": %s}%s\n", p[1], p[2], wr[k], rr[k],
                   ratio, w50[k], w99[k], r50[k], r99[k], i < n ? "," : "" > json
        }
        printf "]\n" > json
    }' "$tmp/weft-kv.csv" "$tmp/redis.csv"
cat "$tmp/mem.txt"
echo "(the table as JSON: kv-demo.json)"
