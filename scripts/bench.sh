#!/usr/bin/env bash
# Issue 8's comparison harness: wsx against tokio-tungstenite, fastwebsockets, Node `ws` and a
# no-library "ceiling", all as echo servers under `wsx bench` (or, with LOADGEN, an independent
# load generator as well).
#
#   scripts/bench.sh            full run: 10 cells, 1 s warm-up + 5 s measured, 3 repeats (median)
#                               (h1x1k / h2x1k: `wsx serve` with 100 x 1 KiB over 100 HTTP/1.1
#                               connections / as 100 streams of one HTTP/2 connection)
#   scripts/bench.sh --quick    smoke test: 5 cells, 0.5 s + 2 s, 1 repeat
#
# Environment overrides: CELLS="c1x16 c1x1m ..." (see the cell list below), SERVERS="wsx fastws
# ...", REPEATS, DURATION, WARMUP, WSX_BENCH_CACHE (where `ws` is installed from npm; default
# target/bench/node). NODE=0 skips the Node servers. BUILD=0 skips the release build and runs the
# binaries already in target/release.
#
# LOADGEN: the load generator. `wsx` (default): `wsx bench`, which writes pre-masked frames, a
# batch of echoes answered in one write. `tungstenite`: `load-tungstenite` (bench/), written as a
# typical client on tokio-tungstenite: its own handshake, one frame per write, nothing batched
# across messages or connections (no deflate / HTTP/2: the deflate and h2x1k cells are skipped).
# `both`: every cell with each, one report section per load generator.
#
# Servers: wsx (the library's minimal echo), serve (`wsx serve --no-deflate`, what users run),
# serve-threads (the same with `--threads $SERVE_THREADS`, default 1: single-threaded runtimes),
# tungstenite, fastws (fastwebsockets behind hyper's upgrade), fastws-raw (fastwebsockets on the
# raw TcpStream after a minimal handshake by hand), node, ceiling. For a before/after comparison in the same run, set
# WSX_BASE_BIN to the target/release folder of an older build: servers wsx-base and serve-base
# run its binaries (and wsx-base-deflate, in the deflate cell).
#
# Each run: a fresh server pinned to CPU 0, the load generator (`... --json`) pinned to CPU 1. Over the
# measured window the script samples utime+stime of both from /proc/PID/stat: the server's CPU
# time per echoed message, and whether the load generator's core was saturated (busy >= 95%:
# the cell is "harness-bound" and its ratios understate the faster server). Everything talks to
# 127.0.0.1 only, and every process is bounded by `timeout`.
#
# Output: a markdown report on stdout and in target/bench/results.md; raw rows in
# target/bench/runs.tsv (its last column names the load generator).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=0
if [ "${1:-}" = "--quick" ]; then
  QUICK=1
elif [ -n "${1:-}" ]; then
  echo "usage: $0 [--quick]" >&2
  exit 2
fi

if [ "$QUICK" = 1 ]; then
  REPEATS=${REPEATS:-1}
  DURATION=${DURATION:-2}
  WARMUP=${WARMUP:-0.5}
  CELLS=${CELLS:-"c1x16 c100x16p16 c10x64k c1x1m deflate"}
else
  REPEATS=${REPEATS:-3}
  DURATION=${DURATION:-5}
  WARMUP=${WARMUP:-1}
  CELLS=${CELLS:-"c1x16 c100x16 c100x1k c10x64k c1x1m c100x16p16 c500x16k deflate h1x1k h2x1k"}
fi
SERVERS=${SERVERS:-"wsx tungstenite fastws fastws-raw node ceiling"}
NODE=${NODE:-1}
LOADGEN=${LOADGEN:-wsx}
case "$LOADGEN" in
  wsx | tungstenite) LOADGENS=$LOADGEN ;;
  both) LOADGENS="wsx tungstenite" ;;
  *) echo "LOADGEN must be wsx, tungstenite or both" >&2; exit 2 ;;
esac

OUT=target/bench
mkdir -p "$OUT"
BIN=target/release
CACHE=${WSX_BENCH_CACHE:-$OUT/node}
TICK=$(getconf CLK_TCK)
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "${BUILD:-1}" != 0 ]; then
  echo "building (release, fat LTO)..." >&2
  cargo build --release -q -p wsx-bench -p wsx-cli >&2
fi

