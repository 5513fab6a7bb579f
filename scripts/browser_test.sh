#!/usr/bin/env bash
# Real-browser test of `wsx serve`: Debian's Chromium, driven by playwright-core
# (scripts/browser/test.mjs), uses the page at GET / for echo (with permessage-deflate) and for
# the /chat room, and saves a screenshot of the echo page (default target/browser/browser.png;
# docs/browser.png is a copy of one).
#
# usage: scripts/browser_test.sh
#
# Needs node >= 20 and npm. Installs Debian's `chromium` when /usr/bin/chromium is missing
# (apt-get; as root or through sudo) and the npm dependencies into scripts/browser/node_modules
# (`npm ci`; playwright-core only: no browser is downloaded).
#
# Environment:
#   CHROMIUM              browser binary (default /usr/bin/chromium)
#   BROWSER_TEST_TIMEOUT  seconds the server + browser part may take in all (default 120)
#   SCREENSHOT            where to save the PNG (default target/browser/browser.png)
#
# Prints `browser: N passed, M failed` last; exits non-zero if any check failed.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
DRIVER="$SCRIPT_DIR/browser"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
TIMEOUT=${BROWSER_TEST_TIMEOUT:-120}
SCREENSHOT=${SCREENSHOT:-$REPO/target/browser/browser.png}
mkdir -p "$(dirname "$SCREENSHOT")"

TMP=
server_log_tail() {
  if [ -n "$TMP" ] && [ -s "$TMP/server.err" ]; then
    echo "== server log (last 30 lines)"
    tail -n 30 "$TMP/server.err"
  fi
}
die() { echo "browser: $*"; server_log_tail; echo "browser: 0 passed, 1 failed"; exit 1; }

# ---- prerequisites -------------------------------------------------------------------------
if [ ! -x "$CHROMIUM" ]; then
  [ "$CHROMIUM" = /usr/bin/chromium ] || die "$CHROMIUM is not an executable"
  echo "== installing chromium (apt)"
  if [ "$(id -u)" = 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else
    die "/usr/bin/chromium is missing and this is neither root nor has sudo: apt-get install chromium"
  fi
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  [ -x "$CHROMIUM" ] || die "apt-get installed chromium but $CHROMIUM is still missing"
fi

command -v node >/dev/null && command -v npm >/dev/null || die "node (>= 20) and npm are needed"
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
[ "$NODE_MAJOR" -ge 20 ] || die "node >= 20 is needed (playwright-core), this is $(node --version)"

# npm keeps a copy of the lock in node_modules: reinstall only when the committed lock changed.
if [ ! -f "$DRIVER/node_modules/.package-lock.json" ] \
   || [ "$DRIVER/package-lock.json" -nt "$DRIVER/node_modules/.package-lock.json" ]; then
  echo "== npm ci (scripts/browser)"
  (cd "$DRIVER" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

echo "== cargo build --release -p wsx-cli"
(cd "$REPO" && cargo build --release -p wsx-cli)
WSX="$REPO/target/release/wsx"

# ---- server ---------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wsx-browser.XXXXXX")
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

START=$(date +%s)
NO_COLOR=1 RUST_LOG=info "$WSX" serve --listen 127.0.0.1:0 >"$TMP/server.out" 2>"$TMP/server.err" &
SERVER_PID=$!

PORT=
for _ in $(seq 100); do
  line=$(head -n 1 "$TMP/server.out" 2>/dev/null || true)
  if [[ "$line" =~ ^listening\ on\ ws://127\.0\.0\.1:([0-9]+)$ ]]; then PORT=${BASH_REMATCH[1]}; break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || die "wsx serve exited early: $(cat "$TMP/server.err")"
  sleep 0.1
done
[ -n "$PORT" ] || die "wsx serve did not print 'listening on ws://127.0.0.1:PORT' within 10 s"
echo "== wsx serve on port $PORT"

# ---- browser --------------------------------------------------------------------------------
# The limit covers the server and the browser (not the installs and the build above). The driver
# gives up by itself a little before it (exiting also kills the browser); `timeout` is the
# backstop that kills the driver if even that hangs.
LEFT=$(( TIMEOUT - ($(date +%s) - START) ))
set +e
WSX_HTTP="http://127.0.0.1:$PORT" WSX_SERVER_LOG="$TMP/server.err" SCREENSHOT="$SCREENSHOT" \
  CHROMIUM="$CHROMIUM" TEST_TIMEOUT=$(( LEFT > 20 ? LEFT - 10 : (LEFT * 2 / 3 > 0 ? LEFT * 2 / 3 : 1) )) \
  timeout -k 5 "$LEFT" node "$DRIVER/test.mjs"
rc=$?
set -e
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  echo "browser: the driver was killed at the ${TIMEOUT} s limit"
  server_log_tail
  echo "browser: 0 passed, 1 failed"
fi
exit "$rc"
