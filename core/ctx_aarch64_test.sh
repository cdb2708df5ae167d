#!/usr/bin/env bash
# Cross-builds core/ctx_test.c with the aarch64 switch and runs it under
# qemu-aarch64 (static binary, so no sysroot is needed at run time).
set -u
cc=$(command -v aarch64-linux-gnu-gcc) || { echo "aarch64-linux-gnu-gcc missing (tools/deps.sh)"; echo "PLAIN: 0 passed, 1 failed"; exit 1; }
qemu=$(command -v qemu-aarch64) || { echo "qemu-aarch64 missing (tools/deps.sh)"; echo "PLAIN: 0 passed, 1 failed"; exit 1; }
dir=$(dirname "$1")
out="${TEST_TMPDIR:-/tmp}/ctx_test_aarch64"
"$cc" -std=gnu11 -O2 -Wall -Wextra -Werror -static -I"$dir" \
    "$dir/ctx_test.c" "$dir/ctx.c" "$dir/ctx_aarch64.S" -o "$out" || { echo "PLAIN: 0 passed, 1 failed"; exit 1; }
exec "$qemu" "$out"