# shellcheck source=scripts/node_ws.sh
source "$(dirname "$0")/node_ws.sh"
# shellcheck source=scripts/bench_server.sh
source "$(dirname "$0")/bench_server.sh"

SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

# server_cmd NAME: the command line of server NAME ("wsx-deflate", "node-deflate" included).
server_cmd() {
  case "$1" in
    wsx) echo "$BIN/echo-wsx" ;;
    serve) echo "$BIN/wsx serve --no-deflate" ;;
    serve-threads) echo "$BIN/wsx serve --no-deflate --threads ${SERVE_THREADS:-1}" ;;
    wsx-base) [ -n "${WSX_BASE_BIN:-}" ] && echo "$WSX_BASE_BIN/echo-wsx" ;;
    serve-base) [ -n "${WSX_BASE_BIN:-}" ] && echo "$WSX_BASE_BIN/wsx serve --no-deflate" ;;
    wsx-deflate) echo "$BIN/echo-wsx --deflate" ;;
    wsx-base-deflate) [ -n "${WSX_BASE_BIN:-}" ] && echo "$WSX_BASE_BIN/echo-wsx --deflate" ;;
    tungstenite) echo "$BIN/echo-tungstenite" ;;
    tungstenite-batch) echo "$BIN/echo-tungstenite --batch" ;;
    fastws) echo "$BIN/echo-fastws" ;;
    fastws-raw) echo "$BIN/echo-fastws-raw" ;;
    ceiling) echo "$BIN/echo-ceiling" ;;
    node) [ -n "$NODE_JS" ] && echo "node $NODE_JS" ;;
    node-deflate) [ -n "$NODE_JS" ] && echo "node $NODE_JS --deflate" ;;
  esac
}

# Cell: conns size pipeline "extra bench flags" servers
cell_spec() {
  case "$1" in
    c1x16) echo "1 16 1 -" ;;
    c100x16) echo "100 16 1 -" ;;
    c100x1k) echo "100 1024 1 -" ;;
    c10x64k) echo "10 65536 1 -" ;;
    c1x1m) echo "1 1048576 1 -" ;;
    c100x16p16) echo "100 16 16 -" ;;
    c500x16k) echo "500 16384 1 -" ;;
    deflate) echo "100 1024 1 --deflate,--text" ;;
    # `wsx serve` only: 100 sockets over 100 HTTP/1.1 connections, or as 100 streams of one
    # HTTP/2 connection (RFC 8441).
    h1x1k) echo "100 1024 1 -" ;;
    h2x1k) echo "100 1024 1 --http2" ;;
    *) echo "unknown cell $1" >&2; exit 2 ;;
  esac
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo NaN; }
uticks() { awk '{print $14}' "/proc/$1/stat" 2>/dev/null || echo NaN; }
sleep_until() { python3 -c "import sys, time; time.sleep(max(0.0, float(sys.argv[1]) - time.time()))" "$1"; }

# start_server NAME LOG: starts it on CPU 0, sets SERVER_PID and URL.
start_server() { start_server_cmd "$(server_cmd "$1")" "$2" 600 0; }

RUNS=$OUT/runs.tsv
printf 'cell\tserver\trep\tmsgs_per_sec\tmib_per_sec\tp50\tp99\tp999\terrors\tsrv_cpu_us_per_msg\tsrv_busy\tcli_busy\tsrv_user_us_per_msg\tloadgen\n' >"$RUNS"

# loadgen_cmd NAME: the command line of load generator NAME (the URL and flags follow).
loadgen_cmd() {
  case "$1" in
    wsx) echo "$BIN/wsx bench" ;;
    tungstenite) echo "$BIN/load-tungstenite" ;;
  esac
}

