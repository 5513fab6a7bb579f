//! The message codec: frames in, whole messages out (with every RFC 6455 rule checked), and
//! messages in, frames out.
//!
//! [`Decoder::decode`] works on the caller's read buffer. It unmasks and validates payload bytes
//! as they arrive (so invalid UTF-8 fails fast, even inside one frame still in flight) and hands
//! out an unfragmented, uncompressed message as a `Bytes` slice of that buffer, without copying.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::close::CloseFrame;
use super::deflate::{Deflater, Inflater};
use super::error::{ProtocolError, SendError};
use super::frame::{FrameHeader, OpCode, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, RSV1};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// The default message size limit: 64 MiB, as the seed's `maxSize`.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 << 20;
/// The default limit on the number of frames of one message.
///
/// Large enough for Autobahn's 4 MiB message in 65536 fragments; a flood of empty fragments
/// costs no memory (fragments are appended, not kept as a list) and is cut off here.
pub const DEFAULT_MAX_FRAGMENTS: usize = 1 << 17;

/// A buffer holding at most this many bytes (its capacity) that a whole frame ends is left in
/// place, an empty view of its allocation, so that the caller can reuse it for its next read once
/// the message is dropped; a larger one goes with the message whole (splitting it would allocate
/// a shared header for the two halves).
pub const REUSABLE_BUFFER: usize = 256;

/// The most bytes DEFLATE may take to carry `n` bytes: stored blocks add 5 bytes per 65535,
/// and a compressor's flushes a few more per frame. Bounded generously (n / 1024 + 64): a
/// compressed frame that carries at most `n` bytes is never refused for its wire size.
pub fn deflate_bound(n: usize) -> usize {
    n.saturating_add(n / 1024).saturating_add(64)
}

/// Limits the decoder enforces before allocating anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame payload accepted (close 1009 above it). A compressed frame may exceed
    /// it by the DEFLATE overhead ([`deflate_bound`]): what it inflates to is held to
    /// `max_message_size`.
    pub max_frame_size: usize,
    /// The largest message accepted, after decompression (close 1009 above it).
    pub max_message_size: usize,
    /// The most frames one message may be split into (close 1009 above it).
    pub max_fragments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_fragments: DEFAULT_MAX_FRAGMENTS,
        }
    }
}

impl Limits {
    /// Limits with one size for frames and messages.
    pub fn with_max_size(max: usize) -> Self {
        Limits {
            max_frame_size: max,
            max_message_size: max,
            ..Limits::default()
        }
    }
}

/// Which frames the decoder accepts with respect to masking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskPolicy {
    /// Every frame must be masked (we are a server; RFC 6455 §5.1).
    Require,
    /// No frame may be masked (we are a client).
    Forbid,
    /// Anything goes (standalone message decoding, where `masked` is only reported).
    Any,
}

/// A whole data message as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// [`OpCode::Text`] or [`OpCode::Binary`].
    pub opcode: OpCode,
    /// The payload (reassembled, unmasked, inflated, UTF-8 checked for text).
    pub payload: Bytes,
    /// Whether it was compressed on the wire.
    pub compressed: bool,
    /// Whether its frames were masked.
    pub masked: bool,
}

/// One decoded item: a whole data message or a control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A whole TEXT or BINARY message (reassembled, unmasked, inflated, UTF-8 checked).
    Message(Received),
    /// A PING.
    Ping {
        /// Its payload.
        payload: Bytes,
        /// Whether the frame was masked.
        masked: bool,
    },
    /// A PONG.
    Pong {
        /// Its payload.
        payload: Bytes,
        /// Whether the frame was masked.
        masked: bool,
    },
    /// A CLOSE.
    Close {
        /// Its parsed payload (`None`: no status code).
        frame: Option<CloseFrame>,
        /// Whether the frame was masked.
        masked: bool,
    },
}

/// A fragmented or compressed message being assembled. (`repr(C)`: the small fields, where
/// `Option<Assembly>` keeps its tag, first: see [`Decoder`].)
#[derive(Debug)]
#[repr(C)]
struct Assembly {
    opcode: OpCode,
    compressed: bool,
    masked: bool,
    buf: BytesMut,
    fragments: usize,
}

/// The frame currently being read: its header is consumed, its payload is arriving.
#[derive(Debug, Clone, Copy)]
struct Current {
    header: FrameHeader,
    len: usize,
    /// Payload bytes at the front of the read buffer already unmasked (and UTF-8 checked).
    processed: usize,
    /// Whether the payload is checked as it arrives (uncompressed text).
    stream_utf8: bool,
}

