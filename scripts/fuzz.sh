#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SECONDS_PER_TARGET seconds (default 60).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Writes seed inputs (RFC 6455 §5.7 frames, RFC 7692 §7.2.3 compressed frames, the RFC 6455 §1.2
# upgrade request and response, extension offers) into fuzz/corpus/<target>/ first (the corpus
# directory is git-ignored and keeps what the fuzzer finds between runs). Prints one line per
# target with the executions done; exits 1 if any target found a crash (artifacts in
# fuzz/artifacts/<target>/).
#
# cargo-fuzz needs unstable rustc flags (-Zsanitizer): by default the stable toolchain is used with
# RUSTC_BOOTSTRAP=1; set FUZZ_TOOLCHAIN=nightly to use a nightly toolchain instead.
# FUZZ_SANITIZER (default: address; `none` is faster) and FUZZ_TARGETS (space-separated subset)
# can be set too.
set -euo pipefail

SECS="${1:-60}"
case "$SECS" in
  '' | *[!0-9]*)
    echo "usage: $0 [SECONDS_PER_TARGET]" >&2
    exit 2
    ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TARGETS="${FUZZ_TARGETS:-decoder protocol handshake_request handshake_response http_head pair deflate_params inflate utf8}"
SANITIZER="${FUZZ_SANITIZER:-address}"
TOOLCHAIN="${FUZZ_TOOLCHAIN:-stable}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz..." >&2
  cargo install cargo-fuzz --locked
fi

fuzz() {
  if [ "$TOOLCHAIN" = nightly ]; then
    cargo +nightly fuzz "$@"
  else
    RUSTC_BOOTSTRAP=1 cargo "+$TOOLCHAIN" fuzz "$@"
  fi
}

# ---------------------------------------------------------------------------------------------
# Seeds. Each target's input starts with its own configuration bytes (see its source).
# ---------------------------------------------------------------------------------------------
CORPUS="$ROOT/fuzz/corpus"

# seed TARGET NAME PRINTF-FORMAT...: writes the bytes of `printf FORMAT` to corpus/TARGET/NAME.
seed() {
  local target="$1" name="$2"
  shift 2
  mkdir -p "$CORPUS/$target"
  printf "$@" >"$CORPUS/$target/seed-$name"
}

# RFC 6455 §5.7 examples (and a few more frames), without configuration bytes.
HELLO='\x81\x05\x48\x65\x6c\x6c\x6f'
HELLO_MASKED='\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58'
HELLO_FRAGMENTED='\x01\x03\x48\x65\x6c\x80\x02\x6c\x6f'
PING='\x89\x05\x48\x65\x6c\x6c\x6f'
PONG_MASKED='\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58'
PING_MASKED='\x89\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58'
CLOSE_1000='\x88\x05\x03\xe8\x62\x79\x65'
CLOSE_MASKED='\x88\x82\x01\x02\x03\x04\x02\xea'
BIN_256_HEAD='\x82\x7e\x01\x00'
BIN_64K_HEAD='\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00'
# RFC 7692 §7.2.3: "Hello" compressed, in one frame and in two; two messages sharing context.
DEFLATE_HELLO='\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00'
DEFLATE_FRAGMENTED='\x41\x03\xf2\x48\xcd\x80\x04\xc9\xc9\x07\x00'
DEFLATE_TWICE='\xc1\x07\xf2\x48\xcd\xc9\xc9\x07\x00\xc1\x05\xf2\x00\x11\x00\x00'
DEFLATE_STORED='\xc1\x0b\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00'

# decoder: [policy/inflater, limits, inflater params, chunking] then frames.
#   \x00 = Any, \x01 = Require, \x02 = Forbid; +0x80 = with an inflater (\x80 = Forbid, \x81 = Any).
#   \xff = 1 MiB frames and messages, 64 fragments.
seed decoder hello '\x02\xff\x00\x07'"$HELLO"
seed decoder hello-masked '\x01\xff\x00\x03'"$HELLO_MASKED"
seed decoder fragmented '\x02\xff\x00\x01'"$HELLO_FRAGMENTED$PING$HELLO"
seed decoder control '\x00\xff\x00\x10'"$PING$PONG_MASKED$CLOSE_1000"
seed decoder bin256 '\x02\xff\x00\x3f'"$BIN_256_HEAD"'%0256d' 0
seed decoder bin64k-head '\x02\xff\x00\x3f'"$BIN_64K_HEAD"'%0100d' 0
seed decoder small-limits '\x02\x49\x00\x02'"$HELLO_FRAGMENTED$HELLO"
seed decoder deflate '\x80\xff\x0f\x05'"$DEFLATE_HELLO"
seed decoder deflate-fragmented '\x80\xff\x0f\x02'"$DEFLATE_FRAGMENTED"
seed decoder deflate-twice '\x80\xff\x0f\x09'"$DEFLATE_TWICE"
seed decoder deflate-stored '\x81\xff\x1f\x09'"$DEFLATE_STORED$HELLO"

