#!/usr/bin/env bash
# Soak test of `wsx serve` (issue 9): IDLE idle connections (default 10 000) held open while
# ECHO connections (default 100) echo for SECS seconds (default 20). Reports the server's RSS
# before, with the idle connections held, and after everything closed; RSS per idle connection;
# and the echo error count (must be 0). Exits 1 if any echo failed or an idle connection could
# not be opened. Traffic goes to 127.0.0.1 only; every process is bounded by `timeout`.
#
#   scripts/soak.sh            environment: IDLE, ECHO, SECS, SIZE (echo message bytes, 64),
#                              ROUNDS (default 2: a leak shows as growth from round to round)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
IDLE="${IDLE:-10000}"
ECHO="${ECHO:-100}"
SECS="${SECS:-20}"
SIZE="${SIZE:-64}"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p wsx-cli -p wsx-bench
BIN="$ROOT/target/release"
TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

cat >"$TMP/summary.py" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("%d messages, %.0f/s, p99 %s us" % (d["messages"], d["messages_per_sec"], d["latency_us"]["p99"]))
PY

# shellcheck source=scripts/bench_server.sh
source "$ROOT/scripts/bench_server.sh"

RUST_LOG=warn timeout $((SECS + 120)) "$BIN/wsx" serve --listen 127.0.0.1:0 >"$TMP/serve.out" 2>"$TMP/serve.err" &
SERVER=$!
PIDS+=("$SERVER")
URL="$(wait_for_line "$TMP/serve.out" '^listening on ' 200 | sed 's/^listening on //')"
[ -n "$URL" ] || { echo "soak: wsx serve did not start" >&2; cat "$TMP/serve.err" >&2; exit 1; }
# `timeout` runs the server as its child: measure the server itself.
SERVER="$(pgrep -P "$SERVER" | head -n 1)"
sleep 0.5
RSS0="$(rss_kib "$SERVER")"

ROUNDS="${ROUNDS:-2}"
STATUS=0
for ROUND in $(seq "$ROUNDS"); do
  # The idle connections: opened, then held while the echo load runs.
  timeout $((SECS + 90)) "$BIN/idle-clients" --url "$URL/idle" --conns "$IDLE" --hold $((SECS + 5)) \
    >"$TMP/idle.out" 2>"$TMP/idle.err" &
  IDLE_PID=$!
  PIDS+=("$IDLE_PID")
  READY="$(wait_for_line "$TMP/idle.out" '^ready ' 1200)"
  [ -n "$READY" ] || { echo "soak: idle clients never got ready" >&2; cat "$TMP/idle.err" >&2; exit 1; }
  sleep 1
  RSS1="$(rss_kib "$SERVER")"
  OPENED="$(sed -n 's/.*opened=\([0-9]*\).*/\1/p' <<<"$READY")"
  FAILED="$(sed -n 's/.*failed=\([0-9]*\).*/\1/p' <<<"$READY")"
  
  # The echo load, next to the idle connections.
  timeout $((SECS + 30)) "$BIN/wsx" bench "$URL/echo" --conns "$ECHO" --size "$SIZE" \
    --duration "$SECS" --warmup 1 --json >"$TMP/bench.json"
  RSS_PEAK="$(rss_kib "$SERVER")"
  wait "$IDLE_PID" || true
  
  # Everything closed: give the server a moment to drop its state.
  sleep 3
  RSS2="$(rss_kib "$SERVER")"
  
  ERRORS="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"])' "$TMP/bench.json")"
  MSGS="$(python3 "$TMP/summary.py" "$TMP/bench.json")"
  PER_IDLE="$(python3 -c "print(f'{($RSS1 - $RSS0) / max($OPENED, 1):.2f}')")"
  
  echo "soak: $OPENED idle connections opened ($FAILED failed), $ECHO echoing for ${SECS}s: $MSGS, $ERRORS errors"
  echo "soak: server RSS before $((RSS0 / 1024)) MiB, idle held $((RSS1 / 1024)) MiB, under load $((RSS_PEAK / 1024)) MiB, after close $((RSS2 / 1024)) MiB"
  echo "soak: RSS per idle connection ${PER_IDLE} KiB (target <= 8 KiB); after close +$(((RSS2 - RSS0) / 1024)) MiB over the start"
  echo "soak: round $ROUND done"
  if [ "$ERRORS" != 0 ] || [ "$FAILED" != 0 ] || [ "$OPENED" != "$IDLE" ]; then STATUS=1; fi
  if [ "$ROUND" = 1 ]; then RSS_AFTER_FIRST="$RSS2"; fi
done
# The allocator keeps freed memory for reuse, so RSS after the first round stays up; a leak would
# make every further round add to it.
echo "soak: RSS after round 1 $((RSS_AFTER_FIRST / 1024)) MiB, after round $ROUNDS $((RSS2 / 1024)) MiB (growth across rounds: $(((RSS2 - RSS_AFTER_FIRST) / 1024)) MiB)"
if [ "$STATUS" != 0 ]; then
  echo "soak: FAILED" >&2
  exit 1
fi