/// Turns a byte stream into messages and control frames, enforcing every framing rule.
///
/// (In declaration order, `repr(C)`: what decoding a whole small frame reads first, within one
/// cache line.)
#[derive(Debug)]
#[repr(C)]
pub struct Decoder {
    current: Option<Current>,
    /// The largest payload `whole_frame` takes: 64 KiB or less, within both limits.
    whole_limit: u64,
    mask_policy: MaskPolicy,
    utf8: Utf8Validator,
    assembly: Option<Assembly>,
    /// Boxed: most connections never compress, and an idle one should stay small.
    inflater: Option<Box<Inflater>>,
    limits: Limits,
}

/// The largest payload [`Decoder`] decodes in one step (see `whole_frame`).
fn whole_limit(limits: &Limits) -> u64 {
    let limit = limits.max_frame_size.min(limits.max_message_size);
    u64::try_from(limit).map_or(u64::from(u16::MAX), |l| l.min(u64::from(u16::MAX)))
}

impl Decoder {
    /// A decoder with the given masking policy and limits, without compression.
    pub fn new(mask_policy: MaskPolicy, limits: Limits) -> Self {
        Decoder {
            mask_policy,
            limits,
            whole_limit: whole_limit(&limits),
            inflater: None,
            current: None,
            assembly: None,
            utf8: Utf8Validator::new(),
        }
    }

