#!/usr/bin/env bash
# weft-kv against Debian's redis-server 7.0, through redis-cli: the same
# script of commands (commands.txt, one connection each) must give the
# same replies, types included (redis-cli --no-raw prints "(integer) 1",
# "(nil)", "(error) ...", nested arrays), from weft-kv on 2 loops (so
# multi-key commands are split and merged). Then the replies whose values
# differ by design (INFO, CLIENT LIST, SCAN, KEYS order, COMMAND) are
# checked for shape. Usage: cli_test.sh <weft-kv binary>.
set -u
kv=$1
here=$(dirname "${BASH_SOURCE[0]}")
[ -f "$here/lib.sh" ] || here="$here/tests" # as a Bazel sh_test: apps/kv/<name>
. "$here/lib.sh"

start_kv "$kv" --loops 2
start_redis

fail=0
check() { # name, condition result
    if [ "$2" -eq 0 ]; then pass=$((pass + 1)); else echo "FAIL: $1"; fail=$((fail + 1)); fi
}
pass=0

redis-cli --no-raw -p "$REDIS_PORT" <"$here/commands.txt" >"$TMP/redis.out" 2>&1
redis-cli --no-raw -p "$KV_PORT" <"$here/commands.txt" >"$TMP/kv.out" 2>&1
if diff -u "$TMP/redis.out" "$TMP/kv.out" >"$TMP/diff"; then
    check "script replies as redis-server's ($(wc -l <"$here/commands.txt") commands)" 0
else
    cat "$TMP/diff"
    check "script replies as redis-server's" 1
fi

kvc() { redis-cli --no-raw -p "$KV_PORT" "$@"; }
# INFO: every section, with the weft one
info=$(kvc INFO)
for sec in Server Clients Memory Persistence Stats Keyspace Weft; do
    grep -q "^# $sec" <<<"$info"
    check "INFO has # $sec" $?
done
kvc SET k v >/dev/null
grep -q "^db0:keys=1," <<<"$(redis-cli -p "$KV_PORT" INFO keyspace)"
check "INFO keyspace counts keys" $?
grep -qE "^loop1:ops=[0-9]+,connections=[0-9]+,hops_out=[0-9]+,hops_in=[0-9]+" \
    <<<"$(redis-cli -p "$KV_PORT" INFO weft)"
check "INFO weft has per-loop ops, connections and hops" $?
[ "$(redis-cli -p "$KV_PORT" INFO memory | grep -c '^used_memory:')" = 1 ]
check "INFO memory has used_memory" $?
# CLIENT LIST names the connection
out=$(printf 'CLIENT SETNAME me\nCLIENT LIST\nCLIENT ID\n' | redis-cli -p "$KV_PORT")
grep -q "name=me " <<<"$out"
check "CLIENT LIST shows the name set" $?
# COMMAND COUNT / DOCS / INFO shapes
[[ "$(kvc COMMAND COUNT)" =~ ^\(integer\)\ [0-9]+$ ]]
check "COMMAND COUNT is an integer" $?
kvc COMMAND DOCS GET | grep -q '"summary"'
check "COMMAND DOCS GET has a summary" $?
kvc COMMAND INFO GET | grep -q '"get"'
check "COMMAND INFO GET names get" $?
# SCAN walks every key once over all shards, with MATCH and COUNT
redis-cli -p "$KV_PORT" FLUSHALL >/dev/null
for i in $(seq 1 200); do echo "SET key:$i $i"; done | redis-cli -p "$KV_PORT" >/dev/null
echo "SET other x" | redis-cli -p "$KV_PORT" >/dev/null
cur=0
: >"$TMP/scan"
for _ in $(seq 1 1000); do
    redis-cli -p "$KV_PORT" SCAN "$cur" MATCH 'key:*' COUNT 7 >"$TMP/page"
    cur=$(head -n 1 "$TMP/page")
    tail -n +2 "$TMP/page" >>"$TMP/scan"
    [ "$cur" = 0 ] && break
done
n=$(sort -u "$TMP/scan" | grep -c .)
[ "$n" = 200 ]
check "SCAN MATCH sees all 200 keys across shards (saw $n)" $?
n=$(redis-cli -p "$KV_PORT" KEYS 'key:*' | wc -l)
[ "$n" = 200 ]
check "KEYS merges every shard's keys (saw $n)" $?
[ "$(redis-cli -p "$KV_PORT" DBSIZE)" = 201 ]
check "DBSIZE sums the shards" $?
n=$(redis-cli -p "$KV_PORT" SCAN 0 TYPE list COUNT 1000 | tail -n +2 | grep -c .)
[ "$n" = 0 ]
check "SCAN TYPE filters" $?
# MSET over shards: every key is there after the reply (read-your-writes)
args=$(for i in $(seq 1 50); do printf 'm%d v%d ' "$i" "$i"; done)
# shellcheck disable=SC2086
redis-cli -p "$KV_PORT" MSET $args >/dev/null
keys=$(for i in $(seq 1 50); do printf 'm%d ' "$i"; done)
# shellcheck disable=SC2086
got=$(redis-cli -p "$KV_PORT" MGET $keys | tr '\n' ' ')
want=$(for i in $(seq 1 50); do printf 'v%d ' "$i"; done)
[ "$got" = "$want" ]
check "MGET after MSET returns every value in order" $?
[ "$(redis-cli -p "$KV_PORT" SELECT 1)" = "ERR DB index is out of range" ]
check "SELECT 1: one database only" $?
# inline commands over a raw socket, and a protocol error closes
out=$(printf 'PING\r\nECHO "x y"\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$KV_PORT; cat >&3; sleep 0.3; timeout 1 cat <&3" | tr -d '\r')
[ "$out" = $'+PONG\n$3\nx y' ]
check "inline PING and ECHO over a raw socket" $?
out=$(printf '*1\r\n+PING\r\nPING\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$KV_PORT; cat >&3; timeout 2 cat <&3" | tr -d '\r')
[ "$out" = "-ERR Protocol error: expected '\$', got '+'" ]
check "protocol error: Redis's text, then closed (got: $out)" $?
# QUIT replies +OK and closes; nothing after it runs
out=$(printf 'QUIT\r\nSET afterquit 1\r\n' | timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$KV_PORT; cat >&3; timeout 2 cat <&3" | tr -d '\r')
[ "$out" = "+OK" ] && [ "$(redis-cli -p "$KV_PORT" EXISTS afterquit)" = 0 ]
check "QUIT: +OK, closed, the rest not run" $?
[ "$(redis-cli -p "$KV_PORT" PING)" = PONG ]
check "the server still serves" $?
# SHUTDOWN stops it gracefully
redis-cli -p "$KV_PORT" SHUTDOWN >/dev/null 2>&1
wait_gone "$KV_PID"
check "SHUTDOWN ends the server" $?
wait "$KV_PID"
rc=$?
KV_PID=""
[ "$rc" -eq 0 ] || cat "$TMP/kv.log"
check "it exits 0 (no leak under ASan)" "$rc"
grep -q "stopping" "$TMP/kv.log"
check "the server said it was stopping" $?

echo "PLAIN: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
