//! The compressor: [`Deflater`] for a connection, [`compress_message`] for one message.

use std::collections::VecDeque;

use bytes::{BufMut, BytesMut};
use zlib_rs::{Deflate, DeflateFlush, Method, Strategy};

use super::{
    clamp_bits, DeflateParams, DeflateSettings, MAX_CHUNK, MAX_WINDOW_BITS, MIN_WINDOW_BITS,
    STANDALONE, TRAILER,
};
use crate::proto::error::SendError;
use crate::proto::Role;

/// The largest payload of one DEFLATE stored block.
const STORED_BLOCK_MAX: usize = 65_535;

/// Heap bytes of one zlib-rs deflate stream besides the window-sized parts: its state (about
/// 6 KiB, with alignment) and the hash head table, 65 536 two-byte entries whatever memLevel
/// (zlib-rs fixes the hash size; zlib would scale it with memLevel).
const DEFLATE_FIXED_BYTES: usize = 6 * 1024 + 128 * 1024;

/// The most bytes of history kept for rebuilding a released stream with context takeover. The
/// peer's window holds up to `1 << window_bits` bytes, but a dictionary may be shorter than the
/// window (references just reach less far back): 4 KiB keeps what chat-like traffic repeats
/// (keys, names) while an idle connection stays small.
const HISTORY_MAX: usize = 4 * 1024;

/// The compressor of one connection (or one standalone message).
pub struct Deflater {
    /// Created on first use; `None` again after [`Deflater::release`].
    stream: Option<Deflate>,
    /// With context takeover and release enabled: the last bytes compressed (up to the window,
    /// at most [`HISTORY_MAX`]), the preset dictionary of a stream rebuilt after a release.
    history: Option<VecDeque<u8>>,
    /// Negotiated window of our compressor, 8..=15.
    window_bits: u8,
    level: u32,
    /// zlib `memLevel`, 1..=9.
    mem_level: u8,
    no_context_takeover: bool,
    /// Emit stored blocks only: window 8 (zlib cannot honour it) or level 0.
    stored_only: bool,
    /// Messages compressed so far (the idle timer compares it between two looks).
    uses: u64,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("window_bits", &self.window_bits)
            .field("level", &self.level)
            .field("no_context_takeover", &self.no_context_takeover)
            .field("stored_only", &self.stored_only)
            .field("mem_level", &self.mem_level)
            .field("allocated", &self.stream.is_some())
            .finish()
    }
}

impl Deflater {
    /// `role` = which end we are: a Server compresses with the `server_*` params, a Client
    /// with the `client_*` ones. The zlib stream is created lazily on first use, with zlib's
    /// `windowBits` = the negotiated window and `memLevel` = `mem_level`.
    ///
    /// `level` is clamped to `0..=9`, `mem_level` to `1..=9`.
    pub fn new(params: DeflateParams, role: Role, level: u32, mem_level: u8) -> Self {
        let (no_context_takeover, bits) = params.side(role);
        let window_bits = clamp_bits(bits);
        let level = level.min(9);
        Deflater {
            stream: None,
            history: None,
            window_bits,
            level,
            mem_level: mem_level.clamp(1, 9),
            no_context_takeover,
            stored_only: window_bits == MIN_WINDOW_BITS || level == 0,
            uses: 0,
        }
    }

    /// Compresses with a window of at most `bits` (clamped to `9..=15`), below what was
    /// negotiated: always valid, as the peer's decompressor accepts any smaller window.
    pub fn limit_window(mut self, bits: u8) -> Self {
        if !self.stored_only {
            self.window_bits = self
                .window_bits
                .min(bits.clamp(MIN_WINDOW_BITS + 1, MAX_WINDOW_BITS));
        }
        self
    }

    /// Makes [`Deflater::release`] possible with context takeover: from now on the compressor
    /// keeps a copy of the last bytes it compressed (up to its window, at most 4 KiB; the
    /// peer's decompressor holds them too), the preset dictionary of the stream rebuilt after
    /// a release. Without context takeover nothing needs keeping and this does nothing.
    pub fn keep_history(&mut self) {
        if !self.no_context_takeover && !self.stored_only && self.history.is_none() {
            self.history = Some(VecDeque::new());
        }
    }

    /// Frees the zlib state if that loses nothing: without context takeover, or with it when
    /// [`Deflater::keep_history`] was called (the next message then starts a new stream with
    /// the kept bytes as preset dictionary, so it may still refer back to earlier messages).
    /// Returns whether anything was freed.
    pub fn release(&mut self) -> bool {
        if self.stream.is_none() || !(self.no_context_takeover || self.history.is_some()) {
            return false;
        }
        self.stream = None;
        true
    }

    /// Messages compressed so far.
    pub fn uses(&self) -> u64 {
        self.uses
    }

    /// Whether this compressor resets after every message (our side has no context
    /// takeover), so that equal payloads give equal output whatever was sent before.
    pub fn no_context_takeover(&self) -> bool {
        self.no_context_takeover
    }

