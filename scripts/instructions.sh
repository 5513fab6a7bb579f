#!/usr/bin/env bash
# User-space instructions per echoed message, counted by valgrind (callgrind) rather than timed:
# the count does not depend on how busy this shared machine is, so two servers (or two builds)
# can be compared on a loaded machine, and small changes to the hot path show up.
#
#   scripts/instructions.sh [SERVER...]      (default: wsx serve fastws)
#
# Servers as in scripts/bench.sh: wsx (the library's minimal echo), serve (`wsx serve
# --no-deflate`), serve-threads (with `--threads $SERVE_THREADS`, default 1), wsx-base /
# serve-base (binaries of WSX_BASE_BIN), tungstenite, fastws, fastws-raw; or the
# absolute path of an echo server binary that takes `--listen ADDR`.
# Each server runs under callgrind twice, with `wsx bench` (not under valgrind) sending for
# SHORT and LONG seconds; instructions per message are the difference of the two totals over
# the difference of the message counts, so start-up and handshakes cancel out.
#
# Environment: SHORT (default 2), LONG (default 6),
# CELLS ("CONNSxSIZE ...", default "100x16 100x1024"), SKIP_BUILD=1 (use target/release as it is),
# CACHE_SIM=1 (also count first-level data cache misses per message in valgrind's simulated
# cache: with many connections served in turn, about the number of cache lines of connection
# state one message touches; slower).
# Output: one line per cell and server, plus target/bench/instructions.tsv; with
# CALLGRIND_KEEP=1 the callgrind files of the long runs stay in target/bench/ for
# callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVERS=${*:-"wsx serve fastws"}
SHORT=${SHORT:-2}
LONG=${LONG:-6}
CELLS=${CELLS:-"100x16 100x1024"}
BIN=target/release
OUT=target/bench
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  echo "building (release, fat LTO)..." >&2
  cargo build --release -q -p wsx-bench -p wsx-cli >&2
fi

# shellcheck source=scripts/bench_server.sh
source "$(dirname "$0")/bench_server.sh"

server_cmd() {
  case "$1" in
    wsx) echo "$BIN/echo-wsx" ;;
    serve) echo "$BIN/wsx serve --no-deflate" ;;
    serve-threads) echo "$BIN/wsx serve --no-deflate --threads ${SERVE_THREADS:-1}" ;;
    wsx-base) echo "${WSX_BASE_BIN:?set WSX_BASE_BIN}/echo-wsx" ;;
    serve-base) echo "${WSX_BASE_BIN:?set WSX_BASE_BIN}/wsx serve --no-deflate" ;;
    tungstenite) echo "$BIN/echo-tungstenite" ;;
    fastws) echo "$BIN/echo-fastws" ;;
    fastws-raw) echo "$BIN/echo-fastws-raw" ;;
    /*) echo "$1" ;;
    *) echo "unknown server $1" >&2; exit 2 ;;
  esac
}

SERVER_PID=""
trap 'if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi' EXIT

# measure SERVER CONNS SIZE SECS: prints "instructions messages".
measure() {
  local server=$1 conns=$2 size=$3 secs=$4 log json cg
  log=$(mktemp)
  json=$(mktemp)
  cg=$OUT/callgrind.$(basename "$server").${conns}x$size.${secs}s.out
  rm -f "$cg"
  local sim=""
  [ "${CACHE_SIM:-0}" = 1 ] && sim="--cache-sim=yes"
  start_server_cmd "valgrind --tool=callgrind $sim --callgrind-out-file=$cg $(server_cmd "$server")" \
    "$log" 600
  timeout $((secs + 60)) "$BIN/wsx" bench "$URL" --conns "$conns" --size "$size" \
    --duration "$secs" --warmup 0 --json >"$json"
  # SIGTERM: valgrind writes the profile as the server ends.
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 200); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  SERVER_PID=""
  local ir d1 msgs
  # Events: Ir, or with the cache simulation Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw.
  ir=$(grep -m1 '^summary:' "$cg" | awk '{print $2}')
  d1=$(grep -m1 '^summary:' "$cg" | awk '{print (NF >= 10) ? $6 + $7 : 0}')
  msgs=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(int(r["messages"]))' "$json")
  rm -f "$log" "$json"
  echo "$ir $msgs $d1"
}

TSV=$OUT/instructions.tsv
printf 'cell\tserver\tinstructions_per_msg\n' >"$TSV"
for cell in $CELLS; do
  conns=${cell%x*}
  size=${cell#*x}
  for server in $SERVERS; do
    read -r ir1 m1 d1a <<<"$(measure "$server" "$conns" "$size" "$SHORT")"
    read -r ir2 m2 d1b <<<"$(measure "$server" "$conns" "$size" "$LONG")"
    per=$(python3 -c "import sys; a,b,c,d=map(int,sys.argv[1:]); print(round((b-a)/(d-c)) if d>c else 'NaN')" \
      "$ir1" "$ir2" "$m1" "$m2")
    printf '%s\t%s\t%s\n' "$cell" "$server" "$per" >>"$TSV"
    misses=""
    if [ "${CACHE_SIM:-0}" = 1 ]; then
      misses=$(python3 -c "import sys; a,b,c,d=map(int,sys.argv[1:]); print(round((b-a)/(d-c), 1) if d>c else 'NaN')" \
        "$d1a" "$d1b" "$m1" "$m2")
      misses="  $misses D1 misses/msg"
    fi
    printf '%-9s %-12s %8s instructions/msg%s  (%s msgs in the long run)\n' "$cell" "$server" "$per" "$misses" "$m2"
    [ "${CALLGRIND_KEEP:-0}" = 1 ] || rm -f "$OUT"/callgrind."$(basename "$server")".*
  done
done
