//! permessage-deflate (RFC 7692), sans-I/O: negotiation, the per-connection compressor
//! ([`Deflater`]) and the bounded per-connection decompressor ([`Inflater`]).
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | [`DeflateConfig`], [`DeflateParams`], the limits both directions share |
//! | `negotiate.rs` | the offer, the server's answer, the client's check of it, [`NegotiationError`] |
//! | `compress.rs` | [`Deflater`] (zlib-rs with `windowBits` and `memLevel`), stored blocks, [`compress_message`] |
//! | `inflate.rs` | [`Inflater`], the bounded inflate, [`decompress_message`] |
//!
//! # Negotiation
//!
//! A client sends [`DeflateConfig::client_offer`] and checks the answer with
//! [`DeflateConfig::client_accept`]; a server answers with [`DeflateConfig::server_negotiate`].
//! Both produce the [`DeflateParams`] the two ends agreed on, which the [`Deflater`] and
//! [`Inflater`] of each end are built from.
//!
//! # Window bits 8
//!
//! zlib (and zlib-rs, which this crate uses) cannot produce raw DEFLATE with a 256-byte window:
//! `deflateInit2` refuses `windowBits = -8`, and silently using 9 would break RFC 7692 §7.1.2,
//! since the peer may have sized its decompressor for 256 bytes. Answering an offer of
//! `server_max_window_bits=8` with `server_max_window_bits=9` is not allowed either (the answer
//! must be "the same or smaller"). So an end whose compressor is limited to 8 bits stays
//! RFC-compliant by emitting DEFLATE *stored* blocks only: they never reference earlier data,
//! hence satisfy every window limit, and cost 5 bytes per 64 KiB plus 1 byte per message.
//! [`Deflater::is_stored_only`] tells the caller, who may then rather send such messages
//! uncompressed (RSV1 is per message). This keeps those offers acceptable — the peer's direction
//! is still compressed — instead of declining them. When *we* ask the peer for a window, 8 is
//! raised to 9, because many zlib-based peers cannot honour 8 and would fail the connection.
//!
//! # Memory
//!
//! A zlib-rs compressor holds about `134 KiB + 4 << window_bits + 7 << (mem_level + 6)` bytes
//! (its hash table is 128 KiB whatever `memLevel`), a decompressor about 39 KiB. Both are made
//! on first use, and [`DeflateConfig::idle_release`] gives them back when the connection has
//! been quiet: without context takeover nothing needs keeping; with it, the compressor keeps
//! its last 4 KiB of input as the preset dictionary of the stream it rebuilds (the peer's
//! decompressor still holds those bytes, so this is ordinary context takeover on the wire),
//! while the decompressor, whose window cannot be read back safely, stays.
//!
//! Decompression always runs with a 15-bit window: inflating with a larger window than the
//! peer's is always correct, zlib-rs allocates the 32 KiB window regardless, and it keeps
//! `reset()` allocation-free.

use std::time::Duration;

#[cfg(feature = "deflate")]
use super::Role;

#[cfg(feature = "deflate")]
mod compress;
#[cfg(not(feature = "deflate"))]
mod disabled;
#[cfg(feature = "deflate")]
mod inflate;
mod negotiate;

#[cfg(feature = "deflate")]
pub use compress::{compress_message, Deflater};
#[cfg(not(feature = "deflate"))]
pub(crate) use disabled::{Deflater, Inflater};
#[cfg(feature = "deflate")]
pub use inflate::{decompress_message, Inflater};
pub use negotiate::NegotiationError;

/// Whether this build compresses (feature `deflate`). Without it, permessage-deflate is never
/// offered nor accepted, and the options' `deflate` is ignored.
pub const AVAILABLE: bool = cfg!(feature = "deflate");

/// The tail of a sync flush (an empty stored block) that RFC 7692 §7.2.1 strips from every
/// message and §7.2.2 appends again before inflating.
#[cfg(feature = "deflate")]
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// The smallest and largest LZ77 window (base-2 logarithm) RFC 7692 allows.
const MIN_WINDOW_BITS: u8 = 8;
const MAX_WINDOW_BITS: u8 = 15;

/// The largest output chunk offered to zlib at once, in either direction: output space is
/// zero-filled before zlib writes to it (no `unsafe` here), so chunks stay moderate.
#[cfg(feature = "deflate")]
const MAX_CHUNK: usize = 256 * 1024;

/// Parameters of a standalone message (the seed's `Message` with `compress` set): no context
/// takeover on either side and full windows, so that every message inflates on its own.
pub const STANDALONE: DeflateParams = DeflateParams {
    server_no_context_takeover: true,
    client_no_context_takeover: true,
    server_max_window_bits: MAX_WINDOW_BITS,
    client_max_window_bits: MAX_WINDOW_BITS,
};

