//! `idle-clients --url ws://HOST:PORT/ --conns N [--deflate] [--messages K] [--size BYTES]
//! [--hold SECS] [--concurrency C]`: opens N WebSocket connections (handshakes done by hand,
//! offering permessage-deflate with `--deflate`), optionally exchanges K TEXT messages of
//! `--size` bytes (default 16) on each (send one, compressed when permessage-deflate was
//! negotiated and it is at least 64 bytes, and read its echo), then holds them all idle.
//!
//! Once every connection is set up it prints one line, flushed, that `scripts/idle_memory.sh`
//! waits for before it reads the server's RSS:
//! `ready opened=N failed=F deflate=D compressed_echoes=E setup_ms=T` (D: connections whose 101
//! accepted permessage-deflate; E: echoes that came back compressed).
//! After `--hold` seconds it drops every connection and exits.
//!
//! With `--half-open` each connection sends only the first lines of its request head (no empty
//! line) and waits for nothing: handshakes the server has to hold until it drops them
//! (`scripts/half_open_memory.sh`).
#![forbid(unsafe_code)]

use std::io::{self, ErrorKind, Write as _};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

struct Args {
    host: String,
    path: String,
    conns: usize,
    deflate: bool,
    messages: usize,
    size: usize,
    hold: Duration,
    concurrency: usize,
    half_open: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: idle-clients --url ws://HOST:PORT/PATH --conns N [--deflate] [--messages K] \
         [--size BYTES] [--hold SECS] [--concurrency C] [--half-open]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut url = None;
    let mut args = Args {
        host: String::new(),
        path: "/".into(),
        conns: 10_000,
        deflate: false,
        messages: 0,
        size: 16,
        hold: Duration::from_secs(5),
        concurrency: 256,
        half_open: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--url" => url = Some(value()),
            "--conns" => args.conns = value().parse().unwrap_or_else(|_| usage()),
            "--deflate" => args.deflate = true,
            "--half-open" => args.half_open = true,
            "--messages" => args.messages = value().parse().unwrap_or_else(|_| usage()),
            "--size" => args.size = value().parse().unwrap_or_else(|_| usage()),
            "--hold" => {
                args.hold = Duration::from_secs_f64(value().parse().unwrap_or_else(|_| usage()))
            }
            "--concurrency" => {
                args.concurrency = value().parse().unwrap_or_else(|_| usage());
            }
            _ => usage(),
        }
    }
    let url = url.unwrap_or_else(|| usage());
    let rest = url.strip_prefix("ws://").unwrap_or_else(|| usage());
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    args.host = host.to_owned();
    args.path = path.to_owned();
    args.concurrency = args.concurrency.max(1);
    args
}

/// Connects and handshakes; returns the stream, whether deflate was accepted and how many echoes
/// came back compressed.
async fn open(args: &Args) -> io::Result<(TcpStream, bool, usize)> {
    let mut tcp = TcpStream::connect(&args.host).await?;
    tcp.set_nodelay(true)?;
    let extensions = if args.deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
        args.path, args.host, extensions
    );
    if args.half_open {
        // Everything but the empty line that would end the head.
        tcp.write_all(&request.as_bytes()[..request.len() - 2])
            .await?;
        return Ok((tcp, false, 0));
    }
    tcp.write_all(request.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    let end = loop {
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        if let Some(end) = wsx_bench::head_end(&buf) {
            break end;
        }
        if buf.len() > 16 * 1024 {
            return Err(io::Error::new(
                ErrorKind::InvalidData,
                "response head too long",
            ));
        }
    };
    let head = &buf[..end];
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
        return Err(io::Error::other(format!(
            "not upgraded: {}",
            String::from_utf8_lossy(line)
        )));
    }
    let deflate = wsx_bench::header(head, "sec-websocket-extensions")
        .is_some_and(|v| v.windows(18).any(|w| w == b"permessage-deflate"));
    let mut leftover = buf.split_off(end);
    let mut compressed = 0;
    for i in 0..args.messages {
        // Compressible text: a short sentence repeated.
        let payload: Vec<u8> = b"the quick brown fox jumps over the lazy dog "
            .iter()
            .cycle()
            .skip(i % 7)
            .take(args.size)
            .copied()
            .collect();
        let key = [0x12, 0x34, 0x56, 0x78];
        let mut frame = vec![0x81];
        let payload = if deflate && payload.len() >= 64 {
            frame[0] |= 0x40; // RSV1: compressed
            compress(&payload)
        } else {
            payload
        };
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => return Err(io::Error::new(ErrorKind::InvalidInput, "--size over 65535")),
        }
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(j, b)| b ^ key[j % 4]));
        tcp.write_all(&frame).await?;
        compressed += usize::from(read_frame(&mut tcp, &mut leftover).await?);
    }
    Ok((tcp, deflate, compressed))
}

/// A message compressed on its own (raw deflate, sync flush, the 4 trailing bytes removed: RFC
/// 7692 §7.2.1), valid with or without context takeover.
fn compress(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() + 64);
    // Cannot fail: the output has room for the worst case of a 64 KiB input.
    let _ = c.compress_vec(data, &mut out, flate2::FlushCompress::Sync);
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    out
}

/// Reads one (unmasked, short) frame from the server; returns whether it was compressed (RSV1).
async fn read_frame(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<bool> {
    loop {
        if buf.len() >= 2 {
            let len = usize::from(buf[1] & 0x7f);
            let (hl, len) = match len {
                126 if buf.len() >= 4 => (4, usize::from(u16::from_be_bytes([buf[2], buf[3]]))),
                126 | 127 => {
                    return Err(io::Error::new(
                        ErrorKind::InvalidData,
                        "unexpected long echo",
                    ))
                }
                n => (2, n),
            };
            if buf.len() >= hl + len {
                let compressed = buf[0] & 0x40 != 0;
                buf.drain(..hl + len);
                return Ok(compressed);
            }
        }
        if tcp.read_buf(buf).await? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
    }
}

#[tokio::main]
async fn main() {
    let args = Arc::new(parse_args());
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency));
    let mut tasks = Vec::with_capacity(args.conns);
    for _ in 0..args.conns {
        let args = args.clone();
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            match tokio::time::timeout(Duration::from_secs(20), open(&args)).await {
                Ok(Ok(conn)) => Some(conn),
                Ok(Err(e)) => {
                    eprintln!("idle-clients: {e}");
                    None
                }
                Err(_) => {
                    eprintln!("idle-clients: handshake timed out");
                    None
                }
            }
        }));
    }
    let mut held = Vec::with_capacity(args.conns);
    let mut failed = 0usize;
    let mut deflate = 0usize;
    let mut compressed = 0usize;
    for task in tasks {
        match task.await {
            Ok(Some((tcp, d, c))) => {
                deflate += usize::from(d);
                compressed += c;
                held.push(tcp);
            }
            _ => failed += 1,
        }
    }
    println!(
        "ready opened={} failed={} deflate={} compressed_echoes={} setup_ms={}",
        held.len(),
        failed,
        deflate,
        compressed,
        started.elapsed().as_millis()
    );
    let _ = io::stdout().flush();
    tokio::time::sleep(args.hold).await;
    drop(held);
}
