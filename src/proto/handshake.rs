//! The HTTP/1.1 upgrade handshake of RFC 6455 §4, for client and server, with no I/O.
//!
//! Everything here works on byte slices and [`http`] types; the tokio layer reads bytes from a
//! socket, calls these functions and writes what they produce.
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

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN,
    SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Method, StatusCode, Version};
use sha1::{Digest, Sha1};

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
    #[error(
        "HTTP version {0} cannot open a WebSocket: the upgrade request must be HTTP/1.1 or later"
    )]
    WrongHttpVersion(String),
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
    /// | `MissingVersion`, `UnsupportedVersion` | 426 Upgrade Required (RFC 6455 §4.2.2; the error response carries `Sec-WebSocket-Version: 13`) |
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
            HandshakeError::MissingVersion | HandshakeError::UnsupportedVersion(_) => {
                StatusCode::UPGRADE_REQUIRED
            }
            HandshakeError::Malformed(_)
            | HandshakeError::WrongHttpVersion(_)
            | HandshakeError::MissingHost
            | HandshakeError::DuplicateHeader(_)
            | HandshakeError::MissingUpgrade
            | HandshakeError::MissingConnectionUpgrade
            | HandshakeError::MissingKey
            | HandshakeError::BadKey
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

/// Finds the end of the HTTP head (`"\r\n\r\n"`) in `buf`, returning the index just past the
/// terminator.
///
/// Only `buf[from - 3..]` is searched (`from` clamped to `buf.len()`): pass the length the buffer
/// had before the latest read, so that a terminator split across reads is still found and a head
/// dribbled in one byte at a time is scanned in linear total time. `from = 0` searches everything.
pub fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    find_head_end_counted(buf, from).0
}

/// [`find_head_end`], also returning how many start positions were examined (for the tests).
fn find_head_end_counted(buf: &[u8], from: usize) -> (Option<usize>, usize) {
    let start = from.min(buf.len()).saturating_sub(3);
    let mut scanned = 0;
    let mut i = start;
    while i + 4 <= buf.len() {
        scanned += 1;
        if &buf[i..i + 4] == b"\r\n\r\n" {
            return (Some(i + 4), scanned);
        }
        i += 1;
    }
    (None, scanned)
}

/// Iterates the comma-separated tokens of every value of header `name`, in order, trimmed of
/// spaces and tabs, skipping empty elements.
///
/// Linear in the header bytes and allocation-free. Elements that are not UTF-8 are skipped. Commas
/// are not interpreted inside quoted strings: this is for token lists (`Connection`, `Upgrade`,
/// `Sec-WebSocket-Protocol`, and extension lists whose parameters contain no commas).
pub fn header_tokens<'a>(
    headers: &'a HeaderMap,
    name: &'a HeaderName,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .filter_map(|element| std::str::from_utf8(element).ok())
        .map(|element| element.trim_matches([' ', '\t']))
        .filter(|element| !element.is_empty())
}

/// Whether any token of header `name` equals `token`, ASCII case-insensitively.
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The single value of header `name`: `Ok(None)` when absent, an error when repeated.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    display: &'static str,
) -> Result<Option<&'a HeaderValue>, HandshakeError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(HandshakeError::DuplicateHeader(display));
    }
    Ok(first)
}

/// Trims HTTP optional whitespace (spaces and tabs) from both ends of a header value.
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |p| p + 1);
    &bytes[start..end.max(start)]
}

/// Whether `key` is the base64 encoding of exactly 16 bytes.
fn is_valid_key(key: &[u8]) -> bool {
    // 16 bytes encode to 22 characters plus `==`; checking the length first bounds the work.
    key.len() == 24 && STANDARD.decode(key).is_ok_and(|raw| raw.len() == 16)
}

/// Checks the start line against [`HandshakeLimits::max_request_line`], reading at most
/// `limit + 2` bytes.
fn check_start_line(head: &[u8], limit: usize) -> Result<(), HandshakeError> {
    let window = &head[..head.len().min(limit.saturating_add(2))];
    let too_long = match window.iter().position(|&b| b == b'\n') {
        Some(p) => {
            let len = if p > 0 && window[p - 1] == b'\r' {
                p - 1
            } else {
                p
            };
            len > limit
        }
        None => window.len() > limit,
    };
    if too_long {
        Err(HandshakeError::RequestLineTooLong { limit })
    } else {
        Ok(())
    }
}

/// Checks the limits that can be checked before parsing and allocates httparse's header array.
fn prepare(
    head: &[u8],
    limits: &HandshakeLimits,
) -> Result<Vec<httparse::Header<'static>>, HandshakeError> {
    if head.len() > limits.max_header_bytes {
        return Err(HandshakeError::HeadersTooLarge {
            limit: limits.max_header_bytes,
        });
    }
    check_start_line(head, limits.max_request_line)?;
    // Every header line takes at least 3 bytes (`x:\n`), so a head cannot hold more than
    // len / 3 headers: never allocate more than that, whatever the configured limit.
    let slots = limits.max_headers.min(head.len() / 3 + 1);
    Ok(vec![httparse::EMPTY_HEADER; slots])
}

/// Maps an httparse error to a [`HandshakeError`].
fn parse_error(err: httparse::Error, slots: usize, limits: &HandshakeLimits) -> HandshakeError {
    match err {
        httparse::Error::TooManyHeaders if slots >= limits.max_headers => {
            HandshakeError::TooManyHeaders {
                limit: limits.max_headers,
            }
        }
        httparse::Error::Version => HandshakeError::Malformed(
            "invalid HTTP version in the start line, expected `HTTP/1.1`".to_owned(),
        ),
        other => HandshakeError::Malformed(format!("{other} (expected an HTTP/1.1 head)")),
    }
}

