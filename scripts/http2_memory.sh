#!/usr/bin/env bash
# Memory per socket of `wsx serve` (release build) holding N WebSockets, each echoing 16 B with one
# message in flight (`wsx bench`), over N HTTP/1.1 connections vs as N streams of one HTTP/2
# connection: server VmRSS 4 s in, minus its RSS before. Used by docs/http2.md.
#
#   scripts/http2_memory.sh            (N=1000; needs target/release/wsx: cargo build --release -p wsx-cli)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# shellcheck source=scripts/bench_server.sh
source scripts/bench_server.sh
SERVER_PID=""
trap 'if [ -n "$SERVER_PID" ]; then stop_server; fi' EXIT
for mode in http1 http2; do
  out=$(mktemp)
  start_server_cmd "target/release/wsx serve --no-deflate" "$out" 120
  base=$(rss_kib "$SERVER_PID")
  flag=""; [ "$mode" = http2 ] && flag="--http2"
  timeout 60 target/release/wsx bench "$URL/echo" --conns "$N" --size 16 --warmup 1 --duration 4 $flag --json >/dev/null &
  bpid=$!
  sleep 4
  rss=$(rss_kib "$SERVER_PID")
  wait $bpid || true
  stop_server
  rm -f "$out"
  echo "$mode: base ${base} KiB, with $N sockets ${rss} KiB, per socket $(( (rss - base) * 1024 / N )) B"
done
