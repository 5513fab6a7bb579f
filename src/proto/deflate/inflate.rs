//! The bounded decompressor: [`Inflater`] for a connection, [`decompress_message`] for one
//! message.

use bytes::BytesMut;
use flate2::{Decompress, FlushDecompress, Status};

use super::{DeflateParams, MAX_CHUNK, MAX_WINDOW_BITS, STANDALONE, TRAILER};
use crate::proto::error::ProtocolError;
use crate::proto::Role;

/// First output chunk of the decompressor; it doubles up to [`MAX_CHUNK`].
const INFLATE_MIN_CHUNK: usize = 1024;

/// Heap bytes zlib-rs allocates for one inflate stream: its state (about 7 KiB) plus a 32 KiB
/// window (+64 bytes SIMD padding), in one allocation, whatever the window bits.
const INFLATE_STATE_BYTES: usize = 7 * 1024 + 32 * 1024 + 64 + 128;

/// The decompressor of one connection.
pub struct Inflater {
    /// Created on first use.
    stream: Option<Decompress>,
    /// The peer resets its compressor after every message.
    no_context_takeover: bool,
    /// The peer ended the DEFLATE stream (BFINAL) inside the current message: the rest of the
    /// message is ignored and the stream restarts with the next one.
    ended: bool,
    /// Some compressed byte of the current message was fed.
    fed: bool,
    /// Compressed messages (or fragments) inflated so far, for the idle timer.
    uses: u64,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .field("allocated", &self.stream.is_some())
            .finish()
    }
}

impl Inflater {
    /// A Server inflates with the `client_*` params (the peer's), a Client with the
    /// `server_*` ones. The zlib stream is created lazily on first use, always with a 15-bit
    /// window (see the module docs).
    pub fn new(params: DeflateParams, role: Role) -> Self {
        let peer = match role {
            Role::Server => Role::Client,
            Role::Client => Role::Server,
        };
        Inflater {
            stream: None,
            no_context_takeover: params.side(peer).0,
            ended: false,
            fed: false,
            uses: 0,
        }
    }

    /// Inflates one fragment of a compressed message (fragments come in order; `fin` marks the
    /// last one, after which the `0x00 0x00 0xff 0xff` tail is fed), appending the output to
    /// `dst`. A message made of no byte at all is taken as empty.
    ///
    /// The window is *not* reset after a message of a peer without context takeover: that peer
    /// resets its compressor, so its messages cannot refer back, and skipping the reset makes
    /// small messages inflate about 40% faster. (A non-compliant peer that refers back anyway
    /// is decoded as it meant rather than failed.) After a block with BFINAL set, the rest of
    /// the message is ignored and the stream restarts with the next message (RFC 7692 §7.2.3.4).
    ///
    /// Fails with [`ProtocolError::MessageTooBig`]`{ limit: max_len }` as soon as `dst.len()`
    /// would exceed `max_len`; `dst` never grows beyond `max(dst.capacity(), max_len)`, so a
    /// few KB that would inflate to GBs cost at most `max_len` bytes and a bounded amount of
    /// work. Corrupt data fails with [`ProtocolError::BadCompressedData`]. After an error the
    /// inflater must not be used for further messages (the connection is failing anyway).
    pub fn decompress(
        &mut self,
        fragment: &[u8],
        fin: bool,
        dst: &mut BytesMut,
        max_len: usize,
    ) -> Result<(), ProtocolError> {
        self.uses = self.uses.wrapping_add(1);
        let stream = self
            .stream
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, MAX_WINDOW_BITS));
        if !self.ended && !fragment.is_empty() {
            self.fed = true;
            self.ended = inflate_bounded(stream, fragment, FlushDecompress::None, dst, max_len)?;
        }
        if fin {
            // A message without any compressed byte is taken as empty (the RFC form is 0x00;
            // the tail alone would not be valid DEFLATE).
            let fed = std::mem::take(&mut self.fed);
            if !self.ended && fed {
                self.ended =
                    inflate_bounded(stream, &TRAILER, FlushDecompress::Sync, dst, max_len)?;
            }
            // A peer without context takeover resets its own compressor, so its next message
            // cannot reference this one: resetting our side as well would only cost time (about
            // a third of the throughput on 1 KiB messages), so only a finished stream restarts.
            if self.ended {
                stream.reset(false);
                self.ended = false;
            }
        }
        Ok(())
    }

    /// Frees the zlib state between two messages of a peer without context takeover (its
    /// next message cannot refer back, so nothing is lost; a new state is made for it).
    /// Returns whether anything was freed.
    pub fn release(&mut self) -> bool {
        if !self.no_context_takeover || self.fed || self.stream.is_none() {
            return false;
        }
        self.stream = None;
        self.ended = false;
        true
    }

    /// Calls of [`Inflater::decompress`] so far.
    pub fn uses(&self) -> u64 {
        self.uses
    }

    /// Approximate heap bytes held right now (0 before first use).
    pub fn memory_usage(&self) -> usize {
        match self.stream {
            Some(_) => INFLATE_STATE_BYTES,
            None => 0,
        }
    }
}

