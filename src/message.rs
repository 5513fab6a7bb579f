//! The seed's `ws.Message` (fibjs `WebSocketMessage`), in two parts:
//! - [`Message`]: one WebSocket message as a plain value (type, body, compress flag), what a
//!   [`crate::Socket`] sends and receives;
//! - [`MessageCodec`]: the seed's `readFrom`/`sendTo` with its `masked` and `maxSize`: reads and
//!   writes one message on any byte stream (or buffer), with no connection around it.

use std::fmt;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::proto::codec::{MaskPolicy, DEFAULT_MAX_MESSAGE_SIZE};
#[cfg(feature = "deflate")]
use crate::proto::deflate::{Deflater, Inflater, STANDALONE};
use crate::proto::frame::{FrameHeader, MAX_CONTROL_PAYLOAD};
use crate::proto::{
    CloseCode, CloseFrame, Compression, Decoder, Encoder, Incoming, Limits, OpCode, ProtocolError,
    Received, SendError,
};

/// One WebSocket message (the seed's `ws.Message` as a value): its type, body and compress
/// flag.
///
/// Defaults, as the seed's: type BINARY, `compress` unset (the socket decides), empty body. A
/// message received by a [`crate::Socket`] reports its type and whether it arrived compressed.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    kind: OpCode,
    compress: Option<bool>,
    body: Bytes,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            kind: OpCode::Binary,
            compress: None,
            body: Bytes::new(),
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field("type", &self.kind)
            .field("compress", &self.compress())
            .field("len", &self.body.len());
        if let Some(text) = self.as_text().filter(|t| t.len() <= 64) {
            d.field("text", &text);
        }
        d.finish()
    }
}

impl Message {
    /// An empty BINARY message with the seed's defaults.
    pub fn new() -> Self {
        Message::default()
    }

    /// A TEXT message.
    pub fn text(text: impl Into<String>) -> Self {
        Message {
            kind: OpCode::Text,
            body: Bytes::from(text.into()),
            ..Message::default()
        }
    }

    /// A BINARY message.
    pub fn binary(data: impl Into<Bytes>) -> Self {
        Message {
            body: data.into(),
            ..Message::default()
        }
    }

    /// A PING (payload at most 125 bytes when sent).
    pub fn ping(data: impl Into<Bytes>) -> Self {
        Message {
            kind: OpCode::Ping,
            body: data.into(),
            ..Message::default()
        }
    }

    /// A PONG (payload at most 125 bytes when sent).
    pub fn pong(data: impl Into<Bytes>) -> Self {
        Message {
            kind: OpCode::Pong,
            body: data.into(),
            ..Message::default()
        }
    }

    /// A CLOSE with `code` and `reason` (cut to 123 bytes).
    pub fn close(code: CloseCode, reason: &str) -> Self {
        Message {
            kind: OpCode::Close,
            body: CloseFrame::new(code, reason).encode(),
            ..Message::default()
        }
    }

    /// A message of `kind` with `body` (the seed's `type` and `body` set together).
    pub fn with_kind(kind: OpCode, body: impl Into<Bytes>) -> Self {
        Message {
            kind,
            body: body.into(),
            ..Message::default()
        }
    }

    /// A message as the protocol core received it, reporting what arrived.
    pub(crate) fn from_received(m: Received) -> Self {
        Message::received(m.opcode, m.payload, m.compressed)
    }

    fn received(kind: OpCode, body: Bytes, compressed: bool) -> Self {
        Message {
            kind,
            compress: Some(compressed),
            body,
        }
    }

    /// The type (the seed's `type`): TEXT, BINARY, or a control opcode.
    pub fn kind(&self) -> OpCode {
        self.kind
    }

    /// Sets the type.
    pub fn set_kind(&mut self, kind: OpCode) {
        self.kind = kind;
    }

    /// Whether this is a TEXT message.
    pub fn is_text(&self) -> bool {
        self.kind == OpCode::Text
    }

    /// Whether this is a BINARY message.
    pub fn is_binary(&self) -> bool {
        self.kind == OpCode::Binary
    }

    /// Whether the message is (or was, when read) compressed (the seed's `compress`).
    pub fn compress(&self) -> bool {
        self.compress.unwrap_or(false)
    }

    /// Sets compression. For [`MessageCodec`]: deflate the body and set RSV1. For a
    /// [`crate::Socket`] with permessage-deflate: `false` sends this message uncompressed,
    /// `true` (or leaving it unset) lets the socket compress it.
    pub fn set_compress(&mut self, compress: bool) {
        self.compress = Some(compress);
    }

