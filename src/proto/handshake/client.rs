//! The client side: build the upgrade request, parse and check the server's answer.

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, HOST, ORIGIN,
    SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, TRANSFER_ENCODING, UPGRADE,
};
use http::StatusCode;

use super::http::{
    has_token, is_ctl, is_token_char, parse_status, prepare, raw_values, single, to_header_map,
    to_version, trim_ows, write_header,
};
use super::{accept_key, excerpt, is_valid_key, HandshakeError, HandshakeLimits};

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

/// Whether `name` is one of the headers [`ClientRequest::encode`] writes itself (`Host`,
/// `Upgrade`, `Connection`, `Sec-WebSocket-*`, `Origin`): an extra header of that name is
/// skipped, so a tool taking headers from its user should refuse it instead.
pub fn is_handshake_header(name: &HeaderName) -> bool {
    RESERVED_CLIENT_HEADERS.contains(name)
}

/// What the client sends: the fields of an upgrade request.
#[derive(Clone, Debug)]
pub struct ClientRequest {
    /// The `Host` header value, including the port when it is not the scheme's default.
    pub host: String,
    /// The request target, e.g. `/chat?room=1` (already percent-encoded; empty means `/`).
    pub path_and_query: String,
    /// The `Sec-WebSocket-Key` value, from [`encode_key`](super::encode_key).
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
            if !RESERVED_CLIENT_HEADERS.contains(name) {
                write_header(dst, name, value);
            }
        }
        dst.extend_from_slice(b"\r\n");
    }
}

impl ClientRequest {
    /// The headers of the same request as an HTTP/2 extended CONNECT (RFC 8441 §5):
    /// `Sec-WebSocket-Version: 13`, then `Origin`, `Sec-WebSocket-Protocol` and
    /// `Sec-WebSocket-Extensions` when set, and the extra headers (reserved names skipped as in
    /// [`ClientRequest::encode`]). The key is not sent (HTTP/2 has none); the host and the target
    /// go in the `:authority` and `:path` pseudo-headers. Values that are not valid header values
    /// are an [`HandshakeError::InvalidClientRequest`].
    pub fn connect_headers(&self) -> Result<HeaderMap, HandshakeError> {
        let value = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| {
                HandshakeError::InvalidClientRequest(format!(
                    "`{}` is not a valid header value",
                    excerpt(v.as_bytes())
                ))
            })
        };
        let mut headers = HeaderMap::with_capacity(4 + self.headers.len());
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        if let Some(origin) = &self.origin {
            headers.insert(ORIGIN, value(origin)?);
        }
        if !self.protocols.is_empty() {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, value(&self.protocols.join(", "))?);
        }
        if let Some(extensions) = &self.extensions {
            headers.insert(SEC_WEBSOCKET_EXTENSIONS, value(extensions)?);
        }
        for (name, v) in &self.headers {
            if !RESERVED_CLIENT_HEADERS.contains(name) {
                headers.append(name, v.clone());
            }
        }
        Ok(headers)
    }
}

/// The reason phrase the server actually sent, stored by [`parse_response`] in the response's
/// [`extensions`](http::Response::extensions) (an [`http::Response`] has no field for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReasonPhrase(pub String);

/// Parses a complete response head (`buf[..head_end]`, as found by
/// [`find_head_end`](super::find_head_end)) into an [`http::Response`], enforcing `limits`
/// (the status line counts against [`HandshakeLimits::max_request_line`]).
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
    parse_status(parsed.parse(head), slot_count, limits)?;
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
/// reason phrase, from [`ReasonPhrase`] when present); HTTP/1.1; no `Content-Length` and
/// no `Transfer-Encoding` (RFC 9110 §8.6: a 101 has neither); `Upgrade` lists `websocket`; `Connection`
/// lists `upgrade`; `Sec-WebSocket-Accept` present exactly once and equal to
/// [`accept_key`]`(key)`; `Sec-WebSocket-Protocol` absent, or present once with exactly one of the
/// offered subprotocols. Extensions are returned raw, not checked.
pub fn check_response(
    resp: &http::Response<()>,
    key: &str,
    offered_protocols: &[String],
) -> Result<UpgradeResponse, HandshakeError> {
    expect_status(resp, StatusCode::SWITCHING_PROTOCOLS)?;
    if resp.version() != http::Version::HTTP_11 {
        return Err(HandshakeError::WrongHttpVersion(format!(
            "{:?}",
            resp.version()
        )));
    }
    let headers = resp.headers();
    // RFC 9110 §8.6: a 1xx response carries no `Content-Length` at all.
    for (name, display) in [
        (CONTENT_LENGTH, "Content-Length"),
        (TRANSFER_ENCODING, "Transfer-Encoding"),
    ] {
        if headers.contains_key(&name) {
            return Err(HandshakeError::BodyNotAllowed(format!(
                "a 101 response with `{display}`"
            )));
        }
    }
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
    negotiated(headers, offered_protocols)
}

