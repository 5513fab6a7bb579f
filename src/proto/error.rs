//! The errors of the sans-I/O protocol core: [`ProtocolError`] for what the peer did wrong
//! (each maps to the close code the connection fails with) and [`SendError`] for what the caller
//! asked that cannot be done.

use super::opcode::OpCode;
use super::state::ReadyState;

/// Everything that makes the protocol core fail a connection once it is open.
///
/// Each variant maps to the close code RFC 6455 (or RFC 7692) asks for; see
/// [`ProtocolError::close_code`] (in `close.rs`, beside the codes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// An opcode of the reserved ranges 3-7 or 11-15 was received.
    #[error("reserved opcode {0:#x} received")]
    ReservedOpcode(u8),
    /// A reserved bit (RSV1-3) was set that no extension negotiated.
    #[error("reserved bit set that no extension negotiated (rsv bits {0:#05b})")]
    ReservedBits(u8),
    /// RSV1 (compression) set on a control frame or on a continuation frame.
    #[error("RSV1 set on a control or continuation frame")]
    CompressedControlOrContinuation,
    /// A 64-bit length with its most significant bit set.
    #[error("frame length has the most significant bit set")]
    LengthTopBit,
    /// A length not encoded in its shortest form (RFC 6455 §5.2 asks for the minimal encoding).
    #[error("frame length not in its minimal encoding")]
    NonMinimalLength,
    /// A control frame with FIN clear.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame whose payload is longer than 125 bytes.
    #[error("control frame payload of {0} bytes (the limit is 125)")]
    ControlTooLong(u64),
    /// A CONTINUE frame arrived while no fragmented message was open.
    #[error("continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A TEXT or BINARY frame arrived while a fragmented message was still open.
    #[error("new data frame while a fragmented message is still open")]
    ExpectedContinuation,
    /// A client frame without a mask (server side) or a masked server frame (client side).
    #[error("{0}")]
    Masking(&'static str),
    /// A CLOSE payload of exactly one byte.
    #[error("close frame payload of 1 byte")]
    CloseTooShort,
    /// A CLOSE frame with a status code that may not be sent on the wire.
    #[error("invalid close code {0} received")]
    InvalidCloseCode(u16),
    /// Text (or a close reason) that is not valid UTF-8.
    #[error("invalid UTF-8 in text")]
    InvalidUtf8,
    /// A frame larger than the frame size limit.
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooBig {
        /// The announced frame payload length.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// A message larger than the message size limit (after decompression, if any).
    #[error("message exceeds the limit of {limit} bytes")]
    MessageTooBig {
        /// The configured limit.
        limit: usize,
    },
    /// A message split into more fragments than allowed.
    #[error("message split into more than {limit} fragments")]
    TooManyFragments {
        /// The configured limit.
        limit: usize,
    },
    /// Compressed data that could not be inflated.
    #[error("invalid compressed data: {0}")]
    BadCompressedData(String),
    /// The byte stream ended in the middle of a frame or message.
    #[error("stream ended in the middle of a frame or message")]
    Truncated,
}

/// Why the protocol core refused to queue a frame: the caller's mistake (or, for
/// [`SendError::Compress`], a compressor failure), never the peer's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Messages can only be sent while the connection is OPEN and no CLOSE was sent.
    #[error("cannot send: the connection is {0}")]
    NotOpen(ReadyState),
    /// CONTINUE frames are made by the encoder, and CLOSE goes through `close()`.
    #[error("a {0} frame cannot be sent as a message (use close() for CLOSE)")]
    NotSendable(OpCode),
    /// PING and PONG payloads are at most 125 bytes (RFC 6455 §5.5).
    #[error("control frame payload of {0} bytes (the limit is 125)")]
    ControlTooLong(usize),
    /// A pre-encoded (unmasked) frame was given to a client, which must mask every frame.
    #[error("a client must mask every frame it sends; pre-encoded frames are for servers")]
    ClientMustMask,
    /// The compressor failed (it does not with valid settings).
    #[error("compression failed: {0}")]
    Compress(String),
}
