#!/usr/bin/env bash
# Interop over HTTP/2 (RFC 8441) with a peer outside Rust: Node's built-in `http2` client
# (bench/node_h2_client.js) opens WebSockets as extended CONNECT streams on one h2c connection to
# `wsx serve`, sends masked frames framed by hand and checks the echoes and the close.
#
# usage: scripts/node_h2_interop.sh
# Needs node >= 18 (nothing from npm). Builds the debug `wsx` binary. Exits non-zero on failure.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
command -v node >/dev/null || { echo "node-h2: node is needed"; exit 1; }

(cd "$REPO" && cargo build -q -p wsx-cli)
WSX="$REPO/target/debug/wsx"
# shellcheck source=scripts/bench_server.sh
source "$REPO/scripts/bench_server.sh"
LOG=$(mktemp "${TMPDIR:-/tmp}/wsx-node-h2.XXXXXX")
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then stop_server; fi
  rm -f "$LOG"
}
trap cleanup EXIT

start_server_cmd "env RUST_LOG=info NO_COLOR=1 $WSX serve" "$LOG" 120
timeout 30 node "$REPO/bench/node_h2_client.js" "http://${URL#ws://}"
# The server saw both sockets as HTTP/2 streams.
OPENS=$(grep -c 'over="h2".*open\|open.*over="h2"\|over=h2' "$LOG" || true)
if [ "$OPENS" -lt 2 ]; then
  echo "node-h2: FAIL the server log does not show 2 sockets over h2"
  cat "$LOG"
  exit 1
fi
echo "node-h2: server log shows $OPENS HTTP/2 WebSocket lines"
