#!/usr/bin/env bash
# tools/install.sh - installs weft under a prefix (docs/install.md).
#
#   bazel run -c opt //:install -- PREFIX
#
# Runs as //:install, from Bazel's runfiles, where the build put what it
# installs (so the files are always the ones just built, in the chosen
# configuration):
#   PREFIX/include/weft/*.h         the public headers
#   PREFIX/lib/libweft.a            every package's objects (PIC)
#   PREFIX/lib/libweft.so.X.Y.Z     with libweft.so.X (its soname) and
#                                   libweft.so pointing at it
#   PREFIX/lib/pkgconfig/weft.pc, weft-static.pc
# A relative PREFIX is taken from the directory bazel run was started in.
# DESTDIR=/stage puts the files under /stage/PREFIX (for packagers) while
# the .pc files still say PREFIX.
set -euo pipefail

die() {
    echo "install: $*" >&2
    exit 1
}

[ $# -eq 1 ] || die "usage: bazel run //:install -- PREFIX"
prefix=$1
if [[ "$prefix" != /* ]]; then
    prefix="${BUILD_WORKING_DIRECTORY:-$PWD}/$prefix"
fi
# Lexically (-s: a symlinked prefix stays as given), for the .pc files.
prefix=$(realpath -ms -- "$prefix")
# '|' is sed's separator where the prefix goes into the .pc files.
[[ "$prefix" != *"|"* ]] || die "PREFIX may not contain '|'"

# The runfiles tree: $0.runfiles under bazel run, TEST_SRCDIR (or
# RUNFILES_DIR) when a test runs the installer.
root=""
for d in "$0.runfiles" "${TEST_SRCDIR:-}" "${RUNFILES_DIR:-}"; do
    if [ -n "$d" ] && [ -f "$d/weft/libweft.a" ]; then
        root="$d/weft"
        break
    fi
done
[ -n "$root" ] || die "no runfiles next to $0: run it as bazel run //:install -- PREFIX"

version=$(cat "$root/weft_version.txt")
soname="libweft.so.${version%%.*}"
dest="${DESTDIR:-}$prefix"

shopt -s nullglob
headers=("$root"/include/weft/*.h)
[ ${#headers[@]} -gt 0 ] || die "no headers in $root/include/weft"

# put MODE SRC DEST. Not install(1): under bazel test the PATH may find
# this script (//:install) first.
put() {
    rm -f "$3"
    cp "$2" "$3"
    chmod "$1" "$3"
}

mkdir -p "$dest/include/weft" "$dest/lib/pkgconfig"
for h in "${headers[@]}"; do
    put 0644 "$h" "$dest/include/weft/${h##*/}"
done
put 0644 "$root/libweft.a" "$dest/lib/libweft.a"
put 0755 "$root/libweft.so" "$dest/lib/libweft.so.$version"
ln -sfn "libweft.so.$version" "$dest/lib/$soname"
ln -sfn "$soname" "$dest/lib/libweft.so"
for pc in weft weft-static; do
    rm -f "$dest/lib/pkgconfig/$pc.pc"
    sed "s|@PREFIX@|$prefix|" "$root/pkgconfig/$pc.pc" >"$dest/lib/pkgconfig/$pc.pc"
    chmod 0644 "$dest/lib/pkgconfig/$pc.pc"
done

echo "install: weft $version -> $dest (${#headers[@]} headers, libweft.a, libweft.so, weft.pc, weft-static.pc)"