    /// Enables permessage-deflate: RSV1 becomes legal on the first frame of a message.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn set_inflater(&mut self, inflater: Option<Inflater>) {
        self.inflater = inflater.map(Box::new);
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Changes the limits (takes effect for the next frame).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        self.whole_limit = whole_limit(&limits);
    }

    /// Whether the decoder is between messages with no frame in flight: EOF here is clean.
    pub fn is_idle(&self) -> bool {
        self.current.is_none() && self.assembly.is_none()
    }

    /// Bytes of decompression state held (0 without compression or before first use).
    pub fn memory_usage(&self) -> usize {
        self.inflater.as_ref().map_or(0, |i| i.memory_usage())
            + self.assembly.as_ref().map_or(0, |a| a.buf.capacity())
    }

    /// Frees the decompressor's state if nothing is lost by it (see [`Inflater::release`]).
    pub fn release_inflater(&mut self) -> bool {
        self.is_idle() && self.inflater.as_mut().is_some_and(|i| i.release())
    }

    /// How often the decompressor was used so far (0 without compression).
    pub fn inflater_uses(&self) -> u64 {
        self.inflater.as_ref().map_or(0, |i| i.uses())
    }

    /// Whether a frame header was consumed and its payload is still arriving.
    pub fn in_frame(&self) -> bool {
        self.current.is_some()
    }

    /// How many more bytes `buf` (the read buffer, holding what is not decoded yet) needs
    /// before [`Decoder::decode`] can make progress: the rest of the current frame, or of the
    /// next header. A hint for reserving read space; at least 1.
    pub fn bytes_wanted(&self, buf: &[u8]) -> usize {
        match &self.current {
            Some(c) => c.len.saturating_sub(buf.len()).max(1),
            None => FrameHeader::needed(buf).max(1),
        }
    }

    /// Decodes the next message or control frame from the front of `buf`, consuming its bytes.
    ///
    /// `Ok(None)`: more bytes are needed. Bytes of a frame still in flight are unmasked and
    /// validated where they are, so the caller must keep `buf` and append to it. After an error
    /// the connection must be failed with [`ProtocolError::close_code`]; the decoder is not
    /// usable further.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        if self.current.is_none() && self.assembly.is_none() {
            if let Some(item) = self.whole_frame(buf)? {
                return Ok(Some(item));
            }
        }
        loop {
            let current = match self.current {
                Some(c) => c,
                None => {
                    let Some((header, header_len)) = FrameHeader::decode(buf)? else {
                        return Ok(None);
                    };
                    let current = self.start_frame(header)?;
                    buf.advance(header_len);
                    self.current = Some(current);
                    current
                }
            };
            if let Some(item) = self.progress_frame(current, buf)? {
                return Ok(Some(item));
            }
            if self.current.is_some() {
                return Ok(None);
            }
        }
    }

    /// The usual frame in one step: between messages, a whole TEXT or BINARY message in one
    /// uncompressed frame of up to 64 KiB, all of it in `buf`, within the limits. Anything else
    /// (`Ok(None)`, nothing consumed) goes the general way, which applies every rule and reports
    /// every error; this path only skips the bookkeeping a frame in pieces needs.
    fn whole_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        // (A header the general path would refuse is left to it, to report.)
        let Ok(Some((h, pos))) = FrameHeader::decode(buf) else {
            return Ok(None);
        };
        if !h.fin || h.rsv != 0 || !h.opcode.is_data() {
            return Ok(None);
        }
        match (self.mask_policy, h.mask) {
            (MaskPolicy::Require, None) | (MaskPolicy::Forbid, Some(_)) => return Ok(None),
            _ => {}
        }
        if h.payload_len > self.whole_limit {
            return Ok(None);
        }
        let Ok(len) = u16::try_from(h.payload_len).map(usize::from) else {
            return Ok(None);
        };
        // (`pos` is at most 8 and `len` under 64 KiB: no overflow.)
        if buf.len() < pos + len {
            return Ok(None);
        }
        buf.advance(pos);
        if let Some(key) = h.mask {
            apply_mask(&mut buf[..len], key, 0);
        }
        if h.opcode == OpCode::Text && simdutf8::basic::from_utf8(&buf[..len]).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        // (See `REUSABLE_BUFFER`.)
        let payload = if buf.len() == len && buf.capacity() > REUSABLE_BUFFER {
            std::mem::take(buf)
        } else {
            buf.split_to(len)
        };
        Ok(Some(Incoming::Message(Received {
            opcode: h.opcode,
            payload: payload.freeze(),
            compressed: false,
            masked: h.mask.is_some(),
        })))
    }

    /// Checks a new frame header against every rule that does not need the payload.
    fn start_frame(&mut self, h: FrameHeader) -> Result<Current, ProtocolError> {
        match (self.mask_policy, h.mask.is_some()) {
            (MaskPolicy::Require, false) => {
                return Err(ProtocolError::Masking("client frame is not masked"));
            }
            (MaskPolicy::Forbid, true) => {
                return Err(ProtocolError::Masking("server frame is masked"));
            }
            _ => {}
        }
        let allowed_rsv = if self.inflater.is_some() { RSV1 } else { 0 };
        if h.rsv & !allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBits(h.rsv));
        }
        if h.opcode.is_control() {
            if !h.fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlTooLong(h.payload_len));
            }
            if h.rsv1() {
                return Err(ProtocolError::CompressedControlOrContinuation);
            }
        } else if h.opcode == OpCode::Continue {
            let Some(asm) = &self.assembly else {
                return Err(ProtocolError::UnexpectedContinuation);
            };
            if h.rsv1() {
                return Err(ProtocolError::CompressedControlOrContinuation);
            }
            if asm.fragments >= self.limits.max_fragments {
                return Err(ProtocolError::TooManyFragments {
                    limit: self.limits.max_fragments,
                });
            }
        } else if self.assembly.is_some() {
            return Err(ProtocolError::ExpectedContinuation);
        }
        let compressed = match (&self.assembly, h.opcode) {
            (Some(asm), OpCode::Continue) => asm.compressed,
            (_, op) if op.is_data() => h.rsv1(),
            _ => false,
        };
        // The limit is on what the frame carries: a compressed frame may exceed it by what
        // DEFLATE adds to data that does not compress (its inflated size is checked as it
        // inflates).
        let frame_limit = if compressed {
            deflate_bound(self.limits.max_frame_size)
        } else {
            self.limits.max_frame_size
        };
        let len = match usize::try_from(h.payload_len) {
            Ok(len) if len <= frame_limit => len,
            _ => {
                return Err(ProtocolError::FrameTooBig {
                    size: h.payload_len,
                    limit: self.limits.max_frame_size,
                })
            }
        };
        if !compressed && !h.opcode.is_control() {
            let so_far = self.assembly.as_ref().map_or(0, |a| a.buf.len());
            if so_far.saturating_add(len) > self.limits.max_message_size {
                return Err(ProtocolError::MessageTooBig {
                    limit: self.limits.max_message_size,
                });
            }
        }
        let text = match (&self.assembly, h.opcode) {
            (Some(asm), OpCode::Continue) => asm.opcode == OpCode::Text,
            (_, op) => op == OpCode::Text,
        };
        if h.opcode.is_data() {
            self.utf8.reset();
        }
        Ok(Current {
            header: h,
            len,
            processed: 0,
            stream_utf8: text && !compressed,
        })
    }

    /// Unmasks/validates what has arrived of the current frame; finishes it when complete.
    fn progress_frame(
        &mut self,
        mut c: Current,
        buf: &mut BytesMut,
    ) -> Result<Option<Incoming>, ProtocolError> {
        let available = buf.len().min(c.len);
        if available > c.processed {
            let fresh = &mut buf[c.processed..available];
            if let Some(key) = c.header.mask {
                apply_mask(fresh, key, c.processed);
            }
            if c.stream_utf8 {
                self.utf8.feed(fresh)?;
            }
            c.processed = available;
        }
        if available < c.len {
            self.current = Some(c);
            return Ok(None);
        }
        self.current = None;
        // A frame that ends the buffer (the usual case) takes the buffer whole: splitting it
        // would allocate a shared header for the two halves and free it with the message.
        let payload = if buf.len() == c.len {
            std::mem::take(buf)
        } else {
            buf.split_to(c.len)
        };
        let h = c.header;
        let masked = h.mask.is_some();
        match h.opcode {
            OpCode::Ping => Ok(Some(Incoming::Ping {
                payload: payload.freeze(),
                masked,
            })),
            OpCode::Pong => Ok(Some(Incoming::Pong {
                payload: payload.freeze(),
                masked,
            })),
            OpCode::Close => Ok(Some(Incoming::Close {
                frame: CloseFrame::parse(&payload)?,
                masked,
            })),
            OpCode::Text | OpCode::Binary | OpCode::Continue => self.data_frame(h, payload),
        }
    }

    /// Adds a complete data frame to the message being assembled.
    fn data_frame(
        &mut self,
        h: FrameHeader,
        payload: BytesMut,
    ) -> Result<Option<Incoming>, ProtocolError> {
        let masked = h.mask.is_some();
        if h.opcode != OpCode::Continue {
            if h.fin && !h.rsv1() {
                // The common case: a whole message in one frame, handed out without a copy.
                if h.opcode == OpCode::Text {
                    self.utf8.finish()?;
                }
                return Ok(Some(Incoming::Message(Received {
                    opcode: h.opcode,
                    payload: payload.freeze(),
                    compressed: false,
                    masked,
                })));
            }
            self.assembly = Some(Assembly {
                opcode: h.opcode,
                compressed: h.rsv1(),
                masked,
                buf: BytesMut::new(),
                fragments: 0,
            });
        }
        let Some(asm) = self.assembly.as_mut() else {
            return Err(ProtocolError::UnexpectedContinuation);
        };
        asm.fragments += 1;
        if asm.compressed {
            let Some(inflater) = self.inflater.as_mut() else {
                return Err(ProtocolError::ReservedBits(RSV1));
            };
            let before = asm.buf.len();
            inflater.decompress(&payload, h.fin, &mut asm.buf, self.limits.max_message_size)?;
            if asm.opcode == OpCode::Text {
                self.utf8.feed(&asm.buf[before..])?;
            }
        } else if asm.buf.is_empty() && h.fin {
            // First bytes and last frame: nothing to copy into.
            asm.buf = payload;
        } else {
            if asm.buf.is_empty() {
                asm.buf.reserve(payload.len());
            }
            asm.buf.put_slice(&payload);
        }
        if !h.fin {
            return Ok(None);
        }
        if asm.opcode == OpCode::Text {
            self.utf8.finish()?;
        }
        let Some(asm) = self.assembly.take() else {
            return Err(ProtocolError::UnexpectedContinuation);
        };
        Ok(Some(Incoming::Message(Received {
            opcode: asm.opcode,
            payload: asm.buf.freeze(),
            compressed: asm.compressed,
            masked: asm.masked,
        })))
    }

    /// At end of input: an error if a frame or message was cut off.
    pub fn decode_eof(&self) -> Result<(), ProtocolError> {
        if self.is_idle() {
            Ok(())
        } else {
            Err(ProtocolError::Truncated)
        }
    }
}

