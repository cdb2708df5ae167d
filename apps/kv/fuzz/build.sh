#!/usr/bin/env bash
# Builds and runs the RESP parser's libFuzzer target (resp_fuzz.c) with
# clang-15 (Bazel builds with gcc, which has no libFuzzer).
#   bash apps/kv/fuzz/build.sh [seconds]     (default 20)
# Runs from a copy of the seed corpus (apps/kv/fuzz/corpus) in a temp dir,
# so the repository is not written. Exits 0 when no crash was found;
# prints one line "FUZZ resp: N runs in S s, no crash".
set -u
cd "$(dirname "${BASH_SOURCE[0]}")" || exit 2
secs=${1:-20}
cc=$(command -v clang-15 || command -v clang)
if [ -z "$cc" ]; then
    echo "FUZZ resp: clang-15 not found (tools/deps.sh installs it)" >&2
    exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -o "$work/resp_fuzz" resp_fuzz.c ../resp.c 2>"$work/build.log"; then
    cat "$work/build.log" >&2
    echo "FUZZ resp: build failed" >&2
    exit 1
fi
mkdir -p "$work/corpus"
cp corpus/* "$work/corpus/"
# -rss_limit_mb bounds memory; -max_len lets multi-piece commands form.
"$work/resp_fuzz" -max_total_time="$secs" -rss_limit_mb=1024 -max_len=4096 \
    -print_final_stats=1 "$work/corpus" >"$work/run.log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/run.log")
if [ "$rc" -ne 0 ]; then
    tail -n 40 "$work/run.log" >&2
    echo "FUZZ resp: crash or leak found (exit $rc)"
    exit 1
fi
echo "FUZZ resp: ${runs:-?} runs in ${secs} s, no crash"