/// Inflates `input` into `dst` without letting `dst.len()` exceed `max_len` nor its capacity
/// grow beyond `max(capacity, max_len)`. Returns whether the DEFLATE stream ended (BFINAL).
fn inflate_bounded(
    stream: &mut Decompress,
    mut input: &[u8],
    flush: FlushDecompress,
    dst: &mut BytesMut,
    max_len: usize,
) -> Result<bool, ProtocolError> {
    let mut chunk = input
        .len()
        .saturating_mul(4)
        .clamp(INFLATE_MIN_CHUNK, MAX_CHUNK);
    // Small stack buffer for the probe at the limit and for the sync-flush tail, which
    // produces no output for well-formed data: neither may make `dst` grow for nothing.
    let mut scratch = [0u8; 256];
    let mut use_scratch = flush == FlushDecompress::Sync;
    loop {
        let len = dst.len();
        let at_limit = len >= max_len;
        let (in_before, out_before) = (stream.total_in(), stream.total_out());
        let (result, offered) = if at_limit || use_scratch {
            let result = stream.decompress(input, &mut scratch, flush);
            (result, scratch.len())
        } else {
            let want = chunk.min(max_len - len);
            reserve_bounded(dst, want, max_len);
            dst.resize(len + want, 0);
            let result = stream.decompress(input, &mut dst[len..], flush);
            (result, want)
        };
        let consumed = (stream.total_in() - in_before) as usize;
        let produced = (stream.total_out() - out_before) as usize;
        if at_limit || use_scratch {
            if produced > 0 {
                if at_limit || produced > max_len - len {
                    return Err(ProtocolError::MessageTooBig { limit: max_len });
                }
                reserve_bounded(dst, produced, max_len);
                dst.extend_from_slice(scratch.get(..produced).unwrap_or_default());
            }
            use_scratch = false;
        } else {
            dst.truncate(len + produced);
        }
        let status = result.map_err(|e| ProtocolError::BadCompressedData(e.to_string()))?;
        input = input.get(consumed..).unwrap_or_default();
        if status == Status::StreamEnd {
            return Ok(true);
        }
        if produced < offered && input.is_empty() {
            // Everything this input can give is out.
            return Ok(false);
        }
        if consumed == 0 && produced == 0 {
            if input.is_empty() {
                return Ok(false);
            }
            return Err(ProtocolError::BadCompressedData(
                "inflate made no progress".to_owned(),
            ));
        }
        if produced == offered {
            chunk = (chunk * 2).min(MAX_CHUNK);
        }
    }
}

