//! permessage-deflate throughput: compress and decompress 1 KiB JSON-like text and 64 KiB
//! messages, with and without context takeover.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsx::proto::deflate::*;
use wsx::proto::Role;

/// Deterministic JSON-like text of `len` bytes: similar records with varying values.
fn json_like(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let names = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut out = String::with_capacity(len + 128);
    out.push('[');
    while out.len() < len {
        let r = next();
        out.push_str(&format!(
            "{{\"id\":{},\"user\":\"{}\",\"score\":{}.{},\"active\":{},\"tags\":[\"ws\",\"t{}\"]}},",
            r % 100_000,
            names[(r >> 20) as usize % names.len()],
            (r >> 8) % 1000,
            (r >> 30) % 100,
            r & 1 == 0,
            (r >> 40) % 50
        ));
    }
    out.truncate(len);
    out.into_bytes()
}

fn params(no_context_takeover: bool) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: no_context_takeover,
        client_no_context_takeover: no_context_takeover,
        server_max_window_bits: 15,
        client_max_window_bits: 15,
    }
}

/// A stream of `count` different messages of `len` bytes each.
fn messages(len: usize, count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| json_like(len, i as u64 + 1)).collect()
}

fn print_ratios(level: u32) {
    for (len, label) in [(1024, "1 KiB"), (64 * 1024, "64 KiB")] {
        for no_ctx in [false, true] {
            let msgs = messages(len, 32);
            let mut deflater = Deflater::new(params(no_ctx), Role::Server, level, 8);
            let mut wire = BytesMut::new();
            let mut total = 0;
            for m in &msgs {
                wire.clear();
                deflater.compress(m, &mut wire).unwrap();
                total += wire.len();
            }
            let raw: usize = msgs.iter().map(Vec::len).sum();
            println!(
                "compression ratio, level {level}, {label}, context takeover {}: {:.3} ({} -> {} bytes)",
                !no_ctx,
                total as f64 / raw as f64,
                raw,
                total
            );
        }
    }
}

fn bench(c: &mut Criterion) {
    let level = DeflateConfig::default().compression_level;
    print_ratios(level);
    for (len, label) in [(1024, "1KiB_json"), (64 * 1024, "64KiB_json")] {
        let msgs = messages(len, 16);
        for no_ctx in [false, true] {
            let ctx = if no_ctx { "no_context" } else { "context" };

            let mut group = c.benchmark_group(format!("deflate/compress/{label}"));
            group.throughput(Throughput::Bytes(len as u64));
            let mut deflater = Deflater::new(params(no_ctx), Role::Server, level, 8);
            let mut wire = BytesMut::with_capacity(2 * len);
            let mut i = 0;
            group.bench_function(BenchmarkId::from_parameter(ctx), |b| {
                b.iter(|| {
                    wire.clear();
                    deflater
                        .compress(black_box(&msgs[i % msgs.len()]), &mut wire)
                        .unwrap();
                    i += 1;
                    black_box(wire.len())
                })
            });
            group.finish();

            // Pre-compress a stream, then inflate it in order with one Inflater, looping.
            let mut deflater = Deflater::new(params(no_ctx), Role::Server, level, 8);
            let compressed: Vec<Vec<u8>> = msgs
                .iter()
                .map(|m| {
                    let mut wire = BytesMut::new();
                    deflater.compress(m, &mut wire).unwrap();
                    wire.to_vec()
                })
                .collect();
            let mut group = c.benchmark_group(format!("deflate/decompress/{label}"));
            group.throughput(Throughput::Bytes(len as u64));
            let mut out = BytesMut::with_capacity(2 * len);
            let mut inflater = Inflater::new(params(no_ctx), Role::Client);
            let mut i = 0;
            group.bench_function(BenchmarkId::from_parameter(ctx), |b| {
                b.iter(|| {
                    // With context takeover the stream must restart with the first message.
                    if i % compressed.len() == 0 {
                        inflater = Inflater::new(params(no_ctx), Role::Client);
                    }
                    out.clear();
                    inflater
                        .decompress(
                            black_box(&compressed[i % compressed.len()]),
                            true,
                            &mut out,
                            usize::MAX,
                        )
                        .unwrap();
                    i += 1;
                    black_box(out.len())
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