/// What the encoder needs to know about compression of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Compress when a compressor is set and the payload reaches its threshold.
    Auto,
    /// Never compress this message.
    Never,
}

/// Payloads at least this large are queued as their own `Bytes` instead of being copied into the
/// output buffer (when they need neither masking nor compression).
pub const ZERO_COPY_MIN: usize = 4096;

/// Bytes waiting to be written: a buffer that small frames are encoded into, plus large payloads
/// kept as they came.
#[derive(Debug, Default)]
pub struct Output {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl Output {
    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many bytes are waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Encodes into the tail buffer with `f`, keeping the length in step.
    fn write_tail(&mut self, f: impl FnOnce(&mut BytesMut)) {
        let before = self.tail.len();
        f(&mut self.tail);
        self.len += self.tail.len() - before;
    }

    fn push_chunk(&mut self, chunk: Bytes) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Moves everything waiting out, in order, leaving this empty (the tail buffer keeps its
    /// spare room for the next frames).
    pub fn take(&mut self) -> Output {
        let mut chunks = std::mem::take(&mut self.chunks);
        if !self.tail.is_empty() {
            chunks.push_back(self.tail.split().freeze());
        }
        let len = std::mem::take(&mut self.len);
        Output {
            chunks,
            tail: BytesMut::new(),
            len,
        }
    }

    /// Appends everything `other` holds, after what is already here.
    pub fn append(&mut self, mut other: Output) {
        if other.is_empty() {
            return;
        }
        if self.is_empty() && self.tail.capacity() == 0 {
            *self = other;
            return;
        }
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len += other.len;
        self.chunks.append(&mut other.chunks);
        if !other.tail.is_empty() {
            self.chunks.push_back(other.tail.freeze());
        }
    }

    /// Fills `dst` with slices of the waiting bytes, in order; returns how many it filled.
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let parts = self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[..]));
        let mut n = 0;
        for part in parts.filter(|p| !p.is_empty()) {
            if n == dst.len() {
                break;
            }
            dst[n] = IoSlice::new(part);
            n += 1;
        }
        n
    }

    /// The first contiguous run of waiting bytes.
    pub fn first_chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&self.tail[..], |c| &c[..])
    }

    /// Whether everything waiting is one contiguous run (what a single small frame is).
    pub fn is_contiguous(&self) -> bool {
        self.first_chunk().len() == self.len
    }

    /// Drops the first `n` waiting bytes (after they were written).
    #[inline]
    pub fn advance(&mut self, n: usize) {
        if n < self.len {
            return self.advance_part(n);
        }
        // All written (the usual case): clearing keeps the tail's room at its start, where
        // advancing would move its start and make the next frame reclaim the space.
        if !self.chunks.is_empty() || self.tail.capacity() > 64 * 1024 {
            self.release_written();
        }
        self.tail.clear();
        self.len = 0;
    }

    /// Drops written chunks and gives back a tail grown by a burst.
    fn release_written(&mut self) {
        self.chunks.clear();
        if self.tail.capacity() > 64 * 1024 {
            self.tail = BytesMut::new();
        }
    }

    /// [`Output::advance`] by part of what waits.
    fn advance_part(&mut self, mut n: usize) {
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(front) => {
                    let k = n.min(front.len());
                    front.advance(k);
                    n -= k;
                    if front.is_empty() {
                        self.chunks.pop_front();
                    }
                }
                None => {
                    let k = n.min(self.tail.len());
                    self.tail.advance(k);
                    n = 0;
                }
            }
        }
    }
}