# run_one CELL SERVER REP LOADGEN
run_one() {
  local cell=$1 server=$2 rep=$3 loadgen=$4 conns size pipeline extra log json
  read -r conns size pipeline extra <<<"$(cell_spec "$cell")"
  log=$(mktemp)
  json=$(mktemp)
  start_server "$server" "$log"
  local flags=(--conns "$conns" --size "$size" --pipeline "$pipeline" --duration "$DURATION"
    --warmup "$WARMUP" --json)
  if [ "$extra" != "-" ]; then
    IFS=, read -r -a more <<<"$extra"
    flags+=("${more[@]}")
  fi
  local limit
  limit=$(python3 -c "print(int($WARMUP + $DURATION + 30))")
  local launched
  launched=$(date +%s.%N)
  # shellcheck disable=SC2046
  timeout "$limit" taskset -c 1 $(loadgen_cmd "$loadgen") "$URL" "${flags[@]}" >"$json" 2>>"$log" &
  local tpid=$! bpid=""
  for _ in $(seq 100); do
    bpid=$(pgrep -P "$tpid" | head -1 || true)
    [ -n "$bpid" ] && break
    sleep 0.01
  done
  # Sample inside the measured window: from 0.3 s after the warm-up (connection setup comes
  # first) to 0.2 s before its end.
  sleep_until "$(python3 -c "print($launched + $WARMUP + 0.3)")"
  local s0 c0 t0 s1 c1 t1 u0 u1
  s0=$(ticks "$SERVER_PID"); u0=$(uticks "$SERVER_PID"); c0=$(ticks "$bpid"); t0=$(date +%s.%N)
  sleep_until "$(python3 -c "print($launched + $WARMUP + max(0.8, $DURATION - 0.2))")"
  s1=$(ticks "$SERVER_PID"); u1=$(uticks "$SERVER_PID"); c1=$(ticks "$bpid"); t1=$(date +%s.%N)
  local rc=0
  wait "$tpid" || rc=$?
  stop_server
  if [ "$rc" != 0 ] || [ ! -s "$json" ]; then
    echo "  $cell $server #$rep: $(loadgen_cmd "$loadgen") failed (exit $rc)" >&2
    tail -5 "$log" >&2
    printf '%s\t%s\t%s\tNaN\tNaN\tNaN\tNaN\tNaN\tNaN\tNaN\tNaN\tNaN\tNaN\t%s\n' "$cell" "$server" "$rep" "$loadgen" >>"$RUNS"
    rm -f "$log" "$json"
    return
  fi
  python3 - "$json" "$cell" "$server" "$rep" "$s0" "$s1" "$c0" "$c1" "$t0" "$t1" "$TICK" "$u0" "$u1" "$loadgen" >>"$RUNS" <<'EOF'
import json, sys
path, cell, server, rep, s0, s1, c0, c1, t0, t1, tick, u0, u1, loadgen = sys.argv[1:]
r = json.load(open(path))
wall = float(t1) - float(t0)
srv = (float(s1) - float(s0)) / float(tick)
cli = (float(c1) - float(c0)) / float(tick)
rate = r["messages_per_sec"]
cpu_per_msg = srv / (rate * wall) * 1e6 if rate > 0 else float("nan")
user = (float(u1) - float(u0)) / float(tick)
user_per_msg = user / (rate * wall) * 1e6 if rate > 0 else float("nan")
lat = r["latency_us"]
print("\t".join(str(x) for x in [cell, server, rep, round(rate, 1), round(r["mib_per_sec"], 2),
      lat["p50"], lat["p99"], lat["p999"], r["errors"], round(cpu_per_msg, 3),
      round(srv / wall, 3), round(cli / wall, 3), round(user_per_msg, 3), loadgen]))
EOF
  tail -1 "$RUNS" | awk -F'\t' -v lg="$([ "$LOADGEN" = wsx ] || echo " [$loadgen]")" '{printf "  %-11s %-13s #%s %12.0f msg/s %9.1f MiB/s  p99 %6s us  srv %6.2f us/msg  busy srv %.2f cli %.2f%s\n", $1, $2, $3, $4, $5, $7, $10, $11, $12, lg}' >&2
  rm -f "$log" "$json"
}

for cell in $CELLS; do
  if [ "$cell" = deflate ]; then
    servers="wsx-deflate"
    [ -n "${WSX_BASE_BIN:-}" ] && servers="$servers wsx-base-deflate"
    [ -n "$NODE_JS" ] && servers="$servers node-deflate"
  elif [ "$cell" = h1x1k ] || [ "$cell" = h2x1k ]; then
    servers="serve"
  else
    servers=""
    for s in $SERVERS; do
      [ -n "$(server_cmd "$s")" ] && servers="$servers $s"
      # With messages in flight, tungstenite can batch its writes (feed + one flush): run that
      # variant too, as a peer of its own.
      if [ "$s" = tungstenite ] && [ "$cell" = c100x16p16 ]; then
        servers="$servers tungstenite-batch"
      fi
    done
  fi
  # Repeats go round the servers (not one server three times in a row), so that a slow spell
  # of this shared machine falls on every server alike rather than on one.
  for rep in $(seq "$REPEATS"); do
    for loadgen in $LOADGENS; do
      if [ "$loadgen" = tungstenite ] && { [ "$cell" = deflate ] || [ "$cell" = h2x1k ]; }; then
        [ "$rep" = 1 ] && echo "  $cell: skipped with load-tungstenite (no deflate / HTTP/2)" >&2
        continue
      fi
      for server in $servers; do
        run_one "$cell" "$server" "$rep" "$loadgen"
      done
    done
  done
