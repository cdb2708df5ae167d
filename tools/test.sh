#!/usr/bin/env bash
# weft's one test command: `bash tools/test.sh` (CI runs it through .ci/run).
#
#  1. tools/deps.sh (installs missing Debian packages when run as root);
#  2. clang-format check of every tracked or untracked *.c/*.h in our source
#     folders (a failure is counted, then the tests still run);
#  2b. tools/fuzz.sh: libFuzzer on a stream's read-buffer logic for
#     $WEFT_FUZZ_SECS seconds (20), built with clang-15 outside Bazel; one
#     counted step (1 passed, or 1 failed on a crash or a failed build);
#  3. bazel test //...                            (default -O2 -g build)
#     bazel test --config=asan --config=ubsan //...
#     bazel test --test_env=WEFT_SEED=<s> //...     (plain, once per seed in
#                                                     $WEFT_TEST_SEEDS, "1 7")
#     bazel test --config=tsan <tests tagged "tsan">  (the _plain builds)
#     The seeded runs also skip tests tagged "noshuffle": whole programs
#     driven from outside (install, servers under real clients), where a
#     second and third run adds minutes and no shuffled schedule of note.
#     Runs 3a-3c skip the "tsan" plain builds: they are the same sources
#     as their Criterion twins, which already run there. The seeded runs
#     shuffle every loop's ready queue (docs/core.md, "Debug mode") to flush
#     out tests that rely on an order weft does not promise; they reuse the
#     plain build, so each costs one more run of the suite (~1 min).
#  4. one summary line per test binary, read from its test.log (Criterion's
#     "Synthesis" line, or "PLAIN: N passed, M failed" from tests/plain_test.h),
#     then the total over all runs as the last line: "N passed, M failed".
#
# A test target that failed without printing a summary (crash, timeout, build
# failure) counts as one failure; so does a failed format check, and a bazel
# run that failed to build something other than a test. Exits non-zero when
# anything failed.
set -u

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2

passed=0
failed=0
status=0

# Prints the last line and exits; a failed bazel run always shows in M.
finish() {
    [ "$status" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] && exit 0
    exit 1
}

strip_ansi() {
    sed 's/\x1b\[[0-9;?]*[A-Za-z]//g'
}

# --- 1. Dependencies -----------------------------------------------------
if ! bash tools/deps.sh; then
    echo "test.sh: tools/deps.sh failed; nothing was tested"
    failed=$((failed + 1))
    finish
fi

