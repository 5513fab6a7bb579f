//! The HTTP/1.1 upgrade handshake of RFC 6455 §4, for client and server, with no I/O.
//!
//! Everything here works on byte slices and `http` crate types; the tokio layer reads bytes from
//! a socket, calls these functions and writes what they produce.
//!
//! | file | what it holds |
//! |---|---|
//! | `mod.rs` | [`accept_key`], [`encode_key`], [`HandshakeLimits`], [`HandshakeError`] |
//! | `server.rs` | [`parse_request`], [`check_request`], [`select_protocol`], [`response_101`], errors; the HTTP/2 extended CONNECT of RFC 8441 ([`check_connect_parts`], [`response_connect`]) |
//! | `client.rs` | [`ClientRequest`], [`parse_response`], [`check_response`] |
//! | `http.rs` | the head: [`find_head_end`], httparse, [`header_tokens`], [`write_response`], [`write_request`], tokens |
//!
//! # Server
//!
//! 1. Append what the socket gives to a buffer and call [`find_head_end`] with the length the
//!    buffer had before the append, until it returns `Some(head_end)`. While it returns `None`,
//!    refuse the request with [`HandshakeError::HeadersTooLarge`] once the buffer exceeds
//!    [`HandshakeLimits::max_header_bytes`]: this module never sees an unterminated head.
//! 2. [`parse_request`] on `buf[..head_end]`, then [`check_request`] (or
//!    [`check_request_parts`]). Bytes after `head_end` already belong to the WebSocket stream.
//! 3. On success, [`select_protocol`] picks a subprotocol, [`response_101`] builds the answer and
//!    [`encode_response`] serializes it. On failure, [`encode_error_response`] (raw sockets) or
//!    [`error_response`] (hyper/axum) gives the HTTP error answer, with the status from
//!    [`HandshakeError::status`].
//!
//! # Client
//!
//! 1. [`encode_key`] on 16 random bytes, fill a [`ClientRequest`], [`ClientRequest::validate`] it
//!    and [`ClientRequest::encode`] it.
//! 2. Read the answer as above with [`find_head_end`], then [`parse_response`] and
//!    [`check_response`] with the key that was sent and the subprotocols that were offered.
//!
//! Every function is linear in its input: header lists are walked once, tokens are split without
//! allocation, and the head terminator search never rescans bytes it has already seen.

use ::http::StatusCode;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha1::{Digest, Sha1};

// `http` here is the sibling module; the crate is spelled `::http` in this file.
mod client;
mod http;
mod server;

pub(crate) use client::reason_phrase;
pub use client::{
    check_connect_response, check_response, is_handshake_header, parse_response, ClientRequest,
    ReasonPhrase, UpgradeResponse,
};
pub(crate) use http::parse_elements;
pub use http::{could_start_head, find_head_end, header_tokens, write_request, write_response};
pub use server::{
    check_connect_parts, check_request, check_request_parts, encode_error_response,
    encode_response, error_response, error_response_h2, parse_request, response_101,
    response_connect, select_protocol, UpgradeRequest,
};

/// The GUID that RFC 6455 §1.3 appends to `Sec-WebSocket-Key` before hashing it into
/// `Sec-WebSocket-Accept`.
pub const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only WebSocket protocol version this crate speaks (RFC 6455).
const WS_VERSION: &str = "13";

/// How many bytes of a peer-supplied value an error message quotes at most.
const EXCERPT_LEN: usize = 64;

/// Computes the `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
///
/// `key` is the header value as sent (the base64 text, not the decoded bytes).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Encodes 16 bytes as a `Sec-WebSocket-Key` value (base64, 24 characters).
///
/// The core has no random number generator: the caller must pass 16 fresh random bytes for every
/// handshake (RFC 6455 §4.1 requires a nonce that is randomly selected for each connection).
pub fn encode_key(raw: [u8; 16]) -> String {
    STANDARD.encode(raw)
}

/// Size limits applied while parsing a handshake head, on either side.
#[derive(Clone, Debug)]
pub struct HandshakeLimits {
    /// Largest accepted head, start line and final empty line included, in bytes (default 16 KiB).
    pub max_header_bytes: usize,
    /// Largest number of header fields (default 64).
    pub max_headers: usize,
    /// Longest request line (server) or status line (client), CRLF excluded, in bytes
    /// (default 8 KiB).
    pub max_request_line: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_request_line: 8 * 1024,
        }
    }
}

