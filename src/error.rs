//! The error of the tokio layer: everything `connect`, `upgrade`, `Socket` and `Message` can fail
//! with, each mapped to the close code a peer would see.

use std::time::Duration;

use crate::proto::close::{ABNORMAL, TLS_FAILED};
use crate::proto::deflate::NegotiationError;
use crate::proto::handshake::HandshakeError;
use crate::proto::{CloseCode, ProtocolError, ReadyState, SendError};

/// The error type of wsx.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The transport failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke RFC 6455 or RFC 7692 (or a limit was hit); the connection was failed.
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The opening handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    /// The server's permessage-deflate answer was not acceptable.
    #[error("permessage-deflate negotiation failed: {0}")]
    Negotiation(#[from] NegotiationError),
    /// The URL's scheme is neither `ws` nor `wss`.
    #[error("unknown protocol \"{0}\": use a ws:// or wss:// URL")]
    UnknownProtocol(String),
    /// The URL could not be used.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// TLS setup or handshake failed.
    #[error("TLS error: {0}")]
    Tls(String),
    /// An operation took longer than its timeout.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out ("connect", "opening handshake", "close handshake", ...).
        what: &'static str,
        /// The timeout in force.
        after: Duration,
    },
    /// A message was sent while the socket is not OPEN.
    #[error("cannot send: the socket is {0}")]
    NotOpen(ReadyState),
    /// The message cannot be sent as asked (a CONTINUE frame, a PING over 125 bytes, ...).
    #[error("{0}")]
    Send(SendError),
    /// The connection is closed; `recv` reports this at the end of the message stream.
    #[error("connection closed with code {code}{}", if reason.is_empty() { String::new() } else { format!(": {reason}") })]
    Closed {
        /// The close code (1006 when there was no close handshake).
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// The HTTP server did not hand over the connection for the upgrade.
    #[error("HTTP upgrade failed: {0}")]
    Upgrade(String),
    /// The proxy could not be used or refused the tunnel.
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    /// The server redirected the opening handshake and the redirect was not followed.
    #[error(transparent)]
    Redirect(#[from] crate::redirect::RedirectError),
}

impl Error {
    /// The close status this error stands for: the protocol error's code, 1002 for a failed
    /// handshake or connection attempt (as SPEC §2 asks), 1006 for a lost transport or input
    /// that ended mid-message, 1015 for TLS.
    pub fn close_code(&self) -> u16 {
        match self {
            Error::Protocol(ProtocolError::Truncated) | Error::Io(_) | Error::Timeout { .. } => {
                ABNORMAL
            }
            Error::Protocol(e) => e.close_code().as_u16(),
            Error::Closed { code, .. } => *code,
            Error::Tls(_) => TLS_FAILED,
            Error::Send(SendError::Compress(_)) => CloseCode::INTERNAL_ERROR.as_u16(),
            Error::NotOpen(_) | Error::Send(_) => CloseCode::NORMAL.as_u16(),
            Error::Handshake(_)
            | Error::Negotiation(_)
            | Error::UnknownProtocol(_)
            | Error::InvalidUrl(_)
            | Error::Upgrade(_)
            | Error::Proxy(_)
            | Error::Redirect(_) => CloseCode::PROTOCOL_ERROR.as_u16(),
        }
    }
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::NotOpen(state) => Error::NotOpen(state),
            other => Error::Send(other),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
