//! `wsx bench URL`: a load generator for echo endpoints.
//!
//! Each of `--conns` connections keeps `--pipeline` messages in flight: it sends that many,
//! then sends one more for every echo it gets back. The latency of a message is the time from
//! its send to its echo (echoes come back in order, so a queue of send times per connection is
//! enough). After `--warmup`, echoes are counted and their latencies recorded in an HDR
//! histogram for `--duration`; the report gives messages/s, MiB/s of echoed payload and
//! latency percentiles, as text or (`--json`) one JSON object.
//!
//! Without `--deflate` the load generator stays out of the way of the server it measures: after
//! the library's own handshake ([`wsx::client::handshake`]) each connection writes frames encoded and
//! masked once (one random key per connection; RFC 6455 asks real clients for a fresh key per
//! frame, which a server cannot check and a load generator need not pay for), a batch of them in
//! one write, and reads echoes by their headers only. With `--deflate` every message goes
//! through a library [`Socket`], which compresses it.

use std::collections::VecDeque;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;
use wsx::proto::{write_frame, FrameHeader};
use wsx::{CloseCode, ConnectOptions, Message, OpCode, Socket, WsStream};

use crate::serve::parse_secs;

/// Options of `wsx bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The ws:// or wss:// URL of an echo endpoint.
    pub url: String,
    /// Number of connections.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub conns: u32,
    /// Payload size of each message, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 16)]
    pub size: usize,
    /// How long to measure, in seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "10")]
    pub duration: Duration,
    /// How long to run before measuring, in seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "1")]
    pub warmup: Duration,
    /// Messages each connection keeps in flight.
    #[arg(long, value_name = "P", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub pipeline: u32,
    /// Send TEXT messages (ASCII payload) instead of BINARY.
    #[arg(long)]
    pub text: bool,
    /// Offer permessage-deflate (off by default).
    #[arg(long)]
    pub deflate: bool,
    /// Print one JSON object instead of the text report (and no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Trust only the certificates in this PEM file (for wss://).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (for wss://; testing only).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// The proxy to go through: http://[user:pw@]host:port, socks5:// or socks5h://
    /// (default: from HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, as curl).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Open the connections as streams of one shared HTTP/2 connection per server (RFC 8441),
    /// falling back to HTTP/1.1 when the server does not offer it.
    #[arg(long)]
    pub http2: bool,
}

/// The report `--json` prints.
#[derive(Debug, Serialize)]
struct Report {
    conns: u32,
    size: usize,
    pipeline: u32,
    duration_secs: f64,
    messages: u64,
    messages_per_sec: f64,
    mib_per_sec: f64,
    latency_us: Latency,
    errors: u64,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Serialize)]
struct Latency {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

/// What one connection measured.
struct ConnStats {
    histogram: Histogram<u64>,
    messages: u64,
    errors: u64,
}

/// The highest latency the histograms track (longer ones are recorded as this).
const MAX_LATENCY_US: u64 = 60 * 60 * 1_000_000;

impl ConnStats {
    fn new() -> anyhow::Result<Self> {
        Ok(ConnStats {
            histogram: new_histogram()?,
            messages: 0,
            errors: 0,
        })
    }
}

/// A latency histogram in microseconds (shared with `wsx fanout`).
pub(crate) fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).map_err(|e| anyhow!("histogram: {e}"))
}

/// Records a latency of `us` microseconds, clamped to what [`new_histogram`] tracks.
pub(crate) fn record_latency(histogram: &mut Histogram<u64>, us: u64) {
    histogram.saturating_record(us.clamp(1, MAX_LATENCY_US));
}

/// The payload every message carries (built once, shared by all sends).
fn payload(size: usize, text: bool) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut state: u32 = 0x9e37_79b9;
    let body: Vec<u8> = (0..size)
        .map(|_| {
            // xorshift: varied bytes, so --deflate measures real work.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            if text {
                ALPHABET[(state as usize) % ALPHABET.len()]
            } else {
                state as u8
            }
        })
        .collect();
    Bytes::from(body)
}

