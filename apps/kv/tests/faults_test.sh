#!/usr/bin/env bash
# Bad clients against weft-kv on 2 loops (kv_faults.c has the scenarios).
# Usage: faults_test.sh <weft-kv binary> <kv_faults binary>.
set -u
kv=$1
faults=$2
here=$(dirname "${BASH_SOURCE[0]}")
[ -f "$here/lib.sh" ] || here="$here/tests" # as a Bazel sh_test: apps/kv/<name>
. "$here/lib.sh"
start_kv "$kv" --loops 2
pass=0
fail=0
for s in bigbulk half pipeline idle noread; do
    if "$faults" "$KV_PORT" "$s"; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
if kill -0 "$KV_PID" 2>/dev/null; then pass=$((pass + 1)); else
    echo "FAIL: the server died"
    cat "$TMP/kv.log"
    fail=$((fail + 1))
fi
echo "PLAIN: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
