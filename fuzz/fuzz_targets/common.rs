//! Helpers shared by the fuzz targets (included with `#[path]`, not a target of its own).
#![allow(dead_code)]

use wsx::proto::deflate::{DeflateParams, Inflater};
use wsx::proto::Role;

/// A tiny deterministic generator (xorshift64*), seeded from the input, for chunk sizes.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: &[u8]) -> Self {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for &b in seed {
            s = (s ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3);
        }
        Rng(s | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `1..=max`.
    pub fn chunk(&mut self, max: usize) -> usize {
        1 + (self.next() % max as u64) as usize
    }
}

/// Splits `data` into pieces of random sizes in `1..=max` (a deterministic function of `seed`).
pub fn chunks<'a>(data: &'a [u8], seed: &[u8], max: usize) -> Vec<&'a [u8]> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = rng.chunk(max).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

/// An inflater with parameters picked by `sel`, for the side `role`.
pub fn inflater(sel: u8, role: Role) -> Inflater {
    let bits = 8 + (sel & 0x07).min(7);
    let params = DeflateParams {
        server_no_context_takeover: sel & 0x08 != 0,
        client_no_context_takeover: sel & 0x10 != 0,
        server_max_window_bits: bits,
        client_max_window_bits: bits,
    };
    Inflater::new(params, role)
}
