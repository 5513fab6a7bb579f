//! [`PreparedMessage`]: a message framed once and sent to many sockets (a broadcast).

use bytes::Bytes;

use crate::error::Result;
use crate::message::{Message, MessageCodec};
use crate::proto::{OpCode, SendError};

/// A message framed once, to be sent to many server sockets without re-encoding (a broadcast):
/// its frame bytes are shared by every socket that sends it.
///
/// The frame is unmasked and uncompressed (RSV1 clear, which is valid on any connection,
/// whether or not permessage-deflate was negotiated).
#[derive(Clone, Debug)]
pub struct PreparedMessage {
    pub(super) message: Message,
    pub(super) frame: Bytes,
}

impl PreparedMessage {
    /// Frames `msg` (TEXT, BINARY, PING or PONG) once.
    pub fn new(msg: impl Into<Message>) -> Result<Self> {
        let mut message = msg.into();
        message.set_compress(false);
        if matches!(message.kind(), OpCode::Close | OpCode::Continue) {
            return Err(SendError::NotSendable(message.kind()).into());
        }
        let frame = MessageCodec::new().masked(false).encode(&message)?.freeze();
        Ok(PreparedMessage { message, frame })
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The encoded frame bytes.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}
