#!/usr/bin/env bash
# weft-kv's append-only files (docs/kv.md, "Persistence"), on 2 loops:
#  1. appendfsync always: a client writes and records every write whose
#     +OK came back; the server is killed with -9 in the middle; after a
#     restart every recorded write is there. Other types and TTLs survive.
#  2. a torn last record is cut off at start (and said so), not replayed.
#  3. a rewrite (a low --auto-aof-rewrite-min-size) keeps the data.
# Usage: aof_test.sh <weft-kv binary> <kv_faults binary>.
set -u
kv=$1
faults=$2
here=$(dirname "${BASH_SOURCE[0]}")
[ -f "$here/lib.sh" ] || here="$here/tests" # as a Bazel sh_test: apps/kv/<name>
. "$here/lib.sh"
pass=0
fail=0
check() {
    if [ "$2" -eq 0 ]; then pass=$((pass + 1)); else echo "FAIL: $1"; fail=$((fail + 1)); fi
}
d="$TMP/data"
mkdir -p "$d"
args=(--loops 2 --appendonly yes --appendfsync always --dir "$d")

start_kv "$kv" "${args[@]}"
c() { redis-cli -p "$KV_PORT" "$@"; }
c RPUSH l a b c >/dev/null
c SADD s x y >/dev/null
c HSET h f v >/dev/null
c ZADD z 1.5 m 2 n >/dev/null
c SET ttl v EX 1000 >/dev/null
c SET gone v PX 1 >/dev/null
c INCRBY n 41 >/dev/null
c INCR n >/dev/null
c SADD popme only >/dev/null
c SPOP popme >/dev/null
"$faults" "$KV_PORT" aofwrite "$TMP/acks" &
wpid=$!
sleep 1.5
kill -9 "$KV_PID"
wait "$KV_PID" 2>/dev/null
wait "$wpid"
echo "acknowledged before kill -9: $(wc -l <"$TMP/acks")"

start_kv "$kv" "${args[@]}"
"$faults" "$KV_PORT" aofcheck "$TMP/acks"
check "every acknowledged write survives kill -9 (always)" $?
[ "$(c LRANGE l 0 -1 | tr '\n' ' ')" = "a b c " ]
check "list replayed" $?
[ "$(c SMEMBERS s | sort | tr '\n' ' ')" = "x y " ] && [ "$(c HGET h f)" = v ]
check "set and hash replayed" $?
[ "$(c ZRANGE z 0 -1 WITHSCORES | tr '\n' ' ')" = "m 1.5 n 2 " ]
check "sorted set replayed" $?
t=$(c TTL ttl)
[ "$t" -gt 900 ] && [ "$t" -le 1000 ] && [ "$(c EXISTS gone)" = 0 ]
check "TTLs replayed as absolute times (ttl $t)" $?
[ "$(c GET n)" = 42 ] && [ "$(c EXISTS popme)" = 0 ]
check "INCR and SPOP replayed" $?

# 2. a torn record
c SHUTDOWN >/dev/null 2>&1
wait_gone "$KV_PID"
check "SHUTDOWN with appendonly" $?
f=$(ls "$d"/weft-kv-*.aof | head -n 1)
size=$(stat -c %s "$f")
printf '*3\r\n$3\r\nSET\r\n$4\r\ntorn\r\n$5\r\nab' >>"$f"
start_kv "$kv" "${args[@]}"
grep -q "torn last record" "$TMP/kv.log"
check "a torn last record is detected" $?
[ "$(c EXISTS torn)" = 0 ] && [ "$(stat -c %s "$f")" = "$size" ]
check "and cut off, not replayed" $?
"$faults" "$KV_PORT" aofcheck "$TMP/acks" >/dev/null
check "the rest is there" $?

# 3. rewrite
c SHUTDOWN >/dev/null 2>&1
wait_gone "$KV_PID"
start_kv "$kv" --loops 2 --appendonly yes --appendfsync everysec --dir "$d" \
    --auto-aof-rewrite-min-size 100000
pad=$(printf 'p%.0s' $(seq 1 100))
for i in $(seq 1 60); do
    for k in $(seq 1 100); do echo "SET rw:$k $i$pad"; done
done | redis-cli -p "$KV_PORT" >/dev/null
sleep 1
for k in $(seq 1 100); do echo "SET rw:$k final"; done | redis-cli -p "$KV_PORT" >/dev/null
for _ in $(seq 1 50); do
    r=$(c INFO persistence | sed -n 's/^aof_rewrites:\([0-9]*\).*/\1/p')
    [ "${r:-0}" -gt 0 ] && break
    sleep 0.1
done
[ "${r:-0}" -gt 0 ]
[ "${r:-0}" -gt 0 ] || cat "$TMP/kv.log"
check "the file was rewritten when it grew (rewrites: ${r:-0})" $?
c SHUTDOWN >/dev/null 2>&1
wait_gone "$KV_PID"
start_kv "$kv" "${args[@]}"
[ "$(c GET rw:77)" = final ] && [ "$(c LRANGE l 0 -1 | tr '\n' ' ')" = "a b c " ]
check "data intact after the rewrite and a restart" $?
"$faults" "$KV_PORT" aofcheck "$TMP/acks" >/dev/null
check "acknowledged writes intact after the rewrite" $?
c SHUTDOWN >/dev/null 2>&1
wait_gone "$KV_PID"
"$kv" --port 0 --loops 3 --appendonly yes --dir "$d" >"$TMP/wrong.log" 2>&1
[ $? -ne 0 ] && grep -q "start with --loops 2" "$TMP/wrong.log"
check "another loop count is refused for the same files" $?

echo "PLAIN: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
