#!/usr/bin/env bash
# Runs one asyncio example: $1 the binary, $2 the output its page shows.
# Passes when the program exits 0 (it checks its own outcomes) and prints
# exactly that output.
out=$("$1")
rc=$?
if [ "$rc" -eq 0 ] && diff -u "$2" - <<<"$out"; then
    echo "PLAIN: 1 passed, 0 failed"
else
    printf '%s\nexit code %d\nPLAIN: 0 passed, 1 failed\n' "$out" "$rc"
    exit 1
fi
