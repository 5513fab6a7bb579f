//! `load-tungstenite URL [--conns N] [--size BYTES] [--pipeline P] [--duration SECS]
//! [--warmup SECS] [--text] [--json]`: a load generator independent of wsx, written the way a
//! typical client is, on tokio-tungstenite.
//!
//! Each connection does its own handshake with tokio-tungstenite's client, then keeps `--pipeline`
//! messages in flight (1: closed loop, send one message, wait for its echo, repeat): every message
//! goes out with `SinkExt::send`, so one frame per write, freshly masked, and nothing is batched
//! across messages or connections. The latency of a message is the time from its send to its echo;
//! echoes received during `--duration` after `--warmup` are counted and recorded in an HDR
//! histogram.
//!
//! The options and the `--json` report are those of `wsx bench` (the fields `scripts/bench.sh`
//! reads: `messages_per_sec`, `mib_per_sec`, `latency_us.p50/p99/p999`, `errors`, ...), so the
//! script can run either. No TLS, no permessage-deflate, no HTTP/2: ws:// only.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::pin::pin;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// The highest latency recorded (longer ones are recorded as this), as in `wsx bench`.
const MAX_LATENCY_US: u64 = 60 * 60 * 1_000_000;

/// The command line.
struct Args {
    url: String,
    /// `HOST:PORT` of the URL, for the TCP connection.
    addr: String,
    conns: u32,
    size: usize,
    pipeline: u32,
    duration: Duration,
    warmup: Duration,
    text: bool,
    json: bool,
}

fn usage(why: &str) -> ! {
    eprintln!("load-tungstenite: {why}");
    eprintln!(
        "usage: load-tungstenite ws://HOST:PORT[/PATH] [--conns N] [--size BYTES] \
         [--pipeline P] [--duration SECS] [--warmup SECS] [--text] [--json]"
    );
    std::process::exit(2);
}

fn parse_secs(v: &str) -> Duration {
    // At most a year, as `wsx bench`: the deadlines are added to the current instant.
    v.parse::<f64>()
        .ok()
        .filter(|s| (0.0..=365.0 * 86_400.0).contains(s))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or_else(|| usage(&format!("`{v}` is not a number of seconds")))
}

fn parse_num<T: std::str::FromStr + PartialOrd>(v: &str, min: T, max: T) -> T {
    match v.parse::<T>() {
        Ok(n) if n >= min && n <= max => n,
        _ => usage(&format!("`{v}` is not a number in range")),
    }
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Args {
    let mut out = Args {
        url: String::new(),
        addr: String::new(),
        conns: 1,
        size: 16,
        pipeline: 1,
        duration: Duration::from_secs(10),
        warmup: Duration::from_secs(1),
        text: false,
        json: false,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .unwrap_or_else(|| usage(&format!("{name} needs a value")))
        };
        match name.as_str() {
            "--conns" => out.conns = parse_num(&value(), 1, 100_000),
            "--size" => out.size = parse_num(&value(), 0, usize::MAX),
            "--pipeline" => out.pipeline = parse_num(&value(), 1, 65_536),
            "--duration" => out.duration = parse_secs(&value()),
            "--warmup" => out.warmup = parse_secs(&value()),
            "--text" => out.text = true,
            "--json" => out.json = true,
            "--deflate" | "--http2" | "--ca" | "--insecure" | "--proxy" => {
                usage(&format!("{name} is not supported (wsx bench has it)"))
            }
            _ if !name.starts_with("--") && out.url.is_empty() => out.url = arg,
            _ => usage(&format!("unexpected argument `{arg}`")),
        }
    }
    let Some(rest) = out.url.strip_prefix("ws://") else {
        usage("give a ws:// URL")
    };
    out.addr = rest.split('/').next().unwrap_or_default().to_owned();
    if out.addr.is_empty() {
        usage("the URL has no host");
    }
    out
}

/// The payload every message carries, built once: the alphabet over and over (ASCII, so valid
/// as text too; without compression its content does not matter).
fn payload(size: usize) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    ALPHABET.iter().copied().cycle().take(size).collect()
}

fn new_histogram() -> Histogram<u64> {
    // Cannot fail: the bounds are constants (1 us to an hour, 3 significant digits).
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).unwrap_or_else(|e| {
        eprintln!("load-tungstenite: histogram: {e}");
        std::process::exit(1);
    })
}

/// What one connection measured.
struct Stats {
    histogram: Histogram<u64>,
    messages: u64,
    errors: u64,
}

type Ws = WebSocketStream<TcpStream>;

