#!/usr/bin/env bash
# Half-open handshakes and server memory: `wsx serve` (handshake timeout HANDSHAKE_TIMEOUT,
# default 1 s) gets ROUNDS (default 3) rounds of CONNS (default 10 000) connections that send
# part of a request head and nothing more (`idle-clients --half-open`); each round waits until
# the server dropped them all, then reads its RSS (/proc/PID/status VmRSS). Memory the server
# still holds after a round is retention (or a leak): from the second round on it must stop
# growing, so the script fails when a round past the second ends more than MAX_GROWTH_KIB
# (default 4096) above the highest round before it. (Against the highest, not the last: the
# allocator gives back a few MiB in one round and takes them again in the next, which is
# neither.)
#
#   scripts/half_open_memory.sh
#
# Environment: CONNS, ROUNDS, HANDSHAKE_TIMEOUT, MAX_GROWTH_KIB, PROFILE (release (default) or
# debug: a debug build is much quicker to build and shows the same trend). Only 127.0.0.1;
# every process is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-10000}
ROUNDS=${ROUNDS:-3}
HANDSHAKE_TIMEOUT=${HANDSHAKE_TIMEOUT:-1}
MAX_GROWTH_KIB=${MAX_GROWTH_KIB:-4096}
PROFILE=${PROFILE:-release}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((CONNS + 100)) ]; then
  echo "ulimit -n is $(ulimit -n): too low for $CONNS connections" >&2
  exit 1
fi

# shellcheck source=scripts/bench_server.sh
source "$(dirname "$0")/bench_server.sh"
build_profile wsx-cli wsx-bench

SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

log=$(mktemp)
start_server_cmd "$BIN/wsx serve --handshake-timeout $HANDSHAKE_TIMEOUT" "$log" 600 ""
sleep 0.5
echo "round  rss_kib  (start: $(rss_kib "$SERVER_PID") KiB, $CONNS half-open handshakes a round)"
high=""
status=0
for round in $(seq 1 "$ROUNDS"); do
  # The clients hold past the handshake timeout: the server drops every connection itself.
  out=$(timeout 120 "$BIN/idle-clients" --url "$URL/" --conns "$CONNS" --half-open \
    --hold "$(python3 -c "print($HANDSHAKE_TIMEOUT + 1)")" --concurrency 512 2>>"$log" | head -1)
  sleep 1
  rss=$(rss_kib "$SERVER_PID")
  echo "$round      $rss  ($out)"
  if [ -n "$high" ] && [ "$round" -gt 2 ] && [ $((rss - high)) -gt "$MAX_GROWTH_KIB" ]; then
    echo "round $round grew $((rss - high)) KiB over the highest round before it (limit $MAX_GROWTH_KIB)" >&2
    status=1
  fi
  if [ -z "$high" ] || [ "$rss" -gt "$high" ]; then
    high=$rss
  fi
done
stop_server
rm -f "$log"
exit "$status"
