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
for mode in http1 http2; do
  out=$(mktemp); target/release/wsx serve --listen 127.0.0.1:0 --no-deflate >"$out" 2>/dev/null &
  pid=$!
  sleep 0.5
  url=$(sed -n 's/^listening on //p' "$out")
  base=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  flag=""; [ "$mode" = http2 ] && flag="--http2"
  timeout 60 target/release/wsx bench "$url/echo" --conns "$N" --size 16 --warmup 1 --duration 4 $flag --json >/dev/null &
  bpid=$!
  sleep 4
  rss=$(awk '/VmRSS/{print $2}' /proc/$pid/status)
  wait $bpid || true
  kill $pid; wait $pid 2>/dev/null || true
  rm -f "$out"
  echo "$mode: base ${base} KiB, with $N sockets ${rss} KiB, per socket $(( (rss - base) * 1024 / N )) B"
done
