#!/usr/bin/env bash
# examples/echo as a test: the server on an ephemeral port with 2 loops,
# its own client (weft streams) checking every echo - small and large
# messages, many connections - then SIGTERM: exit 0.
set -u
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
passed=0
failed=0

"$bin" 0 2 >"$dir/out" 2>"$dir/err" &
pid=$!
for _ in $(seq 100); do
    grep -q '^listening on' "$dir/out" && break
    sleep 0.1
done
port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$dir/out")
if [ -z "$port" ]; then
    echo "FAIL: the server did not say where it listens"
    cat "$dir/err"
    kill "$pid" 2>/dev/null
    echo "PLAIN: 0 passed, 1 failed"
    exit 1
fi

# conns msgs size
for args in "4 1000 64" "64 50 64" "2 20 4096"; do
    # shellcheck disable=SC2086 # three numbers
    if timeout 60 "$bin" --client "$port" $args; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL: client $args"
    fi
done

kill -TERM "$pid"
if wait "$pid"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL: the server's exit status after SIGTERM"
    cat "$dir/err"
fi
echo "PLAIN: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
