# Helpers for the benchmark scripts (sourced by scripts/bench.sh, scripts/idle_memory.sh and
# scripts/soak.sh): start a server, wait for its "listening on" line, read its memory, stop it.

# wait_for_line FILE REGEX TRIES: waits (TRIES x 0.05 s at most) until a line of FILE matches
# REGEX and prints the first such line; prints nothing if none came.
wait_for_line() {
  local line=""
  for _ in $(seq "$3"); do
    line=$(grep -m1 -E "$2" "$1" 2>/dev/null || true)
    [ -n "$line" ] && break
    sleep 0.05
  done
  printf '%s' "$line"
}

# start_server_cmd "CMD" LOG LIMIT [CPU]: runs CMD --listen 127.0.0.1:0 under `timeout LIMIT`
# (pinned to CPU when given), output in LOG; sets SERVER_PID to the server itself (the child of
# `timeout`) and URL to the address it printed. Exits the script if it does not start.
start_server_cmd() {
  local cmd=$1 log=$2 limit=$3 cpu=${4:-} pid
  if [ -n "$cpu" ]; then
    # shellcheck disable=SC2086
    timeout "$limit" taskset -c "$cpu" $cmd --listen 127.0.0.1:0 >"$log" 2>&1 &
  else
    # shellcheck disable=SC2086
    timeout "$limit" $cmd --listen 127.0.0.1:0 >"$log" 2>&1 &
  fi
  pid=$!
  URL=$(wait_for_line "$log" '^listening on ' 100 | awk '{print $3}')
  if [ -z "$URL" ]; then
    echo "server did not start: $cmd" >&2
    cat "$log" >&2
    exit 1
  fi
  SERVER_PID=$(pgrep -P "$pid" | head -1)
}

# stop_server: stops SERVER_PID (SIGTERM, then SIGKILL after 2.5 s) and clears it.
stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.05
  done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# rss_kib PID: the resident memory of PID in KiB.
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

# build_profile PACKAGE...: builds the packages in PROFILE (release (the default) or debug: a
# debug build is much quicker and shows the same memory trends) and sets BIN to their folder.
build_profile() {
  local args=()
  for p in "$@"; do args+=(-p "$p"); done
  if [ "${PROFILE:-release}" = release ]; then
    cargo build --release -q "${args[@]}" >&2
    BIN=target/release
  else
    cargo build -q "${args[@]}" >&2
    BIN=target/debug
  fi
}
