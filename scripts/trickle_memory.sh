#!/usr/bin/env bash
# Memory of trickling connections (issue 19): `wsx serve` gets CONNS (default 300) connections
# that each echo one LARGE-byte message (default 1 MiB, one connection's message at a time), then
# announce a 1 MiB frame and trickle 600 bytes of it, 15 at a time (scripts/trickle_clients.py).
# WARM (default 100) such connections come first and stay: they take the costs paid once
# (worker arenas, what the allocator keeps after the first large messages). Then the server's
# RSS growth while CONNS more join, divided by CONNS, is what one more trickling connection
# holds; the script fails when it is above MAX_KIB (default 16). The growth over the RSS before
# any connection is printed too. Plain ws:// and wss:// (a throwaway self-signed certificate
# from openssl).
#
#   scripts/trickle_memory.sh
#
# Environment: CONNS, WARM, LARGE, TRICKLE (bytes, default 600), MAX_KIB, MODES ("plain tls"),
# PROFILE (release (default) or debug).
# Only 127.0.0.1; every process is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-300}
WARM=${WARM:-100}
LARGE=${LARGE:-1048576}
MAX_KIB=${MAX_KIB:-16}
MODES=${MODES:-"plain tls"}
PROFILE=${PROFILE:-release}

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# shellcheck source=scripts/bench_server.sh
source "$(dirname "$0")/bench_server.sh"
build_profile wsx-cli

SERVER_PID=""
CLIENT_PID=""
WARM_PID=""
TMP=$(mktemp -d)
cleanup() {
  if [ -n "$CLIENT_PID" ]; then kill "$CLIENT_PID" 2>/dev/null || true; fi
  if [ -n "$WARM_PID" ]; then kill "$WARM_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# clients N OUT HOLD: starts N trickling clients in the background (pid in LAST_PID) and waits
# until they all trickle.
clients() {
  timeout 300 python3 scripts/trickle_clients.py --url "$URL/" --conns "$1" --large "$LARGE" \
    --trickle "${TRICKLE:-600}" --hold "$3" >"$2" 2>&1 &
  LAST_PID=$!
  if [ -z "$(wait_for_line "$2" '^ready' 2400)" ]; then
    echo "the clients did not get ready ($mode):" >&2
    cat "$2" >&2
    exit 1
  fi
  sleep 1
}

status=0
echo "| transport | warm-up conns | conns | RSS before KiB | after warm-up KiB | after all KiB | KiB per connection | KiB per connection, from start |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for mode in $MODES; do
  cmd="${WRAP:-} $BIN/wsx serve"
  if [ "$mode" = tls ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
      -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null
    cmd="$cmd --tls-cert $TMP/cert.pem --tls-key $TMP/key.pem"
  fi
  start_server_cmd "$cmd" "$TMP/server.log" 300 ""
  sleep 0.5
  before=$(rss_kib "$SERVER_PID")
  clients "$WARM" "$TMP/warm.out" 200
  WARM_PID=$LAST_PID
  warm=$(rss_kib "$SERVER_PID")
  clients "$CONNS" "$TMP/clients.out" 3
  CLIENT_PID=$LAST_PID
  after=$(rss_kib "$SERVER_PID")
  per=$(python3 -c "print(f'{($after - $warm) / $CONNS:.1f}')")
  total=$(python3 -c "print(f'{($after - $before) / ($CONNS + $WARM):.1f}')")
  echo "| $mode | $WARM | $CONNS | $before | $warm | $after | $per | $total |"
  if python3 -c "import sys; sys.exit(0 if $per <= $MAX_KIB else 1)"; then :; else
    echo "$mode: $per KiB per trickling connection, above $MAX_KIB" >&2
    status=1
  fi
  wait "$CLIENT_PID" || true
  CLIENT_PID=""
  kill "$WARM_PID" 2>/dev/null || true
  wait "$WARM_PID" 2>/dev/null || true
  WARM_PID=""
  stop_server
done
exit "$status"