# protocol: [limits/deflate, chunking] then client (masked) frames.
seed protocol hello '\xff\x05'"$HELLO_MASKED"
seed protocol ping-close '\x3f\x02'"$PING_MASKED$HELLO_MASKED$CLOSE_MASKED"
seed protocol deflate '\x7f\x03'"$HELLO_MASKED$PING_MASKED"
seed protocol unmasked '\x3f\x01'"$HELLO"

# Handshakes: [chunking/limits] then the head. RFC 6455 §1.2 (with §1.3's key and accept value).
REQUEST='GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n'
REQUEST_EXT='GET /ws?x=1 HTTP/1.1\r\nhost: localhost:8080\r\nconnection: keep-alive, Upgrade\r\nupgrade: WebSocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: AQIDBAUGBwgJCgsMDQ4PEA==\r\nsec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n\r\n'
RESPONSE='HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n'
RESPONSE_EXT='HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nsec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nsec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_max_window_bits=10\r\n\r\n\x81\x02hi'
RESPONSE_ERROR='HTTP/1.1 400 Bad Request\r\nContent-Length: 5\r\nConnection: close\r\n\r\nerror'
seed handshake_request rfc '\x40'"$REQUEST"
seed handshake_request extensions '\x07'"$REQUEST_EXT"
seed handshake_request post '\x03POST / HTTP/1.0\r\n\r\n'
seed handshake_response rfc '\x00'"$RESPONSE"
seed handshake_response extensions '\x09'"$RESPONSE_EXT"
seed handshake_response error '\x20'"$RESPONSE_ERROR"

# http_head: [selector: bit 0 response, bits 1-2 version/target, bit 7 raw line] then picks of
# header lines (indexes into the target's list) up to 0xff, then raw bytes.
seed http_head request '\x00'
seed http_head request-bodies '\x00\x01\x06\x00\x00'
seed http_head asterisk '\x02\x00'
seed http_head response '\x01'
seed http_head response-length '\x01\x00\xff\x81\x02hi'
seed http_head response-http10 '\x03'

# pair: [configuration] then one action per byte (bit 0: which side).
seed pair messages '\x00\x00\x02\x0c\x0d\x08\x09\x00\x0c\x0d\x08\x09'
seed pair deflate '\x40\x00\x02\x0c\x0d\x06\x07\x08\x09\x0c\x0d'
seed pair close '\x00\x00\x0c\x06\x0d\x0c\x08\x09'

# deflate_params: header values separated by \n.
seed deflate_params plain 'permessage-deflate'
seed deflate_params client-bits 'permessage-deflate; client_max_window_bits'
seed deflate_params all 'permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=12'
seed deflate_params several 'permessage-deflate; client_max_window_bits="15", permessage-deflate\nx-webkit-deflate-frame'
seed deflate_params bad 'permessage-deflate; server_max_window_bits=7; server_max_window_bits=16; unknown=1'
seed deflate_params quoted 'permessage-deflate; server_max_window_bits="10"; client_max_window_bits=08'

# inflate: [inflater params/chunking] then raw DEFLATE data (without the trailing 00 00 ff ff).
seed inflate hello '\x0f\xf2\x48\xcd\xc9\xc9\x07\x00'
seed inflate hello-twice '\x07\xf2\x48\xcd\xc9\xc9\x07\x00\xf2\x00\x11\x00\x00'
seed inflate stored '\x2f\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00'
seed inflate fixed-final '\x01\x03\x00'
seed inflate empty '\x00'

# utf8: [split a, split b] then the text.
seed utf8 greek '\x03\x05κόσμε'
seed utf8 mixed '\x02\x03a€𝄞z'
seed utf8 surrogate '\x02\x01ok\xed\xa0\x80'
seed utf8 above-max '\x01\x01\xf4\x90\x80\x80'
seed utf8 overlong '\x00\x01\xc0\xaf'

# ---------------------------------------------------------------------------------------------
# Build once, then run each target.
# ---------------------------------------------------------------------------------------------
fuzz build -s "$SANITIZER" >&2

failed=0
for target in $TARGETS; do
  log="$ROOT/fuzz/artifacts/$target.log"
  mkdir -p "$ROOT/fuzz/artifacts/$target" "$CORPUS/$target"
  status=ok
  if ! fuzz run -s "$SANITIZER" "$target" "$CORPUS/$target" -- \
    -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1; then
    status=CRASH
    failed=1
  fi
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n1)"
  if [ -z "$runs" ]; then
    runs="$(grep -o '^Done [0-9]* runs' "$log" | grep -o '[0-9]*' | tail -n1)"
  fi
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n1 | grep -o '[0-9]*' || true)"
  corpus="$(find "$CORPUS/$target" -type f | wc -l)"
  line="$(printf '%-20s %-5s runs=%-10s secs=%-4s cov=%-6s corpus=%s' \
    "$target" "$status" "${runs:-?}" "$SECS" "${cov:-?}" "$corpus")"
  if [ "$status" = CRASH ]; then
    artifact="$(grep -o 'Test unit written to [^ ]*' "$log" | tail -n1 | sed 's/Test unit written to //')"
    line="$line artifact=${artifact:-see $log}"
  fi
  echo "$line"
done

if [ "$failed" -ne 0 ]; then
  echo "fuzz: crashes found (logs and inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: no crashes" >&2
