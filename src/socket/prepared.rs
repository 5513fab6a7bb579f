//! [`PreparedMessage`]: a message framed once and sent to many sockets (a broadcast).

#[cfg(feature = "deflate")]
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::error::Result;
use crate::message::{Message, MessageCodec};
#[cfg(feature = "deflate")]
use crate::proto::deflate::DeflateSettings;
use crate::proto::{OpCode, SendError};

/// A message framed once, to be sent to many server sockets without re-encoding (a broadcast):
/// its frame bytes are shared by every socket that sends it.
///
/// Without compression the frame is unmasked and uncompressed (RSV1 clear, valid on any
/// connection). A socket that negotiated permessage-deflate *without* context takeover on its
/// side (`server_no_context_takeover`) compresses every message on its own, so all such
/// sockets with the same window bits, level and `mem_level` would produce the same bytes: the
/// message is compressed once for them, on first use, and that frame is shared too. A socket
/// with context takeover compresses the message itself, as it must (its output depends on what
/// it sent before). [`Message::set_compress`]`(false)` sends it uncompressed everywhere.
///
/// Clones share the frames.
#[derive(Clone, Debug)]
pub struct PreparedMessage {
    pub(super) message: Message,
    pub(super) frame: Bytes,
    /// Compressed frames by compressor settings `(window_bits, level, mem_level)`.
    #[cfg(feature = "deflate")]
    compressed: Arc<Mutex<Vec<(DeflateSettings, Bytes)>>>,
}

impl PreparedMessage {
    /// Frames `msg` (TEXT, BINARY, PING or PONG) once.
    pub fn new(msg: impl Into<Message>) -> Result<Self> {
        let message = msg.into();
        if matches!(message.kind(), OpCode::Close | OpCode::Continue) {
            return Err(SendError::NotSendable(message.kind()).into());
        }
        let plain = message.clone().with_compress(false);
        let frame = MessageCodec::new().masked(false).encode(&plain)?.freeze();
        Ok(PreparedMessage {
            message,
            frame,
            #[cfg(feature = "deflate")]
            compressed: Arc::default(),
        })
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The encoded frame bytes (uncompressed).
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The frame compressed with `settings` (`(window_bits, level, mem_level)` of a compressor
    /// without context takeover), compressed on the first call and shared afterwards.
    #[cfg(feature = "deflate")]
    pub(super) fn compressed_frame(&self, settings: DeflateSettings) -> Result<Bytes> {
        use crate::proto::deflate::{Deflater, STANDALONE};
        use crate::proto::{Compression, Encoder, Role};

        let mut frames = self
            .compressed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, frame)) = frames.iter().find(|(s, _)| *s == settings) {
            return Ok(frame.clone());
        }
        let (window_bits, level, mem_level) = settings;
        let params = crate::proto::deflate::DeflateParams {
            server_max_window_bits: window_bits,
            ..STANDALONE
        };
        let mut encoder = Encoder::new();
        encoder.set_deflater(
            Some(Deflater::new(params, Role::Server, level, mem_level)),
            0,
        );
        let mut frame = bytes::BytesMut::new();
        encoder.encode(
            self.message.kind(),
            self.message.body(),
            Compression::Auto,
            None,
            &mut frame,
        )?;
        let frame = frame.freeze();
        frames.push((settings, frame.clone()));
        Ok(frame)
    }

    /// How many compressed frames were made (one per compressor settings asked for).
    #[cfg(all(test, feature = "deflate"))]
    pub(super) fn compressions(&self) -> usize {
        self.compressed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
