//! `wsx fanout`: load for broadcast rooms. Members and publishers are spread round-robin over
//! the given room URLs (one per node); each publisher sends timestamped messages at a fixed
//! rate, and every member records the time from publish to delivery. Reports messages
//! delivered per second and latency percentiles.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use hdrhistogram::Histogram;
use tokio::time::Instant;
use wsx::{ConnectOptions, Socket};

/// Options of `wsx fanout`.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// The room's URL on each node (ws://HOST:PORT/room/NAME).
    #[arg(required = true, value_name = "URL")]
    pub urls: Vec<String>,
    /// Connections that publish.
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Connections that only receive (what is measured).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Messages each publisher sends.
    #[arg(long, default_value_t = 100)]
    pub messages: u64,
    /// Messages per second of each publisher.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs the load and prints the report.
pub async fn run(args: FanoutArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
    let url = |i: usize| &args.urls[i % args.urls.len()];
    let options = ConnectOptions::default().no_deflate();
    let mut members = Vec::with_capacity(args.members);
    for i in 0..args.members {
        let socket = Socket::open(url(i), options.clone())
            .await
            .with_context(|| format!("member {i} cannot connect to {}", url(i)))?;
        members.push(socket);
    }
    let mut publishers = Vec::with_capacity(args.publishers);
    for i in 0..args.publishers {
        // Offset so that publishers do not all sit on the first node.
        let at = url(i + args.members);
        let socket = Socket::open(at, options.clone())
            .await
            .with_context(|| format!("publisher {i} cannot connect to {at}"))?;
        publishers.push(socket);
    }
    let mut latency = crate::bench::new_histogram()?;
    let start = Instant::now();
    let expected = args.messages.saturating_mul(args.publishers as u64);
    let receiving: Vec<_> = members
        .into_iter()
        .map(|socket| tokio::spawn(receive(socket, expected, start, latency.clone())))
        .collect();
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let sending: Vec<_> = publishers
        .iter()
        .enumerate()
        .map(|(p, socket)| {
            let socket = socket.clone();
            let messages = args.messages;
            tokio::spawn(async move {
                // Publishers hear each other: read and discard so the room never drops them.
                let reader = socket.clone();
                tokio::spawn(async move { while reader.recv().await.is_ok() {} });
                let mut tick = tokio::time::interval(interval);
                for seq in 0..messages {
                    tick.tick().await;
                    let micros = start.elapsed().as_micros();
                    if socket.send(format!("{p} {seq} {micros}")).await.is_err() {
                        break;
                    }
                }
            })
        })
        .collect();
    for task in sending {
        task.await.context("a publisher failed")?;
    }
    let mut delivered = 0u64;
    let mut last = Duration::ZERO;
    for task in receiving {
        let got = task.await.context("a member failed")?;
        delivered += got.count;
        last = last.max(got.last);
        latency.add(&got.latency).context("histogram")?;
    }
    let wanted = expected.saturating_mul(args.members as u64);
    let secs = last.as_secs_f64().max(1e-9);
    let rate = delivered as f64 / secs;
    let q = |p: f64| latency.value_at_quantile(p) as f64 / 1000.0;
    if args.json {
        println!(
            "{{\"delivered\":{delivered},\"expected\":{wanted},\"seconds\":{secs:.3},\
             \"delivered_per_sec\":{rate:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3}}}",
            q(0.5),
            q(0.99),
            q(1.0)
        );
    } else {
        println!(
            "delivered {delivered}/{wanted} in {secs:.2} s: {rate:.0} msg/s; latency p50 {:.2} ms, \
             p99 {:.2} ms, max {:.2} ms",
            q(0.5),
            q(0.99),
            q(1.0)
        );
    }
    Ok(if delivered == wanted {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

struct Received {
    count: u64,
    last: Duration,
    latency: Histogram<u64>,
}

/// Reads until `expected` messages came or none came for 5 s.
async fn receive(
    socket: Socket,
    expected: u64,
    start: Instant,
    latency: Histogram<u64>,
) -> Received {
    let mut got = Received {
        count: 0,
        last: Duration::ZERO,
        latency,
    };
    while got.count < expected {
        let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_secs(5), socket.recv()).await else {
            break;
        };
        let now = start.elapsed();
        let sent = msg
            .as_text()
            .and_then(|t| t.rsplit(' ').next())
            .and_then(|m| m.parse::<u64>().ok());
        if let Some(sent) = sent {
            let micros = u64::try_from(now.as_micros())
                .unwrap_or(u64::MAX)
                .saturating_sub(sent);
            crate::bench::record_latency(&mut got.latency, micros);
            got.count += 1;
            got.last = now;
        }
    }
    got
}
