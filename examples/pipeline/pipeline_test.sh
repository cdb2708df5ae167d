#!/usr/bin/env bash
# pipeline_test: generate a text with a known answer, compute that answer a
# second way (tr | sort | uniq -c), and compare both with the pipeline's.
# Usage: pipeline_test.sh PIPELINE GEN_INPUT
set -euo pipefail
export LC_ALL=C # byte order, and tr's ranges are ASCII

pipeline=$1
gen=$2
dir=${TEST_TMPDIR:-$(mktemp -d)}
passed=0
failed=0

check() { # check NAME COMMAND...: one verdict line per check
    local name=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
    else
        echo "FAIL: $name"
        failed=$((failed + 1))
    fi
}

"$gen" "$dir/input.txt" 8 "$dir/expect_gen.txt"
echo "input: $(wc -c <"$dir/input.txt") bytes, $(wc -l <"$dir/expect_gen.txt") distinct words"

# The independent count: every maximal run of ASCII letters, lowercased.
tr -cs 'A-Za-z' '\n' <"$dir/input.txt" | tr 'A-Z' 'a-z' | grep -v '^$' | sort | uniq -c |
    awk '{ print $1, $2 }' | sort -t ' ' -k1,1nr -k2,2 >"$dir/expect.txt"
check "generator and tr|sort|uniq agree" cmp "$dir/expect_gen.txt" "$dir/expect.txt"
head -n 10 "$dir/expect.txt" >"$dir/expect10.txt"
head -n 3 "$dir/expect10.txt" | sed 's/^/  expect: /'

# Default top 10, default loops (one per CPU).
check "top 10 runs" "$pipeline" "$dir/input.txt" >"$dir/top10.txt" 2>"$dir/top10.err"
cat "$dir/top10.err"
check "top 10" cmp "$dir/expect10.txt" "$dir/top10.txt"
check "stage lines" grep -q '^stage merge: ' "$dir/top10.err"

# Every word, on one loop and on three (more loops than this machine's 2 CPUs).
for loops in 1 3; do
    check "all words, $loops loops, runs" "$pipeline" "$dir/input.txt" 100000000 "$loops" \
        >"$dir/all$loops.txt" 2>"$dir/all$loops.err"
    check "all words, $loops loops" cmp "$dir/expect.txt" "$dir/all$loops.txt"
    check "loop count $loops" grep -q "^loops: $loops " "$dir/all$loops.err"
done

# Small cases: an empty file, one word without a newline, top 2 of a tie.
: >"$dir/empty.txt"
check "empty file" test -z "$("$pipeline" "$dir/empty.txt" 2>/dev/null)"
printf 'Hello' >"$dir/one.txt"
check "one word" test "$("$pipeline" "$dir/one.txt" 2>/dev/null)" = "1 hello"
printf 'b a B, A! c\nC' >"$dir/tie.txt"
check "tie order" test "$("$pipeline" "$dir/tie.txt" 2 2>/dev/null | tr '\n' '|')" = "2 a|2 b|"

# Errors: usage (2), a file that is not there (1).
expect_exit() { # expect_exit CODE COMMAND...
    local want=$1 rc=0
    shift
    "$@" >/dev/null 2>&1 || rc=$?
    test "$rc" = "$want"
}
check "no arguments: exit 2" expect_exit 2 "$pipeline"
check "bad top_n: exit 2" expect_exit 2 "$pipeline" "$dir/one.txt" 0
check "bad loops: exit 2" expect_exit 2 "$pipeline" "$dir/one.txt" 3 x
check "missing file: exit 1" expect_exit 1 "$pipeline" "$dir/nope.txt"
check "a directory: exit 1" expect_exit 1 "$pipeline" "$dir"

echo "PLAIN: $passed passed, $failed failed"
test "$failed" = 0
