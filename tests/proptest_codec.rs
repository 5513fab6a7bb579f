//! Property tests of the frame codec: fragmented round trips through `Decoder`, `MessageCodec`
//! encode/decode/read_from round trips, the decoder on arbitrary bytes, and the UTF-8 validator
//! split property.
#![forbid(unsafe_code)]

use bytes::BytesMut;
use proptest::prelude::*;
use wsx::proto::{
    write_frame, Decoder, FrameHeader, Incoming, Limits, MaskPolicy, OpCode, ProtocolError,
    Received, Utf8Validator,
};
use wsx::{DecodedMessage, Message, MessageCodec};

// ------------------------------------------------------------------------------------------
// Deterministic data from a seed (generating 1 MiB through proptest element by element would be
// far too slow in debug builds).
// ------------------------------------------------------------------------------------------

/// xorshift64*: cheap, deterministic pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Valid UTF-8 of exactly `len` bytes, mixing 1- to 4-byte characters (including the edges
/// U+007F, U+0080, U+07FF, U+0800, U+FFFF, U+10000, U+10FFFF and the neighbours of the surrogate
/// range).
fn random_text(len: usize, seed: u64) -> String {
    const EDGES: [char; 10] = [
        '\u{7f}',
        '\u{80}',
        '\u{7ff}',
        '\u{800}',
        '\u{d7ff}',
        '\u{e000}',
        '\u{ffff}',
        '\u{10000}',
        '\u{10ffff}',
        '\u{fffd}',
    ];
    let mut rng = Rng::new(seed ^ 0x5555);
    let mut s = String::with_capacity(len);
    while s.len() < len {
        let room = len - s.len();
        let c = match rng.below(8) {
            0 => EDGES[rng.below(EDGES.len())],
            1 => char::from_u32(0x80 + rng.below(0x780) as u32).unwrap_or('x'),
            2 => char::from_u32(0x800 + rng.below(0xd000) as u32).unwrap_or('y'),
            3 => char::from_u32(0x10000 + rng.below(0x100000) as u32).unwrap_or('z'),
            _ => (b' ' + rng.below(95) as u8) as char,
        };
        if c.len_utf8() <= room {
            s.push(c);
        } else {
            s.push('a');
        }
    }
    debug_assert_eq!(s.len(), len);
    s
}

/// Payload sizes: the length-encoding edges, small random sizes, and sparsely up to 1 MiB.
fn payload_len() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => prop::sample::select(vec![0usize, 1, 125, 126, 127, 65535, 65536]),
        12 => 0usize..2048,
        1 => 0usize..=(1 << 20),
    ]
}

/// Splits `0..len` at `cuts` (positions taken modulo `len + 1`, sorted): the fragment bounds.
fn fragment_bounds(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
    points.sort_unstable();
    let mut bounds = Vec::new();
    let mut start = 0;
    for p in points {
        bounds.push((start, p));
        start = p;
    }
    bounds.push((start, len));
    bounds
}

/// Feeds `wire` to `decoder` in pieces of pseudo-random sizes in `1..=max_chunk`; returns every
/// item decoded, stopping at the first error.
fn feed(
    decoder: &mut Decoder,
    wire: &[u8],
    max_chunk: usize,
    seed: u64,
) -> (Vec<Incoming>, Option<ProtocolError>) {
    let mut rng = Rng::new(seed);
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut rest = wire;
    while !rest.is_empty() {
        let n = (1 + rng.below(max_chunk)).min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Some(e)),
            }
        }
    }
    (items, None)
}

// ------------------------------------------------------------------------------------------
// Fragmented round trips through the Decoder
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Fragmented {
    len: usize,
    text: bool,
    masked: bool,
    any_policy: bool,
    cuts: Vec<usize>,
    /// One entry per gap between fragments: a PING payload length to put there, or none.
    pings: Vec<Option<u8>>,
    chunk: usize,
    seed: u64,
}