/// Turns messages into frames: the one place where frames are built (header, mask, compression,
/// and the zero-copy path for large payloads).
#[derive(Debug)]
pub struct Encoder {
    /// Boxed, as the decoder's inflater: an encoder without compression is these two words.
    deflater: Option<Box<Compressor>>,
    threshold: usize,
}

/// A compressor and the buffer compressed messages are built in.
#[derive(Debug)]
struct Compressor {
    deflater: Deflater,
    scratch: BytesMut,
}

impl Encoder {
    /// An encoder without compression.
    pub fn new() -> Self {
        Encoder {
            deflater: None,
            threshold: 0,
        }
    }

    /// Enables permessage-deflate for data messages of at least `threshold` bytes.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn set_deflater(&mut self, deflater: Option<Deflater>, threshold: usize) {
        self.deflater = deflater.map(|deflater| {
            Box::new(Compressor {
                deflater,
                scratch: BytesMut::new(),
            })
        });
        self.threshold = threshold;
    }

    /// Whether a compressor is set.
    pub fn compresses(&self) -> bool {
        self.deflater.is_some()
    }

    /// Bytes of compression state held.
    pub fn memory_usage(&self) -> usize {
        self.deflater
            .as_ref()
            .map_or(0, |c| c.deflater.memory_usage() + c.scratch.capacity())
    }

    /// Frees the compressor's state if nothing is lost by it (see [`Deflater::release`]), and
    /// the scratch buffer compressed messages are built in.
    pub fn release_deflater(&mut self) -> bool {
        self.deflater.as_mut().is_some_and(|c| {
            c.scratch = BytesMut::new();
            c.deflater.release()
        })
    }

    /// How many messages the compressor compressed so far (0 without compression).
    pub fn deflater_uses(&self) -> u64 {
        self.deflater.as_ref().map_or(0, |c| c.deflater.uses())
    }

    /// The settings of a compressor that compresses each message on its own (our side has no
    /// context takeover): every encoder with the same settings produces the same frame for a
    /// message, which can then be compressed once and shared (see `PreparedMessage`). `None`
    /// without compression or with context takeover.
    pub fn shared_compression(&self) -> Option<super::deflate::DeflateSettings> {
        let deflater = &self.deflater.as_deref()?.deflater;
        deflater.no_context_takeover().then(|| deflater.settings())
    }

    /// Whether a data message of `len` bytes would be compressed under `compression`.
    pub fn would_compress(&self, opcode: OpCode, len: usize, compression: Compression) -> bool {
        self.deflater.is_some()
            && opcode.is_data()
            && compression == Compression::Auto
            && len >= self.threshold
    }

    /// Appends one unfragmented frame carrying `payload` to `dst`: header, then the payload
    /// (compressed when [`Encoder::would_compress`], masked when `mask` is set).
    pub fn encode(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        compression: Compression,
        mask: Option<[u8; 4]>,
        dst: &mut BytesMut,
    ) -> Result<(), SendError> {
        if self.would_compress(opcode, payload.len(), compression) {
            if let Some(c) = self.deflater.as_deref_mut() {
                c.scratch.clear();
                c.deflater.compress(payload, &mut c.scratch)?;
                let mut header = FrameHeader::new(opcode, c.scratch.len() as u64, mask);
                header.rsv = RSV1;
                write_frame(header, &c.scratch, dst);
            }
            return Ok(());
        }
        write_frame(
            FrameHeader::new(opcode, payload.len() as u64, mask),
            payload,
            dst,
        );
        Ok(())
    }

    /// Like [`Encoder::encode`], into an [`Output`]: a large payload that needs neither masking
    /// nor compression is queued as it is, behind its header, without a copy.
    #[inline]
    pub fn encode_to_output(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        compression: Compression,
        mask: Option<[u8; 4]>,
        out: &mut Output,
    ) -> Result<(), SendError> {
        if mask.is_none() && !self.would_compress(opcode, payload.len(), compression) {
            let header = FrameHeader::new(opcode, payload.len() as u64, None);
            if payload.len() >= ZERO_COPY_MIN {
                out.write_tail(|tail| header.encode_to(tail));
                out.push_chunk(payload);
            } else {
                out.write_tail(|tail| write_frame(header, &payload, tail));
            }
            return Ok(());
        }
        let mut result = Ok(());
        out.write_tail(|tail| result = self.encode(opcode, &payload, compression, mask, tail));
        result
    }

    /// Queues an already encoded frame as it is.
    pub fn push_encoded(&self, frame: Bytes, out: &mut Output) {
        out.push_chunk(frame);
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Appends a frame with `header` and `payload` to `dst`, masking the copy when the header has a
/// key. The low-level writer under [`Encoder`]; it also builds frames no conforming sender would
/// (for tests and load generators), since `header` is taken as it is.
pub fn write_frame(header: FrameHeader, payload: &[u8], dst: &mut BytesMut) {
    // The header is encoded once, on the stack, and its length taken from that.
    let mut raw = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut raw);
    dst.reserve(n + payload.len());
    // (The first two bytes, which every header has, as a copy of fixed size: a store, where
    // a copy of `n` bytes is a call.)
    dst.extend_from_slice(&raw[..2]);
    if n > 2 {
        dst.extend_from_slice(&raw[2..n]);
    }
    let start = dst.len();
    dst.extend_from_slice(payload);
    if let Some(key) = header.mask {
        apply_mask(&mut dst[start..], key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::close::CloseCode;

    fn server() -> Decoder {
        Decoder::new(MaskPolicy::Require, Limits::default())
    }

    fn client() -> Decoder {
        Decoder::new(MaskPolicy::Forbid, Limits::default())
    }

    fn decode_one(d: &mut Decoder, bytes: &[u8]) -> Result<Option<Incoming>, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        d.decode(&mut buf)
    }

    fn frame(op: OpCode, fin: bool, rsv: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
        let mut h = FrameHeader::new(op, payload.len() as u64, mask);
        h.fin = fin;
        h.rsv = rsv;
        let mut out = BytesMut::new();
        write_frame(h, payload, &mut out);
        out.to_vec()
    }

    fn text(payload: &str) -> Incoming {
        Incoming::Message(Received {
            opcode: OpCode::Text,
            payload: Bytes::copy_from_slice(payload.as_bytes()),
            compressed: false,
            masked: false,
        })
    }

    #[test]
    fn a_frame_that_ends_the_buffer_takes_the_buffer_itself() {
        let bytes = frame(
            OpCode::Binary,
            true,
            0,
            Some([1, 2, 3, 4]),
            b"sixteen bytes!!!",
        );
        let mut buf = BytesMut::from(&bytes[..]);
        let start = buf.as_ptr() as usize;
        let Some(Incoming::Message(m)) = server().decode(&mut buf).unwrap() else {
            panic!("expected a message");
        };
        assert_eq!(&m.payload[..], b"sixteen bytes!!!");
        // The body is the read buffer past the header, and the reader keeps no part of it.
        assert_eq!(m.payload.as_ptr() as usize, start + 6);
        assert_eq!(buf.capacity(), 0);
        // A frame followed by more bytes is split off; the rest stays with the reader.
        let mut two = BytesMut::from(&[bytes.clone(), bytes].concat()[..]);
        let Some(Incoming::Message(first)) = server().decode(&mut two).unwrap() else {
            panic!("expected a message");
        };
        assert_eq!(&first.payload[..], b"sixteen bytes!!!");
        assert_eq!(two.len(), 22);
    }

    /// Decodes `wire` whole, then one byte at a time: every item and the error, if any.
    fn whole_and_bytewise(
        mk: impl Fn() -> Decoder,
        wire: &[u8],
    ) -> [(Vec<Incoming>, Option<ProtocolError>); 2] {
        [wire.len(), 1].map(|step| {
            let mut d = mk();
            let (mut buf, mut items) = (BytesMut::new(), Vec::new());
            for piece in wire.chunks(step) {
                buf.extend_from_slice(piece);
                loop {
                    match d.decode(&mut buf) {
                        Ok(Some(item)) => items.push(item),
                        Ok(None) => break,
                        Err(e) => return (items, Some(e)),
                    }
                }
            }
            (items, None)
        })
    }

    #[test]
    fn whole_frames_decode_as_frames_that_arrive_in_pieces() {
        // A frame that is all there takes a shorter way through the decoder than one that
        // arrives in pieces: both must give the same messages and the same errors.
        let limits = Limits::with_max_size(70_000);
        let policies = [MaskPolicy::Require, MaskPolicy::Forbid, MaskPolicy::Any];
        let mut cases = 0;
        for len in [0usize, 1, 125, 126, 1000, 65_535, 65_536, 70_001] {
            for op in [OpCode::Text, OpCode::Binary] {
                for mask in [None, Some([9, 8, 7, 6])] {
                    for bad_utf8 in [false, true] {
                        let mut payload = vec![b'x'; len];
                        if bad_utf8 && len > 0 {
                            payload[len / 2] = 0xff;
                        }
                        // Two frames, then a PING, so that what follows a frame is decoded too.
                        let wire = [
                            frame(op, true, 0, mask, &payload),
                            frame(op, true, 0, mask, b"next"),
                            frame(OpCode::Ping, true, 0, mask, b"p"),
                        ]
                        .concat();
                        for policy in policies {
                            let [whole, bytewise] =
                                whole_and_bytewise(|| Decoder::new(policy, limits), &wire);
                            assert_eq!(whole, bytewise, "{len} {op:?} {mask:?} {policy:?}");
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 8 * 2 * 2 * 2 * 3);
        // Non-minimal 16-bit length, and RSV1 without compression: errors either way.
        for wire in [
            vec![0x82u8, 0x7e, 0x00, 0x05, 1, 2, 3, 4, 5],
            vec![0xc2u8, 0x01, 0x00],
        ] {
            let [whole, bytewise] = whole_and_bytewise(client, &wire);
            assert!(whole.1.is_some());
            assert_eq!(whole, bytewise);
        }
    }

    #[test]
    fn rfc_unmasked_hello() {
        let got = decode_one(&mut client(), &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(got.unwrap().unwrap(), text("Hello"));
    }

    #[test]
    fn rfc_masked_hello() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        match decode_one(&mut server(), &bytes).unwrap().unwrap() {
            Incoming::Message(Received {
                payload, masked, ..
            }) => {
                assert_eq!(&payload[..], b"Hello");
                assert!(masked);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc_fragmented_hello() {
        let mut d = client();
        let mut buf = BytesMut::from(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f][..]);
        assert_eq!(d.decode(&mut buf).unwrap().unwrap(), text("Hello"));
        assert!(buf.is_empty() && d.is_idle());
    }

    #[test]
    fn rfc_ping() {
        let got = decode_one(&mut client(), &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(
            got.unwrap().unwrap(),
            Incoming::Ping {
                payload: Bytes::from_static(b"Hello"),
                masked: false
            }
        );
    }

    #[test]
    fn byte_by_byte_feed() {
        let mut d = server();
        let mut wire = frame(
            OpCode::Text,
            false,
            0,
            Some([1, 2, 3, 4]),
            "héllo ".as_bytes(),
        );
        wire.extend(frame(OpCode::Ping, true, 0, Some([5, 6, 7, 8]), b"p"));
        wire.extend(frame(
            OpCode::Continue,
            true,
            0,
            Some([9, 9, 9, 9]),
            "wörld".as_bytes(),
        ));
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            buf.put_u8(b);
            while let Some(item) = d.decode(&mut buf).unwrap() {
                got.push(item);
            }
        }
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            Incoming::Ping {
                payload: Bytes::from_static(b"p"),
                masked: true
            },
            "a control frame reports its mask like a message does"
        );
        match &got[1] {
            Incoming::Message(Received { payload, .. }) => {
                assert_eq!(&payload[..], "héllo wörld".as_bytes())
            }
            other => panic!("{other:?}"),
        }
    }

    fn err_code(d: &mut Decoder, bytes: &[u8]) -> CloseCode {
        let mut buf = BytesMut::from(bytes);
        loop {
            match d.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("no error for {bytes:?}"),
                Err(e) => return e.close_code(),
            }
        }
    }

    #[test]
    fn rule_violations_map_to_close_codes() {
        let m = Some([1, 2, 3, 4]);
        let p = CloseCode::PROTOCOL_ERROR;
        // Unmasked client frame, masked server frame.
        assert_eq!(
            err_code(&mut server(), &frame(OpCode::Text, true, 0, None, b"x")),
            p
        );
        assert_eq!(
            err_code(&mut client(), &frame(OpCode::Text, true, 0, m, b"x")),
            p
        );
        // Reserved bits without an extension; RSV1 without deflate.
        for rsv in [1, 2, 4, 7] {
            assert_eq!(
                err_code(&mut server(), &frame(OpCode::Binary, true, rsv, m, b"")),
                p
            );
        }
        // Reserved opcodes.
        for op in [3u8, 4, 5, 6, 7, 11, 12, 13, 14, 15] {
            assert_eq!(err_code(&mut client(), &[0x80 | op, 0]), p);
        }
        // Fragmented control frame; control frame over 125 bytes.
        assert_eq!(
            err_code(&mut client(), &frame(OpCode::Ping, false, 0, None, b"")),
            p
        );
        assert_eq!(
            err_code(
                &mut client(),
                &frame(OpCode::Ping, true, 0, None, &[0; 126])
            ),
            p
        );
        // Continuation with nothing open.
        assert_eq!(
            err_code(&mut client(), &frame(OpCode::Continue, true, 0, None, b"")),
            p
        );
        // New data frame while a message is open.
        let mut wire = frame(OpCode::Text, false, 0, None, b"a");
        wire.extend(frame(OpCode::Binary, true, 0, None, b"b"));
        assert_eq!(err_code(&mut client(), &wire), p);
        // Close payload of one byte; invalid close codes; invalid UTF-8 reason.
        assert_eq!(
            err_code(&mut client(), &frame(OpCode::Close, true, 0, None, &[3])),
            p
        );
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let wire = frame(OpCode::Close, true, 0, None, &code.to_be_bytes());
            assert_eq!(err_code(&mut client(), &wire), p, "{code}");
        }
        let wire = frame(OpCode::Close, true, 0, None, &[0x03, 0xe8, 0xff]);
        assert_eq!(err_code(&mut client(), &wire), CloseCode::INVALID_PAYLOAD);
        // 64-bit length with the top bit set.
        assert_eq!(
            err_code(&mut client(), &[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            p
        );
    }

    #[test]
    fn invalid_utf8_is_1007_and_fails_fast() {
        let code = err_code(
            &mut client(),
            &frame(OpCode::Text, true, 0, None, b"ab\xff"),
        );
        assert_eq!(code, CloseCode::INVALID_PAYLOAD);
        // Only the first half of a 1000-byte frame is here, and it is already invalid.
        let mut d = client();
        let wire = frame(OpCode::Text, true, 0, None, &[0xc0; 1000]);
        let mut buf = BytesMut::from(&wire[..500]);
        assert_eq!(d.decode(&mut buf).unwrap_err(), ProtocolError::InvalidUtf8);
        // In a fragmented message, the bad fragment fails before the final one.
        let mut d = client();
        let mut buf = BytesMut::from(&frame(OpCode::Text, false, 0, None, b"ok")[..]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&frame(OpCode::Continue, false, 0, None, b"\xed\xa0\x80")[..]);
        assert_eq!(d.decode(&mut buf).unwrap_err(), ProtocolError::InvalidUtf8);
        // A character cut by the end of the message.
        let code = err_code(
            &mut client(),
            &frame(OpCode::Text, true, 0, None, b"\xe2\x82"),
        );
        assert_eq!(code, CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn size_limits_fail_before_allocating() {
        let limits = Limits {
            max_frame_size: 1000,
            max_message_size: 1500,
            max_fragments: 3,
        };
        let big = CloseCode::MESSAGE_TOO_BIG;
        // The header alone announces a frame over the limit: rejected with no payload present.
        let mut d = Decoder::new(MaskPolicy::Forbid, limits);
        assert_eq!(err_code(&mut d, &[0x82, 0x7e, 0x03, 0xe9]), big);
        // 2^62-byte frame header.
        let mut d = Decoder::new(MaskPolicy::Forbid, limits);
        assert_eq!(
            err_code(&mut d, &[0x82, 0x7f, 0x40, 0, 0, 0, 0, 0, 0, 0]),
            big
        );
        // Two frames of 800: the message is over 1500.
        let mut wire = frame(OpCode::Binary, false, 0, None, &[0; 800]);
        wire.extend(frame(OpCode::Continue, true, 0, None, &[0; 800]));
        let mut d = Decoder::new(MaskPolicy::Forbid, limits);
        assert_eq!(err_code(&mut d, &wire), big);
        // Four fragments with a limit of three, even though they are empty.
        let mut wire = frame(OpCode::Binary, false, 0, None, b"");
        for _ in 0..3 {
            wire.extend(frame(OpCode::Continue, false, 0, None, b""));
        }
        let mut d = Decoder::new(MaskPolicy::Forbid, limits);
        assert_eq!(err_code(&mut d, &wire), big);
    }

    #[test]
    fn single_frame_message_is_not_copied() {
        let mut d = client();
        let mut buf = BytesMut::from(&frame(OpCode::Binary, true, 0, None, &[7; 4096])[..]);
        let start = buf[4..].as_ptr() as usize;
        match d.decode(&mut buf).unwrap().unwrap() {
            Incoming::Message(Received { payload, .. }) => {
                assert_eq!(payload.as_ptr() as usize, start)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn truncated_input_reports_at_eof() {
        let mut d = client();
        let wire = frame(OpCode::Binary, true, 0, None, &[1; 10]);
        let mut buf = BytesMut::from(&wire[..5]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert_eq!(d.decode_eof().unwrap_err(), ProtocolError::Truncated);
        assert!(client().decode_eof().is_ok());
    }
}
