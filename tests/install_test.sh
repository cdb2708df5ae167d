#!/usr/bin/env bash
# tests/install_test.sh - //tests:install_test: install weft into a fresh
# prefix with //:install and use it as a user would (docs/install.md):
#   - the layout (headers, libweft.a, libweft.so and its soname links, the
#     two .pc files with the prefix written in), and DESTDIR staging;
#   - libweft.so exports exactly the weft_ API plus the weft__ functions the
#     headers' macros call, every weft_ symbol is declared in a header, no
#     text relocations; libweft.a's objects are PIC (they link into a .so);
#   - tests/install_smoke.c built with plain cc and
#     $(pkg-config --cflags --libs weft-static) and ... weft, and
#     tests/cxx_test.cc built with c++ -std=c++17 the same two ways; each is
#     run and must pass.
# Under --config=asan/ubsan the libraries carry the sanitizer, so the
# programs are built with the same -fsanitize flags (read from the archive).
# Prints "PLAIN: N passed, M failed" last (tools/test.sh reads it).
#
# Usage: install_test.sh INSTALLER SMOKE_C CXX_TEST_CC
set -u

installer=$1
# "install" alone would be /usr/bin/install.
[[ "$installer" == */* ]] || installer="./$installer"
smoke_c=$2
cxx_cc=$3

passed=0
failed=0
ok() {
    passed=$((passed + 1))
    echo "ok: $*"
}
bad() {
    failed=$((failed + 1))
    echo "FAIL: $*"
}
finish() {
    echo "PLAIN: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
# Counts a program's own "PLAIN: N passed, M failed" line (and its exit).
run_program() {
    local what=$1 out rc p f
    shift
    out=$("$@" 2>&1)
    rc=$?
    echo "$out" | sed "s/^/  $what: /"
    p=$(sed -n 's/^PLAIN: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p' <<<"$out")
    f=$(sed -n 's/^PLAIN: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p' <<<"$out")
    if [ "$rc" -eq 0 ] && [ -n "$p" ] && [ "$p" -gt 0 ] && [ "$f" -eq 0 ]; then
        passed=$((passed + p))
        ok "$what ran: $p checks"
    else
        failed=$((failed + ${f:-0}))
        bad "$what: exit $rc"
    fi
}

tmp=${TEST_TMPDIR:-$(mktemp -d)}
prefix="$tmp/prefix"
rm -rf "$prefix" "$tmp/stage" "$tmp/build"
mkdir -p "$tmp/build"

# --- install -------------------------------------------------------------
if "$installer" "$prefix"; then
    ok "installed into $prefix"
else
    bad "the installer failed"
    finish
fi
lib="$prefix/lib"
for f in include/weft/weft.h lib/libweft.a lib/pkgconfig/weft.pc lib/pkgconfig/weft-static.pc; do
    [ -f "$prefix/$f" ] && ok "$f" || bad "$f missing"
done
real=$(cd "$lib" && ls libweft.so.*.*.* 2>/dev/null)
soname=$(readelf -d "$lib/libweft.so" 2>/dev/null | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [ -n "$real" ] && [ -n "$soname" ] && [ "$(readlink "$lib/libweft.so")" = "$soname" ] &&
    [ "$(readlink "$lib/$soname")" = "$real" ]; then
    ok "libweft.so -> $soname -> $real"
else
    bad "shared library links: real '$real', soname '$soname'"
fi
n_inst=$(ls "$prefix"/include/weft/*.h | wc -l)
n_src=$(grep -c '^#include "' "$prefix/include/weft/weft.h")
# weft.h includes every other header.
[ "$n_inst" -eq $((n_src + 1)) ] && ok "$n_inst headers" ||
    bad "$n_inst headers installed, weft.h includes $n_src"

export PKG_CONFIG_PATH="$lib/pkgconfig"
pc_prefix=$(pkg-config --variable=prefix weft)
[ "$pc_prefix" = "$prefix" ] && ok "weft.pc: prefix=$prefix" ||
    bad "weft.pc: prefix '$pc_prefix', expected $prefix"

if DESTDIR="$tmp/stage" "$installer" /opt/weft >/dev/null &&
    [ -f "$tmp/stage/opt/weft/lib/libweft.a" ] &&
    grep -qx 'prefix=/opt/weft' "$tmp/stage/opt/weft/lib/pkgconfig/weft.pc"; then
    ok "DESTDIR stages the files, the .pc says the final prefix"
else
    bad "DESTDIR install"
fi

# --- what libweft.so exports ---------------------------------------------
exports=$(nm -D -g --defined-only "$lib/libweft.so" | awk '{ print $3 }' | sort -u)
archive=$(nm -g --defined-only "$lib/libweft.a" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u)
in_headers() {
    grep -qw -- "$1" "$prefix"/include/weft/*.h
}
expected=$(
    grep '^weft_[^_]' <<<"$archive"
    for s in $(grep '^weft__' <<<"$archive"); do
        in_headers "$s" && echo "$s"
    done
)
expected=$(sort -u <<<"$expected")
if [ "$exports" = "$expected" ]; then
    ok "libweft.so exports the $(wc -l <<<"$exports") public symbols and nothing else"
else
    bad "exports differ from the public set (< exported only, > missing):"
    diff <(echo "$exports") <(echo "$expected") | grep '^[<>]' | head -n 20
fi
undeclared=""
for s in $(grep '^weft_[^_]' <<<"$archive"); do
    in_headers "$s" || undeclared="$undeclared $s"
done
[ -z "$undeclared" ] && ok "every weft_ symbol is declared in include/weft" ||
    bad "weft_ symbols not in any public header (internal ones take weft__):$undeclared"
readelf -d "$lib/libweft.so" | grep -q TEXTREL && bad "libweft.so has text relocations" ||
    ok "libweft.so: no text relocations"
if cc -shared -o "$tmp/build/pic_check.so" -Wl,--whole-archive "$lib/libweft.a" \
    -Wl,--no-whole-archive 2>"$tmp/build/pic_check.log"; then
    ok "libweft.a's objects are PIC (they link into a shared object)"
else
    bad "libweft.a does not link into a shared object:"
    head -n 5 "$tmp/build/pic_check.log"
fi

# --- build and run programs against it -----------------------------------
san=()
nm "$lib/libweft.a" 2>/dev/null | grep -q ' U __asan_' && san+=(-fsanitize=address)
nm "$lib/libweft.a" 2>/dev/null | grep -q ' U __ubsan_' && san+=(-fsanitize=undefined)
nm "$lib/libweft.a" 2>/dev/null | grep -q ' U __tsan_' && san+=(-fsanitize=thread)
[ ${#san[@]} -gt 0 ] && echo "the library is built with ${san[*]}: so are the programs"

# build WHAT COMPILER STD SRC PCNAME: the user's command line, nothing more.
build() {
    local what=$1 compiler=$2 std=$3 src=$4 pc=$5 flags
    # shellcheck disable=SC2207 # pkg-config's output is a list of words
    flags=($(pkg-config --cflags --libs "$pc")) || {
        bad "pkg-config --cflags --libs $pc"
        return 1
    }
    if "$compiler" "$std" -Wall -Wextra -Werror "${san[@]}" -o "$tmp/build/$what" "$src" \
        "${flags[@]}" -Wl,-rpath,"$lib" 2>"$tmp/build/$what.log"; then
        ok "$compiler $std $(basename "$src") \$(pkg-config --cflags --libs $pc)"
    else
        bad "$what did not build:"
        head -n 20 "$tmp/build/$what.log"
        return 1
    fi
}
needs_weft_so() {
    readelf -d "$tmp/build/$1" | grep -q "(NEEDED).*\[$soname\]"
}

for lang in c cxx; do
    if [ "$lang" = c ]; then
        compiler=cc std=-std=gnu11 src=$smoke_c
    else
        compiler=c++ std=-std=c++17 src=$cxx_cc
    fi
    if build "${lang}_static" "$compiler" "$std" "$src" weft-static; then
        needs_weft_so "${lang}_static" && bad "${lang}_static needs $soname" ||
            ok "${lang}_static has weft inside"
        run_program "${lang}_static" "$tmp/build/${lang}_static"
    fi
    if build "${lang}_shared" "$compiler" "$std" "$src" weft; then
        # It must load the installed copy.
        where=$(ldd "$tmp/build/${lang}_shared" | awk -v s="$soname" '$1 == s { print $3 }')
        [ "$where" = "$lib/$soname" ] && ok "${lang}_shared loads $where" ||
            bad "${lang}_shared loads '$where', not $lib/$soname"
        run_program "${lang}_shared" "$tmp/build/${lang}_shared"
    fi
done

finish
