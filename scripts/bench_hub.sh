#!/usr/bin/env bash
# Fan-out of the broadcast hub: the same load on 1 node with the in-memory hub and on 2 nodes
# sharing 1 Redis, in the same run, with `wsx fanout` as the load generator.
#
#   scripts/bench_hub.sh
#
# Environment: PROFILE=release|debug (default release; debug reuses the test build: the library
# at opt-level 0, its dependencies optimized), DURATION (seconds of publishing per cell, default
# 10), LOAD (deliveries per second offered in each cell, default 20000: the publishers' total
# rate is LOAD / members), CELLS="1x1000 100x100".
#
# Cells (publishers x members, one room): each publisher sends at a fixed rate, every member
# records publish-to-delivery latency; members and publishers are spread round-robin over the
# nodes. Redis's CPU (utime+stime from /proc/PID/stat) over each Redis cell is divided by the
# messages published and by the deliveries. Everything is on 127.0.0.1; processes are stopped
# by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=${PROFILE:-release}
DURATION=${DURATION:-10}
LOAD=${LOAD:-20000}
CELLS=${CELLS:-"1x1000 100x100"}
if [ "$PROFILE" = release ]; then
    cargo build --release -p wsx-cli
else
    cargo build -p wsx-cli
fi
WSX=target/$PROFILE/wsx
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

dir=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    bash scripts/redis.sh stop "$dir/redis"
    rm -rf "$dir"
}
trap cleanup EXIT

bash scripts/redis.sh start "$dir/redis" >/dev/null
redis_port=$(cat "$dir/redis/port")
redis_pid=$(cat "$dir/redis/pid")

# Starts `wsx serve` with ARGS; sets $addr.
start_node() {
    local out="$dir/node${#pids[@]}"
    "$WSX" serve --listen 127.0.0.1:0 --no-deflate "$@" >"$out.out" 2>"$out.log" &
    pids+=($!)
    for _ in $(seq 100); do
        if grep -q "listening on" "$out.out" 2>/dev/null; then
            addr=$(sed -n 's|listening on ws://||p' "$out.out")
            return
        fi
        sleep 0.1
    done
    echo "wsx serve did not start" >&2
    exit 1
}

start_node
memory=$addr
start_node --hub "redis://127.0.0.1:$redis_port"
node_b=$addr
start_node --hub "redis://127.0.0.1:$redis_port"
node_c=$addr

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

echo "| cell | hub | delivered/s | p50 ms | p99 ms | delivered | Redis CPU µs / published | Redis CPU µs / delivery |"
echo "|---|---|---|---|---|---|---|---|"
n=0
for cell in $CELLS; do
    publishers=${cell%x*}
    members=${cell#*x}
    # LOAD deliveries/s offered, for DURATION seconds.
    rate=$(awk -v l="$LOAD" -v m="$members" -v p="$publishers" 'BEGIN { print l / m / p }')
    messages=$(awk -v r="$rate" -v d="$DURATION" 'BEGIN { n = int(r * d + 0.5); print (n < 1 ? 1 : n) }')
    for hub in memory redis; do
        n=$((n + 1))
        if [ "$hub" = memory ]; then
            urls="ws://$memory/room/bench$n"
        else
            urls="ws://$node_b/room/bench$n ws://$node_c/room/bench$n"
        fi
        before=$(ticks "$redis_pid")
        # shellcheck disable=SC2086
        json=$(timeout 300 "$WSX" fanout $urls --publishers "$publishers" --members "$members" \
            --messages "$messages" --rate "$rate" --json || true)
        after=$(ticks "$redis_pid")
        python3 - "$cell" "$hub" "$json" "$((after - before))" "$hz" "$publishers" "$messages" <<'EOF'
import json, sys
cell, hub, raw, ticks, hz, pubs, msgs = sys.argv[1:]
r = json.loads(raw) if raw.strip() else {}
published = int(pubs) * int(msgs)
cpu_us = int(ticks) * 1e6 / int(hz)
if hub == "redis":
    per_pub = f"{cpu_us / published:.1f}"
    per_del = f"{cpu_us / max(r.get('delivered', 0), 1):.2f}"
else:
    per_pub = per_del = "-"
print(f"| {cell} | {hub} | {r.get('delivered_per_sec', 'failed')} | {r.get('p50_ms', '-')} | "
      f"{r.get('p99_ms', '-')} | {r.get('delivered', 0)}/{r.get('expected', '?')} | {per_pub} | {per_del} |")
EOF
    done
done
