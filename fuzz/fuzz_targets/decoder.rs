//! Arbitrary bytes into `wsx::proto::Decoder`, in random-sized chunks, under every mask policy,
//! small limits, with and without an inflater. It must never panic, never hand out a message
//! over the limits or invalid text, and decode the same items whatever the chunking.
#![no_main]
#![forbid(unsafe_code)]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wsx::proto::{Decoder, Incoming, Limits, MaskPolicy, OpCode, ProtocolError, Received, Role};

#[path = "common.rs"]
mod common;

const SIZES: [usize; 8] = [0, 1, 16, 125, 126, 1024, 65536, 1 << 20];

fn make_decoder(cfg: &[u8; 3]) -> (Decoder, Limits) {
    let policy = match cfg[0] % 3 {
        0 => MaskPolicy::Any,
        1 => MaskPolicy::Require,
        _ => MaskPolicy::Forbid,
    };
    let limits = Limits {
        max_frame_size: SIZES[usize::from(cfg[1] & 7)],
        max_message_size: SIZES[usize::from((cfg[1] >> 3) & 7)],
        max_fragments: [1, 2, 4, 64][usize::from(cfg[1] >> 6)],
    };
    let mut decoder = Decoder::new(policy, limits);
    if cfg[0] & 0x80 != 0 {
        let role = if policy == MaskPolicy::Forbid {
            Role::Client
        } else {
            Role::Server
        };
        decoder.set_inflater(Some(common::inflater(cfg[2], role)));
    }
    (decoder, limits)
}

/// Feeds `pieces` one after the other; returns the items and the error that stopped it.
fn run(cfg: &[u8; 3], pieces: &[&[u8]]) -> (Vec<Incoming>, Option<ProtocolError>) {
    let (mut decoder, limits) = make_decoder(cfg);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => {
                    check_item(&item, &limits);
                    items.push(item);
                }
                Ok(None) => break,
                Err(err) => {
                    let _ = err.close_code();
                    let _ = err.to_string();
                    return (items, Some(err));
                }
            }
        }
        assert!(decoder.bytes_wanted(&buf) >= 1);
    }
    let _ = decoder.decode_eof();
    (items, None)
}

fn check_item(item: &Incoming, limits: &Limits) {
    match item {
        Incoming::Message(Received {
            opcode, payload, ..
        }) => {
            assert!(opcode.is_data(), "message with opcode {opcode:?}");
            assert!(
                payload.len() <= limits.max_message_size,
                "message of {} bytes over the limit {}",
                payload.len(),
                limits.max_message_size
            );
            if *opcode == OpCode::Text {
                assert!(std::str::from_utf8(payload).is_ok(), "invalid UTF-8 text");
            }
        }
        Incoming::Ping { payload: p, .. } | Incoming::Pong { payload: p, .. } => {
            assert!(p.len() <= 125)
        }
        Incoming::Close {
            frame: Some(frame), ..
        } => {
            assert!(matches!(
                frame.code.as_u16(),
                1000..=1003 | 1007..=1014 | 3000..=4999
            ));
            assert!(frame.reason.len() <= 123);
        }
        Incoming::Close { frame: None, .. } => {}
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let cfg = [data[0], data[1], data[2]];
    let seed = data[3];
    let input = &data[4..];
    let max_chunk = 1 + usize::from(seed & 0x3f);
    let pieces = common::chunks(input, &[seed], max_chunk);
    let chunked = run(&cfg, &pieces);
    // The same bytes in one piece must give the same items and the same error.
    let whole = run(&cfg, &[input]);
    assert_eq!(chunked, whole, "chunking changed the result");
});
