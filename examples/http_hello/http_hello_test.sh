#!/usr/bin/env bash
# examples/http_hello as a test: start it on an ephemeral port with 2
# loops, ask it with curl (two requests on one kept-alive connection, the
# headers, HTTP/1.0) and over a raw socket (two pipelined requests, a bad
# one), then stop it with SIGTERM: it must exit 0.
set -u
bin=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
passed=0
failed=0
check() { # check NAME WANT GOT
    if [ "$2" = "$3" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        printf 'FAIL %s: want %q, got %q\n' "$1" "$2" "$3"
    fi
}

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
url=http://127.0.0.1:$port

check "two keep-alive GETs" hellohello "$(curl -sS --max-time 10 "$url/" "$url/x")"
conns=$(curl -sS --max-time 10 -w '%{num_connects}\n' -o /dev/null -o /dev/null "$url/" "$url/" | paste -sd+ | bc)
check "one connection for both" 1 "$conns"
head=$(curl -sS --max-time 10 -i "$url/" | tr -d '\r')
check "status line" "HTTP/1.1 200 OK" "$(head -n 1 <<<"$head")"
check "content length" "Content-Length: 5" "$(grep -i '^content-length' <<<"$head")"
check "HTTP/1.0 closes" hello "$(curl -sS --max-time 10 -0 "$url/")"

# Two pipelined requests in one write; the second asks to close.
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' >&3
replies=$(timeout 10 cat <&3 | grep -o 'HTTP/1.1 200 OK' | wc -l)
exec 3>&-
check "pipelined replies, then the close" 2 "$replies"

exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'nonsense\r\n\r\n' >&3
bad=$(timeout 10 head -n 1 <&3 | tr -d '\r')
exec 3>&-
check "a bad request" "HTTP/1.1 400 Bad Request" "$bad"

kill -TERM "$pid"
wait "$pid"
check "exit status after SIGTERM" 0 "$?"
[ "$failed" -eq 0 ] || cat "$dir/err"
echo "PLAIN: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