done

# The report: medians over the repeats, ratios of wsx to the best peer (one section per load
# generator when LOADGEN is not the default).
python3 - "$RUNS" "$QUICK" "$REPEATS" "$WARMUP" "$DURATION" "${NODE_VERSION:-}" "${WS_VERSION:-}" \
  "$LOADGENS" >"$OUT/results.md" <<'EOF'
import csv, math, statistics, sys
runs, quick, repeats, warmup, duration, node_v, ws_v, loadgens = sys.argv[1:]
loadgens = loadgens.split()
# With the default load generator alone, the report is as it always was.
named = loadgens != ["wsx"]
LOADGEN_NAMES = {
    "wsx": "`wsx bench`",
    "tungstenite": "`load-tungstenite` (tokio-tungstenite client, one frame per write)",
}
rows = list(csv.DictReader(open(runs), delimiter="\t"))
CELLS = {
    "c1x16": "1 x 16 B", "c100x16": "100 x 16 B", "c100x1k": "100 x 1 KiB",
    "c10x64k": "10 x 64 KiB", "c1x1m": "1 x 1 MiB", "c100x16p16": "100 x 16 B, pipeline 16",
    "c500x16k": "500 x 16 KiB", "deflate": "100 x 1 KiB text, permessage-deflate",
    "h1x1k": "100 x 1 KiB, 100 HTTP/1.1 connections",
    "h2x1k": "100 x 1 KiB, 100 streams of 1 HTTP/2 connection",
}
PEERS = {"tungstenite", "tungstenite-batch", "fastws", "fastws-raw", "node", "node-deflate"}
NUM = ["msgs_per_sec", "mib_per_sec", "p50", "p99", "p999", "errors", "srv_cpu_us_per_msg",
       "srv_busy", "cli_busy", "srv_user_us_per_msg"]

def f(x):
    try:
        return float(x)
    except ValueError:
        return math.nan

groups = {}
for r in rows:
    key = (r["loadgen"], r["cell"], r["server"])
    groups.setdefault(key, []).append({k: f(r[k]) for k in NUM})