fn fragmented() -> impl Strategy<Value = Fragmented> {
    (
        payload_len(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(any::<usize>(), 0..8),
        prop::collection::vec(prop::option::weighted(0.4, 0u8..=125), 8),
        prop_oneof![1usize..8, 8usize..512, 512usize..70_000],
        any::<u64>(),
    )
        .prop_map(
            |(len, text, masked, any_policy, cuts, pings, chunk, seed)| Fragmented {
                len,
                text,
                masked,
                any_policy,
                cuts,
                pings,
                chunk,
                seed,
            },
        )
}

fn check_fragmented(case: &Fragmented) -> Result<(), TestCaseError> {
    let payload: Vec<u8> = if case.text {
        random_text(case.len, case.seed).into_bytes()
    } else {
        random_bytes(case.len, case.seed)
    };
    let opcode = if case.text {
        OpCode::Text
    } else {
        OpCode::Binary
    };
    let mut keys = Rng::new(case.seed ^ 0xabcdef);
    let mut key = || -> Option<[u8; 4]> { case.masked.then(|| (keys.next() as u32).to_le_bytes()) };

    let bounds = fragment_bounds(payload.len(), &case.cuts);
    let mut wire = BytesMut::new();
    let mut pings_sent = Vec::new();
    for (i, &(start, end)) in bounds.iter().enumerate() {
        if i > 0 {
            if let Some(n) = case.pings[(i - 1) % case.pings.len()] {
                let ping = random_bytes(usize::from(n), case.seed + i as u64);
                write_frame(
                    FrameHeader::new(OpCode::Ping, ping.len() as u64, key()),
                    &ping,
                    &mut wire,
                );
                pings_sent.push(ping);
            }
        }
        let mut header = FrameHeader::new(
            if i == 0 { opcode } else { OpCode::Continue },
            (end - start) as u64,
            key(),
        );
        header.fin = i + 1 == bounds.len();
        write_frame(header, &payload[start..end], &mut wire);
    }

    let policy = match (case.any_policy, case.masked) {
        (true, _) => MaskPolicy::Any,
        (false, true) => MaskPolicy::Require,
        (false, false) => MaskPolicy::Forbid,
    };
    let mut decoder = Decoder::new(policy, Limits::default());
    // Tiny chunks of a large message would only make the test slow.
    let chunk = if payload.len() > 100_000 {
        case.chunk.max(4096)
    } else {
        case.chunk
    };
    let (items, err) = feed(&mut decoder, &wire, chunk, case.seed);
    prop_assert!(err.is_none(), "decode error {:?}", err);
    prop_assert!(decoder.is_idle());
    prop_assert_eq!(items.len(), pings_sent.len() + 1);
    for (item, ping) in items.iter().zip(&pings_sent) {
        prop_assert!(
            matches!(item, Incoming::Ping { payload, .. } if payload[..] == ping[..]),
            "{item:?}"
        );
    }
    match items.last() {
        Some(Incoming::Message(Received {
            opcode: got_opcode,
            payload: got,
            compressed,
            masked,
        })) => {
            prop_assert_eq!(*got_opcode, opcode);
            prop_assert!(
                got[..] == payload[..],
                "payload differs ({} bytes)",
                payload.len()
            );
            prop_assert!(!compressed);
            prop_assert_eq!(*masked, case.masked);
        }
        other => prop_assert!(false, "expected the message last, got {:?}", other),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn fragmented_messages_round_trip(case in fragmented()) {
        check_fragmented(&case)?;
    }
}

/// The edge sizes, each at least once in every mode, regardless of what proptest draws.
#[test]
fn fragmented_round_trip_edge_sizes() {
    for len in [0usize, 1, 125, 126, 127, 65535, 65536] {
        for (text, masked) in [(false, false), (false, true), (true, false), (true, true)] {
            let case = Fragmented {
                len,
                text,
                masked,
                any_policy: false,
                cuts: vec![len / 3, len / 2, 7],
                pings: vec![Some(0), None, Some(125)],
                chunk: 1000,
                seed: len as u64 * 4 + u64::from(text) * 2 + u64::from(masked),
            };
            check_fragmented(&case).unwrap_or_else(|e| panic!("{case:?}: {e}"));
        }
    }
}

// ------------------------------------------------------------------------------------------
// Message encode/decode/read_from
// ------------------------------------------------------------------------------------------

const MESSAGE_SIZES: [usize; 8] = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20];

fn message(len: usize, text: bool, compress: bool) -> Message {
    let mut m = if text {
        Message::text(random_text(len, len as u64))
    } else {
        Message::binary(random_bytes(len, len as u64))
    };
    m.set_compress(compress);
    m
}

/// The codec that writes with `masked` and reads up to 2 MiB.
fn codec(masked: bool) -> MessageCodec {
    MessageCodec::new().masked(masked).max_size(2 << 20)
}

/// `got` is `want`, sent with masking `masked`.
fn check_decoded(got: &DecodedMessage, want: &Message, masked: bool, what: &str) {
    assert_eq!(got.message.kind(), want.kind(), "{what}: kind");
    assert_eq!(got.masked, masked, "{what}: masked");
    assert_eq!(
        got.message.compress(),
        want.compress(),
        "{what}: compressed"
    );
    assert!(got.message.body() == want.body(), "{what}: body differs");
}

fn message_matrix(compress: bool) {
    for len in MESSAGE_SIZES {
        for text in [false, true] {
            for masked in [false, true] {
                let want = message(len, text, compress);
                let codec = codec(masked);
                let what = format!("len {len} text {text} masked {masked} compress {compress}");
                let mut wire = codec.encode(&want).expect("encode");
                // Followed by another frame: decode must take exactly one message's bytes.
                let tail = MessageCodec::new()
                    .encode(&Message::binary(&b"next"[..]))
                    .expect("encode");
                wire.extend_from_slice(&tail);
                let got = codec
                    .decode(&mut wire)
                    .expect("decode")
                    .unwrap_or_else(|| panic!("{what}: incomplete"));
                check_decoded(&got, &want, masked, &what);
                assert_eq!(&wire[..], &tail[..], "{what}: bytes consumed");
                // A cut before the end is "need more", never an error or a wrong message.
                let mut cut = codec.encode(&want).expect("encode");
                cut.truncate(cut.len() - 1);
                assert!(codec.decode(&mut cut).expect("partial").is_none());
            }
        }
    }
}

#[test]
fn message_encode_decode_matrix() {
    message_matrix(false);
}

#[cfg(feature = "deflate")]
#[test]
fn message_encode_decode_matrix_compressed() {
    message_matrix(true);
}

#[test]
fn message_decode_rejects_over_max_size() {
    let m = message(1000, false, false);
    let mut wire = MessageCodec::new().masked(true).encode(&m).expect("encode");
    assert!(MessageCodec::new().max_size(999).decode(&mut wire).is_err());
}

async fn read_from_matrix(compress: bool) {
    for len in MESSAGE_SIZES {
        for text in [false, true] {
            for masked in [false, true] {
                let want = message(len, text, compress);
                let codec = codec(masked);
                let what = format!("len {len} text {text} masked {masked} compress {compress}");
                // Two messages back to back: each read takes exactly its own bytes.
                let mut wire = codec.encode(&want).expect("encode");
                let second = Message::text("second");
                wire.extend_from_slice(&MessageCodec::new().encode(&second).expect("encode"));
                let mut reader: &[u8] = &wire;
                let got = codec
                    .read_from(&mut reader)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                check_decoded(&got, &want, masked, &what);
                let got = codec.read_from(&mut reader).await.expect("second");
                check_decoded(&got, &second, true, "second");
                assert!(reader.is_empty());
                // EOF at a message boundary or inside one: an error, not a hang or a panic.
                assert!(codec.read_from(&mut reader).await.is_err());
                let first = codec.encode(&want).expect("encode");
                for cut in [1, first.len() / 2, first.len() - 1] {
                    let mut reader: &[u8] = &first[..cut];
                    let r = codec.read_from(&mut reader).await;
                    assert!(r.is_err(), "{what}: read of {cut} bytes gave {r:?}");
                }
            }
        }
    }
}

#[tokio::test]
async fn message_read_from_slice() {
    read_from_matrix(false).await;
}

#[cfg(feature = "deflate")]
#[tokio::test]
async fn message_read_from_slice_compressed() {
    read_from_matrix(true).await;
}

#[tokio::test]
async fn message_write_to_read_from_duplex() {
    // (Compressed messages only where the build compresses.)
    for compress in [false, cfg!(feature = "deflate")] {
        // A small pipe: the writer blocks until the reader takes the bytes.
        let (mut a, mut b) = tokio::io::duplex(4096);
        let wants: Vec<(Message, bool)> = MESSAGE_SIZES
            .iter()
            .enumerate()
            .map(|(i, &len)| (message(len, i % 2 == 0, compress), i % 3 == 0))
            .collect();
        let to_send = wants.clone();
        let writer = tokio::spawn(async move {
            for (m, masked) in &to_send {
                codec(*masked).write_to(m, &mut a).await.expect("write_to");
            }
        });
        let reader = codec(true);
        for (want, masked) in &wants {
            let got = reader.read_from(&mut b).await.expect("read_from");
            check_decoded(&got, want, *masked, &format!("duplex len {}", want.len()));
        }
        writer.await.expect("writer task");
        // The writer is gone: the next read sees EOF.
        assert!(reader.read_from(&mut b).await.is_err());
    }
}

// ------------------------------------------------------------------------------------------
// The decoder on arbitrary input
// ------------------------------------------------------------------------------------------

/// Frame-like pieces: real headers (any opcode, reserved bits, mask, lengths near the encoding
/// edges) with short payloads, mixed with raw random bytes.
fn frameish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => (
            0u8..16,
            any::<bool>(),
            0u8..8,
            prop::option::of(any::<[u8; 4]>()),
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(op, fin, rsv, mask, payload)| {
                let b0 = (u8::from(fin) << 7) | (rsv << 4) | op;
                let mut out = Vec::new();
                match OpCode::from_u8(op) {
                    Some(opcode) => {
                        let mut h = FrameHeader::new(opcode, payload.len() as u64, mask);
                        h.fin = fin;
                        h.rsv = rsv;
                        let mut wire = BytesMut::new();
                        write_frame(h, &payload, &mut wire);
                        out.extend_from_slice(&wire);
                    }
                    None => {
                        out.push(b0);
                        out.push(payload.len() as u8);
                        out.extend_from_slice(&payload);
                    }
                }
                out
            }),
        1 => prop::collection::vec(any::<u8>(), 0..24),
        1 => prop::sample::select(vec![
            vec![0x82u8, 0x7e, 0x00, 0x7d],
            vec![0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0],
            vec![0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0],
            vec![0x81, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0x88, 0x01, 0x03],
            vec![0x88, 0x02, 0x03, 0xed],
            vec![0x81, 0x02, 0xed, 0xa0],
            vec![0x01, 0x01, 0xe2, 0x80, 0x02, 0x82, 0xac],
        ]),
    ];
    prop::collection::vec(piece, 0..12).prop_map(|pieces| pieces.concat())
}