/// What an endpoint is willing to negotiate (client: what it offers; server: what it accepts).
///
/// Out-of-range values are clamped rather than rejected: window bits to `8..=15`,
/// `compression_level` to `0..=9`, `mem_level` to `1..=9`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeflateConfig {
    /// Client: ask the server not to keep its LZ77 window between messages. Server: always
    /// answer with it (our compressor resets after every message), even when not asked.
    pub server_no_context_takeover: bool,
    /// Client: offer it (we then reset our compressor after every message). Server: ask the
    /// client for it (allowed even when the client did not offer it).
    pub client_no_context_takeover: bool,
    /// Client: ask the server to limit its window to this many bits (8 is asked as 9, see the
    /// module docs). Server: the largest window our compressor uses; an offer asking for less is
    /// honoured, and with `Some` we announce it even when not asked.
    pub server_max_window_bits: Option<u8>,
    /// Client: the largest window our compressor uses (the offer always carries
    /// `client_max_window_bits`, with this value as hint, since we honour any limit the server
    /// sets). Server: ask the client to limit its window (only when its offer allowed it; 8 is
    /// asked as 9).
    pub client_max_window_bits: Option<u8>,
    /// zlib compression level, `0..=9`. Default 1. Measured with zlib-rs on a stream of
    /// JSON-like messages with context takeover: 1 KiB messages compress to 14% at level 1
    /// against 10% at level 6, but 8 times faster (~650 MB/s against ~80 MB/s); 64 KiB
    /// messages to 24% against 14%, 6 times faster (~260 against ~45 MB/s). A server sending
    /// to many clients is CPU-bound long before its links are full at these ratios; pick 6 to
    /// favour bandwidth. Level 0 sends stored blocks without creating a zlib stream at all.
    pub compression_level: u32,
    /// Messages shorter than this are sent uncompressed. Default 64: below it, a message
    /// compressed on its own rarely gets smaller once the block header and flush bits are
    /// paid, and the zlib call costs more than the bytes saved. The compressor itself does not
    /// look at it: the caller checks it before calling [`Deflater::compress`].
    pub threshold: usize,
    /// zlib `memLevel`, `1..=9` (default 4): sizes the compressor's pending and symbol buffers
    /// (`7 << (mem_level + 6)` bytes: 112 KiB at 8, 7 KiB at 4, 896 bytes at 1). zlib-rs
    /// keeps its hash table at 128 KiB whatever the level (zlib would shrink it too). At level
    /// 1 the output does not depend on it (measured on JSON-like text); at higher levels a
    /// small value ends blocks sooner and compresses a little less. See
    /// `docs/performance.md` for what each setting costs and compresses.
    pub mem_level: u8,
    /// After this long without a compressed message in either direction, a connection gives
    /// back its compression state: the compressor's zlib state (with context takeover it
    /// keeps a copy of the last 4 KiB it compressed, the preset dictionary of the stream it
    /// rebuilds for the next message), the decompressor's when the peer has no context
    /// takeover, and the scratch buffer. `None` keeps everything for the connection's life.
    pub idle_release: Option<Duration>,
    /// The largest window our compressor uses, whatever was negotiated, clamped to `9..=15`
    /// (default 13: 8 KiB). A window smaller than the one the peer allows is always valid (its
    /// decompressor never needs to know), so nothing is announced and every peer works; it
    /// only reaches less far back. Measured on 1 KiB JSON-like chat messages with context
    /// takeover, 12-13 bits compress within 1% of 15 and the compressor allocates 96 KiB less
    /// at 13 (see `docs/performance.md`), which matters when many connections compress at
    /// once. Smaller costs CPU: zlib-rs slides its fixed 128 KiB hash table each time a
    /// window's worth of input went through.
    pub compressor_window_bits: u8,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
            compression_level: 1,
            threshold: 64,
            mem_level: 4,
            idle_release: Some(Duration::from_secs(1)),
            compressor_window_bits: 13,
        }
    }
}

impl DeflateConfig {
    /// A preset for many connections that are mostly idle: no context takeover in either
    /// direction, 11-bit windows, level 1, a threshold of 128 bytes, `mem_level` 1 and the
    /// compression state given back after 100 ms without a compressed message.
    ///
    /// Without context takeover nothing needs keeping between messages, so an idle connection
    /// holds no compressor nor decompressor; the price is a new zlib stream (about 150 KiB
    /// allocated and its hash table cleared) for the first message after each quiet period,
    /// and every message compressed on its own.
    pub fn low_memory() -> Self {
        DeflateConfig {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: Some(11),
            client_max_window_bits: Some(11),
            compression_level: 1,
            threshold: 128,
            mem_level: 1,
            idle_release: Some(Duration::from_millis(100)),
            compressor_window_bits: 11,
        }
    }
}