    /// `set_compress`, builder style.
    pub fn with_compress(mut self, compress: bool) -> Self {
        self.set_compress(compress);
        self
    }

    pub(crate) fn compress_setting(&self) -> Option<bool> {
        self.compress
    }

    /// The body (the seed's `body`).
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Replaces the body.
    pub fn set_body(&mut self, body: impl Into<Bytes>) {
        self.body = body.into();
    }

    /// Takes the body.
    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// The body length.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.body.is_empty()
    }

    /// The body as text, when it is valid UTF-8 (always, for a received TEXT message).
    pub fn as_text(&self) -> Option<&str> {
        simdutf8::basic::from_utf8(&self.body).ok()
    }

    /// For a CLOSE message: its code and reason (`None` for an empty CLOSE).
    pub fn close_frame(&self) -> Result<Option<CloseFrame>> {
        Ok(CloseFrame::parse(&self.body)?)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::text(text)
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::text(text)
    }
}

impl From<&String> for Message {
    fn from(text: &String) -> Self {
        Message::text(text.clone())
    }
}

impl From<Bytes> for Message {
    fn from(data: Bytes) -> Self {
        Message::binary(data)
    }
}

impl From<BytesMut> for Message {
    fn from(data: BytesMut) -> Self {
        Message::binary(data.freeze())
    }
}

impl From<Vec<u8>> for Message {
    fn from(data: Vec<u8>) -> Self {
        Message::binary(data)
    }
}

impl From<&[u8]> for Message {
    fn from(data: &[u8]) -> Self {
        Message::binary(Bytes::copy_from_slice(data))
    }
}

impl<const N: usize> From<&[u8; N]> for Message {
    fn from(data: &[u8; N]) -> Self {
        Message::binary(Bytes::copy_from_slice(data))
    }
}

/// Reads and writes one message on any byte stream or buffer, with no connection around it: the
/// seed's `Message.readFrom`/`sendTo` with its `masked` and `maxSize`.
///
/// Defaults, as the seed's: `masked` true (frames are written with a random mask key, as a
/// client sends them), `max_size` 64 MiB. Reading reassembles fragments, unmasks, inflates a
/// compressed message (each message on its own, without context takeover) and reports whether
/// the frame was masked. A [`crate::Socket`] does not use this: it masks by its role and takes
/// its limits from [`crate::SocketConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageCodec {
    masked: bool,
    max_size: usize,
}

impl Default for MessageCodec {
    fn default() -> Self {
        MessageCodec {
            masked: true,
            max_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// A message read by [`MessageCodec`], with what its frame reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedMessage {
    /// The message (a control frame comes as a message of its own type).
    pub message: Message,
    /// Whether its frame was masked (the seed's `masked` after `readFrom`).
    pub masked: bool,
}

impl MessageCodec {
    /// A codec with the seed's defaults.
    pub fn new() -> Self {
        MessageCodec::default()
    }

    /// Whether written frames are masked (the seed's `masked`).
    pub fn masked(mut self, masked: bool) -> Self {
        self.masked = masked;
        self
    }

    /// The largest message read (the seed's `maxSize`).
    pub fn max_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Whether written frames are masked.
    pub fn is_masked(&self) -> bool {
        self.masked
    }

    /// The largest message read.
    pub fn get_max_size(&self) -> usize {
        self.max_size
    }

    /// Encodes `msg` as one frame onto `dst`: header, mask key when masked, the payload
    /// (deflated, with RSV1, when `msg.compress()`).
    pub fn encode_to(&self, msg: &Message, dst: &mut BytesMut) -> Result<()> {
        let mask = self.masked.then(rand::random::<[u8; 4]>);
        if msg.kind.is_control() && msg.body.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong(msg.body.len()).into());
        }
        if msg.kind == OpCode::Continue {
            return Err(SendError::NotSendable(OpCode::Continue).into());
        }
        let mut encoder = if msg.compress() && msg.kind.is_data() {
            compressing_encoder()?
        } else {
            Encoder::new()
        };
        encoder.encode(msg.kind, &msg.body, Compression::Auto, mask, dst)?;
        Ok(())
    }

    /// Encodes `msg` into a new buffer (see [`MessageCodec::encode_to`]).
    pub fn encode(&self, msg: &Message) -> Result<BytesMut> {
        let mut out = BytesMut::with_capacity(msg.body.len() + 14);
        self.encode_to(msg, &mut out)?;
        Ok(out)
    }

