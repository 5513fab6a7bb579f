//! Benchmarks of the protocol core's hot paths: unmasking (against `memcpy` of the same size),
//! UTF-8 validation (against `std::str::from_utf8`) and frame decoding.
//!
//! `cargo bench --bench proto -- --warm-up-time 1 --measurement-time 3`
//!
//! The `mask_variants` group times alternative masking loops kept here as private functions, to
//! compare with `wsx::proto::apply_mask` on the same machine; they are checked against the
//! byte-at-a-time reference before timing.
#![forbid(unsafe_code)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use wsx::proto::{
    apply_mask, apply_mask_reference, write_frame, Decoder, FrameHeader, Incoming, Limits,
    MaskPolicy, OpCode, Utf8Validator,
};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
const SIZES: [(usize, &str); 4] = [
    (16, "16B"),
    (1024, "1KiB"),
    (64 * 1024, "64KiB"),
    (1024 * 1024, "1MiB"),
];

fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 7)) as u8)
        .collect()
}

// ------------------------------------------------------------------------------------------
// Masking variants (private; candidates for `src/proto/mask.rs`).
// ------------------------------------------------------------------------------------------

/// The key rotated so that index 0 of the result masks payload byte `offset`.
fn rotated(key: [u8; 4], offset: usize) -> [u8; 4] {
    let s = offset & 3;
    [key[s], key[(s + 1) & 3], key[(s + 2) & 3], key[(s + 3) & 3]]
}

