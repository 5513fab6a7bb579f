//! Arbitrary bytes as permessage-deflate data: `decompress_message` with a 64 KiB limit, and an
//! `Inflater` fed the bytes as fragments of one message (then as a second message, to exercise
//! context takeover). The output never exceeds the limit; nothing panics.
#![no_main]
#![forbid(unsafe_code)]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wsx::proto::deflate::decompress_message;
use wsx::proto::Role;

#[path = "common.rs"]
mod common;

const LIMIT: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, data)) = data.split_first() else {
        return;
    };
    let mut out = BytesMut::new();
    let _ = decompress_message(data, LIMIT, &mut out);
    assert!(
        out.len() <= LIMIT,
        "decompress_message gave {} bytes",
        out.len()
    );

    let small = 1 + usize::from(sel) * 64;
    let role = if sel & 0x20 != 0 {
        Role::Client
    } else {
        Role::Server
    };
    let mut inflater = common::inflater(sel, role);
    for limit in [LIMIT, small] {
        let mut dst = BytesMut::new();
        let pieces = common::chunks(data, &[sel], 1 + usize::from(sel % 200));
        let last = pieces.len().saturating_sub(1);
        let mut failed = false;
        for (i, piece) in pieces.iter().enumerate() {
            if inflater
                .decompress(piece, i == last, &mut dst, limit)
                .is_err()
            {
                failed = true;
                break;
            }
            assert!(
                dst.len() <= limit,
                "inflater gave {} bytes, limit {limit}",
                dst.len()
            );
        }
        if pieces.is_empty() {
            let _ = inflater.decompress(&[], true, &mut dst, limit);
            assert!(dst.len() <= limit);
        }
        if failed {
            break;
        }
    }
    let _ = inflater.memory_usage();
});