/// What a compressor's output depends on besides the payload, when it has no context
/// takeover: `(window_bits, level, mem_level)`. Two such compressors with equal settings
/// produce the same bytes for the same message.
pub type DeflateSettings = (u8, u32, u8);

/// Clamps configured window bits into the RFC range.
fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

/// The parameters both ends agreed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// The server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window of the server's compressor, `8..=15` (15 when not negotiated).
    pub server_max_window_bits: u8,
    /// The largest LZ77 window of the client's compressor, `8..=15` (15 when not negotiated).
    pub client_max_window_bits: u8,
}

impl Default for DeflateParams {
    /// Plain `permessage-deflate`: context takeover both ways, 15-bit windows.
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }
}

impl DeflateParams {
    /// `(no_context_takeover, max_window_bits)` of the compressor run by `sender`.
    #[cfg(feature = "deflate")]
    fn side(&self, sender: Role) -> (bool, u8) {
        match sender {
            Role::Server => (self.server_no_context_takeover, self.server_max_window_bits),
            Role::Client => (self.client_no_context_takeover, self.client_max_window_bits),
        }
    }
}

#[cfg(all(test, feature = "deflate"))]
mod test_support {
    use bytes::BytesMut;

    use super::*;

    /// xorshift64*: a tiny seeded RNG, so failures reproduce.
    pub(super) struct Rng(pub(super) u64);

    impl Rng {
        pub(super) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(super) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub(super) fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
        /// Text-like data: words from a small vocabulary.
        pub(super) fn text(&mut self, len: usize) -> Vec<u8> {
            const WORDS: [&str; 8] = [
                "{\"id\":",
                "\"name\":",
                "\"value\"",
                "true,",
                "null",
                "websocket ",
                "deflate ",
                "42}",
            ];
            let mut out = Vec::with_capacity(len + 16);
            while out.len() < len {
                out.extend_from_slice(WORDS[self.below(WORDS.len())].as_bytes());
            }
            out.truncate(len);
            out
        }
    }

    pub(super) fn inflate_all(inflater: &mut Inflater, data: &[u8]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        inflater
            .decompress(data, true, &mut dst, usize::MAX)
            .unwrap();
        dst.to_vec()
    }

    pub(super) fn deflate(deflater: &mut Deflater, payload: &[u8]) -> Vec<u8> {
        let mut dst = BytesMut::new();
        deflater.compress(payload, &mut dst).unwrap();
        dst.to_vec()
    }

    pub(super) fn params(snct: bool, cnct: bool, sbits: u8, cbits: u8) -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: snct,
            client_no_context_takeover: cnct,
            server_max_window_bits: sbits,
            client_max_window_bits: cbits,
        }
    }
}

#[cfg(all(test, feature = "deflate"))]
mod tests {
    use bytes::BytesMut;

    use super::test_support::*;
    use super::*;
    use crate::proto::ProtocolError;

    fn roundtrip_session(p: DeflateParams, sender: Role, level: u32, mem_level: u8, seed: u64) {
        let receiver = match sender {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        };
        let mut rng = Rng(seed);
        let mut deflater = Deflater::new(p, sender, level, mem_level);
        let mut inflater = Inflater::new(p, receiver);
        let mut wire = BytesMut::new();
        let mut out = BytesMut::new();
        for i in 0..20 {
            let len = match rng.below(4) {
                0 => rng.below(100),
                1 => rng.below(5_000),
                2 => rng.below(20_000),
                _ => rng.below(70_000),
            };
            let payload = if i % 3 == 0 {
                rng.bytes(len)
            } else {
                rng.text(len)
            };
            wire.clear();
            deflater.compress(&payload, &mut wire).unwrap();
            out.clear();
            // Feed in random fragments.
            let mut rest = &wire[..];
            while rest.len() > 1 && rng.below(3) == 0 {
                let cut = rng.below(rest.len());
                inflater
                    .decompress(&rest[..cut], false, &mut out, payload.len())
                    .unwrap();
                rest = &rest[cut..];
            }
            inflater
                .decompress(rest, true, &mut out, payload.len())
                .unwrap();
            assert_eq!(out.len(), payload.len(), "{p:?} {sender:?} message {i}");
            assert!(out[..] == payload[..], "{p:?} {sender:?} message {i}");
        }
    }