    /// The zlib settings `(window_bits, level, mem_level)`: two compressors without context
    /// takeover and with the same settings produce the same bytes for the same payload.
    pub fn settings(&self) -> DeflateSettings {
        (self.window_bits, self.level, self.mem_level)
    }

    /// Whether this compressor only emits stored (uncompressed) DEFLATE blocks, because the
    /// negotiated window is 8 bits (see the module docs) or the level is 0. A caller may then
    /// rather send messages uncompressed (RSV1 clear), which saves the few bytes of framing.
    pub fn is_stored_only(&self) -> bool {
        self.stored_only
    }

    /// Compresses one whole message, appending the raw DEFLATE bytes to `dst` without the
    /// trailing `0x00 0x00 0xff 0xff` (RFC 7692 §7.2.1: sync flush, then strip the 4 bytes).
    /// Resets the window afterwards when our side has no context takeover.
    pub fn compress(&mut self, payload: &[u8], dst: &mut BytesMut) -> Result<(), SendError> {
        // Stored blocks; also for an empty payload, where zlib would emit nothing at all after
        // an earlier sync flush (RFC 7692 §7.2.3.6: an empty message is the octet 0x00).
        self.uses = self.uses.wrapping_add(1);
        if self.stored_only || payload.is_empty() {
            write_stored(payload, dst);
            return Ok(());
        }
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                let mut stream = new_stream(self.window_bits, self.level, self.mem_level);
                if let Some(history) = self.history.as_mut().filter(|h| !h.is_empty()) {
                    stream
                        .set_dictionary(history.make_contiguous())
                        .map_err(|e| SendError::Compress(e.as_str().to_owned()))?;
                }
                self.stream.insert(stream)
            }
        };

        let start = dst.len();
        let result = deflate_sync(stream, payload, dst);
        if result.is_err() {
            // The stream state is unknown now; drop it and the partial output.
            self.stream = None;
            dst.truncate(start);
            return result;
        }
        if dst.len() < start + TRAILER.len() || dst[dst.len() - TRAILER.len()..] != TRAILER {
            self.stream = None;
            dst.truncate(start);
            return Err(SendError::Compress(
                "sync flush did not end with 00 00 ff ff".to_owned(),
            ));
        }
        dst.truncate(dst.len() - TRAILER.len());

        if self.no_context_takeover {
            if let Some(stream) = self.stream.as_mut() {
                stream.reset();
            }
        } else if let Some(history) = self.history.as_mut() {
            remember(history, payload, HISTORY_MAX.min(1 << self.window_bits));
        }
        Ok(())
    }

    /// Approximate heap bytes held right now (0 before first use).
    pub fn memory_usage(&self) -> usize {
        let history = self.history.as_ref().map_or(0, VecDeque::capacity);
        match self.stream {
            Some(_) => stream_bytes(self.window_bits, self.mem_level) + history,
            None => history,
        }
    }
}

/// Heap bytes of a zlib-rs deflate stream: the fixed part, the window (2 bytes per window
/// byte: zlib-rs slides over a double window) and `prev` (2 bytes per window byte), and at
/// memLevel `m` the pending and symbol buffers (4 + 3 times `1 << (m + 6)` bytes).
pub(super) fn stream_bytes(window_bits: u8, mem_level: u8) -> usize {
    DEFLATE_FIXED_BYTES + (4usize << window_bits.max(9)) + (7usize << (mem_level + 6))
}

/// A raw deflate stream with zlib's `windowBits` and `memLevel` (deflateInit2).
fn new_stream(window_bits: u8, level: u32, mem_level: u8) -> Deflate {
    // In range by construction (bits 9..=15 here: 8 is stored-only; level 0..=9; memLevel
    // 1..=9), which is what zlib-rs asserts.
    Deflate::new_with_config(zlib_rs::DeflateConfig {
        level: level.min(9) as i32,
        method: Method::Deflated,
        window_bits: -i32::from(window_bits.max(9)),
        mem_level: i32::from(mem_level.clamp(1, 9)),
        strategy: Strategy::Default,
    })
}

/// Appends `payload` to `history`, keeping its last `window` bytes.
fn remember(history: &mut VecDeque<u8>, payload: &[u8], window: usize) {
    let tail = payload
        .get(payload.len().saturating_sub(window)..)
        .unwrap_or(payload);
    let excess = (history.len() + tail.len()).saturating_sub(window);
    history.drain(..excess.min(history.len()));
    history.extend(tail);
}

