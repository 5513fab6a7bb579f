#!/usr/bin/env bash
# Idle memory per connection (issue 8): for each echo server, open CONNS (default 10 000)
# handshaken connections with `idle-clients`, hold them, and read the server's RSS
# (/proc/PID/status VmRSS) before and after. Done without and with a permessage-deflate offer
# (wsx and Node ws are started with deflate enabled for the offer; the other peers ignore it),
# and in three passes: right after the handshake ("0"), after one 16-byte TEXT echo per
# connection ("1": buffers allocated on first use show up) and after one 1 KiB compressible TEXT
# echo ("1k": a server with permessage-deflate compresses it, so its compressor state shows up;
# CONNS_1K connections, default 2 000, as that state is large).
#
#   scripts/idle_memory.sh [--quick]     (--quick: 2 000 connections, pass "0" only)
#
# Environment: CONNS, CONNS_1K, PASSES ("0 1 1k"), HOLD (seconds the clients hold, default 4),
# SETTLE (seconds between "ready" and the RSS reading, default 2: longer than wsx's default
# 1 s `DeflateConfig::idle_release`, so idle compression state has been given back),
# SERVERS, NODE=0,
# WSX_BENCH_CACHE (see scripts/bench.sh). Output: markdown on stdout and in
# target/bench/idle_memory.md. Only 127.0.0.1; every process is bounded by `timeout`.
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
  CONNS=${CONNS:-2000}
  PASSES=${PASSES:-"0"}
else
  CONNS=${CONNS:-10000}
  PASSES=${PASSES:-"0 1 1k"}
fi
CONNS_1K=${CONNS_1K:-2000}
HOLD=${HOLD:-4}
SETTLE=${SETTLE:-2}
SERVERS=${SERVERS:-"wsx serve tungstenite fastws fastws-raw node ceiling"}
NODE=${NODE:-1}
OUT=target/bench
mkdir -p "$OUT"
BIN=target/release
CACHE=${WSX_BENCH_CACHE:-$OUT/node}

# Both ends hold CONNS sockets.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" -lt $((CONNS + 100)) ]; then
  echo "ulimit -n is $(ulimit -n): too low for $CONNS connections" >&2
  exit 1
fi

echo "building (release, fat LTO)..." >&2
cargo build --release -q -p wsx-bench -p wsx-cli >&2

# shellcheck source=scripts/node_ws.sh
source "$(dirname "$0")/node_ws.sh"
# shellcheck source=scripts/bench_server.sh
source "$(dirname "$0")/bench_server.sh"

SERVER_PID=""
CLIENT_PID=""
cleanup() {
  if [ -n "$CLIENT_PID" ]; then kill "$CLIENT_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

server_cmd() {
  local deflate=$2
  case "$1" in
    wsx) if [ "$deflate" = 1 ]; then echo "$BIN/echo-wsx --deflate"; else echo "$BIN/echo-wsx"; fi ;;
    # An older build's echo-wsx or `wsx serve`, for before/after (WSX_BASE_BIN: its
    # target/release folder).
    wsx-base) [ -n "${WSX_BASE_BIN:-}" ] && if [ "$deflate" = 1 ]; then echo "$WSX_BASE_BIN/echo-wsx --deflate"; else echo "$WSX_BASE_BIN/echo-wsx"; fi ;;
    # What users run: `wsx serve` (its echo on every path but /chat and /room/NAME).
    serve) if [ "$deflate" = 1 ]; then echo "$BIN/wsx serve"; else echo "$BIN/wsx serve --no-deflate"; fi ;;
    serve-base) [ -n "${WSX_BASE_BIN:-}" ] && if [ "$deflate" = 1 ]; then echo "$WSX_BASE_BIN/wsx serve"; else echo "$WSX_BASE_BIN/wsx serve --no-deflate"; fi ;;
    tungstenite) echo "$BIN/echo-tungstenite" ;;
    fastws) echo "$BIN/echo-fastws" ;;
    fastws-raw) echo "$BIN/echo-fastws-raw" ;;
    ceiling) echo "$BIN/echo-ceiling" ;;
    node)
      if [ -z "$NODE_JS" ]; then
        echo ""
      elif [ "$deflate" = 1 ]; then
        echo "node $NODE_JS --deflate"
      else
        echo "node $NODE_JS"
      fi
      ;;
  esac
}

ROWS=$OUT/idle_memory.tsv
printf 'server\toffer\tpass\topened\tnegotiated\tcompressed\trss_before_kib\trss_after_kib\tkib_per_conn\n' >"$ROWS"

