#!/usr/bin/env bash
# Every default redis-benchmark test against weft-kv on 2 loops, short
# (-n 10000, random keys), pipelined and not: redis-benchmark exits at the
# first error reply, so each run must finish with all 20 tests reported
# and the server must still answer. Usage: bench_test.sh <weft-kv binary>.
set -u
kv=$1
here=$(dirname "${BASH_SOURCE[0]}")
[ -f "$here/lib.sh" ] || here="$here/tests" # as a Bazel sh_test: apps/kv/<name>
. "$here/lib.sh"
start_kv "$kv" --loops 2
pass=0
fail=0
for pipe in 1 16; do
    if redis-benchmark -p "$KV_PORT" -n 10000 -r 100000 -c 20 -P "$pipe" --csv \
        >"$TMP/b.csv" 2>"$TMP/b.err"; then
        n=$(grep -c '^"' "$TMP/b.csv")
        # the header line plus one per test
        if [ "$n" -eq 21 ] && ! grep -qi error "$TMP/b.err"; then
            pass=$((pass + 1))
        else
            echo "FAIL: -P $pipe: $((n - 1)) tests reported"
            cat "$TMP/b.csv" "$TMP/b.err"
            fail=$((fail + 1))
        fi
    else
        echo "FAIL: redis-benchmark -P $pipe exited with an error:"
        tail -n 5 "$TMP/b.csv" "$TMP/b.err"
        fail=$((fail + 1))
    fi
done
if [ "$(redis-cli -p "$KV_PORT" PING)" = PONG ]; then pass=$((pass + 1)); else
    echo "FAIL: server gone"
    fail=$((fail + 1))
fi
echo "PLAIN: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