/// Eight bytes at a time as a `u64`.
fn mask_u64(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let k = rotated(key, offset);
    let word = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut chunks = buf.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(raw) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// Sixteen bytes at a time as a `u128`, in 64-byte blocks of four.
fn mask_u128(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let k = rotated(key, offset);
    let mut pattern = [0u8; 16];
    for (i, b) in pattern.iter_mut().enumerate() {
        *b = k[i & 3];
    }
    let word = u128::from_ne_bytes(pattern);
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        for c in block.chunks_exact_mut(16) {
            let mut raw = [0u8; 16];
            raw.copy_from_slice(c);
            c.copy_from_slice(&(u128::from_ne_bytes(raw) ^ word).to_ne_bytes());
        }
    }
    let rest = blocks.into_remainder();
    let mut chunks = rest.chunks_exact_mut(16);
    for c in &mut chunks {
        let mut raw = [0u8; 16];
        raw.copy_from_slice(c);
        c.copy_from_slice(&(u128::from_ne_bytes(raw) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// 32-byte blocks converted to `&mut [u8; 32]`, XORed with a 32-byte key pattern.
fn mask_array32(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let k = rotated(key, offset);
    let mut wide = [0u8; 32];
    for (i, b) in wide.iter_mut().enumerate() {
        *b = k[i & 3];
    }
    let mut blocks = buf.chunks_exact_mut(32);
    for block in &mut blocks {
        let block: &mut [u8; 32] = block.try_into().expect("32-byte chunk");
        for i in 0..32 {
            block[i] ^= wide[i];
        }
    }
    for (i, b) in blocks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

/// The library's loop with fixed-size arrays instead of slices zipped (no bounds to track).
fn mask_array64(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let k = rotated(key, offset);
    let mut wide = [0u8; 64];
    for (i, b) in wide.iter_mut().enumerate() {
        *b = k[i & 3];
    }
    let mut blocks = buf.chunks_exact_mut(64);
    for block in &mut blocks {
        let block: &mut [u8; 64] = block.try_into().expect("64-byte chunk");
        for i in 0..64 {
            block[i] ^= wide[i];
        }
    }
    for (i, b) in blocks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i & 3];
    }
}

type MaskFn = fn(&mut [u8], [u8; 4], usize);

const VARIANTS: [(&str, MaskFn); 6] = [
    ("apply_mask", apply_mask),
    ("reference_bytewise", apply_mask_reference),
    ("u64_words", mask_u64),
    ("u128_words", mask_u128),
    ("array32", mask_array32),
    ("array64", mask_array64),
];

fn check_variants() {
    let data = payload(1000);
    for (name, f) in VARIANTS {
        for len in [0, 1, 3, 4, 7, 8, 15, 16, 31, 63, 64, 65, 127, 200, 1000] {
            for offset in 0..4 {
                let mut got = data[..len].to_vec();
                let mut want = data[..len].to_vec();
                f(&mut got, KEY, offset);
                apply_mask_reference(&mut want, KEY, offset);
                assert_eq!(got, want, "{name} len {len} offset {offset}");
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Groups
// ------------------------------------------------------------------------------------------

fn bench_mask(c: &mut Criterion) {
    let mut group = c.benchmark_group("mask");
    for (size, label) in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let src = payload(size);
        let mut buf = src.clone();
        group.bench_with_input(BenchmarkId::new("apply_mask", label), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), black_box(KEY), 0))
        });
        let mut dst = vec![0u8; size];
        group.bench_with_input(BenchmarkId::new("memcpy", label), &size, |b, _| {
            b.iter(|| dst.copy_from_slice(black_box(&src)));
            black_box(&dst);
        });
    }
    group.finish();
}

fn bench_mask_variants(c: &mut Criterion) {
    check_variants();
    let mut group = c.benchmark_group("mask_variants");
    for (size, label) in [(16, "16B"), (1024, "1KiB"), (64 * 1024, "64KiB")] {
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf = payload(size);
        for (name, f) in VARIANTS {
            group.bench_with_input(BenchmarkId::new(name, label), &size, |b, _| {
                b.iter(|| f(black_box(&mut buf), black_box(KEY), 1))
            });
        }
    }
    group.finish();
}

/// Valid UTF-8 of about `len` bytes: ASCII, or a mix of 1-4 byte characters.
fn text(len: usize, mixed: bool) -> Vec<u8> {
    let unit = if mixed {
        "héllo wörld κόσμε € 𝄞 日本語 "
    } else {
        "The quick brown fox jumps over the lazy dog. "
    };
    let mut s = String::with_capacity(len + unit.len());
    while s.len() < len {
        s.push_str(unit);
    }
    let mut end = len;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.into_bytes()
}

fn bench_utf8(c: &mut Criterion) {
    let mut group = c.benchmark_group("utf8");
    for (size, label) in SIZES {
        for (kind, mixed) in [("ascii", false), ("mixed", true)] {
            let data = text(size, mixed);
            group.throughput(Throughput::Bytes(data.len() as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("validator_{kind}"), label),
                &data,
                |b, data| {
                    b.iter(|| {
                        let mut v = Utf8Validator::new();
                        v.feed(black_box(data)).expect("valid");
                        v.finish().expect("complete")
                    })
                },
            );
            group.bench_with_input(
                BenchmarkId::new(format!("std_{kind}"), label),
                &data,
                |b, data| b.iter(|| std::str::from_utf8(black_box(data)).is_ok()),
            );
        }
    }
    group.finish();
}

fn masked_frame(opcode: OpCode, payload: &[u8], key: [u8; 4], dst: &mut BytesMut) {
    write_frame(
        FrameHeader::new(opcode, payload.len() as u64, Some(key)),
        payload,
        dst,
    );
}

fn bench_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");

    const FRAMES: usize = 10_000;
    let mut small = BytesMut::new();
    for i in 0..FRAMES {
        let p = [i as u8; 16];
        masked_frame(OpCode::Binary, &p, [i as u8, 1, 2, 3], &mut small);
    }
    group.throughput(Throughput::Elements(FRAMES as u64));
    group.bench_function("10k_masked_16B_frames", |b| {
        b.iter_batched(
            || small.clone(),
            |mut buf| {
                let mut d = Decoder::new(MaskPolicy::Require, Limits::default());
                let mut n = 0usize;
                while let Some(item) = d.decode(&mut buf).expect("valid frames") {
                    if let Incoming::Message(m) = item {
                        n += m.payload.len();
                    }
                }
                assert_eq!(n, FRAMES * 16);
                n
            },
            BatchSize::LargeInput,
        )
    });

    let big_payload = payload(1 << 20);
    let mut big = BytesMut::new();
    masked_frame(OpCode::Binary, &big_payload, KEY, &mut big);
    group.throughput(Throughput::Bytes(1 << 20));
    group.bench_function("1MiB_masked_binary_frame", |b| {
        b.iter_batched(
            || big.clone(),
            |mut buf| {
                let mut d = Decoder::new(MaskPolicy::Require, Limits::default());
                match d.decode(&mut buf).expect("valid frame") {
                    Some(Incoming::Message(m)) => m.payload.len(),
                    other => panic!("{other:?}"),
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_mask,
    bench_mask_variants,
    bench_utf8,
    bench_decode
);
criterion_main!(benches);