    fn decoder(&self) -> Decoder {
        let decoder = Decoder::new(MaskPolicy::Any, Limits::with_max_size(self.max_size));
        #[cfg(feature = "deflate")]
        let decoder = {
            let mut decoder = decoder;
            decoder.set_inflater(Some(Inflater::new(STANDALONE, crate::proto::Role::Server)));
            decoder
        };
        decoder
    }

    fn from_incoming(item: Incoming) -> DecodedMessage {
        let (message, masked) = match item {
            Incoming::Message(m) => {
                let masked = m.masked;
                (Message::from_received(m), masked)
            }
            Incoming::Ping { payload, masked } => {
                (Message::received(OpCode::Ping, payload, false), masked)
            }
            Incoming::Pong { payload, masked } => {
                (Message::received(OpCode::Pong, payload, false), masked)
            }
            Incoming::Close { frame, masked } => (
                Message::received(
                    OpCode::Close,
                    frame.map(|f| f.encode()).unwrap_or_default(),
                    false,
                ),
                masked,
            ),
        };
        DecodedMessage { message, masked }
    }

    /// Decodes one message from the front of `buf` (reassembling fragments, unmasking,
    /// inflating), consuming exactly its bytes. `Ok(None)`: `buf` holds only part of a message,
    /// and nothing was consumed. A control frame is returned as a message of its own type; one
    /// that arrives between the fragments of a message is taken out and returned first, and the
    /// fragments stay in `buf`.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<DecodedMessage>> {
        let max_size = self.max_size;
        // Walk the headers only: no byte is touched until the whole message is there.
        let mut pos = 0usize;
        let mut open = false;
        loop {
            let Some((h, header_len)) = FrameHeader::decode(&buf[pos..])? else {
                return Ok(None);
            };
            if h.payload_len > max_size as u64 {
                return Err(ProtocolError::FrameTooBig {
                    size: h.payload_len,
                    limit: max_size,
                }
                .into());
            }
            // (Bounded by `max_size` and the buffer, so no overflow.)
            let end = pos + header_len + h.payload_len as usize;
            if end > buf.len() {
                return Ok(None);
            }
            if h.opcode.is_control() && open {
                let mut frame = BytesMut::from(&buf[pos..end]);
                let tail = buf.split_off(end);
                buf.truncate(pos);
                buf.unsplit(tail);
                return self.decode_complete(&mut frame).map(Some);
            }
            pos = end;
            if h.opcode.is_control() || h.fin {
                break;
            }
            open = true;
        }
        let mut span = buf.split_to(pos);
        self.decode_complete(&mut span).map(Some)
    }

    /// Decodes `span`, which holds exactly one whole message.
    fn decode_complete(&self, span: &mut BytesMut) -> Result<DecodedMessage> {
        match self.decoder().decode(span)? {
            Some(item) => Ok(MessageCodec::from_incoming(item)),
            None => Err(ProtocolError::Truncated.into()),
        }
    }

    /// Reads one message from `reader` (the seed's `readFrom`), reading exactly its bytes and no
    /// more. Truncated input is [`ProtocolError::Truncated`]; a message over `max_size`, a bad
    /// opcode or reserved bit, or a bad control frame is an error, never a panic.
    ///
    /// Cancel safety: not cancel-safe: bytes already read are lost if the future is dropped, and
    /// the stream is then in the middle of a frame.
    pub async fn read_from<R: AsyncRead + Unpin>(&self, reader: &mut R) -> Result<DecodedMessage> {
        let mut decoder = self.decoder();
        let mut buf = BytesMut::new();
        let mut want = 2usize;
        loop {
            let start = buf.len();
            buf.resize(start + want, 0);
            if let Err(e) = reader.read_exact(&mut buf[start..]).await {
                return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    Error::Protocol(ProtocolError::Truncated)
                } else {
                    Error::Io(e)
                });
            }
            if let Some(item) = decoder.decode(&mut buf)? {
                return Ok(MessageCodec::from_incoming(item));
            }
            // Ask for exactly what completes the header or the frame in flight (in steps of at
            // most 1 MiB, so a large announced frame is not allocated before it arrives).
            want = decoder.bytes_wanted(&buf).min(1 << 20);
        }
    }

    /// Writes `msg` to `writer` as one frame (the seed's `sendTo`) and flushes.
    ///
    /// Cancel safety: not cancel-safe: dropped midway, part of the frame may have been written.
    pub async fn write_to<W: AsyncWrite + Unpin>(
        &self,
        msg: &Message,
        writer: &mut W,
    ) -> Result<()> {
        let frame = self.encode(msg)?;
        writer.write_all(&frame).await?;
        writer.flush().await?;
        Ok(())
    }
}

