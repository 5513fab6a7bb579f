#!/usr/bin/env bash
# Real-browser test of `wsx serve`: Debian's Chromium, driven by playwright-core
# (scripts/browser/test.mjs), uses the page at GET / for echo (with permessage-deflate) and for
# the /chat room, and saves a screenshot of the echo page (default target/browser/browser.png;
# docs/browser.png is a copy of one). A second `wsx serve`, with a throwaway self-signed
# certificate (openssl), serves the page over HTTPS with HTTP/2 (ALPN h2): Chromium's own
# `new WebSocket("wss://...")` from that page must go as a stream of that HTTP/2 connection
# (RFC 8441), which the test reads from the server's log (`over="h2"`).
#
# usage: scripts/browser_test.sh
#
# Needs node >= 20 and npm. Installs Debian's `chromium` and `openssl` when missing (apt-get; as
# root or through sudo) and the npm dependencies into scripts/browser/node_modules (`npm ci`;
# playwright-core only: no browser is downloaded).
#
# Environment:
#   WSX                   a wsx binary to test (default: build and use target/release/wsx)
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
  local name
  for name in server tls; do
    if [ -n "$TMP" ] && [ -s "$TMP/$name.err" ]; then
      echo "== $name log (last 30 lines)"
      tail -n 30 "$TMP/$name.err"
    fi
  done
}
die() { echo "browser: $*"; server_log_tail; echo "browser: 0 passed, 1 failed"; exit 1; }

# ---- prerequisites -------------------------------------------------------------------------
APT_UPDATED=
apt_install() {
  echo "== installing $1 (apt)"
  if [ "$(id -u)" = 0 ]; then SUDO=(); elif command -v sudo >/dev/null; then SUDO=(sudo); else
    die "$1 is missing and this is neither root nor has sudo: apt-get install $1"
  fi
  [ -n "$APT_UPDATED" ] || "${SUDO[@]}" apt-get update
  APT_UPDATED=1
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "$1"
}
if [ ! -x "$CHROMIUM" ]; then
  [ "$CHROMIUM" = /usr/bin/chromium ] || die "$CHROMIUM is not an executable"
  apt_install chromium
  [ -x "$CHROMIUM" ] || die "apt-get installed chromium but $CHROMIUM is still missing"
fi
command -v openssl >/dev/null || apt_install openssl

command -v node >/dev/null && command -v npm >/dev/null || die "node (>= 20) and npm are needed"
NODE_MAJOR=$(node -p 'process.versions.node.split(".")[0]')
[ "$NODE_MAJOR" -ge 20 ] || die "node >= 20 is needed (playwright-core), this is $(node --version)"

# npm keeps a copy of the lock in node_modules: reinstall only when the committed lock changed.
if [ ! -f "$DRIVER/node_modules/.package-lock.json" ] \
   || [ "$DRIVER/package-lock.json" -nt "$DRIVER/node_modules/.package-lock.json" ]; then
  echo "== npm ci (scripts/browser)"
  (cd "$DRIVER" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

if [ -z "${WSX:-}" ]; then
  echo "== cargo build --release -p wsx-cli"
  (cd "$REPO" && cargo build --release -p wsx-cli)
  WSX="$REPO/target/release/wsx"
fi
[ -x "$WSX" ] || die "$WSX is not an executable"

# ---- servers --------------------------------------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/wsx-browser.XXXXXX")
SERVER_PIDS=()
cleanup() {
  for pid in "${SERVER_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

START=$(date +%s)

# start_server NAME SCHEME ARGS...: starts `wsx serve` logging to $TMP/NAME.err and sets PORT.
start_server() {
  local name=$1 scheme=$2 pid line
  shift 2
  NO_COLOR=1 RUST_LOG=info "$WSX" serve --listen 127.0.0.1:0 "$@" \
    >"$TMP/$name.out" 2>"$TMP/$name.err" &
  pid=$!
  SERVER_PIDS+=("$pid")
  PORT=
  for _ in $(seq 100); do
    line=$(head -n 1 "$TMP/$name.out" 2>/dev/null || true)
    if [[ "$line" =~ ^listening\ on\ $scheme://127\.0\.0\.1:([0-9]+)$ ]]; then
      PORT=${BASH_REMATCH[1]}
      break
    fi
    kill -0 "$pid" 2>/dev/null || die "wsx serve ($name) exited early: $(cat "$TMP/$name.err")"
    sleep 0.1
  done
  [ -n "$PORT" ] || die "wsx serve did not print 'listening on $scheme://127.0.0.1:PORT' within 10 s"
  echo "== wsx serve ($name) on port $PORT"
}

start_server server ws
PLAIN_PORT=$PORT

# A throwaway self-signed certificate for 127.0.0.1 (Chromium runs with
# --ignore-certificate-errors): HTTPS, so that Chromium speaks HTTP/2.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=127.0.0.1 -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>"$TMP/openssl.err" \
  || die "openssl could not make a certificate: $(cat "$TMP/openssl.err")"
start_server tls wss --tls-cert "$TMP/cert.pem" --tls-key "$TMP/key.pem"
TLS_PORT=$PORT

# ---- browser --------------------------------------------------------------------------------
# The limit covers the server and the browser (not the installs and the build above). The driver
# gives up by itself a little before it (exiting also kills the browser); `timeout` is the
# backstop that kills the driver if even that hangs.
LEFT=$(( TIMEOUT - ($(date +%s) - START) ))
set +e
WSX_HTTP="http://127.0.0.1:$PLAIN_PORT" WSX_SERVER_LOG="$TMP/server.err" \
  WSX_HTTPS="https://127.0.0.1:$TLS_PORT" WSX_TLS_SERVER_LOG="$TMP/tls.err" SCREENSHOT="$SCREENSHOT" \
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
