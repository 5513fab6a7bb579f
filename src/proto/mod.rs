//! The sans-I/O protocol core: RFC 6455 framing and RFC 7692 permessage-deflate, with no sockets,
//! no clocks and no tokio.
//!
//! Bytes go in, decisions come out. Every rule of the protocol is implemented (and tested) here by
//! feeding bytes; the tokio layer above only moves bytes between this core and a socket.
//!
//! | file | what it holds |
//! |---|---|
//! | [`opcode`] | [`OpCode`], the seed's `CONTINUE` … `PONG` |
//! | [`state`] | [`ReadyState`], the seed's `CONNECTING` … `CLOSED` |
//! | [`frame`] | the frame header: decode (incremental) and encode |
//! | [`mask`] | masking and unmasking, a word at a time |
//! | [`utf8`] | incremental UTF-8 validation for fragmented text |
//! | [`close`] | [`CloseCode`] and the CLOSE payload |
//! | [`codec`] | the message assembler/decoder, the one frame encoder, [`Output`], [`Limits`] |
//! | [`protocol`] | [`Protocol`]: the one connection state machine (receive queue, close handshake, ping/pong, keepalive and the other timers, how the connection ended), with time passed in |
//! | [`deflate`] | permessage-deflate: negotiation, compressor, bounded decompressor |
//! | [`handshake`] | the HTTP/1.1 upgrade handshake for client and server |
//! | [`error`] | [`ProtocolError`] (what the peer did wrong, with its close code) and [`SendError`] (what the caller asked that cannot be done) |

pub mod close;
pub mod codec;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod opcode;
pub mod protocol;
pub mod state;
pub mod utf8;

pub use close::{CloseCode, CloseFrame};
pub use codec::{Compression, Decoder, Encoder, Incoming, Limits, MaskPolicy, Output, Received};
pub use error::{ProtocolError, SendError};
pub use frame::{FrameHeader, OpCode};
pub use protocol::{CloseEvent, Config, ErrorEvent, Event, Protocol, ReadyState};

/// Which end of the connection this is: it decides who masks (the client) and which
/// permessage-deflate parameters apply to our compressor and decompressor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that opened the connection; it masks every frame it sends.
    Client,
    /// The end that accepted the connection; it never masks.
    Server,
}
