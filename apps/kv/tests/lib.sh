# Shared by weft-kv's shell tests: start weft-kv / redis-server on free
# loopback ports and clean up. Sets TMP, KV_PORT, KV_PID, REDIS_PORT.
TMP=$(mktemp -d)
KV_PID=""
REDIS_PID=""
cleanup() {
    local p
    for p in $KV_PID $REDIS_PID; do
        { kill -9 "$p" && wait "$p"; } 2>/dev/null
    done
    rm -rf "$TMP"
}
trap cleanup EXIT

# start_kv BINARY ARGS...: weft-kv on a port it picks (--port 0).
start_kv() {
    local bin=$1
    shift
    # a fresh file before the start: reading the last run's port is a race
    rm -f "$TMP/kv.log"
    : >"$TMP/kv.log"
    "$bin" --port 0 "$@" >>"$TMP/kv.log" 2>&1 &
    KV_PID=$!
    for _ in $(seq 1 200); do
        KV_PORT=$(sed -n 's/^weft-kv ready: [^ ]*:\([0-9]*\),.*/\1/p' "$TMP/kv.log")
        [ -n "$KV_PORT" ] && return 0
        kill -0 "$KV_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "weft-kv did not start:" >&2
    cat "$TMP/kv.log" >&2
    exit 1
}

# a free loopback port (bind 0, read it back, release)
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        echo $((20000 + RANDOM % 20000))
}

start_redis() {
    REDIS_PORT=$(free_port)
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$TMP" >"$TMP/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 1 200); do
        redis-cli -p "$REDIS_PORT" PING >/dev/null 2>&1 && return 0
        sleep 0.05
    done
    echo "redis-server did not start" >&2
    exit 1
}

# wait_gone PID: the process ended within 10 s
wait_gone() {
    for _ in $(seq 1 200); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.05
    done
    return 1
}