/// Converts httparse's header list into a [`HeaderMap`].
fn to_header_map(parsed: &[httparse::Header<'_>]) -> Result<HeaderMap, HandshakeError> {
    let mut map = HeaderMap::with_capacity(parsed.len());
    for header in parsed {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| {
            HandshakeError::Malformed(format!(
                "invalid header name `{}`",
                excerpt(header.name.as_bytes())
            ))
        })?;
        let value = HeaderValue::from_bytes(header.value).map_err(|_| {
            HandshakeError::Malformed(format!(
                "invalid value for header `{}`: control characters are not allowed",
                name.as_str()
            ))
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// Maps httparse's minor version to an [`http::Version`].
fn to_version(minor: Option<u8>) -> Result<Version, HandshakeError> {
    match minor {
        Some(0) => Ok(Version::HTTP_10),
        Some(1) => Ok(Version::HTTP_11),
        _ => Err(HandshakeError::Malformed(
            "unknown HTTP/1 minor version, expected `HTTP/1.1`".to_owned(),
        )),
    }
}

/// The error for a head that httparse found incomplete.
fn incomplete() -> HandshakeError {
    HandshakeError::Malformed(
        "incomplete head: it must end with an empty line (pass `buf[..head_end]` as found by `find_head_end`)"
            .to_owned(),
    )
}

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

/// Parses a complete request head (`buf[..head_end]`, as found by [`find_head_end`]) into an
/// [`http::Request`], enforcing `limits`.
///
/// The limits are checked in this order: the head size ([`HandshakeError::HeadersTooLarge`]), the
/// request line ([`HandshakeError::RequestLineTooLong`]), then the number of headers
/// ([`HandshakeError::TooManyHeaders`]). Bytes after the head's empty line are ignored. The request
/// is only parsed, not validated as an upgrade: call [`check_request`] next.
pub fn parse_request(
    head: &[u8],
    limits: &HandshakeLimits,
) -> Result<http::Request<()>, HandshakeError> {
    let mut slots = prepare(head, limits)?;
    let slot_count = slots.len();
    let mut parsed = httparse::Request::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(incomplete()),
        Err(err) => return Err(parse_error(err, slot_count, limits)),
    }
    let method = parsed.method.unwrap_or_default();
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| {
        HandshakeError::Malformed(format!("invalid method `{}`", excerpt(method.as_bytes())))
    })?;
    let path = parsed.path.unwrap_or_default();
    let uri = path.parse::<http::Uri>().map_err(|_| {
        HandshakeError::Malformed(format!(
            "invalid request target `{}`, expected a path such as `/chat`",
            excerpt(path.as_bytes())
        ))
    })?;
    let version = to_version(parsed.version)?;
    let headers = to_header_map(parsed.headers)?;

    let mut req = http::Request::new(());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    Ok(req)
}

/// What the server learned from a valid upgrade request.
#[derive(Clone, Debug)]
pub struct UpgradeRequest {
    /// The `Sec-WebSocket-Accept` value to answer with.
    pub accept: String,
    /// The subprotocols the client offered (`Sec-WebSocket-Protocol` tokens), in the client's
    /// order of preference.
    pub protocols: Vec<String>,
    /// The raw `Sec-WebSocket-Extensions` header values, in order (non-UTF-8 bytes replaced by
    /// U+FFFD), for the extension negotiation to parse.
    pub extensions: Vec<String>,
    /// The `Origin` header, if the client sent one (browsers always do); the server decides
    /// whether to accept it.
    pub origin: Option<String>,
}

/// Validates an upgrade request: works on any [`http::Request`], so hyper and axum requests go
/// through it too. See [`check_request_parts`] for the rules.
pub fn check_request<B>(req: &http::Request<B>) -> Result<UpgradeRequest, HandshakeError> {
    check_parts(req.method(), req.version(), req.uri(), req.headers())
}

/// Validates the head of an upgrade request ([`http::request::Parts`], as hyper and axum give it).
///
/// Checked in order (the first failure is returned): method GET; HTTP/1.1 or later; `Host` present
/// exactly once (or an authority in the URI when there is no `Host`); `Upgrade` lists the token
/// `websocket` and `Connection` the token `upgrade` (comma-separated token lists, ASCII
/// case-insensitive, over all values of the header); `Sec-WebSocket-Version` present exactly once
/// with the value `13`; `Sec-WebSocket-Key` present exactly once and the base64 encoding of
/// exactly 16 bytes.
pub fn check_request_parts(parts: &http::request::Parts) -> Result<UpgradeRequest, HandshakeError> {
    check_parts(&parts.method, parts.version, &parts.uri, &parts.headers)
}

/// The body of [`check_request`] and [`check_request_parts`].
fn check_parts(
    method: &Method,
    version: Version,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<UpgradeRequest, HandshakeError> {
    if method != Method::GET {
        return Err(HandshakeError::MethodNotGet(excerpt(
            method.as_str().as_bytes(),
        )));
    }
    if version == Version::HTTP_09 || version == Version::HTTP_10 {
        return Err(HandshakeError::WrongHttpVersion(format!("{version:?}")));
    }
    if single(headers, &HOST, "Host")?.is_none() && uri.authority().is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if !has_token(headers, &UPGRADE, "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let ws_version = single(headers, &SEC_WEBSOCKET_VERSION, "Sec-WebSocket-Version")?
        .ok_or(HandshakeError::MissingVersion)?;
    let ws_version = trim_ows(ws_version.as_bytes());
    if ws_version != WS_VERSION.as_bytes() {
        return Err(HandshakeError::UnsupportedVersion(excerpt(ws_version)));
    }
    let key = single(headers, &SEC_WEBSOCKET_KEY, "Sec-WebSocket-Key")?
        .ok_or(HandshakeError::MissingKey)?;
    let key = trim_ows(key.as_bytes());
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }

    Ok(UpgradeRequest {
        accept: accept_key(key),
        protocols: header_tokens(headers, &SEC_WEBSOCKET_PROTOCOL)
            .map(str::to_owned)
            .collect(),
        extensions: raw_values(headers, &SEC_WEBSOCKET_EXTENSIONS),
        origin: headers
            .get(ORIGIN)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    })
}

/// All values of header `name` as strings (non-UTF-8 bytes replaced), in order.
fn raw_values(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Picks the first of the client's `offered` subprotocols (client order) that the server
/// `supported`, comparing exactly (subprotocol names are case-sensitive).
///
/// Runs in `offered.len() * supported.len()`: linear in the request for a fixed server list.
pub fn select_protocol<'a>(offered: &'a [String], supported: &[String]) -> Option<&'a str> {
    offered
        .iter()
        .find(|o| supported.iter().any(|s| s == *o))
        .map(String::as_str)
}

/// Builds the `101 Switching Protocols` response: `Upgrade: websocket`, `Connection: Upgrade`,
/// `Sec-WebSocket-Accept`, and `Sec-WebSocket-Protocol` / `Sec-WebSocket-Extensions` when given.
///
/// A value that is not a valid header value (control characters) is left out rather than sent;
/// values from [`check_request`], [`select_protocol`] and the extension negotiation always are
/// valid.
pub fn response_101(
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) -> http::Response<()> {
    let mut resp = http::Response::new(());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, value);
    }
    if let Some(Ok(value)) = protocol.map(HeaderValue::from_str) {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    if let Some(Ok(value)) = extensions.map(HeaderValue::from_str) {
        headers.insert(SEC_WEBSOCKET_EXTENSIONS, value);
    }
    resp
}

/// Writes a header name with conventional capitalization: the RFC 6455 spelling for the
/// `Sec-WebSocket-*` headers, `Title-Case` for the others.
fn write_header_name(dst: &mut Vec<u8>, name: &HeaderName) {
    let canonical = match name.as_str() {
        "sec-websocket-key" => Some("Sec-WebSocket-Key"),
        "sec-websocket-accept" => Some("Sec-WebSocket-Accept"),
        "sec-websocket-version" => Some("Sec-WebSocket-Version"),
        "sec-websocket-protocol" => Some("Sec-WebSocket-Protocol"),
        "sec-websocket-extensions" => Some("Sec-WebSocket-Extensions"),
        _ => None,
    };
    if let Some(canonical) = canonical {
        dst.extend_from_slice(canonical.as_bytes());
        return;
    }
    let mut upper = true;
    for &b in name.as_str().as_bytes() {
        dst.push(if upper { b.to_ascii_uppercase() } else { b });
        upper = b == b'-';
    }
}

/// Writes `Name: value\r\n` for every header.
fn write_headers(dst: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        write_header_name(dst, name);
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
}

/// Writes `HTTP/1.1 code reason\r\n` followed by the headers, without the final empty line.
fn write_status_and_headers(dst: &mut Vec<u8>, status: StatusCode, headers: &HeaderMap) {
    dst.extend_from_slice(b"HTTP/1.1 ");
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    dst.extend_from_slice(b"\r\n");
    write_headers(dst, headers);
}

/// Serializes a response head (status line, headers, empty line) into `dst`.
///
/// The status line always says `HTTP/1.1` with the canonical reason phrase; the body, if any, is
/// not written.
pub fn encode_response(resp: &http::Response<()>, dst: &mut Vec<u8>) {
    write_status_and_headers(dst, resp.status(), resp.headers());
    dst.extend_from_slice(b"\r\n");
}

/// The HTTP error response for a rejected handshake, for hyper/axum services.
///
/// Status from [`HandshakeError::status`]; headers `Connection: close`,
/// `Content-Type: text/plain; charset=utf-8` and `Content-Length`; body the error message followed
/// by `\n`. A 426 also carries `Sec-WebSocket-Version: 13` and `Upgrade: websocket` (RFC 6455
/// §4.2.2, RFC 7231 §6.5.15); a 405 carries `Allow: GET` (RFC 7231 §6.5.5).
pub fn error_response(err: &HandshakeError) -> http::Response<String> {
    let body = format!("{err}\n");
    let status = err.status();
    let mut resp = http::Response::new(String::new());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if status == StatusCode::UPGRADE_REQUIRED {
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static(WS_VERSION));
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        headers.insert(http::header::ALLOW, HeaderValue::from_static("GET"));
    }
    *resp.body_mut() = body;
    resp
}

