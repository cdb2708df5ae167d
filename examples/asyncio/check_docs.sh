#!/usr/bin/env bash
# Checks that the code the docs/*.md pages given as arguments quote has not
# drifted from the files it comes from. A fenced block whose introducing
# paragraph starts with "From `PATH`" or "Output (`PATH`)" must appear in
# PATH verbatim, as consecutive whole lines. Blocks without such a paragraph
# are illustrations and are not checked. Each page must quote at least once.
set -u
tmp=${TEST_TMPDIR:-$(mktemp -d)}
passed=0
failed=0

# contains HAYSTACK NEEDLE: NEEDLE's text occurs in HAYSTACK at a line start.
contains() {
    awk 'BEGIN { RS = "\001" }
         NR == 1 { hay = "\n" $0; next }
         { needle = "\n" $0 }
         END { exit (needle != "" && index(hay, needle) > 0) ? 0 : 1 }' "$1" "$2"
}

for page in "$@"; do
    name=$(basename "$page" .md)
    rm -f "$tmp/$name".block.*
    # Writes each quoted block to $tmp/NAME.block.N and its PATH to .N.src.
    awk -v out="$tmp/$name.block" '
        mode == "" && /^```/ {
            if (src != "") {
                n++; f = out "." n
                print src > (f ".src"); close(f ".src")
                printf "" > f; mode = "take"
            } else mode = "skip"
            next
        }
        mode != "" && /^```$/ { if (mode == "take") close(f); mode = ""; next }
        mode == "take" { print > f; next }
        mode == "skip" { next }
        /^[ \t]*$/ { blank = 1; next }
        {
            if (blank || NR == 1) {
                src = ""
                if ($0 ~ /^(From |Output \()`[^`]+`/) {
                    s = substr($0, index($0, "`") + 1)
                    src = substr(s, 1, index(s, "`") - 1)
                }
            }
            blank = 0
        }' "$page"
    quotes=0
    bad=0
    for block in "$tmp/$name".block.*; do
        case "$block" in *.src | *'*') continue ;; esac
        src=$(cat "$block.src")
        quotes=$((quotes + 1))
        if [ ! -f "$src" ]; then
            echo "$page: quotes $src, which is not among this test's data"
            bad=1
        elif ! contains "$src" "$block"; then
            echo "$page: this block is not in $src (copy it again from there):"
            sed 's/^/    /' "$block"
            bad=1
        fi
    done
    if [ "$quotes" -eq 0 ]; then
        echo "$page: quotes nothing"
        bad=1
    fi
    echo "$page: $quotes quoted blocks checked"
    if [ "$bad" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done

echo "PLAIN: $passed passed, $failed failed (pages)"
[ "$failed" -eq 0 ]