    #[test]
    fn roundtrip_every_window_and_context_mode() {
        let mut seed = 1;
        for bits in 8..=15 {
            for no_ctx in [false, true] {
                for sender in [Role::Client, Role::Server] {
                    let p = match sender {
                        Role::Client => params(false, no_ctx, 15, bits),
                        Role::Server => params(no_ctx, false, bits, 15),
                    };
                    roundtrip_session(p, sender, 1, 8, seed);
                    seed += 1;
                }
            }
        }
    }

    #[test]
    fn roundtrip_levels_and_low_memory() {
        for (seed, level) in (0..=9).enumerate() {
            roundtrip_session(
                params(false, false, 15, 15),
                Role::Client,
                level,
                8,
                100 + seed as u64,
            );
        }
        roundtrip_session(params(true, true, 11, 11), Role::Server, 1, 4, 7);
    }

    #[test]
    fn one_shot_helpers() {
        let text = Rng(5).text(50_000);
        let mut wire = BytesMut::new();
        compress_message(&text, 6, &mut wire).unwrap();
        assert!(wire.len() < text.len() / 3);
        // Readable by any inflater, including one with context takeover.
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        assert_eq!(inflate_all(&mut inflater, &wire), text);
        let mut out = BytesMut::from(&b"prefix"[..]);
        decompress_message(&wire, usize::MAX, &mut out).unwrap();
        assert_eq!(&out[..6], b"prefix");
        assert!(out[6..] == text[..]);
        let mut out = BytesMut::new();
        let err = decompress_message(&wire, 1000, &mut out).unwrap_err();
        assert_eq!(err, ProtocolError::MessageTooBig { limit: 1000 });
    }

    #[test]
    fn lazy_state_and_release() {
        let p = DeflateParams::default();
        let mut deflater = Deflater::new(p, Role::Client, 1, 8);
        let mut inflater = Inflater::new(p, Role::Server);
        assert_eq!(deflater.memory_usage(), 0);
        assert_eq!(inflater.memory_usage(), 0);
        let wire = deflate(&mut deflater, b"some message");
        inflate_all(&mut inflater, &wire);
        assert!(deflater.memory_usage() > 300 * 1024);
        assert!(inflater.memory_usage() > 32 * 1024);
        // With context takeover and no kept history, releasing would lose the window.
        assert!(!deflater.release());
        assert!(deflater.memory_usage() > 0);

        // Low-memory: small windows and memLevel, no context takeover: release frees it all.
        let low = DeflateConfig::low_memory();
        let (params, response) = low.server_negotiate([low.client_offer().as_str()]).unwrap();
        assert_eq!(low.client_accept([response.as_str()]), Ok(Some(params)));
        assert_eq!(params, self::params(true, true, 11, 11));
        let mut deflater =
            Deflater::new(params, Role::Client, low.compression_level, low.mem_level);
        let wire = deflate(&mut deflater, &Rng(9).text(1000));
        let held = deflater.memory_usage();
        assert!(held > 128 * 1024 && held < 150 * 1024, "{held}");
        assert!(deflater.release());
        assert_eq!(deflater.memory_usage(), 0);
        let mut inflater = Inflater::new(params, Role::Server);
        assert_eq!(inflate_all(&mut inflater, &wire), Rng(9).text(1000));
        assert!(inflater.release());
        assert_eq!(inflater.memory_usage(), 0);
        // The next message simply starts a new stream.
        let again = deflate(&mut deflater, &Rng(9).text(1000));
        assert_eq!(again, wire);
        assert_eq!(inflate_all(&mut inflater, &again), Rng(9).text(1000));
    }

    #[test]
    fn mem_level_reaches_zlib() {
        // memLevel sizes zlib's symbol buffer: at 1 it holds 128 symbols, so a level-6 stream
        // ends a block (and sends new Huffman tables) every 128 symbols.
        let text = Rng(11).text(16 * 1024);
        let mut sizes = Vec::new();
        for mem_level in [1, 8] {
            let mut d = Deflater::new(DeflateParams::default(), Role::Client, 6, mem_level);
            let wire = deflate(&mut d, &text);
            let mut inflater = Inflater::new(DeflateParams::default(), Role::Server);
            assert_eq!(inflate_all(&mut inflater, &wire), text);
            sizes.push((wire.len(), d.memory_usage()));
        }
        let ((small_len, small_mem), (big_len, big_mem)) = (sizes[0], sizes[1]);
        assert!(small_len > big_len, "{sizes:?}");
        assert_eq!(big_mem - small_mem, (7 << 14) - (7 << 7));
        // Out-of-range memLevels are clamped, not passed on (zlib-rs would refuse them).
        let mut d = Deflater::new(DeflateParams::default(), Role::Client, 6, 0);
        assert_eq!(d.settings(), (15, 6, 1));
        deflate(&mut d, &text);
        let d = Deflater::new(DeflateParams::default(), Role::Client, 6, 200);
        assert_eq!(d.settings(), (15, 6, 9));
    }