/// Connects and handshakes (tokio-tungstenite's client, default configuration).
async fn open(args: &Args) -> Result<Ws, String> {
    let tcp = TcpStream::connect(&args.addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (ws, _) = tokio_tungstenite::client_async(args.url.as_str(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    Ok(ws)
}

fn is_echo(msg: &Message, sent: &Message) -> bool {
    match (msg, sent) {
        (Message::Binary(a), Message::Binary(b)) => a.len() == b.len(),
        (Message::Text(a), Message::Text(b)) => a.len() == b.len(),
        _ => false,
    }
}

/// Runs one connection until `end`: `pipeline` messages in flight, one more sent per echo.
async fn drive(
    mut ws: Ws,
    message: Message,
    pipeline: usize,
    measure_start: Instant,
    end: Instant,
) -> Stats {
    let mut stats = Stats {
        histogram: new_histogram(),
        messages: 0,
        errors: 0,
    };
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(pipeline);
    let mut failed = false;
    for _ in 0..pipeline {
        if ws.send(message.clone()).await.is_err() {
            failed = true;
            break;
        }
        in_flight.push_back(Instant::now());
    }
    let mut stop = pin!(tokio::time::sleep_until(end));
    while !failed {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            next = ws.next() => {
                let msg = match next {
                    Some(Ok(msg)) => msg,
                    _ => {
                        failed = true;
                        break;
                    }
                };
                let now = Instant::now();
                match &msg {
                    // tungstenite answers PINGs by itself.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    Message::Close(_) => {
                        failed = true;
                        break;
                    }
                    _ if !is_echo(&msg, &message) => stats.errors += 1,
                    _ => {}
                }
                let Some(sent) = in_flight.pop_front() else {
                    stats.errors += 1;
                    continue;
                };
                if sent >= measure_start && now < end {
                    let us = u64::try_from(now.duration_since(sent).as_micros()).unwrap_or(u64::MAX);
                    stats.histogram.saturating_record(us.clamp(1, MAX_LATENCY_US));
                    stats.messages += 1;
                }
                if ws.send(message.clone()).await.is_err() {
                    failed = true;
                }
                in_flight.push_back(Instant::now());
            }
        }
    }
    if failed {
        stats.errors += 1;
    } else {
        // Close politely and give the server a moment to answer.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            if ws.close(None).await.is_ok() {
                while let Some(Ok(_)) = ws.next().await {}
            }
        })
        .await;
    }
    stats
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = parse_args(std::env::args().skip(1));
    let body = payload(args.size);
    let message = match Utf8Bytes::try_from(body.clone()) {
        Ok(text) if args.text => Message::Text(text),
        _ => Message::Binary(body),
    };

    // Connect everything first, so that connection setup is not measured.
    let args = std::sync::Arc::new(args);
    let mut connecting = JoinSet::new();
    for _ in 0..args.conns {
        let args = args.clone();
        connecting.spawn(async move { open(&args).await });
    }
    let mut sockets = Vec::with_capacity(args.conns as usize);
    let mut errors = 0u64;
    let mut first_error = None;
    while let Some(joined) = connecting.join_next().await {
        match joined {
            Ok(Ok(ws)) => sockets.push(ws),
            Ok(Err(e)) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e.to_string());
            }
        }
    }
    if sockets.is_empty() {
        eprintln!(
            "load-tungstenite: cannot connect to {}: {}",
            args.url,
            first_error.unwrap_or_default()
        );
        return ExitCode::FAILURE;
    }
    if let Some(e) = &first_error {
        eprintln!("load-tungstenite: {errors} connection(s) failed: {e}");
    }

    let measure_start = Instant::now() + args.warmup;
    let end = measure_start + args.duration;
    let mut running = JoinSet::new();
    for ws in sockets {
        let message = message.clone();
        let pipeline = args.pipeline as usize;
        running.spawn(drive(ws, message, pipeline, measure_start, end));
    }
    let mut histogram = new_histogram();
    let mut messages = 0u64;
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(stats) => {
                // Same bounds on both sides: adding cannot fail.
                let _ = histogram.add(&stats.histogram);
                messages += stats.messages;
                errors += stats.errors;
            }
            Err(_) => errors += 1,
        }
    }

    let secs = args.duration.as_secs_f64();
    let rate = if secs > 0.0 {
        messages as f64 / secs
    } else {
        0.0
    };
    let mib = rate * args.size as f64 / (1024.0 * 1024.0);
    let (p50, p99, p999, max) = (
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.max(),
    );
    if args.json {
        // The fields and their order of `wsx bench --json`.
        println!(
            "{{\"conns\":{},\"size\":{},\"pipeline\":{},\"duration_secs\":{secs:?},\
             \"messages\":{messages},\"messages_per_sec\":{rate:?},\"mib_per_sec\":{mib:?},\
             \"latency_us\":{{\"p50\":{p50},\"p99\":{p99},\"p999\":{p999},\"max\":{max}}},\
             \"errors\":{errors}}}",
            args.conns, args.size, args.pipeline
        );
    } else {
        println!(
            "{}: {} conn(s) x {} B {}, pipeline {}, {:.1} s (+{:.1} s warmup), tokio-tungstenite",
            args.url,
            args.conns,
            args.size,
            if args.text { "text" } else { "binary" },
            args.pipeline,
            secs,
            args.warmup.as_secs_f64()
        );
        println!("  messages   {messages} ({rate:.0} msg/s, {mib:.2} MiB/s)");
        println!("  latency    p50 {p50} us, p99 {p99} us, p99.9 {p999} us, max {max} us");
        println!("  errors     {errors}");
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_the_wsx_bench_options() {
        let a = args(&[
            "ws://127.0.0.1:9000/echo",
            "--conns",
            "100",
            "--size=1024",
            "--pipeline",
            "16",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--json",
        ]);
        assert_eq!(a.addr, "127.0.0.1:9000");
        assert_eq!((a.conns, a.size, a.pipeline), (100, 1024, 16));
        assert_eq!(a.duration, Duration::from_secs(2));
        assert_eq!(a.warmup, Duration::from_millis(500));
        assert!(a.json && !a.text);
    }

    #[test]
    fn text_payload_is_ascii() {
        let p = payload(1000);
        assert_eq!(p.len(), 1000);
        assert!(p.is_ascii());
    }
}