/// Makes room for `additional` more bytes in `dst` (with `dst.len() + additional <=
/// hard_cap`) without the capacity ever exceeding `max(dst.capacity(), hard_cap)`:
/// amortized doubling while that stays under the cap, one exact allocation otherwise.
fn reserve_bounded(dst: &mut BytesMut, additional: usize, hard_cap: usize) {
    if dst.capacity() - dst.len() >= additional {
        return;
    }
    if dst.capacity().saturating_mul(2) <= hard_cap {
        dst.reserve(additional);
    } else {
        let mut grown = BytesMut::with_capacity(hard_cap.max(dst.len() + additional));
        grown.extend_from_slice(dst);
        *dst = grown;
    }
}

/// Inflates one standalone compressed message (no context takeover), appending to `dst`
/// under the same `max_len` rule as [`Inflater::decompress`].
pub fn decompress_message(
    data: &[u8],
    max_len: usize,
    dst: &mut BytesMut,
) -> Result<(), ProtocolError> {
    Inflater::new(STANDALONE, Role::Client).decompress(data, true, dst, max_len)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{compress_message, Deflater};
    use super::*;

    #[test]
    fn rfc_hello_single_and_fragmented() {
        let hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        assert_eq!(inflate_all(&mut inflater, &hello), b"Hello");

        // §7.2.3.1, fragmented as in the RFC: 3 bytes, then 4.
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        let mut dst = BytesMut::new();
        inflater
            .decompress(&hello[..3], false, &mut dst, 100)
            .unwrap();
        inflater
            .decompress(&hello[3..], true, &mut dst, 100)
            .unwrap();
        assert_eq!(&dst[..], b"Hello");

        // Our compressor produces exactly this (level 6, full window).
        let mut deflater = Deflater::new(DeflateParams::default(), Role::Server, 6, 8);
        assert_eq!(deflate(&mut deflater, b"Hello"), hello);
    }

    #[test]
    fn rfc_context_takeover_second_message() {
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Server);
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            b"Hello"
        );

        // Without context takeover on the peer's side the window is kept (not needed, and
        // faster): a back-reference of a non-compliant peer still decodes.
        let no_ctx = params(true, true, 15, 15);
        let mut inflater = Inflater::new(no_ctx, Role::Server);
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x00, 0x11, 0x00, 0x00]),
            b"Hello"
        );

        // A fresh inflater has no context: the same bytes are a bad back-reference.
        let mut fresh = Inflater::new(DeflateParams::default(), Role::Server);
        let mut dst = BytesMut::new();
        let err = fresh
            .decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00], true, &mut dst, 100)
            .unwrap_err();
        assert!(
            matches!(err, ProtocolError::BadCompressedData(_)),
            "{err:?}"
        );

        // And our compressor uses the context: the second message is the RFC's 5 bytes.
        let mut deflater = Deflater::new(DeflateParams::default(), Role::Client, 6, 8);
        deflate(&mut deflater, b"Hello");
        assert_eq!(
            deflate(&mut deflater, b"Hello"),
            [0xf2, 0x00, 0x11, 0x00, 0x00]
        );
    }

    #[test]
    fn rfc_bfinal_block() {
        // §7.2.3.4: a block with BFINAL set, then a 0x00 octet; the stream restarts next message.
        let data = [0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00];
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        assert_eq!(inflate_all(&mut inflater, &data), b"Hello");
        assert_eq!(inflate_all(&mut inflater, &data), b"Hello");
        assert_eq!(
            inflate_all(&mut inflater, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]),
            b"Hello"
        );
    }

    #[test]
    fn rfc_two_deflate_blocks() {
        let data = [
            0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00,
        ];
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        assert_eq!(inflate_all(&mut inflater, &data), b"Hello");
    }

    #[test]
    fn zip_bomb_is_stopped_early() {
        let zeros = vec![0u8; 16 << 20];
        let mut wire = BytesMut::new();
        compress_message(&zeros, 9, &mut wire).unwrap();
        assert!(wire.len() < 64 * 1024, "{}", wire.len());
        let limit = 1 << 20;
        for fragment_size in [wire.len(), 1000] {
            let mut inflater = Inflater::new(DeflateParams::default(), Role::Server);
            let mut dst = BytesMut::new();
            let chunks: Vec<&[u8]> = wire.chunks(fragment_size).collect();
            let mut result = Ok(());
            for (i, chunk) in chunks.iter().enumerate() {
                result = inflater.decompress(chunk, i + 1 == chunks.len(), &mut dst, limit);
                if result.is_err() {
                    break;
                }
            }
            assert_eq!(result, Err(ProtocolError::MessageTooBig { limit }));
            assert!(dst.len() <= limit);
            assert!(
                dst.capacity() <= limit + 4096,
                "capacity {}",
                dst.capacity()
            );
        }
    }

    #[test]
    fn limit_is_exact() {
        let payload = Rng(6).text(10_000);
        let mut wire = BytesMut::new();
        compress_message(&payload, 6, &mut wire).unwrap();
        let mut dst = BytesMut::new();
        decompress_message(&wire, 10_000, &mut dst).unwrap();
        assert_eq!(dst.len(), 10_000);
        assert!(dst.capacity() <= 10_000 + 1024, "{}", dst.capacity());
        let mut dst = BytesMut::new();
        assert_eq!(
            decompress_message(&wire, 9_999, &mut dst),
            Err(ProtocolError::MessageTooBig { limit: 9_999 })
        );
        // The limit counts what `dst` already holds.
        let mut dst = BytesMut::from(&[1u8; 10][..]);
        assert_eq!(
            decompress_message(&wire, 10_005, &mut dst),
            Err(ProtocolError::MessageTooBig { limit: 10_005 })
        );
    }

    #[test]
    fn corrupt_data_is_rejected() {
        for data in [
            &[0xff, 0xff, 0xff, 0xff][..],
            &[0x07],
            &[0x00, 0x05, 0x00, 0x00, 0x00, b'x'],
        ] {
            let mut dst = BytesMut::new();
            let err = decompress_message(data, 1000, &mut dst).unwrap_err();
            assert!(
                matches!(err, ProtocolError::BadCompressedData(_)),
                "{data:?}: {err:?}"
            );
            assert_eq!(err.close_code(), crate::proto::CloseCode::INVALID_PAYLOAD);
        }
    }

    #[test]
    fn fragmented_at_every_byte_position() {
        let payload = Rng(8).text(3_000);
        let mut deflater = Deflater::new(DeflateParams::default(), Role::Client, 6, 8);
        // Two messages, so the second one uses the context.
        let first = deflate(&mut deflater, &payload);
        let second = deflate(&mut deflater, &payload);
        for split in 0..=first.len() {
            let mut inflater = Inflater::new(DeflateParams::default(), Role::Server);
            let mut out = BytesMut::new();
            inflater
                .decompress(&first[..split], false, &mut out, usize::MAX)
                .unwrap();
            inflater
                .decompress(&first[split..], true, &mut out, usize::MAX)
                .unwrap();
            assert!(out[..] == payload[..], "split {split}");
            for split2 in [0, second.len() / 2, second.len()] {
                let mut tmp = Inflater::new(DeflateParams::default(), Role::Server);
                inflate_all(&mut tmp, &first);
                let mut out = BytesMut::new();
                tmp.decompress(&second[..split2], false, &mut out, usize::MAX)
                    .unwrap();
                tmp.decompress(&second[split2..], true, &mut out, usize::MAX)
                    .unwrap();
                assert!(out[..] == payload[..], "second split {split2}");
            }
        }
        // One byte per fragment.
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Server);
        let mut out = BytesMut::new();
        for byte in first.chunks(1) {
            inflater
                .decompress(byte, false, &mut out, usize::MAX)
                .unwrap();
        }
        inflater
            .decompress(&[], true, &mut out, usize::MAX)
            .unwrap();
        assert!(out[..] == payload[..]);
    }
}