    #[test]
    fn released_context_takeover_stream_resumes_from_history() {
        for bits in [9, 12, 15] {
            let p = params(false, false, bits, 15);
            let mut kept = Deflater::new(p, Role::Server, 1, 8);
            let mut released = Deflater::new(p, Role::Server, 1, 8);
            released.keep_history();
            let mut inflater = Inflater::new(p, Role::Client);
            let mut rng = Rng(u64::from(bits));
            let first = rng.text(3000);
            let second = [&first[first.len() - 500..], &rng.text(300)[..]].concat();
            let wire = deflate(&mut kept, &first);
            assert_eq!(deflate(&mut released, &first), wire);
            assert_eq!(inflate_all(&mut inflater, &wire), first);
            assert!(released.release());
            let history = released.memory_usage();
            assert!(
                history >= 1 << bits.min(11) && history < 40 * 1024,
                "{history}"
            );
            // The rebuilt stream still refers back into the first message...
            let kept_wire = deflate(&mut kept, &second);
            let resumed = deflate(&mut released, &second);
            assert!(
                resumed.len() < second.len() / 2,
                "{bits}: {}",
                resumed.len()
            );
            assert!(resumed.len() <= kept_wire.len() + 16, "{bits}");
            // ...which the peer, that kept its context, decodes.
            assert_eq!(inflate_all(&mut inflater, &resumed), second);
            // And it continues like any stream.
            let third = rng.text(2000);
            let wire = deflate(&mut released, &third);
            assert_eq!(inflate_all(&mut inflater, &wire), third);
        }
    }

    /// The decoder of a server with `max` as its payload limit, fed `payload` compressed at
    /// `level` (0: stored blocks), in one frame or two.
    fn decode_compressed(
        max: usize,
        payload: &[u8],
        level: u32,
        fragmented: bool,
    ) -> Result<usize, ProtocolError> {
        use crate::proto::codec::{write_frame, Decoder, Incoming, Limits, MaskPolicy};
        use crate::proto::frame::{FrameHeader, OpCode, RSV1};
        let p = DeflateParams::default();
        let mut deflater = Deflater::new(p, Role::Client, level, 8);
        let wire = deflate(&mut deflater, payload);
        let mut decoder = Decoder::new(MaskPolicy::Require, Limits::with_max_size(max));
        decoder.set_inflater(Some(Inflater::new(p, Role::Server)));
        let parts: Vec<&[u8]> = if fragmented {
            let (a, b) = wire.split_at(wire.len() / 2);
            vec![a, b]
        } else {
            vec![&wire[..]]
        };
        let mut buf = BytesMut::new();
        for (i, part) in parts.iter().enumerate() {
            let opcode = if i == 0 {
                OpCode::Binary
            } else {
                OpCode::Continue
            };
            let mut h = FrameHeader::new(opcode, part.len() as u64, Some([9, 8, 7, 6]));
            h.fin = i + 1 == parts.len();
            if i == 0 {
                h.rsv = RSV1;
            }
            write_frame(h, part, &mut buf);
        }
        match decoder.decode(&mut buf)? {
            Some(Incoming::Message(m)) => {
                assert!(m.payload[..] == payload[..]);
                Ok(m.payload.len())
            }
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn limits_at_their_edges_hold_the_inflated_message_not_the_compressed_frame() {
        const LIMIT: usize = 65536;
        for (kind, level) in [("incompressible", 6), ("stored", 0), ("compressible", 9)] {
            for fragmented in [false, true] {
                for len in [LIMIT - 1, LIMIT, LIMIT + 1] {
                    let payload = match kind {
                        "compressible" => vec![b'a'; len],
                        _ => Rng(len as u64).bytes(len),
                    };
                    let got = decode_compressed(LIMIT, &payload, level, fragmented);
                    let what = format!("{kind}, {len} bytes, fragmented: {fragmented}");
                    if len <= LIMIT {
                        assert_eq!(got, Ok(len), "{what}");
                    } else {
                        let err = got.unwrap_err();
                        assert_eq!(err.close_code().as_u16(), 1009, "{what}: {err}");
                    }
                }
            }
        }
    }
}
