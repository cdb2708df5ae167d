#!/bin/bash
# loops/ and channels/ use core/ only through the headers //core:ext exports (ext.h and
# its leaves): the include path alone does not stop a file from reaching
# core/sched_int.h and the other layers, so this test does.
allowed='^core/(ext|base|source|list|alloc|testhooks|xwait)\.h$'
bad=0
for f in "$@"; do
    while IFS= read -r inc; do
        if [[ ! $inc =~ $allowed ]]; then
            echo "$f includes \"$inc\": this layer may include only what //core:ext exports" >&2
            bad=1
        fi
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\(core\/[^"]*\)".*/\1/p' "$f")
done
exit $bad