fn decoder_for(cfg: u8) -> Decoder {
    let policy = [MaskPolicy::Any, MaskPolicy::Require, MaskPolicy::Forbid][usize::from(cfg % 3)];
    let limits = Limits {
        max_frame_size: [0, 16, 125, 1 << 20][usize::from((cfg >> 2) & 3)],
        max_message_size: [1, 64, 4096, 1 << 20][usize::from((cfg >> 4) & 3)],
        max_fragments: [1, 3][usize::from((cfg >> 6) & 1)],
    };
    Decoder::new(policy, limits)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Never panics; what comes out respects the limits; chunking does not change the result.
    #[test]
    fn decoder_survives_arbitrary_bytes(
        wire in prop_oneof![frameish(), prop::collection::vec(any::<u8>(), 0..256)],
        cfg in any::<u8>(),
        chunk in 1usize..32,
        seed in any::<u64>(),
    ) {
        let mut decoder = decoder_for(cfg);
        let limits = *decoder.limits();
        let chunked = feed(&mut decoder, &wire, chunk, seed);
        let _ = decoder.decode_eof();
        for item in &chunked.0 {
            match item {
                Incoming::Message(Received {
                    opcode, payload, ..
                }) => {
                    prop_assert!(opcode.is_data());
                    prop_assert!(payload.len() <= limits.max_message_size);
                    if *opcode == OpCode::Text {
                        prop_assert!(std::str::from_utf8(payload).is_ok());
                    }
                }
                Incoming::Ping { payload: p, .. } | Incoming::Pong { payload: p, .. } => {
                    prop_assert!(p.len() <= 125)
                }
                Incoming::Close { .. } => {}
            }
        }
        let whole = feed(&mut decoder_for(cfg), &wire, usize::MAX, seed);
        prop_assert_eq!(chunked, whole);
    }
}