# --- 2. Formatting -------------------------------------------------------
check_format() {
    local dirs=() specs=() files=() bad fmt_out rc
    local d f
    for d in core include loops channels actors io tests benchmarks examples; do
        [ -d "$d" ] && dirs+=("$d")
    done
    [ ${#dirs[@]} -gt 0 ] || return 0
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        for d in "${dirs[@]}"; do
            specs+=("$d/*.c" "$d/*.h")
        done
        while IFS= read -r f; do
            [ -f "$f" ] && files+=("$f")
        done < <(git ls-files --cached --others --exclude-standard -- "${specs[@]}" \
                     ':(exclude)*third_party/*' | sort -u)
    else
        while IFS= read -r f; do
            files+=("$f")
        done < <(find "${dirs[@]}" -path '*third_party*' -prune -o \
                      -type f \( -name '*.c' -o -name '*.h' \) -print | sort)
    fi
    [ ${#files[@]} -gt 0 ] || return 0
    fmt_out=$(clang-format --dry-run --Werror "${files[@]}" 2>&1)
    rc=$?
    bad=$(sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' \
              <<<"$fmt_out" | sort -u)
    if [ -n "$bad" ]; then
        echo "FORMAT: these files need clang-format -i:"
        while IFS= read -r f; do
            echo "  $f"
        done <<<"$bad"
        return 1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "FORMAT: clang-format failed (exit $rc):"
        head -n 20 <<<"$fmt_out"
        return 1
    fi
    echo "FORMAT: ${#files[@]} files clean"
}

echo "=== clang-format"
if ! check_format; then
    failed=$((failed + 1))
fi

# --- 2b. Fuzzing ----------------------------------------------------------
echo "=== fuzz: tools/fuzz.sh ${WEFT_FUZZ_SECS:-20}"
if bash tools/fuzz.sh "${WEFT_FUZZ_SECS:-20}"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

# --- 3. Bazel runs -------------------------------------------------------
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# run_tests NAME "CONFIG FLAGS" TARGETS...: runs bazel test, then counts each
# test's result from its test.log.
run_tests() {
    local name=$1 flags=$2
    shift 2
    local rc testlogs unbuilt=0
    local label st pkg log line p f

    echo "=== $name: bazel test $flags $*"
    # shellcheck disable=SC2086 # $flags is a list of flags
    bazel test $flags --keep_going "$@" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    # shellcheck disable=SC2086
    testlogs=$(bazel info $flags bazel-testlogs 2>/dev/null)

    echo "--- $name: results"
    # Bazel's summary: "//pkg:name   [(cached)] STATUS[ in 0.1s]".
    while IFS=$'\t' read -r label st; do
        # //pkg:name -> $testlogs/pkg/name/test.log, read only when the test
        # ran (not FAILED TO BUILD, NO STATUS, ...): an old log may be there.
        pkg=${label#//}
        log="$testlogs/${pkg%%:*}/${label##*:}/test.log"
        line=""
        if [ -n "$testlogs" ] && [ -f "$log" ] &&
            [[ "$st" =~ ^(PASSED|FLAKY|FAILED|TIMEOUT)$ ]]; then
            line=$(strip_ansi <"$log" |
                       grep -E '^\[====\] Synthesis: |^PLAIN: [0-9]+ passed, [0-9]+ failed' |
                       tail -n 1)
        fi
        case "$line" in
        *Synthesis:*)
            # Criterion counts a crashed test in Failing as well as in
            # Crashing (Tested = Passing + Failing), so Failing is the count.
            p=$(sed -n 's/.*Passing: *\([0-9]*\).*/\1/p' <<<"$line")
            f=$(sed -n 's/.*Failing: *\([0-9]*\).*/\1/p' <<<"$line")
            p=${p:-0}
            f=${f:-0}
            ;;
        PLAIN:*)
            p=$(sed -n 's/^PLAIN: \([0-9]*\) passed, \([0-9]*\) failed.*/\1/p' <<<"$line")
            f=$(sed -n 's/^PLAIN: \([0-9]*\) passed, \([0-9]*\) failed.*/\2/p' <<<"$line")
            ;;
        *)
            line="(no summary)"
            p=0
            f=0
            [ "$st" = PASSED ] || [ "$st" = FLAKY ] && p=1
            ;;
        esac
        [[ "$st" =~ ^(PASSED|FLAKY|FAILED|TIMEOUT)$ ]] || unbuilt=$((unbuilt + 1))
        # A binary that failed after a clean summary (e.g. a leak report at
        # exit) still failed.
        if [ "$st" != PASSED ] && [ "$st" != FLAKY ] && [ "$f" -eq 0 ]; then
            f=1
        fi
        printf '%-44s %-16s %s\n' "$label" "$st" "$line"
        passed=$((passed + p))
        failed=$((failed + f))
    done < <(strip_ansi <"$out" |
                 sed -n 's#^\(//[^ ]*\)  *\((cached) \)\{0,1\}\([A-Z][A-Z ]*[A-Z]\)\( in .*\)\{0,1\}$#\1\t\3#p')

    case "$rc" in
    0) ;;
    3) status=1 ;; # tests failed; counted above
    4) echo "--- $name: no test targets" ;;
    *)
        # A build or analysis failure. Tests that could not be built are
        # already counted; otherwise (a library, a binary, a BUILD error)
        # the failure counts once here.
        status=1
        if [ "$unbuilt" -eq 0 ]; then
            echo "--- $name: bazel failed (exit $rc), counted as 1 failure"
            failed=$((failed + 1))
        fi
        ;;
    esac
}

run_tests plain "--test_tag_filters=-tsan" //...
for seed in ${WEFT_TEST_SEEDS-1 7}; do
    run_tests "shuffle WEFT_SEED=$seed" \
        "--test_env=WEFT_SEED=$seed --test_tag_filters=-tsan,-noshuffle" //...
done
run_tests asan+ubsan "--config=asan --config=ubsan --test_tag_filters=-tsan" //...

# Exactly the tag "tsan" (a plain regex would also match "notsan"). With
# --keep_going a broken package (already counted above) gives exit 3 and the
# targets of the other packages.
tsan_targets=$(bazel query --keep_going 'attr(tags, "[\[ ]tsan[,\]]", tests(//...))' 2>/dev/null)
query_rc=$?
[ "$query_rc" -eq 3 ] && status=1
if [ "$query_rc" -ne 0 ] && [ "$query_rc" -ne 3 ]; then
    echo "=== tsan: bazel query failed (exit $query_rc)"
    status=1
    failed=$((failed + 1))
elif [ -z "$tsan_targets" ]; then
    echo "=== tsan: no tests tagged tsan; skipped"
else
    # shellcheck disable=SC2086 # one label per word
    run_tests tsan "--config=tsan" $tsan_targets
fi

finish