/// Runs the benchmark and prints the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    let mut options = ConnectOptions::default();
    if !args.deflate {
        options = options.no_deflate();
    }
    options.http2 = args.http2;
    if let Some(ca) = &args.ca {
        options = options.tls(wsx::tls::client_config_with_ca(ca)?);
    } else if args.insecure {
        options = options.tls(wsx::tls::client_config_insecure()?);
    }
    let options = crate::connect::with_proxy(options, args.proxy.as_deref())?;
    let kind = if args.text {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let message = Message::with_kind(kind, payload(args.size, args.text));

    // Connect everything first, so that connection setup is not measured.
    let mut connecting = JoinSet::new();
    let raw = !args.deflate;
    for _ in 0..args.conns {
        let url = args.url.clone();
        let options = options.clone();
        connecting.spawn(async move {
            if raw {
                wsx::client::handshake(&url, &options)
                    .await
                    .map(|c| Conn::Raw(Box::new(c.stream)))
            } else {
                Socket::open(&url, options).await.map(Conn::Socket)
            }
        });
    }
    let mut sockets = Vec::with_capacity(args.conns as usize);
    let mut connect_errors = 0u64;
    let mut first_error = None;
    while let Some(joined) = connecting.join_next().await {
        match joined {
            Ok(Ok(socket)) => sockets.push(socket),
            Ok(Err(e)) => {
                connect_errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                connect_errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    if sockets.is_empty() {
        bail!(
            "cannot connect to {}: {}",
            args.url,
            first_error.unwrap_or_default()
        );
    }
    if let Some(e) = &first_error {
        tracing::warn!(failed = connect_errors, error = %e, "some connections failed");
    }

    let start = Instant::now();
    let measure_start = start + args.warmup;
    let end = measure_start + args.duration;
    let counter = Arc::new(AtomicU64::new(0));
    let progress = progress_bar(&args);
    let ticker = tokio::spawn(tick(
        progress.clone(),
        counter.clone(),
        start,
        measure_start,
        end,
    ));

    let mut running = JoinSet::new();
    for conn in sockets {
        let message = message.clone();
        let counter = counter.clone();
        let pipeline = args.pipeline as usize;
        let size = args.size;
        running.spawn(async move {
            match conn {
                Conn::Socket(socket) => {
                    drive(socket, message, size, pipeline, measure_start, end, counter).await
                }
                Conn::Raw(stream) => {
                    drive_raw(*stream, &message, pipeline, measure_start, end, counter).await
                }
            }
        });
    }
    let mut histogram = new_histogram()?;
    let mut messages = 0u64;
    let mut errors = connect_errors;
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok(stats)) => {
                histogram
                    .add(&stats.histogram)
                    .map_err(|e| anyhow!("histogram: {e}"))?;
                messages += stats.messages;
                errors += stats.errors;
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => errors += 1,
        }
    }
    ticker.abort();
    progress.finish_and_clear();

    let secs = args.duration.as_secs_f64();
    let rate = |n: f64| if secs > 0.0 { n / secs } else { 0.0 };
    let report = Report {
        conns: args.conns,
        size: args.size,
        pipeline: args.pipeline,
        duration_secs: secs,
        messages,
        messages_per_sec: rate(messages as f64),
        mib_per_sec: rate(messages as f64 * args.size as f64) / (1024.0 * 1024.0),
        latency_us: Latency {
            p50: histogram.value_at_quantile(0.5),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        },
        errors,
    };
    if args.json {
        let json = serde_json::to_string(&report).context("cannot encode the report")?;
        println!("{json}");
    } else {
        print_text(&args, &report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_text(args: &BenchArgs, r: &Report) {
    println!(
        "{}: {} conn(s) x {} B {}, pipeline {}, {:.1} s (+{:.1} s warmup){}",
        args.url,
        r.conns,
        r.size,
        if args.text { "text" } else { "binary" },
        r.pipeline,
        r.duration_secs,
        args.warmup.as_secs_f64(),
        if args.deflate {
            ", deflate offered"
        } else {
            ""
        }
    );
    println!(
        "  messages   {} ({:.0} msg/s, {:.2} MiB/s)",
        r.messages, r.messages_per_sec, r.mib_per_sec
    );
    println!(
        "  latency    p50 {} us, p99 {} us, p99.9 {} us, max {} us",
        r.latency_us.p50, r.latency_us.p99, r.latency_us.p999, r.latency_us.max
    );
    println!("  errors     {}", r.errors);
}

/// The progress bar: drawn on stderr only when it is a terminal and the report is not JSON.
fn progress_bar(args: &BenchArgs) -> ProgressBar {
    if args.json || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let total = (args.warmup + args.duration).as_millis();
    let bar = ProgressBar::with_draw_target(
        Some(u64::try_from(total).unwrap_or(u64::MAX)),
        ProgressDrawTarget::stderr(),
    );
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {elapsed:>4} {msg}") {
        bar.set_style(style);
    }
    bar
}

/// Updates the progress bar a few times a second.
async fn tick(
    bar: ProgressBar,
    counter: Arc<AtomicU64>,
    start: Instant,
    measure_start: Instant,
    end: Instant,
) {
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    let mut last = (Instant::now(), 0u64);
    loop {
        interval.tick().await;
        let now = Instant::now();
        let done = now.saturating_duration_since(start).as_millis();
        bar.set_position(u64::try_from(done).unwrap_or(u64::MAX));
        if now < measure_start {
            bar.set_message("warming up");
            continue;
        }
        let count = counter.load(Ordering::Relaxed);
        let dt = now.saturating_duration_since(last.0).as_secs_f64();
        if dt > 0.0 {
            let rate = (count - last.1.min(count)) as f64 / dt;
            bar.set_message(format!("{count} messages, {rate:.0} msg/s"));
        }
        last = (now, count);
        if now >= end {
            bar.set_message("closing");
        }
    }
}

/// One load connection.
enum Conn {
    /// Through a library socket (with compression).
    Socket(Socket),
    /// Pre-encoded frames on the handshaken stream.
    Raw(Box<WsStream>),
}

/// Records the echo of a message sent at `sent`, if inside the measured window.
fn record(
    stats: &mut ConnStats,
    counter: &AtomicU64,
    sent: Instant,
    now: Instant,
    window: (Instant, Instant),
) {
    if sent >= window.0 && now < window.1 {
        let us = u64::try_from(now.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
        record_latency(&mut stats.histogram, us);
        stats.messages += 1;
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Runs one raw connection: `pipeline` pre-masked frames in flight until `end`; every batch of
/// echoes read is answered by the same number of frames in one write.
async fn drive_raw(
    mut stream: WsStream,
    message: &Message,
    pipeline: usize,
    measure_start: Instant,
    end: Instant,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<ConnStats> {
    let mut stats = ConnStats::new()?;
    let header = FrameHeader::new(message.kind(), message.len() as u64, Some(rand_key()));
    let mut frames = bytes::BytesMut::new();
    for _ in 0..pipeline {
        write_frame(header, message.body(), &mut frames);
    }
    let frame_len = frames.len() / pipeline.max(1);
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(pipeline);
    let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
    let mut stop = pin!(tokio::time::sleep_until(end));
    let mut failed = stream.write_all(&frames).await.is_err();
    let sent = Instant::now();
    in_flight.extend(std::iter::repeat_n(sent, pipeline));
    while !failed {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            read = stream.read_buf(&mut buf) => {
                if !matches!(read, Ok(n) if n > 0) {
                    failed = true;
                    break;
                }
                let now = Instant::now();
                let mut echoes = 0;
                // Whole frames only; the payload is skipped, not looked at.
                while let Ok(Some((h, header_len))) = FrameHeader::decode(&buf) {
                    let total = header_len + h.payload_len as usize;
                    if buf.len() < total {
                        if buf.capacity() < total {
                            buf.reserve(total - buf.len());
                        }
                        break;
                    }
                    let _ = buf.split_to(total);
                    match h.opcode {
                        OpCode::Close => failed = true,
                        op if op == message.kind() && h.payload_len == message.len() as u64 => {
                            echoes += 1;
                        }
                        OpCode::Ping | OpCode::Pong => continue,
                        _ => stats.errors += 1,
                    }
                    match in_flight.pop_front() {
                        Some(sent) => record(&mut stats, &counter, sent, now, (measure_start, end)),
                        None => stats.errors += 1,
                    }
                }
                if failed || echoes == 0 {
                    continue;
                }
                let batch = echoes.min(pipeline);
                if stream.write_all(&frames[..batch * frame_len]).await.is_err() {
                    failed = true;
                    break;
                }
                in_flight.extend(std::iter::repeat_n(Instant::now(), batch));
            }
        }
    }
    if failed {
        stats.errors += 1;
    }
    // Close politely: a masked CLOSE 1000, then wait briefly for the server to end.
    let mut close = bytes::BytesMut::new();
    let code = 1000u16.to_be_bytes();
    write_frame(
        FrameHeader::new(OpCode::Close, 2, Some(rand_key())),
        &code,
        &mut close,
    );
    if stream.write_all(&close).await.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while matches!(stream.read_buf(&mut buf).await, Ok(n) if n > 0) {
                buf.clear();
            }
        })
        .await;
    }
    Ok(stats)
}

/// A masking key from the thread-local CSPRNG.
fn rand_key() -> [u8; 4] {
    rand::random()
}

/// Runs one connection: keeps `pipeline` messages in flight until `end`, recording echoes of
/// messages sent after `measure_start`.
async fn drive(
    socket: Socket,
    message: Message,
    size: usize,
    pipeline: usize,
    measure_start: Instant,
    end: Instant,
    counter: Arc<AtomicU64>,
) -> anyhow::Result<ConnStats> {
    let mut stats = ConnStats::new()?;
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(pipeline);
    let mut stop = pin!(tokio::time::sleep_until(end));
    let mut failed = false;
    for _ in 0..pipeline {
        if socket.send(message.clone()).await.is_err() {
            failed = true;
            break;
        }
        in_flight.push_back(Instant::now());
    }
    while !failed {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            received = socket.recv() => {
                let Ok(echo) = received else {
                    failed = true;
                    break;
                };
                let now = Instant::now();
                let Some(sent) = in_flight.pop_front() else {
                    // An echo of nothing: the server sent something of its own.
                    stats.errors += 1;
                    continue;
                };
                if echo.len() != size || echo.kind() != message.kind() {
                    stats.errors += 1;
                }
                record(&mut stats, &counter, sent, now, (measure_start, end));
                if socket.send(message.clone()).await.is_err() {
                    failed = true;
                    break;
                }
                in_flight.push_back(Instant::now());
            }
        }
    }
    if failed {
        stats.errors += 1;
        if let Some(e) = socket.error() {
            tracing::debug!(code = e.code, reason = %e.reason, "connection failed");
        }
    }
    socket.close(CloseCode::NORMAL, "");
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.closed()).await;
    Ok(stats)
}
