#!/usr/bin/env bash
# Fuzzes a stream's read-buffer logic (io/linebuf.c) with libFuzzer for a
# bounded time: `bash tools/fuzz.sh [seconds]` (default 20). Bazel's
# toolchain is gcc, which has no libFuzzer, so this calls clang-15 directly
# (Debian: clang-15, libfuzzer-15-dev; tools/deps.sh installs them) with
# -fsanitize=fuzzer,address,undefined on the two sources. The seed corpus
# is tests/fuzz/corpus/linebuf (read only: new inputs go to a temporary
# directory). Exits 0 if no input crashed; a crashing input is kept in
# $WEFT_FUZZ_OUT (default: a temporary directory, printed).
set -u

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
secs=${1:-20}
cc=${CLANG:-clang-15}
if ! command -v "$cc" >/dev/null 2>&1; then
    echo "fuzz.sh: $cc not found (apt-get install clang-15 libfuzzer-15-dev)" >&2
    exit 1
fi
out=${WEFT_FUZZ_OUT:-$(mktemp -d /tmp/weft-fuzz.XXXXXX)}
mkdir -p "$out/corpus"
bin="$out/linebuf_fuzz"

if ! "$cc" -g -O1 -std=gnu11 -Wall -Wextra -Werror \
     -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
     -Iio io/linebuf.c tests/fuzz/linebuf_fuzz.c -o "$bin"; then
    echo "fuzz.sh: build failed" >&2
    exit 1
fi

log="$out/fuzz.log"
"$bin" -max_total_time="$secs" -rss_limit_mb=512 -max_len=4096 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$out/" \
    "$out/corpus" tests/fuzz/corpus/linebuf >"$log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log"
    echo "fuzz.sh: linebuf_fuzz FAILED (exit $rc) after ${runs:-?} runs; artifacts in $out"
    exit 1
fi
echo "fuzz.sh: linebuf_fuzz ok: ${runs:-?} runs in ${secs}s, no crash (log: $log)"
[ -z "${WEFT_FUZZ_OUT:-}" ] && rm -rf "$out"
exit 0
