#!/usr/bin/env bash
# Installs the Debian packages weft needs, and only those that are missing.
# Quiet when everything is present. As root it runs apt-get update + install;
# otherwise it names what is missing and fails, so nothing half-works.
set -u

pkgs=(bazel-bootstrap libuv1-dev libck-dev libjemalloc-dev libcriterion-dev
      clang-format gcc-aarch64-linux-gnu qemu-user gdbserver
      clang-15 libfuzzer-15-dev  # tools/fuzz.sh
      pkgconf)  # pkgconf: //tests:install_test builds against weft.pc

missing=()
for p in "${pkgs[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)
    [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
    echo "deps.sh: install them as root: apt-get install ${missing[*]}" >&2
    exit 1
fi

echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { apt-get update && apt-get install -y "${missing[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "deps.sh: apt-get failed for: ${missing[*]}" >&2
    exit 1
fi
rm -f "$log"
