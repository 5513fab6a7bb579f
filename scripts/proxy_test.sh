#!/usr/bin/env bash
# The client through real proxies: installs Debian's tinyproxy (HTTP CONNECT) and microsocks
# (SOCKS5) when missing, starts four of them on free ports of 127.0.0.1 (each kind with and
# without credentials), runs the ignored tests of tests/real_proxies.rs against them, then
# `wsx connect` through each kind, and stops the proxies by PID.
#
# usage: scripts/proxy_test.sh
#
# Environment:
#   PROXY_TEST_TIMEOUT  seconds the tests may take in all (default 600, the build included)
#
# Prints `proxies: N passed, M failed` last; exits non-zero if anything failed.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
TIMEOUT=${PROXY_TEST_TIMEOUT:-600}
PASSED=0
FAILED=0
PIDS=()
TMP=$(mktemp -d)

cleanup() {
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

die() {
  echo "proxies: $*"
  for log in "$TMP"/*.log; do
    [ -s "$log" ] && { echo "== $log (last 20 lines)"; tail -n 20 "$log"; }
  done
  echo "proxies: $PASSED passed, $((FAILED + 1)) failed"
  exit 1
}

# ---- prerequisites -------------------------------------------------------------------------
if ! command -v tinyproxy >/dev/null || ! command -v microsocks >/dev/null; then
  SUDO=
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y --no-install-recommends tinyproxy microsocks >/dev/null 2>&1 || {
    $SUDO apt-get update >/dev/null
    $SUDO apt-get install -y --no-install-recommends tinyproxy microsocks >/dev/null
  }
fi

# A free TCP port on 127.0.0.1 (bound then released; nothing else on this machine races us for
# loopback ports that often).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() {
  local port=$1
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# tinyproxy's BasicAuth takes plain words only.
USER_NAME=wsxuser
PASSWORD=wsxProxyPass7

# ---- tinyproxy: no auth, and Basic auth --------------------------------------------------------
# No ConnectPort line: CONNECT is allowed to every port (the test servers use random ones).
start_tinyproxy() {
  local name=$1 port=$2 extra=$3
  cat >"$TMP/$name.conf" <<EOF
Port $port
Listen 127.0.0.1
Timeout 30
MaxClients 50
Allow 127.0.0.1
LogLevel Info
$extra
EOF
  tinyproxy -d -c "$TMP/$name.conf" >"$TMP/$name.log" 2>&1 &
  PIDS+=($!)
  wait_port "$port" || die "$name did not start on port $port"
}

HTTP_PORT=$(free_port)
start_tinyproxy tinyproxy "$HTTP_PORT" ""
HTTP_AUTH_PORT=$(free_port)
start_tinyproxy tinyproxy-auth "$HTTP_AUTH_PORT" "BasicAuth $USER_NAME $PASSWORD"

# ---- microsocks: no auth, and user/password ------------------------------------------------------
SOCKS_PORT=$(free_port)
microsocks -i 127.0.0.1 -p "$SOCKS_PORT" >"$TMP/microsocks.log" 2>&1 &
PIDS+=($!)
SOCKS_AUTH_PORT=$(free_port)
microsocks -i 127.0.0.1 -p "$SOCKS_AUTH_PORT" -u "$USER_NAME" -P "$PASSWORD" \
  >"$TMP/microsocks-auth.log" 2>&1 &
PIDS+=($!)
wait_port "$SOCKS_PORT" || die "microsocks did not start"
wait_port "$SOCKS_AUTH_PORT" || die "microsocks (auth) did not start"

export WSX_TEST_HTTP_PROXY="http://127.0.0.1:$HTTP_PORT"
export WSX_TEST_HTTP_PROXY_AUTH="http://$USER_NAME:$PASSWORD@127.0.0.1:$HTTP_AUTH_PORT"
export WSX_TEST_SOCKS_PROXY="127.0.0.1:$SOCKS_PORT"
export WSX_TEST_SOCKS_PROXY_AUTH="$USER_NAME:$PASSWORD@127.0.0.1:$SOCKS_AUTH_PORT"

# ---- the library's tests -----------------------------------------------------------------------
cd "$REPO"
echo "== cargo test --test real_proxies (tinyproxy :$HTTP_PORT/:$HTTP_AUTH_PORT, microsocks :$SOCKS_PORT/:$SOCKS_AUTH_PORT)"
if timeout "$TIMEOUT" cargo test -p wsx --all-features --test real_proxies -- --ignored; then
  PASSED=$((PASSED + 1))
else
  FAILED=$((FAILED + 1))
fi

# ---- the CLI: wsx connect through each kind, the second from the environment --------------------
# The feature set of `cargo test --workspace --all-features`, so CI rebuilds nothing here.
timeout "$TIMEOUT" cargo build -q --workspace --all-features --bins
WSX="$REPO/target/debug/wsx"
"$WSX" serve --listen 127.0.0.1:0 >"$TMP/serve.out" 2>"$TMP/serve.log" &
PIDS+=($!)
for _ in $(seq 1 100); do
  grep -q "listening on" "$TMP/serve.out" 2>/dev/null && break
  sleep 0.1
done
URL=$(sed -n 's/^listening on //p' "$TMP/serve.out" | head -n 1)
[ -n "$URL" ] || die "wsx serve did not start"

# The echo must come back, and the debug log must say the proxy was used (a direct connection
# to 127.0.0.1 would echo too).
check_cli() {
  local what=$1
  shift
  local got
  got=$(echo "hello $what" | RUST_LOG=wsx=debug timeout 20 "$@" 2>"$TMP/cli.log") || true
  if [ "$got" = "hello $what" ] && grep -q "connecting through a proxy" "$TMP/cli.log"; then
    echo "ok: wsx connect $what"
    PASSED=$((PASSED + 1))
  else
    echo "FAILED: wsx connect $what (got: $got)"
    tail -n 5 "$TMP/cli.log"
    FAILED=$((FAILED + 1))
  fi
}
check_cli "--proxy (tinyproxy, Basic auth)" "$WSX" connect --proxy "$WSX_TEST_HTTP_PROXY_AUTH" "$URL/echo"
check_cli "ALL_PROXY (microsocks, socks5h)" \
  env -u http_proxy -u HTTP_PROXY -u no_proxy -u NO_PROXY \
  ALL_PROXY="socks5h://$WSX_TEST_SOCKS_PROXY_AUTH" "$WSX" connect "$URL/echo"
# Proxy credentials never reach the log, even at debug level.
if RUST_LOG=debug "$WSX" connect --proxy "$WSX_TEST_HTTP_PROXY_AUTH" "$URL/echo" </dev/null 2>&1 \
  | grep -q -F -e "$PASSWORD"; then
  echo "FAILED: the password appears in the debug log"
  FAILED=$((FAILED + 1))
else
  echo "ok: no credentials in the debug log"
  PASSED=$((PASSED + 1))
fi

echo "proxies: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
