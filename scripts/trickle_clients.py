#!/usr/bin/env python3
"""Trickling WebSocket clients for scripts/trickle_memory.sh (standard library only).

Each of --conns connections handshakes, sends one --large byte message and reads its echo (so
that a server sizing its read buffer from the last frame would keep a large one), then sends the
header of a frame announcing --announce bytes and trickles --trickle bytes of its payload,
--step bytes at a time. When every connection has trickled, prints "ready" and holds them for
--hold seconds, sending nothing more, then exits. A wss:// URL connects with TLS (no
certificate check: the server is ours on 127.0.0.1).
"""

import argparse
import asyncio
import base64
import os
import ssl
import struct
import sys
import time


def masked_frame_header(opcode, length, mask):
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    return head + mask


def mask_bytes(data, mask):
    # XOR with the mask repeated: one big-integer operation instead of a byte loop.
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


async def read_frame_payload_len(reader):
    b0, b1 = await reader.readexactly(2)
    length = b1 & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await reader.readexactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0, length


async def client(args, host, port, path, ctx, gate, trickled, release):
    reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head[:40]!r}")
    # One large message at a time across all clients: the server's memory then shows what a
    # trickling connection holds, not a burst of large buffers in flight together.
    async with gate:
        mask = os.urandom(4)
        payload = os.urandom(args.large)
        writer.write(masked_frame_header(0x2, args.large, mask) + mask_bytes(payload, mask))
        await writer.drain()
        b0, length = await read_frame_payload_len(reader)
        if b0 != 0x82 or length != args.large:
            raise RuntimeError(f"unexpected echo: {b0:#x} {length}")
        await reader.readexactly(length)
    mask = os.urandom(4)
    writer.write(masked_frame_header(0x2, args.announce, mask))
    await writer.drain()
    sent = 0
    while sent < args.trickle:
        writer.write(os.urandom(min(args.step, args.trickle - sent)))
        await writer.drain()
        sent += args.step
        await asyncio.sleep(args.interval)
    trickled.append(1)
    await release.wait()
    writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="ws://host:port/path or wss://...")
    p.add_argument("--conns", type=int, default=300)
    p.add_argument("--large", type=int, default=1 << 20)
    p.add_argument("--announce", type=int, default=1 << 20)
    p.add_argument("--trickle", type=int, default=600)
    p.add_argument("--step", type=int, default=15)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--hold", type=float, default=3)
    args = p.parse_args()
    scheme, rest = args.url.split("://", 1)
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    ctx = None
    if scheme == "wss":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    gate = asyncio.Semaphore(4)
    trickled = []
    release = asyncio.Event()
    tasks = [
        asyncio.create_task(
            client(args, host, int(port), "/" + path, ctx, gate, trickled, release)
        )
        for _ in range(args.conns)
    ]
    deadline = time.monotonic() + 120
    while len(trickled) < args.conns:
        failed = [t for t in tasks if t.done() and t.exception()]
        if failed:
            raise failed[0].exception()
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(trickled)} of {args.conns} trickled in 120 s")
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await asyncio.sleep(args.hold)
    release.set()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except Exception as e:  # noqa: BLE001 - one line for the calling script
        print(f"trickle_clients: {e}", file=sys.stderr)
        sys.exit(1)