/// Serializes the complete HTTP error response for a rejected handshake (head and body, as
/// described at [`error_response`]) into `dst`. The server should close the connection after
/// writing it.
pub fn encode_error_response(err: &HandshakeError, dst: &mut Vec<u8>) {
    let resp = error_response(err);
    write_status_and_headers(dst, resp.status(), resp.headers());
    dst.extend_from_slice(b"\r\n");
    dst.extend_from_slice(resp.body().as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// The headers [`ClientRequest::encode`] writes itself; extra headers with these names are
/// skipped.
const RESERVED_CLIENT_HEADERS: [HeaderName; 8] = [
    HOST,
    UPGRADE,
    CONNECTION,
    SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_VERSION,
    SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_EXTENSIONS,
    ORIGIN,
];

/// What the client sends: the fields of an upgrade request.
#[derive(Clone, Debug)]
pub struct ClientRequest {
    /// The `Host` header value, including the port when it is not the scheme's default.
    pub host: String,
    /// The request target, e.g. `/chat?room=1` (already percent-encoded; empty means `/`).
    pub path_and_query: String,
    /// The `Sec-WebSocket-Key` value, from [`encode_key`].
    pub key: String,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// The subprotocols to offer, in order of preference (sent as one `Sec-WebSocket-Protocol`).
    pub protocols: Vec<String>,
    /// The `Sec-WebSocket-Extensions` offer, if any (e.g. from the deflate module).
    pub extensions: Option<String>,
    /// Extra headers (authorization, cookies, ...). Those the handshake sets itself (`Host`,
    /// `Upgrade`, `Connection`, `Sec-WebSocket-Key`, `Sec-WebSocket-Version`,
    /// `Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions`, `Origin`) are skipped by
    /// [`ClientRequest::encode`]: set them through the fields above.
    pub headers: HeaderMap,
}

/// Whether `b` may not appear in a header value (a control character other than tab).
fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Whether `c` is a `token` character (RFC 7230 §3.2.6), as subprotocol names must be.
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Appends a header value, dropping control characters so that no value can end the line.
fn push_value(dst: &mut Vec<u8>, value: &str) {
    dst.extend(value.bytes().filter(|&b| !is_ctl(b)));
}

/// Appends `Name: value\r\n`, dropping control characters from the value.
fn push_header(dst: &mut Vec<u8>, name: &str, value: &str) {
    dst.extend_from_slice(name.as_bytes());
    dst.extend_from_slice(b": ");
    push_value(dst, value);
    dst.extend_from_slice(b"\r\n");
}

impl ClientRequest {
    /// A request for `host` and `path_and_query` with `key`, no origin, subprotocols, extensions
    /// or extra headers.
    pub fn new(
        host: impl Into<String>,
        path_and_query: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        ClientRequest {
            host: host.into(),
            path_and_query: path_and_query.into(),
            key: key.into(),
            origin: None,
            protocols: Vec::new(),
            extensions: None,
            headers: HeaderMap::new(),
        }
    }

    /// Checks that every field can be sent as is: a non-empty host, a target that starts with `/`
    /// and holds only visible ASCII, a valid key, subprotocols that are non-empty tokens, and no
    /// control characters in the origin or extensions. [`ClientRequest::encode`] never writes a
    /// broken head, but it repairs bad fields silently; call this first to get an error instead.
    pub fn validate(&self) -> Result<(), HandshakeError> {
        let invalid = |what: String| Err(HandshakeError::InvalidClientRequest(what));
        if self.host.is_empty() || self.host.bytes().any(|b| is_ctl(b) || b == b' ') {
            return invalid(format!(
                "host `{}` must be non-empty with no spaces or control characters",
                excerpt(self.host.as_bytes())
            ));
        }
        let target = self.path_and_query.as_bytes();
        if !(target.is_empty()
            || (target[0] == b'/' && target.iter().all(|&b| b > 0x20 && b < 0x7f)))
        {
            return invalid(format!(
                "path `{}` must start with `/` and be percent-encoded (visible ASCII only)",
                excerpt(target)
            ));
        }
        if !is_valid_key(self.key.as_bytes()) {
            return Err(HandshakeError::BadKey);
        }
        if let Some(origin) = &self.origin {
            if origin.bytes().any(is_ctl) {
                return invalid("origin must not contain control characters".to_owned());
            }
        }
        if let Some(bad) = self
            .protocols
            .iter()
            .find(|p| p.is_empty() || !p.bytes().all(is_token_char))
        {
            return invalid(format!(
                "subprotocol `{}` must be a non-empty token (visible ASCII, no separators such as `,` or spaces)",
                excerpt(bad.as_bytes())
            ));
        }
        if let Some(ext) = &self.extensions {
            if ext.bytes().any(is_ctl) {
                return invalid("extensions must not contain control characters".to_owned());
            }
        }
        Ok(())
    }

    /// Serializes the request head into `dst`:
    /// `GET {path} HTTP/1.1`, `Host`, `Upgrade: websocket`, `Connection: Upgrade`,
    /// `Sec-WebSocket-Key`, `Sec-WebSocket-Version: 13`, then `Origin`,
    /// `Sec-WebSocket-Protocol: a, b` and `Sec-WebSocket-Extensions` when set, the extra headers,
    /// and the empty line.
    ///
    /// Extra headers that duplicate one the handshake sets are skipped (see
    /// [`ClientRequest::headers`]). Nothing a field holds can break the head: bytes of the target
    /// that are not visible ASCII are percent-encoded, control characters in header values are
    /// dropped (use [`ClientRequest::validate`] to reject such fields instead).
    pub fn encode(&self, dst: &mut Vec<u8>) {
        dst.extend_from_slice(b"GET ");
        if self.path_and_query.is_empty() {
            dst.push(b'/');
        }
        for b in self.path_and_query.bytes() {
            if b <= 0x20 || b >= 0x7f {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                dst.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            } else {
                dst.push(b);
            }
        }
        dst.extend_from_slice(b" HTTP/1.1\r\n");
        push_header(dst, "Host", &self.host);
        dst.extend_from_slice(b"Upgrade: websocket\r\nConnection: Upgrade\r\n");
        push_header(dst, "Sec-WebSocket-Key", &self.key);
        dst.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
        if let Some(origin) = &self.origin {
            push_header(dst, "Origin", origin);
        }
        if !self.protocols.is_empty() {
            dst.extend_from_slice(b"Sec-WebSocket-Protocol: ");
            for (i, protocol) in self.protocols.iter().enumerate() {
                if i > 0 {
                    dst.extend_from_slice(b", ");
                }
                push_value(dst, protocol);
            }
            dst.extend_from_slice(b"\r\n");
        }
        if let Some(extensions) = &self.extensions {
            push_header(dst, "Sec-WebSocket-Extensions", extensions);
        }
        for (name, value) in &self.headers {
            if RESERVED_CLIENT_HEADERS.contains(name) {
                continue;
            }
            write_header_name(dst, name);
            dst.extend_from_slice(b": ");
            dst.extend_from_slice(value.as_bytes());
            dst.extend_from_slice(b"\r\n");
        }
        dst.extend_from_slice(b"\r\n");
    }
}

/// The reason phrase the server actually sent, stored by [`parse_response`] in the response's
/// [`extensions`](http::Response::extensions) (an [`http::Response`] has no field for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonPhrase(pub String);

/// Parses a complete response head (`buf[..head_end]`, as found by [`find_head_end`]) into an
/// [`http::Response`], enforcing `limits` (the status line counts against
/// [`HandshakeLimits::max_request_line`]).
///
/// The server's reason phrase is kept as a [`ReasonPhrase`] in the response's extensions. Bytes
/// after the head's empty line are ignored: for a 101 they are the first WebSocket bytes, for an
/// error status they are the body. Call [`check_response`] next.
pub fn parse_response(
    head: &[u8],
    limits: &HandshakeLimits,
) -> Result<http::Response<()>, HandshakeError> {
    let mut slots = prepare(head, limits)?;
    let slot_count = slots.len();
    let mut parsed = httparse::Response::new(&mut slots);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(incomplete()),
        Err(err) => return Err(parse_error(err, slot_count, limits)),
    }
    let code = parsed.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| {
        HandshakeError::Malformed(format!(
            "invalid status code {code}, expected a three-digit code"
        ))
    })?;
    let version = to_version(parsed.version)?;
    let headers = to_header_map(parsed.headers)?;
    let reason = parsed.reason.unwrap_or_default().to_owned();

    let mut resp = http::Response::new(());
    *resp.status_mut() = status;
    *resp.version_mut() = version;
    *resp.headers_mut() = headers;
    resp.extensions_mut().insert(ReasonPhrase(reason));
    Ok(resp)
}