// ------------------------------------------------------------------------------------------
// UTF-8 validator
// ------------------------------------------------------------------------------------------

/// Byte strings that are often nearly valid UTF-8: valid text with a byte changed, inserted or
/// cut, or raw bytes.
fn nearly_utf8() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<String>().prop_map(String::into_bytes),
        (any::<String>(), any::<usize>(), any::<u8>()).prop_map(|(s, at, b)| {
            let mut v = s.into_bytes();
            if !v.is_empty() {
                let i = at % v.len();
                v[i] = b;
            }
            v
        }),
        (any::<String>(), any::<usize>()).prop_map(|(s, at)| {
            let mut v = s.into_bytes();
            v.truncate(at % (v.len() + 1));
            v
        }),
        (
            any::<String>(),
            any::<usize>(),
            prop::sample::select(vec![
                0x80u8, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff,
            ])
        )
            .prop_map(|(s, at, b)| {
                let mut v = s.into_bytes();
                v.insert(at % (v.len() + 1), b);
                v
            }),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn is_valid_prefix(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Split anywhere (twice), the validator agrees with `std::str::from_utf8` on the whole, and
    /// fails exactly at the piece that makes the prefix impossible.
    #[test]
    fn utf8_validator_split_anywhere(bytes in nearly_utf8(), a in any::<usize>(), b in any::<usize>()) {
        let a = a % (bytes.len() + 1);
        let b = a + b % (bytes.len() - a + 1);
        let mut v = Utf8Validator::new();
        let mut ok = true;
        let mut fed = 0;
        for piece in [&bytes[..a], &bytes[a..b], &bytes[b..]] {
            fed += piece.len();
            let prefix_ok = is_valid_prefix(&bytes[..fed]);
            let r = v.feed(piece);
            prop_assert_eq!(r.is_ok(), prefix_ok, "prefix {:?}", &bytes[..fed]);
            if r.is_err() {
                ok = false;
                break;
            }
        }
        if ok {
            ok = v.finish().is_ok();
        }
        prop_assert_eq!(ok, std::str::from_utf8(&bytes).is_ok());
    }
}
