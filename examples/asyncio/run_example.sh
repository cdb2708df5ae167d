#!/usr/bin/env bash
# Runs one asyncio example: $1 the binary, $2 the output its page shows.
# Passes when the program exits 0 (it checks its own outcomes) and prints
# exactly that output. Under the ready-queue shuffle (WEFT_SEED set, see
# docs/core.md) the output's order may differ from the page's: only the
# program's own checks count then.
out=$("$1")
rc=$?
if [ -n "${WEFT_SEED:-}" ] && [ "$rc" -eq 0 ]; then
    echo "PLAIN: 1 passed, 0 failed"
elif [ "$rc" -eq 0 ] && diff -u "$2" - <<<"$out"; then
    echo "PLAIN: 1 passed, 0 failed"
else
    printf '%s\nexit code %d\nPLAIN: 0 passed, 1 failed\n' "$out" "$rc"
    exit 1
fi
