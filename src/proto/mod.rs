//! The sans-I/O protocol core: RFC 6455 framing and RFC 7692 permessage-deflate, with no sockets,
//! no clocks and no tokio.
//!
//! Bytes go in, decisions come out. Every rule of the protocol is implemented (and tested) here by
//! feeding bytes; the tokio layer above only moves bytes between this core and a socket.
//!
//! Everything is named from here (`wsx::proto::Protocol`, `wsx::proto::FrameHeader`, ...), except
//! the two toolkits that keep a namespace of their own: [`handshake`] and [`deflate`].
//!
//! | file | what it holds |
//! |---|---|
//! | `opcode.rs` | [`OpCode`], the seed's `CONTINUE` … `PONG` |
//! | `state.rs` | [`ReadyState`], the seed's `CONNECTING` … `CLOSED` |
//! | `frame.rs` | [`FrameHeader`]: decode (incremental) and encode |
//! | `mask.rs` | [`apply_mask`], a word at a time |
//! | `utf8.rs` | [`Utf8Validator`]: incremental UTF-8 validation for fragmented text |
//! | `close.rs` | [`CloseCode`] and the CLOSE payload ([`CloseFrame`]) |
//! | `codec.rs` | the message assembler/[`Decoder`], the one frame [`Encoder`], [`Output`], [`Limits`] |
//! | `deadlines.rs` | the connection's timers (close, end, write stall, message, keepalive, compression idle) and the earliest of them |
//! | `protocol.rs` | [`Protocol`]: the one connection state machine (receive queue, close handshake, ping/pong, keepalive and the other timers, how the connection ended), with time passed in |
//! | [`deflate`] | permessage-deflate: negotiation, compressor, bounded decompressor |
//! | [`handshake`] | the HTTP/1.1 upgrade handshake for client and server: parse a request, check it, answer it |
//! | `error.rs` | [`ProtocolError`] (what the peer did wrong, with its close code) and [`SendError`] (what the caller asked that cannot be done) |

pub(crate) mod close;
pub(crate) mod codec;
pub(crate) mod deadlines;
pub mod deflate;
pub(crate) mod error;
pub(crate) mod frame;
pub mod handshake;
pub(crate) mod mask;
pub(crate) mod opcode;
pub(crate) mod protocol;
pub(crate) mod state;
pub(crate) mod utf8;

pub use close::{CloseCode, CloseFrame, ABNORMAL, MAX_REASON_LEN, NO_STATUS, TLS_FAILED};
pub use codec::{
    deflate_bound, write_frame, Compression, Decoder, Encoder, Incoming, Limits, MaskPolicy,
    Output, Received, DEFAULT_MAX_FRAGMENTS, DEFAULT_MAX_MESSAGE_SIZE, REUSABLE_BUFFER,
    ZERO_COPY_MIN,
};
pub use error::{ProtocolError, SendError};
pub use frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_LEN, RSV1, RSV2, RSV3};
pub use mask::{apply_mask, apply_mask_reference};
pub use opcode::OpCode;
pub use protocol::{CloseEvent, Config, ErrorEvent, Event, Protocol};
pub use state::ReadyState;
pub use utf8::Utf8Validator;

/// Which end of the connection this is: it decides who masks (the client) and which
/// permessage-deflate parameters apply to our compressor and decompressor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The end that opened the connection; it masks every frame it sends.
    Client,
    /// The end that accepted the connection; it never masks.
    Server,
}
