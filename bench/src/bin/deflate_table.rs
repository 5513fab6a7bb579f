//! `deflate-table [--messages N]`: what the permessage-deflate compressor costs and gives per
//! window bits x memLevel, at level 1, for the table in `docs/performance.md`.
//!
//! For every setting: the heap one compressor holds (`Deflater::memory_usage`, and the RSS
//! measured over 200 of them after one 1 KiB message each), the compression ratio on a stream
//! of ~1 KiB JSON-like chat messages with context takeover and without it (every message on
//! its own), and single-thread compression msg/s with context takeover. Markdown on stdout.
#![forbid(unsafe_code)]

use std::time::Instant;

use bytes::BytesMut;
use wsx::proto::deflate::{DeflateParams, Deflater};
use wsx::Role;

/// A ~1 KiB JSON array of chat messages; `seed` varies users, times and words.
fn chat_json(seed: u64) -> Vec<u8> {
    const USERS: [&str; 8] = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
    ];
    const WORDS: [&str; 16] = [
        "hello",
        "world",
        "the",
        "quick",
        "brown",
        "fox",
        "jumps",
        "over",
        "lazy",
        "dog",
        "websocket",
        "message",
        "room",
        "chat",
        "deflate",
        "server",
    ];
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut out = String::from("[");
    while out.len() < 1000 {
        let r = next();
        out.push_str(&format!(
            "{{\"id\":{},\"user\":\"{}\",\"ts\":{},\"text\":\"",
            seed * 100 + r % 97,
            USERS[(r % 8) as usize],
            1_700_000_000_000u64 + r % 1_000_000
        ));
        for k in 0..(3 + r % 6) {
            out.push_str(WORDS[((r >> (k * 4)) % 16) as usize]);
            out.push(' ');
        }
        out.push_str("\",\"read\":false},");
    }
    out.pop();
    out.push(']');
    out.into_bytes()
}

fn params(no_context_takeover: bool, bits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: no_context_takeover,
        server_max_window_bits: bits,
        ..DeflateParams::default()
    }
}

/// Resident set size of this process, KiB.
fn rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut n = 20_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--messages", Some(v)) => n = v,
            _ => {
                eprintln!("usage: deflate-table [--messages N]");
                std::process::exit(2);
            }
        }
    }
    let msgs: Vec<Vec<u8>> = (0..1000).map(chat_json).collect();
    let avg = msgs.iter().map(Vec::len).sum::<usize>() / msgs.len();
    println!("level 1, {n} messages of ~{avg} bytes (JSON-like chat), one thread\n");
    println!(
        "| window bits | memLevel | heap KiB held | RSS KiB per compressor | ratio, context takeover | ratio, each message alone | msg/s (context takeover) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut wire = BytesMut::with_capacity(4096);
    for bits in [15u8, 13, 12, 11, 10, 9] {
        for mem_level in [8u8, 4, 1] {
            let new = |no_ctx| Deflater::new(params(no_ctx, bits), Role::Server, 1, mem_level);
            // Memory: 200 compressors, one message each.
            let before = rss_kib();
            let mut many: Vec<Deflater> = (0..200).map(|_| new(false)).collect();
            for d in &mut many {
                wire.clear();
                d.compress(&msgs[0], &mut wire).expect("compress");
            }
            let rss = (rss_kib().saturating_sub(before)) as f64 / 200.0;
            let heap = many[0].memory_usage() as f64 / 1024.0;
            drop(many);
            let mut ratio = [0.0; 2];
            let mut rate = 0.0;
            for (i, no_ctx) in [false, true].into_iter().enumerate() {
                let mut d = new(no_ctx);
                let (mut inb, mut outb) = (0usize, 0usize);
                let start = Instant::now();
                for m in msgs.iter().cycle().take(n) {
                    wire.clear();
                    d.compress(m, &mut wire).expect("compress");
                    inb += m.len();
                    outb += wire.len();
                }
                if !no_ctx {
                    rate = n as f64 / start.elapsed().as_secs_f64();
                }
                ratio[i] = outb as f64 / inb as f64;
            }
            println!(
                "| {bits} | {mem_level} | {heap:.1} | {rss:.1} | {:.3} | {:.3} | {:.0} |",
                ratio[0], ratio[1], rate
            );
        }
    }
}