def median_run(runs):
    """The run with the median throughput (its latencies and CPU go with it)."""
    ok = [r for r in runs if not math.isnan(r["msgs_per_sec"])]
    if not ok:
        return None
    ok.sort(key=lambda r: r["msgs_per_sec"])
    m = dict(ok[(len(ok) - 1) // 2])
    m["msgs_per_sec"] = statistics.median(r["msgs_per_sec"] for r in ok)
    m["mib_per_sec"] = statistics.median(r["mib_per_sec"] for r in ok)
    m["srv_cpu_us_per_msg"] = statistics.median(r["srv_cpu_us_per_msg"] for r in ok)
    m["srv_user_us_per_msg"] = statistics.median(r["srv_user_us_per_msg"] for r in ok)
    m["cli_busy"] = max(r["cli_busy"] for r in ok)
    m["n"] = len(ok)
    return m

print("# wsx comparison benchmark\n")
mode = "quick" if quick == "1" else "full"
where = "the load generator" if named else "`wsx bench`"
print(f"Mode: {mode}; {repeats} repeat(s) of {warmup} s warm-up + {duration} s measured, median "
      f"run shown. Server on CPU 0, {where} on CPU 1.")
if node_v:
    print(f"Node {node_v}, ws {ws_v}.")

def report(lg):
    med = {(c, s): median_run(v) for (g, c, s), v in groups.items() if g == lg}
    order = [c for c in CELLS if any(k[0] == c for k in med)]
    h = "##" if named else "#"
    by = f", load generator {LOADGEN_NAMES[lg]}" if named else ""
    print()
    if named:
        print(f"## Load generator: {LOADGEN_NAMES[lg]}\n")
    print("| cell | server | msg/s | MiB/s | p50 us | p99 us | p99.9 us | server CPU us/msg | "
          "of it user space | server busy | load gen busy | note |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in order:
        for (cell, server), m in sorted(med.items(), key=lambda kv: kv[0][1]):
            if cell != c:
                continue
            if m is None:
                print(f"| {CELLS[c]} | {server} | failed | | | | | | | | | |")
                continue
            note = []
            if m["cli_busy"] >= 0.95:
                note.append("harness-bound")
            if m["errors"] > 0:
                note.append(f"{int(m['errors'])} errors")
            print(f"| {CELLS[c]} | {server} | {m['msgs_per_sec']:,.0f} | {m['mib_per_sec']:,.1f} | "
                  f"{m['p50']:.0f} | {m['p99']:.0f} | {m['p999']:.0f} | "
                  f"{m['srv_cpu_us_per_msg']:.2f} | {m['srv_user_us_per_msg']:.2f} | "
                  f"{m['srv_busy']:.0%} | {m['cli_busy']:.0%} | "
                  f"{', '.join(note)} |")
    print()
    print(f"{h}# Ratios: wsx / best peer (and / ceiling){by}\n")
    print("Throughput ratio > 1 and CPU ratio < 1 favour wsx. Best peer: the fastest (or, for CPU, "
          "the cheapest) of tungstenite (plain, or `--batch` where run), fastwebsockets and Node ws in "
          "the same cell. A harness-bound cell (load generator >= 95% busy) caps every server at the "
          "same rate: compare server CPU per message there.\n")
    print("| cell | wsx msg/s | best peer | peer msg/s | throughput ratio | CPU/msg ratio "
          "(vs cheapest peer) | wsx / ceiling | harness-bound |")
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for c in order:
        peers = [(s, m) for (cell, s), m in med.items() if cell == c and s in PEERS and m]
        ceil = med.get((c, "ceiling"))
        # `wsx serve`, when it ran, gets a row of its own under the library's echo.
        for ours, label in [("wsx-deflate" if c == "deflate" else "wsx", CELLS[c]),
                            ("serve", f"{CELLS[c]}, `wsx serve`")]:
            w = med.get((c, ours))
            if not w or not peers:
                continue
            best = max(peers, key=lambda p: p[1]["msgs_per_sec"])
            cheap = min(peers, key=lambda p: p[1]["srv_cpu_us_per_msg"])
            ratio = w["msgs_per_sec"] / best[1]["msgs_per_sec"]
            cpu = w["srv_cpu_us_per_msg"] / cheap[1]["srv_cpu_us_per_msg"]
            vs_ceil = f"{w['msgs_per_sec'] / ceil['msgs_per_sec']:.2f}" if ceil else "-"
            bound = [s for (cell, s), m in med.items() if cell == c and m and m["cli_busy"] >= 0.95]
            print(f"| {label} | {w['msgs_per_sec']:,.0f} | {best[0]} | "
                  f"{best[1]['msgs_per_sec']:,.0f} | {ratio:.2f}x | {cpu:.2f}x ({cheap[0]}) | "
                  f"{vs_ceil} | {', '.join(bound) or 'no'} |")
    pairs = [(new, old) for new, old in [("wsx", "wsx-base"), ("serve", "serve-base"),
                                         ("wsx-deflate", "wsx-base-deflate")]
             if any(k[1] == old for k in med)]
    if pairs:
        print(f"\n{h}# Before / after (WSX_BASE_BIN), same run{by}\n")
        print("| cell | server | msg/s now / before | CPU us/msg now / before | "
              "user us/msg now / before |")
        print("|---|---|---:|---:|---:|")
        for c in order:
            for new, old in pairs:
                a, b = med.get((c, new)), med.get((c, old))
                if not a or not b:
                    continue
                print(f"| {CELLS[c]} | {new} | {a['msgs_per_sec']:,.0f} / "
                      f"{b['msgs_per_sec']:,.0f} | "
                      f"{a['srv_cpu_us_per_msg']:.2f} / {b['srv_cpu_us_per_msg']:.2f} | "
                      f"{a['srv_user_us_per_msg']:.2f} / {b['srv_user_us_per_msg']:.2f} |")

for lg in loadgens:
    report(lg)
EOF
cat "$OUT/results.md"
