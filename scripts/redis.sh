#!/usr/bin/env bash
# Redis for the hub's tests and benchmark: Debian's redis-server, installed when missing, run on
# 127.0.0.1 with no persistence.
#
#   scripts/redis.sh install        install redis-server if it is not there
#   scripts/redis.sh test           run the Redis tests (cli/tests/hub_redis.rs); they start and
#                                   kill their own servers by PID through WSX_TEST_REDIS_SERVER
#   scripts/redis.sh start DIR      start one on a free port; writes DIR/port and DIR/pid
#   scripts/redis.sh stop DIR       stop the one started in DIR (by its PID)
set -euo pipefail
cd "$(dirname "$0")/.."

install() {
    if command -v redis-server >/dev/null; then
        return
    fi
    echo "== installing redis-server (Debian)"
    if ! apt-cache show redis-server >/dev/null 2>&1; then
        apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    # The package starts a system instance on 6379; the tests never use it.
    if command -v systemctl >/dev/null; then systemctl stop redis-server 2>/dev/null || true; fi
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1 port
    mkdir -p "$dir"
    port=$(free_port)
    redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
        --daemonize no --logfile "$dir/redis.log" --dir "$dir" &
    echo $! >"$dir/pid"
    echo "$port" >"$dir/port"
    for _ in $(seq 50); do
        if redis-cli -p "$port" ping >/dev/null 2>&1; then
            return
        fi
        sleep 0.1
    done
    echo "redis-server did not start on port $port" >&2
    exit 1
}

stop() {
    local dir=$1
    if [ -f "$dir/pid" ]; then
        kill "$(cat "$dir/pid")" 2>/dev/null || true
        rm -f "$dir/pid"
    fi
}

case "${1:-test}" in
install) install ;;
start) install; start "${2:?directory}" ;;
stop) stop "${2:?directory}" ;;
test)
    install
    # The tests start their own servers (one of them kills and restarts its Redis by PID);
    # with this variable set, a missing or broken redis-server fails them instead of skipping.
    WSX_TEST_REDIS_SERVER=$(command -v redis-server)
    export WSX_TEST_REDIS_SERVER
    timeout 600 cargo test -p wsx-cli --features redis --test hub_redis -- --test-threads 2
    ;;
*)
    echo "usage: $0 [install|test|start DIR|stop DIR]" >&2
    exit 2
    ;;
esac
