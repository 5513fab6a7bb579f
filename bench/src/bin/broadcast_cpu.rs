//! `broadcast-cpu [--members N] [--messages M]`: server CPU per delivered message when M
//! `PreparedMessage`s (~1 KiB JSON-like text each) are sent to N members over 127.0.0.1, in
//! three modes: `plain` (no permessage-deflate), `shared` (permessage-deflate with
//! `server_no_context_takeover`: each message compressed once, the frame shared) and
//! `per-socket` (context takeover: each member's compressor compresses it).
//!
//! The server runs on one thread (a current-thread runtime: every socket's I/O is done there
//! too); its CPU time (`/proc/thread-self/schedstat`) is read around the sends and until the
//! members (on another thread) have received everything. Markdown on stdout.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wsx::{AcceptOptions, ConnectOptions, DeflateConfig, PreparedMessage, Socket};

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// ~1 KiB of JSON-like chat text, varied by `i`.
fn message(i: usize) -> String {
    let mut out = String::from("[");
    let mut k = i;
    while out.len() < 1000 {
        k = k.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        out.push_str(&format!(
            "{{\"id\":{},\"user\":\"user{}\",\"text\":\"hello room {}\",\"read\":false}},",
            i,
            k % 50,
            k % 1000
        ));
    }
    out.pop();
    out.push(']');
    out
}

struct Row {
    mode: &'static str,
    cpu_ns: u64,
    delivered: usize,
}

fn run(mode: &'static str, members: usize, messages: usize) -> Row {
    let mut accept = AcceptOptions::default();
    match mode {
        "plain" => accept = accept.no_deflate(),
        "shared" => {
            accept.deflate = Some(DeflateConfig {
                server_no_context_takeover: true,
                ..DeflateConfig::default()
            })
        }
        _ => {}
    }
    let delivered = Arc::new(AtomicUsize::new(0));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn({
        let delivered = delivered.clone();
        move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                addr_tx.send(listener.local_addr().expect("addr")).ok();
                let mut sockets = Vec::with_capacity(members);
                while sockets.len() < members {
                    let (tcp, _) = listener.accept().await.expect("accept");
                    let _ = tcp.set_nodelay(true);
                    let (socket, _) = wsx::accept(tcp, &accept).await.expect("handshake");
                    sockets.push(socket);
                }
                let prepared: Vec<PreparedMessage> = (0..messages)
                    .map(|i| PreparedMessage::new(message(i)).expect("prepare"))
                    .collect();
                let start = thread_cpu_ns();
                for p in &prepared {
                    for s in &sockets {
                        s.send_prepared(p).await.expect("send");
                    }
                }
                let deadline = Instant::now() + Duration::from_secs(120);
                while delivered.load(Ordering::Acquire) < members * messages
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                thread_cpu_ns().saturating_sub(start)
            })
        }
    });
    let addr = addr_rx.recv().expect("server address");
    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    clients.block_on(async {
        let url = format!("ws://{addr}/");
        let mut tasks = Vec::new();
        for _ in 0..members {
            let socket = Socket::open(&url, ConnectOptions::default())
                .await
                .expect("connect");
            let delivered = delivered.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..messages {
                    if socket.recv().await.is_err() {
                        break;
                    }
                    delivered.fetch_add(1, Ordering::AcqRel);
                }
                socket
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let cpu_ns = server.join().expect("server thread");
    Row {
        mode,
        cpu_ns,
        delivered: delivered.load(Ordering::Acquire),
    }
}

fn main() {
    let (mut members, mut messages) = (1000usize, 50usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--members", Some(v)) => members = v,
            ("--messages", Some(v)) => messages = v,
            _ => {
                eprintln!("usage: broadcast-cpu [--members N] [--messages M]");
                std::process::exit(2);
            }
        }
    }
    println!(
        "{members} members, {messages} messages of ~{} bytes each\n",
        message(0).len()
    );
    println!("| broadcast | delivered | server CPU ms | server CPU us per delivered message |");
    println!("|---|---|---|---|");
    for mode in ["plain", "shared", "per-socket"] {
        let row = run(mode, members, messages);
        println!(
            "| {} | {} | {:.0} | {:.2} |",
            row.mode,
            row.delivered,
            row.cpu_ns as f64 / 1e6,
            row.cpu_ns as f64 / 1e3 / row.delivered.max(1) as f64
        );
    }
}