/// What the client learned from a valid 101 response.
#[derive(Clone, Debug)]
pub struct UpgradeResponse {
    /// The subprotocol the server selected, if any (always one of those offered).
    pub protocol: Option<String>,
    /// The raw `Sec-WebSocket-Extensions` header values, in order (non-UTF-8 bytes replaced by
    /// U+FFFD), for the extension negotiation to check against what was offered.
    pub extensions: Vec<String>,
}

/// Checks the server's answer to an upgrade request that sent `key` and offered
/// `offered_protocols`.
///
/// Checked in order: status 101 (else [`HandshakeError::UnexpectedStatus`] with the code and the
/// reason phrase, from [`ReasonPhrase`] when present); `Upgrade` lists `websocket`; `Connection`
/// lists `upgrade`; `Sec-WebSocket-Accept` present exactly once and equal to
/// [`accept_key`]`(key)`; `Sec-WebSocket-Protocol` absent, or present once with exactly one of the
/// offered subprotocols. Extensions are returned raw, not checked.
pub fn check_response(
    resp: &http::Response<()>,
    key: &str,
    offered_protocols: &[String],
) -> Result<UpgradeResponse, HandshakeError> {
    let status = resp.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        let reason = match resp.extensions().get::<ReasonPhrase>() {
            Some(ReasonPhrase(reason)) => excerpt(reason.as_bytes()),
            None => status.canonical_reason().unwrap_or("").to_owned(),
        };
        return Err(HandshakeError::UnexpectedStatus {
            status: status.as_u16(),
            reason,
        });
    }
    let headers = resp.headers();
    if !has_token(headers, &UPGRADE, "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let accept = single(headers, &SEC_WEBSOCKET_ACCEPT, "Sec-WebSocket-Accept")?
        .ok_or(HandshakeError::MissingAccept)?;
    let accept = trim_ows(accept.as_bytes());
    let expected = accept_key(key.as_bytes());
    if accept != expected.as_bytes() {
        return Err(HandshakeError::BadAccept {
            expected,
            found: excerpt(accept),
        });
    }
    let protocol = match single(headers, &SEC_WEBSOCKET_PROTOCOL, "Sec-WebSocket-Protocol")? {
        None => None,
        Some(value) => {
            let value = trim_ows(value.as_bytes());
            match offered_protocols.iter().find(|p| p.as_bytes() == value) {
                Some(p) => Some(p.clone()),
                None => return Err(HandshakeError::UnofferedProtocol(excerpt(value))),
            }
        }
    };
    Ok(UpgradeResponse {
        protocol,
        extensions: raw_values(headers, &SEC_WEBSOCKET_EXTENSIONS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn valid_head() -> String {
        format!(
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nOrigin: http://example.com\r\n\
             Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    }

    /// The valid head with the header line starting with `name:` replaced by `line` (or removed
    /// when `line` is empty).
    fn head_with(name: &str, line: &str) -> String {
        let mut out = String::new();
        for l in valid_head().split_inclusive("\r\n") {
            if l.to_ascii_lowercase()
                .starts_with(&format!("{}:", name.to_ascii_lowercase()))
            {
                if !line.is_empty() {
                    out.push_str(line);
                    out.push_str("\r\n");
                }
            } else {
                out.push_str(l);
            }
        }
        out
    }

    fn check(head: &str) -> Result<UpgradeRequest, HandshakeError> {
        let req = parse_request(head.as_bytes(), &HandshakeLimits::default())?;
        check_request(&req)
    }

    fn err_status(head: &str) -> (HandshakeError, u16) {
        let err = check(head).unwrap_err();
        let status = err.status().as_u16();
        (err, status)
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rfc_6455_example_accept() {
        assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
        assert_eq!(encode_key(*b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
    }

    #[test]
    fn valid_request_parses_and_checks() {
        let req = parse_request(valid_head().as_bytes(), &HandshakeLimits::default()).unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/chat");
        assert_eq!(req.version(), Version::HTTP_11);
        let up = check_request(&req).unwrap();
        assert_eq!(up.accept, ACCEPT);
        assert_eq!(up.protocols, strings(&["chat", "superchat"]));
        assert_eq!(up.origin.as_deref(), Some("http://example.com"));
        assert!(up.extensions.is_empty());
        let (parts, ()) = req.into_parts();
        assert_eq!(check_request_parts(&parts).unwrap().accept, ACCEPT);
    }

    #[test]
    fn missing_or_wrong_headers_give_right_error_and_status() {
        let cases: Vec<(String, HandshakeError, u16)> = vec![
            (head_with("Host", ""), HandshakeError::MissingHost, 400),
            (
                head_with("Upgrade", ""),
                HandshakeError::MissingUpgrade,
                400,
            ),
            (
                head_with("Upgrade", "Upgrade: h2c"),
                HandshakeError::MissingUpgrade,
                400,
            ),
            (
                head_with("Connection", ""),
                HandshakeError::MissingConnectionUpgrade,
                400,
            ),
            (
                head_with("Connection", "Connection: keep-alive"),
                HandshakeError::MissingConnectionUpgrade,
                400,
            ),
            (
                head_with("Sec-WebSocket-Version", ""),
                HandshakeError::MissingVersion,
                426,
            ),
            (
                head_with("Sec-WebSocket-Version", "Sec-WebSocket-Version: 8"),
                HandshakeError::UnsupportedVersion("8".into()),
                426,
            ),
            (
                head_with("Sec-WebSocket-Key", ""),
                HandshakeError::MissingKey,
                400,
            ),
            (
                head_with(
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Key: not base64!!!!!!!!!!!!!",
                ),
                HandshakeError::BadKey,
                400,
            ),
            (
                head_with("Host", "Host: a\r\nHost: b"),
                HandshakeError::DuplicateHeader("Host"),
                400,
            ),
        ];
        for (head, want, status) in cases {
            let (err, got) = err_status(&head);
            assert_eq!(err, want, "for head {head:?}");
            assert_eq!(got, status, "for head {head:?}");
        }
    }

    #[test]
    fn header_names_and_tokens_are_case_insensitive() {
        let head = format!(
            "GET / HTTP/1.1\r\nhOsT: x\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n\
             sec-websocket-key: {KEY}\r\nSEC-WEBSOCKET-VERSION: 13\r\n\r\n"
        );
        assert_eq!(check(&head).unwrap().accept, ACCEPT);
        // Tokens spread over several header lines count too.
        let head = head_with(
            "Connection",
            "Connection: keep-alive\r\nConnection: upgrade",
        );
        assert!(check(&head).is_ok());
        // A substring is not a token.
        let head = head_with("Connection", "Connection: upgrades");
        assert_eq!(
            check(&head).unwrap_err(),
            HandshakeError::MissingConnectionUpgrade
        );
    }

    #[test]
    fn key_must_decode_to_exactly_16_bytes_and_appear_once() {
        let k15 = STANDARD.encode([7u8; 15]);
        let k17 = STANDARD.encode([7u8; 17]);
        for key in [k15, k17] {
            let head = head_with("Sec-WebSocket-Key", &format!("Sec-WebSocket-Key: {key}"));
            assert_eq!(err_status(&head), (HandshakeError::BadKey, 400));
        }
        let k16 = encode_key([7u8; 16]);
        let head = head_with("Sec-WebSocket-Key", &format!("Sec-WebSocket-Key: {k16}"));
        assert!(check(&head).is_ok());
        let head = head_with(
            "Sec-WebSocket-Key",
            &format!("Sec-WebSocket-Key: {k16}\r\nSec-WebSocket-Key: {KEY}"),
        );
        assert_eq!(
            err_status(&head),
            (HandshakeError::DuplicateHeader("Sec-WebSocket-Key"), 400)
        );
    }

    #[test]
    fn post_and_http_1_0_are_rejected() {
        let post = valid_head().replacen("GET", "POST", 1);
        let (err, status) = err_status(&post);
        assert_eq!(err, HandshakeError::MethodNotGet("POST".into()));
        assert_eq!(status, 405);
        let mut out = Vec::new();
        encode_error_response(&err, &mut out);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\r\nAllow: GET\r\n"));

        let old = valid_head().replacen("HTTP/1.1", "HTTP/1.0", 1);
        let (err, status) = err_status(&old);
        assert!(matches!(err, HandshakeError::WrongHttpVersion(_)), "{err}");
        assert_eq!(status, 400);
    }

    #[test]
    fn find_head_end_across_split_reads() {
        let head = valid_head().into_bytes();
        let end = head.len();
        let mut with_tail = head.clone();
        with_tail.extend_from_slice(b"\x81\x05hello");
        // Feed in two reads, the second starting at every position (splitting the terminator
        // at each of its bytes among others).
        for split in 0..=with_tail.len() {
            let first = find_head_end(&with_tail[..split], 0);
            if split < end {
                assert_eq!(first, None, "split {split}");
                assert_eq!(find_head_end(&with_tail, split), Some(end), "split {split}");
            } else {
                assert_eq!(first, Some(end), "split {split}");
            }
        }
        assert_eq!(find_head_end(b"", 10), None);
        assert_eq!(find_head_end(b"\r\n\r\n", 3), Some(4));
    }

    #[test]
    fn find_head_end_byte_at_a_time_is_linear() {
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        while head.len() < 16 * 1024 - 40 {
            head.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaa\r\n");
        }
        head.extend_from_slice(b"\r\n");
        let n = head.len();
        let mut total = 0;
        let mut found = None;
        for len in 1..=n {
            let (res, scanned) = find_head_end_counted(&head[..len], len - 1);
            total += scanned;
            if len < n {
                assert_eq!(res, None, "at {len}");
            } else {
                found = res;
            }
        }
        assert_eq!(found, Some(n));
        // Each call examines at most the 4 positions that end in the new byte.
        assert!(total <= n, "scanned {total} positions for {n} bytes");
    }

    #[test]
    fn limits_are_enforced_with_431_and_414() {
        let limits = HandshakeLimits::default();
        assert_eq!(limits.max_headers, 64);
        assert_eq!(limits.max_header_bytes, 16 * 1024);
        assert_eq!(limits.max_request_line, 8 * 1024);

        let mut head = String::from("GET / HTTP/1.1\r\n");
        for i in 0..65 {
            head.push_str(&format!("X-H{i}: v\r\n"));
        }
        head.push_str("\r\n");
        let err = parse_request(head.as_bytes(), &limits).unwrap_err();
        assert_eq!(err, HandshakeError::TooManyHeaders { limit: 64 });
        assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        // 64 is fine.
        let ok = head.replacen("X-H0: v\r\n", "", 1);
        assert!(parse_request(ok.as_bytes(), &limits).is_ok());

        let mut big = String::from("GET / HTTP/1.1\r\n");
        while big.len() < 17 * 1024 {
            big.push_str(
                "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n",
            );
        }
        big.push_str("\r\n");
        let err = parse_request(big.as_bytes(), &limits).unwrap_err();
        assert_eq!(err, HandshakeError::HeadersTooLarge { limit: 16 * 1024 });
        assert_eq!(err.status().as_u16(), 431);

        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
        let err = parse_request(long.as_bytes(), &limits).unwrap_err();
        assert_eq!(err, HandshakeError::RequestLineTooLong { limit: 8 * 1024 });
        assert_eq!(err.status().as_u16(), 414);
        // Exactly at the limit is fine.
        let target = "a".repeat(8 * 1024 - "GET / HTTP/1.1".len());
        let edge = format!("GET /{target} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(parse_request(edge.as_bytes(), &limits).is_ok());
    }

    #[test]
    fn client_request_round_trips_through_server_checks() {
        let key = encode_key([42; 16]);
        let mut req = ClientRequest::new("example.com:8080", "/ws?x=1", key.clone());
        req.origin = Some("https://example.com".into());
        req.protocols = strings(&["v2.chat", "v1.chat"]);
        req.extensions = Some("permessage-deflate; client_max_window_bits".into());
        req.headers
            .insert("authorization", HeaderValue::from_static("Bearer t"));
        // A duplicate of a handshake header is skipped, not sent twice.
        req.headers.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("AAAAAAAAAAAAAAAAAAAAAA=="),
        );
        req.validate().unwrap();
        let mut buf = Vec::new();
        req.encode(&mut buf);
        assert!(buf.starts_with(b"GET /ws?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n"));
        assert_eq!(find_head_end(&buf, 0), Some(buf.len()));

        let parsed = parse_request(&buf, &HandshakeLimits::default()).unwrap();
        assert_eq!(parsed.uri(), "/ws?x=1");
        assert_eq!(parsed.headers()["authorization"], "Bearer t");
        let up = check_request(&parsed).unwrap();
        assert_eq!(up.accept, accept_key(key.as_bytes()));
        assert_eq!(up.protocols, strings(&["v2.chat", "v1.chat"]));
        assert_eq!(
            up.extensions,
            strings(&["permessage-deflate; client_max_window_bits"])
        );
        assert_eq!(up.origin.as_deref(), Some("https://example.com"));
    }

    #[test]
    fn client_request_cannot_inject_headers() {
        let mut req = ClientRequest::new("h\r\nEvil: 1", "/a b\r\nEvil: 2", KEY);
        req.origin = Some("o\r\nEvil: 3".into());
        assert!(matches!(
            req.validate(),
            Err(HandshakeError::InvalidClientRequest(_))
        ));
        let mut buf = Vec::new();
        req.encode(&mut buf);
        let parsed = parse_request(&buf, &HandshakeLimits::default()).unwrap();
        assert!(parsed.headers().get("evil").is_none());
        assert_eq!(parsed.uri(), "/a%20b%0D%0AEvil:%202");
        let mut bad = ClientRequest::new("h", "/", KEY);
        bad.protocols = strings(&["a,b"]);
        assert!(bad.validate().is_err());
        bad.protocols.clear();
        bad.key = "short".into();
        assert_eq!(bad.validate(), Err(HandshakeError::BadKey));
    }

    #[test]
    fn response_round_trip() {
        let offered = strings(&["a", "b"]);
        let resp = response_101(ACCEPT, Some("b"), Some("permessage-deflate"));
        let mut buf = Vec::new();
        encode_response(&resp, &mut buf);
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
        let head_end = find_head_end(&buf, 0).unwrap();
        let parsed = parse_response(&buf[..head_end], &HandshakeLimits::default()).unwrap();
        let up = check_response(&parsed, KEY, &offered).unwrap();
        assert_eq!(up.protocol.as_deref(), Some("b"));
        assert_eq!(up.extensions, strings(&["permessage-deflate"]));

        let plain = response_101(ACCEPT, None, None);
        let up = check_response(&plain, KEY, &offered).unwrap();
        assert_eq!(up.protocol, None);
        assert!(up.extensions.is_empty());
    }

    #[test]
    fn bad_responses_are_rejected() {
        let offered = strings(&["a"]);
        let other_key = encode_key([1; 16]);
        assert!(matches!(
            check_response(&response_101(ACCEPT, None, None), &other_key, &offered),
            Err(HandshakeError::BadAccept { .. })
        ));
        let mut no_accept = response_101(ACCEPT, None, None);
        no_accept.headers_mut().remove(SEC_WEBSOCKET_ACCEPT);
        assert_eq!(
            check_response(&no_accept, KEY, &offered).unwrap_err(),
            HandshakeError::MissingAccept
        );
        let mut no_upgrade = response_101(ACCEPT, None, None);
        no_upgrade.headers_mut().remove(UPGRADE);
        assert_eq!(
            check_response(&no_upgrade, KEY, &offered).unwrap_err(),
            HandshakeError::MissingUpgrade
        );

        for (line, code, reason) in [
            ("HTTP/1.1 200 OK", 200, "OK"),
            ("HTTP/1.1 404 Nope", 404, "Nope"),
        ] {
            let head = format!("{line}\r\nContent-Length: 0\r\n\r\n");
            let resp = parse_response(head.as_bytes(), &HandshakeLimits::default()).unwrap();
            assert_eq!(
                check_response(&resp, KEY, &offered).unwrap_err(),
                HandshakeError::UnexpectedStatus {
                    status: code,
                    reason: reason.into()
                }
            );
        }

        let unoffered = response_101(ACCEPT, Some("zzz"), None);
        assert_eq!(
            check_response(&unoffered, KEY, &offered).unwrap_err(),
            HandshakeError::UnofferedProtocol("zzz".into())
        );
        let unasked = response_101(ACCEPT, Some("a"), None);
        assert_eq!(
            check_response(&unasked, KEY, &[]).unwrap_err(),
            HandshakeError::UnofferedProtocol("a".into())
        );
        let mut two = response_101(ACCEPT, Some("a"), None);
        two.headers_mut()
            .append(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("a"));
        assert_eq!(
            check_response(&two, KEY, &offered).unwrap_err(),
            HandshakeError::DuplicateHeader("Sec-WebSocket-Protocol")
        );
    }

    #[test]
    fn error_response_426_has_version_and_matching_length() {
        let err = HandshakeError::UnsupportedVersion("8".into());
        let mut out = Vec::new();
        encode_error_response(&err, &mut out);
        let head_end = find_head_end(&out, 0).unwrap();
        let resp = parse_response(&out[..head_end], &HandshakeLimits::default()).unwrap();
        assert_eq!(resp.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(resp.headers()[SEC_WEBSOCKET_VERSION], "13");
        assert_eq!(resp.headers()[CONNECTION], "close");
        let body = &out[head_end..];
        assert_eq!(
            resp.headers()[CONTENT_LENGTH].to_str().unwrap(),
            body.len().to_string()
        );
        assert_eq!(body, format!("{err}\n").as_bytes());
        assert!(String::from_utf8(out.clone())
            .unwrap()
            .contains("\r\nSec-WebSocket-Version: 13\r\n"));

        let http_resp = error_response(&HandshakeError::BadKey);
        assert_eq!(http_resp.status(), StatusCode::BAD_REQUEST);
        assert!(http_resp.headers().get(SEC_WEBSOCKET_VERSION).is_none());
        assert_eq!(
            http_resp.headers()[CONTENT_LENGTH].to_str().unwrap(),
            http_resp.body().len().to_string()
        );
    }

    #[test]
    fn select_protocol_prefers_client_order() {
        let offered = strings(&["c", "b", "a"]);
        assert_eq!(select_protocol(&offered, &strings(&["a", "b"])), Some("b"));
        assert_eq!(select_protocol(&offered, &strings(&["a"])), Some("a"));
        assert_eq!(select_protocol(&offered, &strings(&["C"])), None);
        assert_eq!(select_protocol(&[], &strings(&["a"])), None);
    }

    #[test]
    fn header_tokens_trims_and_skips_empties() {
        let mut h = HeaderMap::new();
        h.append(CONNECTION, HeaderValue::from_static(" ,a ,\t b,,"));
        h.append(
            CONNECTION,
            HeaderValue::from_bytes(b"c, \xff\xfe, d").unwrap(),
        );
        let tokens: Vec<&str> = header_tokens(&h, &CONNECTION).collect();
        assert_eq!(tokens, ["a", "b", "c", "d"]);
    }

    #[test]
    fn pathological_protocol_header_is_cheap() {
        let value = ",".repeat(15 * 1024);
        let head = head_with(
            "Sec-WebSocket-Protocol",
            &format!("Sec-WebSocket-Protocol: {value}x"),
        );
        let start = std::time::Instant::now();
        let up = check(&head).unwrap();
        assert_eq!(up.protocols, strings(&["x"]));
        let many = "a,".repeat(7 * 1024);
        let head = head_with(
            "Sec-WebSocket-Protocol",
            &format!("Sec-WebSocket-Protocol: {many}"),
        );
        let up = check(&head).unwrap();
        assert_eq!(up.protocols.len(), 7 * 1024);
        assert_eq!(select_protocol(&up.protocols, &strings(&["b"])), None);
        assert!(start.elapsed() < std::time::Duration::from_secs(2));
    }

    #[test]
    fn non_utf8_and_garbage_do_not_panic() {
        // A raw 0xff byte (not UTF-8) in a header value.
        let raw = head_with("Origin", "Origin: @")
            .into_bytes()
            .into_iter()
            .map(|b| if b == b'@' { 0xff } else { b })
            .collect::<Vec<u8>>();
        let req = parse_request(&raw, &HandshakeLimits::default()).unwrap();
        let up = check_request(&req).unwrap();
        assert_eq!(up.origin.as_deref(), Some("\u{fffd}"));

        assert!(matches!(
            parse_request(
                b"GET / HTTP/1.1\r\nHost: x\r\n",
                &HandshakeLimits::default()
            ),
            Err(HandshakeError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"\r\n\r\n", &HandshakeLimits::default()),
            Err(HandshakeError::Malformed(_))
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 1000 X\r\n\r\n", &HandshakeLimits::default()),
            Err(HandshakeError::Malformed(_))
        ));
    }

    #[test]
    fn huge_configured_limits_do_not_allocate_hugely() {
        let limits = HandshakeLimits {
            max_header_bytes: usize::MAX,
            max_headers: usize::MAX,
            max_request_line: usize::MAX,
        };
        let req = parse_request(valid_head().as_bytes(), &limits).unwrap();
        assert!(check_request(&req).is_ok());
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

            #[test]
            fn header_tokens_matches_naive_split(value in "[a-z ,\t]{0,64}") {
                let mut h = HeaderMap::new();
                h.insert(CONNECTION, HeaderValue::from_str(&value).unwrap());
                let got: Vec<&str> = header_tokens(&h, &CONNECTION).collect();
                let want: Vec<&str> = value
                    .split(',')
                    .map(|t| t.trim_matches([' ', '\t']))
                    .filter(|t| !t.is_empty())
                    .collect();
                prop_assert_eq!(got, want);
            }

            #[test]
            fn find_head_end_split_anywhere(prefix in "[a-z\r\n]{0,40}", split in 0usize..64) {
                let mut buf = prefix.into_bytes();
                buf.extend_from_slice(b"\r\n\r\n");
                let whole = find_head_end(&buf, 0);
                let split = split.min(buf.len());
                let two_step = find_head_end(&buf[..split], 0)
                    .or_else(|| find_head_end(&buf, split));
                prop_assert_eq!(whole, two_step);
            }
        }
    }
}