/// An encoder that deflates each message on its own (no context takeover, so any peer can
/// inflate it).
#[cfg(feature = "deflate")]
fn compressing_encoder() -> Result<Encoder> {
    let mut encoder = Encoder::new();
    encoder.set_deflater(
        Some(Deflater::new(STANDALONE, crate::proto::Role::Server, 6, 8)),
        0,
    );
    Ok(encoder)
}

/// Without feature `deflate`, a message marked compressed cannot be encoded.
#[cfg(not(feature = "deflate"))]
fn compressing_encoder() -> Result<Encoder> {
    Err(SendError::Compress("compression needs feature `deflate`".into()).into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::codec::write_frame;

    fn frame(op: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut h = FrameHeader::new(op, payload.len() as u64, None);
        h.fin = fin;
        let mut out = BytesMut::new();
        write_frame(h, payload, &mut out);
        out.to_vec()
    }

    #[test]
    fn defaults_follow_the_seed() {
        let m = Message::new();
        assert_eq!(m.kind(), OpCode::Binary);
        assert!(!m.compress());
        assert!(m.body().is_empty());
        let codec = MessageCodec::new();
        assert!(codec.is_masked());
        assert_eq!(codec.get_max_size(), 64 * 1024 * 1024);
    }

    #[test]
    fn partial_input_consumes_nothing() {
        let codec = MessageCodec::new().max_size(1024);
        let wire = codec.encode(&Message::text("hello there")).unwrap();
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert!(codec.decode(&mut buf).unwrap().is_none());
            assert_eq!(&buf[..], &wire[..cut], "cut {cut}: bytes were touched");
        }
    }

    #[test]
    fn control_frame_between_fragments_comes_out_first() {
        let mut wire = frame(OpCode::Text, false, b"Hel");
        wire.extend(frame(OpCode::Ping, true, b"p"));
        wire.extend(frame(OpCode::Continue, true, b"lo"));
        let mut buf = BytesMut::from(&wire[..]);
        let codec = MessageCodec::new().max_size(1024);
        let ping = codec.decode(&mut buf).unwrap().unwrap().message;
        assert_eq!((ping.kind(), &ping.body()[..]), (OpCode::Ping, &b"p"[..]));
        let text = codec.decode(&mut buf).unwrap().unwrap().message;
        assert_eq!(text.as_text(), Some("Hello"));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_frame_fails_from_its_header() {
        let mut buf = BytesMut::from(&[0x82u8, 0x7f, 0, 0, 0, 0, 0x10, 0, 0, 0][..]);
        assert!(MessageCodec::new()
            .max_size(1 << 20)
            .decode(&mut buf)
            .is_err());
    }

    /// Without feature `deflate`, a compressed message is refused both ways, with an error.
    #[cfg(not(feature = "deflate"))]
    #[test]
    fn compressed_messages_are_refused_without_deflate() {
        let codec = MessageCodec::new();
        let err = codec
            .encode(&Message::text("squeeze me").with_compress(true))
            .unwrap_err();
        assert!(matches!(err, Error::Send(SendError::Compress(_))), "{err}");
        // A frame with RSV1 set (as a compressed one is) is a protocol error.
        let mut wire = BytesMut::new();
        let mut h = FrameHeader::new(OpCode::Text, 2, None);
        h.rsv = crate::proto::RSV1;
        write_frame(h, b"hi", &mut wire);
        assert!(codec.decode(&mut wire).is_err());
    }

    #[tokio::test]
    async fn read_from_reports_masked_control_frames() {
        for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            for masked in [true, false] {
                let key = masked.then_some([9, 8, 7, 6]);
                let mut wire = BytesMut::new();
                write_frame(FrameHeader::new(op, 2, key), b"\x03\xe8", &mut wire);
                let mut reader = &wire[..];
                let codec = MessageCodec::new().max_size(1024);
                let got = codec.read_from(&mut reader).await.unwrap();
                assert_eq!(got.message.kind(), op);
                assert_eq!(got.masked, masked, "{op:?} masked={masked}");
                assert_eq!(&got.message.body()[..], b"\x03\xe8");
            }
        }
    }
}
