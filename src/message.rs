//! [`Message`]: the seed's `ws.Message` (fibjs `WebSocketMessage`): one WebSocket message, with
//! its type, masking, compression and size limit, readable from and writable to any byte stream.

use std::fmt;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::proto::codec::{MaskPolicy, DEFAULT_MAX_MESSAGE_SIZE};
use crate::proto::deflate::{Deflater, Inflater, STANDALONE};
use crate::proto::frame::FrameHeader;
use crate::proto::{
    CloseCode, CloseFrame, Compression, Decoder, Encoder, Incoming, Limits, OpCode, ProtocolError,
    Received, Role, SendError,
};

/// One WebSocket message (the seed's `ws.Message`).
///
/// Defaults, as the seed's: type BINARY, `masked` true, `compress` false, `max_size` 64 MiB,
/// empty body. A message received by a [`crate::Socket`] reports what arrived: its type,
/// whether it was masked and whether it was compressed.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    kind: OpCode,
    masked: bool,
    compress: Option<bool>,
    max_size: usize,
    body: Bytes,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            kind: OpCode::Binary,
            masked: true,
            compress: None,
            max_size: DEFAULT_MAX_MESSAGE_SIZE,
            body: Bytes::new(),
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Message");
        d.field("type", &self.kind)
            .field("masked", &self.masked)
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
    pub(crate) fn from_received(m: Received, max_size: usize) -> Self {
        Message::received(m.opcode, m.payload, m.compressed, m.masked, max_size)
    }

    fn received(
        kind: OpCode,
        body: Bytes,
        compressed: bool,
        masked: bool,
        max_size: usize,
    ) -> Self {
        Message {
            kind,
            masked,
            compress: Some(compressed),
            max_size,
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

    /// Whether the message is (or was, when read) masked (the seed's `masked`).
    pub fn masked(&self) -> bool {
        self.masked
    }

    /// Sets masking for [`Message::encode`] and [`Message::write_to`]. A [`crate::Socket`]
    /// masks by its role and ignores this.
    pub fn set_masked(&mut self, masked: bool) {
        self.masked = masked;
    }

    /// Whether the message is (or was, when read) compressed (the seed's `compress`).
    pub fn compress(&self) -> bool {
        self.compress.unwrap_or(false)
    }

    /// Sets compression. For [`Message::encode`]: deflate the body and set RSV1. For a
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

    /// The largest message [`Message::decode`] and [`Message::read_from`] accept (the seed's
    /// `maxSize`, default 64 MiB).
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// Sets the size limit for reading.
    pub fn set_max_size(&mut self, max: usize) {
        self.max_size = max;
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

    /// Encodes the message as one frame: header, mask key when `masked`, the payload (deflated,
    /// with RSV1, when `compress`; each message compressed on its own, without context
    /// takeover).
    pub fn encode_to(&self, dst: &mut BytesMut) -> Result<()> {
        let mask = self.masked.then(rand::random::<[u8; 4]>);
        if self.kind.is_control() && self.body.len() > crate::proto::frame::MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong(self.body.len()).into());
        }
        if self.kind == OpCode::Continue {
            return Err(SendError::NotSendable(OpCode::Continue).into());
        }
        let mut encoder = Encoder::new();
        if self.compress() && self.kind.is_data() {
            // Each message on its own: no context takeover, so any peer can inflate it.
            let deflater = Deflater::new(STANDALONE, Role::Server, 6, 8);
            encoder.set_deflater(Some(deflater), 0);
        }
        encoder.encode(self.kind, &self.body, Compression::Auto, mask, dst)?;
        Ok(())
    }

    /// Encodes the message into a new buffer (see [`Message::encode_to`]).
    pub fn encode(&self) -> Result<BytesMut> {
        let mut out = BytesMut::with_capacity(self.body.len() + 14);
        self.encode_to(&mut out)?;
        Ok(out)
    }

    fn decoder(max_size: usize) -> Decoder {
        let mut decoder = Decoder::new(MaskPolicy::Any, Limits::with_max_size(max_size));
        decoder.set_inflater(Some(Inflater::new(STANDALONE, Role::Server)));
        decoder
    }

    fn from_incoming(item: Incoming, max_size: usize) -> Message {
        match item {
            Incoming::Message(m) => Message::from_received(m, max_size),
            Incoming::Ping { payload, masked } => {
                Message::received(OpCode::Ping, payload, false, masked, max_size)
            }
            Incoming::Pong { payload, masked } => {
                Message::received(OpCode::Pong, payload, false, masked, max_size)
            }
            Incoming::Close { frame, masked } => Message::received(
                OpCode::Close,
                frame.map(|f| f.encode()).unwrap_or_default(),
                false,
                masked,
                max_size,
            ),
        }
    }

    /// Decodes one message from the front of `buf` (reassembling fragments, unmasking,
    /// inflating), consuming exactly its bytes. `Ok(None)`: `buf` holds only part of a message,
    /// and nothing was consumed. A control frame is returned as a message of its own type; one
    /// that arrives between the fragments of a message is taken out and returned first, and the
    /// fragments stay in `buf`.
    pub fn decode(buf: &mut BytesMut, max_size: usize) -> Result<Option<Message>> {
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
            let end = pos + header_len + h.payload_len as usize;
            if end > buf.len() {
                return Ok(None);
            }
            if h.opcode.is_control() && open {
                let mut frame = BytesMut::from(&buf[pos..end]);
                let tail = buf.split_off(end);
                buf.truncate(pos);
                buf.unsplit(tail);
                return Message::decode_complete(&mut frame, max_size).map(Some);
            }
            pos = end;
            if h.opcode.is_control() || h.fin {
                break;
            }
            open = true;
        }
        let mut span = buf.split_to(pos);
        Message::decode_complete(&mut span, max_size).map(Some)
    }

    /// Decodes `span`, which holds exactly one whole message.
    fn decode_complete(span: &mut BytesMut, max_size: usize) -> Result<Message> {
        let mut decoder = Message::decoder(max_size);
        match decoder.decode(span)? {
            Some(item) => Ok(Message::from_incoming(item, max_size)),
            None => Err(ProtocolError::Truncated.into()),
        }
    }

    /// Reads one message from `reader` (the seed's `readFrom`), reading exactly its bytes and no
    /// more. Truncated input is [`ProtocolError::Truncated`]; a message over `max_size`, a bad
    /// opcode or reserved bit, or a bad control frame is an error, never a panic.
    ///
    /// Cancel safety: not cancel-safe: bytes already read are lost if the future is dropped, and
    /// the stream is then in the middle of a frame.
    pub async fn read_from<R: AsyncRead + Unpin>(
        reader: &mut R,
        max_size: usize,
    ) -> Result<Message> {
        let mut decoder = Message::decoder(max_size);
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
                return Ok(Message::from_incoming(item, max_size));
            }
            // Ask for exactly what completes the header or the frame in flight (in steps of at
            // most 1 MiB, so a large announced frame is not allocated before it arrives).
            want = decoder.bytes_wanted(&buf).min(1 << 20);
        }
    }

    /// Writes the message to `writer` (the seed's `sendTo`) and flushes.
    ///
    /// Cancel safety: not cancel-safe: dropped midway, part of the frame may have been written.
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, writer: &mut W) -> Result<()> {
        let frame = self.encode()?;
        writer.write_all(&frame).await?;
        writer.flush().await?;
        Ok(())
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
        assert!(m.masked());
        assert!(!m.compress());
        assert_eq!(m.max_size(), 64 * 1024 * 1024);
        assert!(m.body().is_empty());
    }

    #[test]
    fn partial_input_consumes_nothing() {
        let wire = Message::text("hello there").encode().unwrap();
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert!(Message::decode(&mut buf, 1024).unwrap().is_none());
            assert_eq!(&buf[..], &wire[..cut], "cut {cut}: bytes were touched");
        }
    }

    #[test]
    fn control_frame_between_fragments_comes_out_first() {
        let mut wire = frame(OpCode::Text, false, b"Hel");
        wire.extend(frame(OpCode::Ping, true, b"p"));
        wire.extend(frame(OpCode::Continue, true, b"lo"));
        let mut buf = BytesMut::from(&wire[..]);
        let ping = Message::decode(&mut buf, 1024).unwrap().unwrap();
        assert_eq!((ping.kind(), &ping.body()[..]), (OpCode::Ping, &b"p"[..]));
        let text = Message::decode(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(text.as_text(), Some("Hello"));
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_frame_fails_from_its_header() {
        let mut buf = BytesMut::from(&[0x82u8, 0x7f, 0, 0, 0, 0, 0x10, 0, 0, 0][..]);
        assert!(Message::decode(&mut buf, 1 << 20).is_err());
    }

    #[tokio::test]
    async fn read_from_reports_masked_control_frames() {
        for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
            for masked in [true, false] {
                let key = masked.then_some([9, 8, 7, 6]);
                let mut wire = BytesMut::new();
                write_frame(FrameHeader::new(op, 2, key), b"\x03\xe8", &mut wire);
                let mut reader = &wire[..];
                let msg = Message::read_from(&mut reader, 1024).await.unwrap();
                assert_eq!(msg.kind(), op);
                assert_eq!(msg.masked(), masked, "{op:?} masked={masked}");
                assert_eq!(&msg.body()[..], b"\x03\xe8");
            }
        }
    }
}