for server in $SERVERS; do
  for offer in 0 1; do
    for pass in $PASSES; do
      case "$pass" in
        1k) messages=1 size=1024 conns=$CONNS_1K ;;
        *) messages=$pass size=16 conns=$CONNS ;;
      esac
      cmd=$(server_cmd "$server" "$offer")
      [ -z "$cmd" ] && continue
      log=$(mktemp)
      start_server_cmd "$cmd" "$log" 300 0
      sleep 0.5
      before=$(rss_kib "$SERVER_PID")
      flags=(--url "$URL/" --conns "$conns" --messages "$messages" --size "$size" --hold "$HOLD")
      [ "$offer" = 1 ] && flags+=(--deflate)
      out=$(mktemp)
      timeout 120 taskset -c 1 "$BIN/idle-clients" "${flags[@]}" >"$out" 2>>"$log" &
      CLIENT_PID=$!
      ready=$(wait_for_line "$out" '^ready' 1200)
      # Let the server settle (tasks park, buffers of the handshake go) before reading.
      sleep "$SETTLE"
      after=$(rss_kib "$SERVER_PID")
      wait "$CLIENT_PID" || true
      CLIENT_PID=""
      stop_server
      if [ -z "$ready" ]; then
        echo "  $server offer=$offer pass=$pass: clients never got ready" >&2
        tail -3 "$log" >&2
        rm -f "$log" "$out"
        continue
      fi
      opened=$(sed -E 's/.*opened=([0-9]+).*/\1/' <<<"$ready")
      negotiated=$(sed -E 's/.* deflate=([0-9]+).*/\1/' <<<"$ready")
      compressed=$(sed -E 's/.*compressed_echoes=([0-9]+).*/\1/' <<<"$ready")
      per=$(python3 -c "print(round(($after - $before) / max(1, $opened), 2))")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$offer" "$pass" "$opened" \
        "$negotiated" "$compressed" "$before" "$after" "$per" >>"$ROWS"
      printf '  %-12s offer=%s pass=%-2s opened=%s negotiated=%s compressed=%s  RSS %s -> %s KiB  %s KiB/conn\n' \
        "$server" "$offer" "$pass" "$opened" "$negotiated" "$compressed" "$before" "$after" "$per" >&2
      rm -f "$log" "$out"
      sleep 0.5
    done
  done
done

python3 - "$ROWS" >"$OUT/idle_memory.md" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("# Idle memory per connection\n")
print("Server RSS (VmRSS) growth divided by the connections opened and held idle. Pass: '0' = "
      "right after the handshake; '1' = after one 16-byte TEXT echo per connection; '1k' = after "
      "one 1 KiB compressible TEXT echo (which a server with permessage-deflate compresses).\n")
print("| server | deflate offered | negotiated | compressed echoes | pass | conns | "
      "RSS before MiB | RSS after MiB | KiB / conn |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['server']} | {'yes' if r['offer'] == '1' else 'no'} | {r['negotiated']} | {r['compressed']} | "
          f"{r['pass']} | {r['opened']} | {int(r['rss_before_kib']) / 1024:.1f} | "
          f"{int(r['rss_after_kib']) / 1024:.1f} | {float(r['kib_per_conn']):.2f} |")
print("\n## wsx / leanest peer\n")
print("With deflate offered, the second comparison is against the peers that negotiated it too "
      "(only Node ws does): the others hold no compression state at all.\n")
print("| deflate offered | pass | wsx KiB/conn | leanest peer | peer KiB/conn | ratio | "
      "leanest peer with deflate | ratio | `wsx serve` KiB/conn | its ratio | ceiling KiB/conn |")
print("|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|")
keys = sorted({(r["offer"], r["pass"]) for r in rows})
for offer, msgs in keys:
    sel = {r["server"]: r for r in rows if r["offer"] == offer and r["pass"] == msgs}
    kib = {s: float(r["kib_per_conn"]) for s, r in sel.items()}
    peers = [s for s in kib if s in ("tungstenite", "fastws", "fastws-raw", "node")]
    if "wsx" not in kib or not peers:
        continue
    best = min(peers, key=kib.get)
    ratio = kib["wsx"] / kib[best] if kib[best] > 0 else float("nan")
    with_deflate = [s for s in peers if int(sel[s]["negotiated"]) > 0]
    if offer == "1" and with_deflate:
        d = min(with_deflate, key=kib.get)
        dcols = f"{d} ({kib[d]:.2f}) | {kib['wsx'] / kib[d]:.2f}x"
    else:
        dcols = "- | -"
    ceil = f"{kib['ceiling']:.2f}" if "ceiling" in kib else "-"
    if "serve" in kib and kib[best] > 0:
        serve = f"{kib['serve']:.2f} | {kib['serve'] / kib[best]:.2f}x"
    else:
        serve = "- | -"
    print(f"| {'yes' if offer == '1' else 'no'} | {msgs} | {kib['wsx']:.2f} | {best} | "
          f"{kib[best]:.2f} | {ratio:.2f}x | {dcols} | {serve} | {ceil} |")
EOF
cat "$OUT/idle_memory.md"