/// Checks the server's answer to an HTTP/2 extended CONNECT (RFC 8441 §5) that offered
/// `offered_protocols`: status 200 (any other is [`HandshakeError::UnexpectedStatus`]), then the
/// subprotocol as [`check_response`] does. There is no accept key in HTTP/2.
pub fn check_connect_response(
    resp: &http::Response<()>,
    offered_protocols: &[String],
) -> Result<UpgradeResponse, HandshakeError> {
    expect_status(resp, StatusCode::OK)?;
    negotiated(resp.headers(), offered_protocols)
}

/// The reason phrase of `resp` as the peer sent it (cut short), or the standard one for its
/// status when it sent none.
pub(crate) fn reason_phrase(resp: &http::Response<()>) -> String {
    match resp.extensions().get::<ReasonPhrase>() {
        Some(ReasonPhrase(reason)) if !reason.is_empty() => excerpt(reason.as_bytes()),
        _ => resp.status().canonical_reason().unwrap_or("").to_owned(),
    }
}

/// `Ok` if `resp` has the `expected` status, else the status and its reason phrase.
fn expect_status(resp: &http::Response<()>, expected: StatusCode) -> Result<(), HandshakeError> {
    let status = resp.status();
    if status == expected {
        return Ok(());
    }
    Err(HandshakeError::UnexpectedStatus {
        status: status.as_u16(),
        reason: reason_phrase(resp),
    })
}

/// The subprotocol (one of those offered, or none) and the extension values of an answer.
fn negotiated(
    headers: &http::HeaderMap,
    offered_protocols: &[String],
) -> Result<UpgradeResponse, HandshakeError> {
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
    use super::super::test_support::{strings, ACCEPT, KEY};
    use super::super::{
        accept_key, check_request, encode_key, encode_response, find_head_end, parse_request,
        response_101,
    };
    use super::*;
    use http::header::HeaderValue;

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

    /// The 101 with `extra` header lines, parsed.
    fn response_with(version: &str, extra: &str) -> http::Response<()> {
        let head = format!(
            "{version} 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {ACCEPT}\r\n{extra}\r\n"
        );
        parse_response(head.as_bytes(), &HandshakeLimits::default()).unwrap()
    }

    #[test]
    fn smuggling_101_with_a_body_is_a_failed_handshake() {
        assert!(check_response(&response_with("HTTP/1.1", ""), KEY, &[]).is_ok());
        for extra in [
            "Content-Length: 8\r\n",
            "Content-Length: 0\r\n",
            "Transfer-Encoding: chunked\r\n",
        ] {
            assert!(
                matches!(
                    check_response(&response_with("HTTP/1.1", extra), KEY, &[]),
                    Err(HandshakeError::BodyNotAllowed(_))
                ),
                "{extra}"
            );
        }
    }

    #[test]
    fn leniency_http_1_0_101_is_refused() {
        assert!(matches!(
            check_response(&response_with("HTTP/1.0", ""), KEY, &[]),
            Err(HandshakeError::WrongHttpVersion(_))
        ));
    }

    #[test]
    fn garbage_status_line_is_malformed() {
        assert!(matches!(
            parse_response(b"HTTP/1.1 1000 X\r\n\r\n", &HandshakeLimits::default()),
            Err(HandshakeError::Malformed(_))
        ));
    }
}
