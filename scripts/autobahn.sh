#!/usr/bin/env bash
# Runs the Autobahn|Testsuite against wsx: the echo server (wstest fuzzingclient), once on
# `Socket` and once on `OwnedSocket` (`echo_server --owned`, the way `wsx serve` echoes), and the
# client (wstest fuzzingserver), then checks that every case is OK.
#
# usage: scripts/autobahn.sh [server|client|all]        (default: all)
#
# Environment:
#   CACHE              where wstest is installed (default $HOME/.cache/autobahn)
#   AUTOBAHN_OUT       report root (default target/autobahn); each run gets a fresh subdir
#   AUTOBAHN_TIMEOUT   time limit of each wstest run (default 30m)
#   AUTOBAHN_EXCLUDE   JSON list body of case patterns to skip while iterating, e.g.
#                      '"12.*", "13.*"' (default: none; the full suite is 517 cases)
#   AUTOBAHN_PORT      port for the server under test (default 9001); the client mode's
#                      fuzzingserver listens on the next port, the owned server on the one after
#
# The runs go at once (`server`: both servers; `all`: both and the client): each wstest is one
# single-threaded Python process that mostly waits on the cases' timers.
#
# Fails (non-zero) if any case is not OK (FAILED, UNIMPLEMENTED, NON-STRICT, INFORMATIONAL) or
# has a close behaviour other than OK, or if a run was cut short.
set -euo pipefail

MODE=${1:-all}
case "$MODE" in server|client|all) ;; *) echo "usage: $0 [server|client|all]" >&2; exit 2 ;; esac

SCRIPT_DIR=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
TOOLS=$(cd "$SCRIPT_DIR/../../shared/tools/autobahn" && pwd)
CACHE=${CACHE:-$HOME/.cache/autobahn}
TIMEOUT=${AUTOBAHN_TIMEOUT:-30m}
EXCLUDE=${AUTOBAHN_EXCLUDE:-}
SERVER_PORT=${AUTOBAHN_PORT:-9001}
CLIENT_PORT=$((SERVER_PORT + 1))
OWNED_PORT=$((SERVER_PORT + 2))
if [ -n "$EXCLUDE" ]; then MIN_CASES=${AUTOBAHN_MIN_CASES:-1}; else MIN_CASES=517; fi

cd "$REPO"
OUT_ROOT=${AUTOBAHN_OUT:-$REPO/target/autobahn}
mkdir -p "$OUT_ROOT"
RUN_DIR=$(mktemp -d "$OUT_ROOT/run-$(date +%Y%m%d-%H%M%S)-XXXX")
echo "== reports under $RUN_DIR"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() { # port
  for _ in $(seq 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

port_free() { # port
  if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
    echo "127.0.0.1:$1 is already in use; set AUTOBAHN_PORT" >&2
    return 1
  fi
}

echo "== installing wstest into $CACHE"
bash "$TOOLS/install.sh" "$CACHE"
WSTEST=$CACHE/bin/wstest

echo "== building examples (release)"
cargo build --release --example echo_server --example autobahn_client
BIN=$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/examples


check_report() { # label dir
  local label=$1 dir=$2 rc=0
  python3 "$TOOLS/summarize.py" "$dir" --strict --min-cases "$MIN_CASES" --slowest 5 || rc=1
  python3 "$SCRIPT_DIR/autobahn_check.py" "$dir" --min-cases "$MIN_CASES" --label "$label" || rc=1
  return $rc
}

# Each mode prints its lines and exits non-zero when a case is not OK; `all` runs both at once.
run_server() { # socket|owned
  local dir=$RUN_DIR/server start end rc=0 status=0 PORT=$SERVER_PORT flag=""
  if [ "$1" = owned ]; then dir=$RUN_DIR/server-owned PORT=$OWNED_PORT flag=--owned; fi
  mkdir -p "$dir"
  port_free "$PORT"
  "$BIN/echo_server" $flag "127.0.0.1:$PORT" >"$dir/echo_server.log" 2>&1 &
  local server_pid=$!
  trap "kill $server_pid 2>/dev/null || true" EXIT
  trap 'exit 143' INT TERM
  wait_port "$PORT"
  cat >"$dir/fuzzingclient.json" <<JSON
{
  "outdir": "$dir/reports",
  "servers": [{"agent": "wsx", "url": "ws://127.0.0.1:$PORT"}],
  "cases": ["*"],
  "exclude-cases": [$EXCLUDE],
  "exclude-agent-cases": {}
}
JSON
  echo "== server ($1): wstest fuzzingclient -> echo_server $flag (timeout $TIMEOUT)"
  start=$(date +%s)
  (cd "$dir" && timeout "$TIMEOUT" "$WSTEST" -m fuzzingclient -s fuzzingclient.json >wstest.log 2>&1) || rc=$?
  end=$(date +%s)
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  [ $rc -eq 0 ] || echo "wstest fuzzingclient exited with $rc (124: timeout)" >&2
  echo "== server ($1): wall time $((end - start)) s"
  check_report "server ($1)" "$dir/reports" || status=1
  [ $rc -eq 0 ] || status=1
  return $status
}

run_client() {
  local dir=$RUN_DIR/client start end rc=0 status=0 PORT=$CLIENT_PORT
  mkdir -p "$dir"
  port_free "$PORT"
  cat >"$dir/fuzzingserver.json" <<JSON
{
  "url": "ws://127.0.0.1:$PORT",
  "outdir": "$dir/reports",
  "cases": ["*"],
  "exclude-cases": [$EXCLUDE],
  "exclude-agent-cases": {}
}
JSON
  (cd "$dir" && exec timeout "$TIMEOUT" "$WSTEST" -m fuzzingserver -s fuzzingserver.json -u 0 >wstest.log 2>&1) &
  local ws_pid=$!
  trap "kill $ws_pid 2>/dev/null || true" EXIT
  trap 'exit 143' INT TERM
  wait_port "$PORT"
  echo "== client: autobahn_client -> wstest fuzzingserver (timeout $TIMEOUT)"
  start=$(date +%s)
  timeout "$TIMEOUT" "$BIN/autobahn_client" "ws://127.0.0.1:$PORT" wsx >"$dir/client.log" 2>&1 || rc=$?
  end=$(date +%s)
  kill "$ws_pid" 2>/dev/null || true
  wait "$ws_pid" 2>/dev/null || true
  [ $rc -eq 0 ] || { echo "autobahn_client exited with $rc (124: timeout)" >&2; tail -5 "$dir/client.log" >&2; }
  echo "== client: wall time $((end - start)) s"
  check_report client "$dir/reports" || status=1
  [ $rc -eq 0 ] || status=1
  return $status
}

STATUS=0
case "$MODE" in
  server) RUNS="server_socket server_owned" ;;
  client) RUNS="client" ;;
  all) RUNS="server_socket server_owned client" ;;
esac
# Each run in a subshell with its own log, printed when all are done.
JOBS=()
for run in $RUNS; do
  case "$run" in
    server_socket) (run_server socket) >"$RUN_DIR/$run.out" 2>&1 & ;;
    server_owned) (run_server owned) >"$RUN_DIR/$run.out" 2>&1 & ;;
    client) (run_client) >"$RUN_DIR/$run.out" 2>&1 & ;;
  esac
  JOBS+=($!)
  PIDS+=($!)
done
for job in "${JOBS[@]}"; do
  wait "$job" || STATUS=1
done
PIDS=()
for run in $RUNS; do
  cat "$RUN_DIR/$run.out"
done

if [ $STATUS -eq 0 ]; then echo "autobahn: every case OK"; else echo "autobahn: NOT all OK"; fi
exit $STATUS