/// Runs `payload` through `stream` with a sync flush, appending everything to `dst`.
fn deflate_sync(stream: &mut Deflate, payload: &[u8], dst: &mut BytesMut) -> Result<(), SendError> {
    let mut input = payload;
    // Compressible messages (the point of compressing) shrink to well under half; incompressible
    // ones take one or two more rounds. Each round zero-fills only the chunk it offers.
    let mut chunk = payload.len() / 2 + 64;
    loop {
        let len = dst.len();
        dst.resize(len + chunk, 0);
        let (in_before, out_before) = (stream.total_in(), stream.total_out());
        let result = stream.compress(input, &mut dst[len..], DeflateFlush::SyncFlush);
        let consumed = (stream.total_in() - in_before) as usize;
        let produced = (stream.total_out() - out_before) as usize;
        dst.truncate(len + produced);
        result.map_err(|e| SendError::Compress(e.as_str().to_owned()))?;
        input = input.get(consumed..).unwrap_or_default();
        // zlib: the flush is complete once a call returns with output space left over.
        if produced < chunk && input.is_empty() {
            return Ok(());
        }
        if consumed == 0 && produced == 0 {
            return Err(SendError::Compress("deflate made no progress".to_owned()));
        }
        chunk = (chunk * 2).min(MAX_CHUNK.max(payload.len() + 64));
    }
}

/// Appends `payload` as DEFLATE stored blocks, already minus the stripped sync-flush tail:
/// every block is byte-aligned, and the empty block `00 00 00 ff ff` that would end the
/// message becomes `00` after stripping.
fn write_stored(payload: &[u8], dst: &mut BytesMut) {
    let blocks = payload.len().div_ceil(STORED_BLOCK_MAX);
    dst.reserve(payload.len() + blocks * 5 + 1);
    for block in payload.chunks(STORED_BLOCK_MAX) {
        // BFINAL=0, BTYPE=00, then padding to the byte boundary: one zero byte.
        let len = block.len() as u16;
        dst.put_u8(0);
        dst.put_u16_le(len);
        dst.put_u16_le(!len);
        dst.extend_from_slice(block);
    }
    dst.put_u8(0);
}

/// Compresses one standalone message (no context takeover, 15-bit window) the way
/// [`Deflater::compress`] does, appending to `dst`. Creates and drops a zlib stream (about
/// 370 KiB) per call: for a stream of messages keep a [`Deflater`].
pub fn compress_message(payload: &[u8], level: u32, dst: &mut BytesMut) -> Result<(), SendError> {
    Deflater::new(STANDALONE, Role::Server, level, 8).compress(payload, dst)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::Inflater;
    use super::*;

    #[test]
    fn rfc_no_compression_block() {
        let data = [
            0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
        ];
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Client);
        assert_eq!(inflate_all(&mut inflater, &data), b"Hello");
        // Our stored-only compressor writes exactly this.
        let mut deflater = Deflater::new(DeflateParams::default(), Role::Client, 0, 8);
        assert!(deflater.is_stored_only());
        assert_eq!(deflate(&mut deflater, b"Hello"), data);
    }

    #[test]
    fn empty_message() {
        // §7.2.3.6: an empty message is the single octet 0x00.
        let mut deflater = Deflater::new(DeflateParams::default(), Role::Client, 6, 8);
        let out = deflate(&mut deflater, b"");
        assert_eq!(out, [0x00]);
        let mut inflater = Inflater::new(DeflateParams::default(), Role::Server);
        assert_eq!(inflate_all(&mut inflater, &out), b"");
        assert_eq!(inflate_all(&mut inflater, &[]), b"");
        // ...and the context still works afterwards.
        let out = deflate(&mut deflater, b"after");
        assert_eq!(inflate_all(&mut inflater, &out), b"after");
    }

    #[test]
    fn compresses_and_uses_context() {
        let mut rng = Rng(3);
        let text = rng.text(10_000);
        let mut with_ctx = Deflater::new(DeflateParams::default(), Role::Client, 6, 8);
        let first = deflate(&mut with_ctx, &text);
        assert!(
            first.len() < text.len() / 3,
            "{} of {}",
            first.len(),
            text.len()
        );
        let second = deflate(&mut with_ctx, &text);
        assert!(
            second.len() < first.len() / 4,
            "{} vs {}",
            second.len(),
            first.len()
        );

        let mut no_ctx = Deflater::new(params(false, true, 15, 15), Role::Client, 6, 8);
        let a = deflate(&mut no_ctx, &text);
        let b = deflate(&mut no_ctx, &text);
        assert_eq!(a, b);
        assert_eq!(a, first);
        // The window bits bound what the compressor can reach: data repeating at an 8 KiB
        // distance compresses well with 15 bits and not at all with 9.
        let block = Rng(4).bytes(8 * 1024);
        let doubled = [block.as_slice(), block.as_slice()].concat();
        let mut w15 = Deflater::new(DeflateParams::default(), Role::Client, 6, 8);
        let mut w9 = Deflater::new(params(false, false, 15, 9), Role::Client, 6, 8);
        assert!(deflate(&mut w15, &doubled).len() < 9 * 1024);
        assert!(deflate(&mut w9, &doubled).len() > 16 * 1024);
    }
}