/// Everything that can make a handshake fail, on either side.
///
/// Messages say what was wrong and what was expected; a server sends them as the body of its error
/// response, so they quote at most a short excerpt of what the peer sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The head is not valid HTTP/1.x; the text says which part was wrong.
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
    /// The head is longer than [`HandshakeLimits::max_header_bytes`].
    #[error(
        "the HTTP head is larger than the limit of {limit} bytes; send fewer or shorter headers"
    )]
    HeadersTooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// The head has more header fields than [`HandshakeLimits::max_headers`].
    #[error("the HTTP head has more than {limit} header fields; send fewer headers")]
    TooManyHeaders {
        /// The limit that was exceeded, in header fields.
        limit: usize,
    },
    /// The request line (or, on the client, the status line) is longer than
    /// [`HandshakeLimits::max_request_line`].
    #[error("the request or status line is longer than the limit of {limit} bytes; use a shorter path and query")]
    RequestLineTooLong {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// The request method is not GET (the method that was used, quoted).
    #[error("method `{0}` cannot open a WebSocket: the upgrade request must use GET")]
    MethodNotGet(String),
    /// The request is older than HTTP/1.1 (the version that was used).
    #[error("HTTP version {0} cannot carry a WebSocket handshake: the request must be HTTP/1.1 or later, the 101 response HTTP/1.1")]
    WrongHttpVersion(String),
    /// The request target is not a path (`GET * HTTP/1.1`, an authority form); the text quotes
    /// it.
    #[error("request target `{0}` cannot open a WebSocket: expected a path such as `/chat`")]
    BadTarget(String),
    /// The request or the 101 response announces a body (`Content-Length` other than 0, any
    /// `Transfer-Encoding`); the text says which header. The bytes after a handshake head are
    /// WebSocket frames: a proxy that reads them as a body and a server that reads them as
    /// frames would disagree (request smuggling).
    #[error("{0}: a WebSocket handshake carries no body (the bytes after its head are WebSocket frames)")]
    BodyNotAllowed(String),
    /// The request has no `Host` header (and no authority in its URI).
    #[error("missing `Host` header: an HTTP/1.1 upgrade request must name the host it is sent to")]
    MissingHost,
    /// A header that must appear at most once appeared several times (its name).
    #[error("header `{0}` appears more than once: it must be sent exactly once")]
    DuplicateHeader(&'static str),
    /// No `Upgrade` header lists the token `websocket`.
    #[error("missing `Upgrade: websocket`: the handshake needs an `Upgrade` header whose token list contains `websocket`")]
    MissingUpgrade,
    /// No `Connection` header lists the token `upgrade`.
    #[error("missing `Connection: Upgrade`: the handshake needs a `Connection` header whose token list contains `upgrade`")]
    MissingConnectionUpgrade,
    /// The request has no `Sec-WebSocket-Version` header.
    #[error("missing `Sec-WebSocket-Version` header: send `Sec-WebSocket-Version: 13`")]
    MissingVersion,
    /// `Sec-WebSocket-Version` is not exactly `13` (the value that was sent, quoted).
    #[error(
        "unsupported `Sec-WebSocket-Version: {0}`: this server speaks only version 13 (RFC 6455)"
    )]
    UnsupportedVersion(String),
    /// The request is a valid upgrade, but the HTTP server it came through cannot hand the
    /// connection over (it offers no upgrade on it).
    #[error("this connection cannot be upgraded to a WebSocket (the HTTP server offers no upgrade on it)")]
    NotUpgradable,
    /// An HTTP/2 request for a WebSocket is not an extended CONNECT with a `:protocol`
    /// (RFC 8441 §4): the method that was used, quoted.
    #[error("an HTTP/2 WebSocket request must be an extended CONNECT with `:protocol websocket` (RFC 8441), not `{0}` without `:protocol`")]
    NotExtendedConnect(String),
    /// An extended CONNECT names a `:protocol` other than `websocket` (the value, quoted).
    #[error("`:protocol {0}` is not `websocket`: this endpoint speaks only WebSocket (RFC 8441)")]
    WrongProtocol(String),
    /// The request has no `Sec-WebSocket-Key` header.
    #[error("missing `Sec-WebSocket-Key` header: send the base64 encoding of 16 random bytes")]
    MissingKey,
    /// `Sec-WebSocket-Key` is not the base64 encoding of exactly 16 bytes.
    #[error("invalid `Sec-WebSocket-Key`: expected the base64 encoding of exactly 16 bytes (24 characters ending in `==`)")]
    BadKey,
    /// The server answered with a status other than 101 Switching Protocols.
    #[error("the server answered `{status} {reason}` instead of `101 Switching Protocols`: it did not accept the WebSocket upgrade")]
    UnexpectedStatus {
        /// The status code the server sent.
        status: u16,
        /// The reason phrase the server sent (or the canonical one when unknown).
        reason: String,
    },
    /// The 101 response has no `Sec-WebSocket-Accept` header.
    #[error("missing `Sec-WebSocket-Accept` header in the 101 response: the server did not complete the WebSocket handshake")]
    MissingAccept,
    /// `Sec-WebSocket-Accept` does not match the key that was sent.
    #[error("wrong `Sec-WebSocket-Accept`: expected `{expected}` for the key that was sent, got `{found}`")]
    BadAccept {
        /// The value RFC 6455 requires for the key that was sent.
        expected: String,
        /// The value the server sent (quoted, possibly shortened).
        found: String,
    },
    /// The server selected a subprotocol that the client did not offer (the value it sent).
    #[error("the server selected subprotocol `{0}`, which the client did not offer: a server may only choose one of the offered subprotocols, or none")]
    UnofferedProtocol(String),
    /// A [`ClientRequest`] field cannot be sent as is (see [`ClientRequest::validate`]).
    #[error("invalid client request: {0}")]
    InvalidClientRequest(String),
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    ///
    /// | error | status |
    /// |---|---|
    /// | `HeadersTooLarge`, `TooManyHeaders` | 431 Request Header Fields Too Large (RFC 6585) |
    /// | `RequestLineTooLong` | 414 URI Too Long (RFC 7231 §6.5.12: the request line is mostly the target) |
    /// | `MethodNotGet` | 405 Method Not Allowed (RFC 7231 §6.5.5; the error response carries `Allow: GET`) |
    /// | `MissingVersion`, `UnsupportedVersion`, `NotUpgradable` | 426 Upgrade Required (RFC 6455 §4.2.2; the error response carries `Sec-WebSocket-Version: 13`) |
    /// | every other server-side error | 400 Bad Request (RFC 6455 §4.2.1) |
    ///
    /// The client-side errors (`UnexpectedStatus`, `MissingAccept`, `BadAccept`,
    /// `UnofferedProtocol`, `InvalidClientRequest`) are never answered; they map to 400 only so
    /// that the function is total.
    pub fn status(&self) -> StatusCode {
        match self {
            HandshakeError::HeadersTooLarge { .. } | HandshakeError::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HandshakeError::RequestLineTooLong { .. } => StatusCode::URI_TOO_LONG,
            HandshakeError::MethodNotGet(_) => StatusCode::METHOD_NOT_ALLOWED,
            HandshakeError::MissingVersion
            | HandshakeError::UnsupportedVersion(_)
            | HandshakeError::NotUpgradable => StatusCode::UPGRADE_REQUIRED,
            HandshakeError::Malformed(_)
            | HandshakeError::WrongHttpVersion(_)
            | HandshakeError::BadTarget(_)
            | HandshakeError::BodyNotAllowed(_)
            | HandshakeError::MissingHost
            | HandshakeError::DuplicateHeader(_)
            | HandshakeError::MissingUpgrade
            | HandshakeError::MissingConnectionUpgrade
            | HandshakeError::MissingKey
            | HandshakeError::BadKey
            | HandshakeError::NotExtendedConnect(_)
            | HandshakeError::WrongProtocol(_)
            | HandshakeError::UnexpectedStatus { .. }
            | HandshakeError::MissingAccept
            | HandshakeError::BadAccept { .. }
            | HandshakeError::UnofferedProtocol(_)
            | HandshakeError::InvalidClientRequest(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// A short, printable excerpt of peer-supplied bytes for an error message.
fn excerpt(bytes: &[u8]) -> String {
    let cut = bytes.len().min(EXCERPT_LEN);
    let mut s = String::from_utf8_lossy(&bytes[..cut]).into_owned();
    if cut < bytes.len() {
        s.push('…');
    }
    s
}

/// Whether `key` is the base64 encoding of exactly 16 bytes.
fn is_valid_key(key: &[u8]) -> bool {
    // 16 bytes encode to 22 characters plus `==`; checking the length first bounds the work.
    key.len() == 24 && STANDARD.decode(key).is_ok_and(|raw| raw.len() == 16)
}

#[cfg(test)]
mod test_support {
    /// The key of the RFC 6455 §1.3 example, and its accept value.
    pub(super) const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    pub(super) const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    /// The opening handshake request of RFC 6455 §1.2.
    pub(super) fn valid_head() -> String {
        format!(
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nOrigin: http://example.com\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    }

    pub(super) fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{ACCEPT, KEY};
    use super::*;

    #[test]
    fn rfc_6455_example_accept() {
        assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
        assert_eq!(encode_key(*b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let limits = HandshakeLimits::default();
                if let Ok(req) = parse_request(&bytes, &limits) {
                    let _ = check_request(&req);
                }
                if let Ok(resp) = parse_response(&bytes, &limits) {
                    let _ = check_response(&resp, "k", &[]);
                }
                let _ = find_head_end(&bytes, bytes.len() / 2);
            }
        }
    }
}
