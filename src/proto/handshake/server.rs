//! The server side: parse and check an upgrade request, pick a subprotocol, answer it with a
//! 101 or with the HTTP error for a rejected request.

use http::header::{
    HeaderMap, HeaderValue, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, ORIGIN,
    SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{Method, StatusCode, Version};

use super::http::{
    check_no_body, has_token, header_tokens, parse_status, prepare, raw_values, single,
    to_header_map, to_version, trim_ows, write_response,
};
use super::{accept_key, excerpt, is_valid_key, HandshakeError, HandshakeLimits, WS_VERSION};

/// Parses a complete request head (`buf[..head_end]`, as found by
/// [`find_head_end`](super::find_head_end)) into an [`http::Request`], enforcing `limits`.
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
    parse_status(parsed.parse(head), slot_count, limits)?;
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
    /// The `Sec-WebSocket-Accept` value to answer with (empty for an HTTP/2 extended CONNECT,
    /// which has no key: RFC 8441 §5).
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
/// Checked in order (the first failure is returned): method GET; HTTP/1.1 or later; a target
/// that is a path (not `*`); no body (no `Transfer-Encoding`, `Content-Length` absent or once
/// and 0: a body would be read as frames here and as a body by a proxy); `Host` present
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
    if !uri.path().starts_with('/') {
        return Err(HandshakeError::BadTarget(excerpt(
            uri.to_string().as_bytes(),
        )));
    }
    check_no_body(headers)?;
    if single(headers, &HOST, "Host")?.is_none() && uri.authority().is_none() {
        return Err(HandshakeError::MissingHost);
    }
    if !has_token(headers, &UPGRADE, "websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    check_version(headers)?;
    let key = single(headers, &SEC_WEBSOCKET_KEY, "Sec-WebSocket-Key")?
        .ok_or(HandshakeError::MissingKey)?;
    let key = trim_ows(key.as_bytes());
    if !is_valid_key(key) {
        return Err(HandshakeError::BadKey);
    }
    Ok(offer(accept_key(key), headers))
}

/// `Sec-WebSocket-Version` present exactly once with the value `13`.
fn check_version(headers: &HeaderMap) -> Result<(), HandshakeError> {
    let ws_version = single(headers, &SEC_WEBSOCKET_VERSION, "Sec-WebSocket-Version")?
        .ok_or(HandshakeError::MissingVersion)?;
    let ws_version = trim_ows(ws_version.as_bytes());
    if ws_version != WS_VERSION.as_bytes() {
        return Err(HandshakeError::UnsupportedVersion(excerpt(ws_version)));
    }
    Ok(())
}

/// What the client offers (subprotocols, extensions, origin), the same in HTTP/1.1 and HTTP/2.
fn offer(accept: String, headers: &HeaderMap) -> UpgradeRequest {
    UpgradeRequest {
        accept,
        protocols: header_tokens(headers, &SEC_WEBSOCKET_PROTOCOL)
            .map(str::to_owned)
            .collect(),
        extensions: raw_values(headers, &SEC_WEBSOCKET_EXTENSIONS),
        origin: headers
            .get(ORIGIN)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    }
}

/// Validates an HTTP/2 extended CONNECT (RFC 8441 §4-5). `protocol` is the `:protocol`
/// pseudo-header, which HTTP stacks keep outside the header map (hyper: `hyper::ext::Protocol`).
///
/// Checked in order: method CONNECT with a `:protocol`
/// ([`HandshakeError::NotExtendedConnect`]); `:protocol` is `websocket`
/// ([`HandshakeError::WrongProtocol`]); `Sec-WebSocket-Version` exactly once with the value `13`.
/// There is no key and no `Upgrade`/`Connection` in HTTP/2; the returned request's `accept` is
/// empty.
pub fn check_connect_parts(
    method: &Method,
    protocol: Option<&str>,
    headers: &HeaderMap,
) -> Result<UpgradeRequest, HandshakeError> {
    let protocol = match protocol {
        Some(p) if method == Method::CONNECT => p,
        _ => {
            return Err(HandshakeError::NotExtendedConnect(excerpt(
                method.as_str().as_bytes(),
            )))
        }
    };
    if protocol != "websocket" {
        return Err(HandshakeError::WrongProtocol(excerpt(protocol.as_bytes())));
    }
    check_version(headers)?;
    Ok(offer(String::new(), headers))
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
    insert_negotiated(headers, protocol, extensions);
    resp
}

/// Builds the `200` answer to an HTTP/2 extended CONNECT (RFC 8441 §5): only
/// `Sec-WebSocket-Protocol` / `Sec-WebSocket-Extensions` when given (no accept key, and no
/// `Upgrade`/`Connection`, which HTTP/2 forbids).
pub fn response_connect(protocol: Option<&str>, extensions: Option<&str>) -> http::Response<()> {
    let mut resp = http::Response::new(());
    insert_negotiated(resp.headers_mut(), protocol, extensions);
    resp
}

fn insert_negotiated(headers: &mut HeaderMap, protocol: Option<&str>, extensions: Option<&str>) {
    if let Some(Ok(value)) = protocol.map(HeaderValue::from_str) {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    if let Some(Ok(value)) = extensions.map(HeaderValue::from_str) {
        headers.insert(SEC_WEBSOCKET_EXTENSIONS, value);
    }
}

/// Serializes a response head (status line, headers, empty line) into `dst`.
///
/// The status line always says `HTTP/1.1` with the canonical reason phrase; the body, if any, is
/// not written.
pub fn encode_response(resp: &http::Response<()>, dst: &mut Vec<u8>) {
    write_response(resp.status(), resp.headers(), &[], dst);
}

/// The HTTP error response for a rejected handshake, for hyper/axum services.
///
/// Status from [`HandshakeError::status`]; headers `Connection: close`,
/// `Content-Type: text/plain; charset=utf-8` and `Content-Length`; body the error message followed
/// by `\n`. A 426 also carries `Sec-WebSocket-Version: 13` and `Upgrade: websocket` (RFC 6455
/// §4.2.2, RFC 7231 §6.5.15); a 405 carries `Allow: GET` (RFC 7231 §6.5.5).
pub fn error_response(err: &HandshakeError) -> http::Response<String> {
    error_response_over(err, false)
}

/// The error response for a rejected HTTP/2 extended CONNECT: as [`error_response`], without
/// the connection-specific headers HTTP/2 forbids (`Connection`, `Upgrade`), and 400 instead of
/// 426 (there is nothing to upgrade in HTTP/2; a wrong version still carries
/// `Sec-WebSocket-Version: 13`, RFC 6455 §4.4).
pub fn error_response_h2(err: &HandshakeError) -> http::Response<String> {
    error_response_over(err, true)
}

/// The error response over HTTP/1.1 or (`http2`) HTTP/2, each header chosen once.
fn error_response_over(err: &HandshakeError, http2: bool) -> http::Response<String> {
    let body = format!("{err}\n");
    let status = match err.status() {
        StatusCode::UPGRADE_REQUIRED if http2 => StatusCode::BAD_REQUEST,
        status => status,
    };
    let mut resp = http::Response::new(String::new());
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if !http2 {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    if err.status() == StatusCode::UPGRADE_REQUIRED {
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static(WS_VERSION));
        if !http2 {
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        }
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
    write_response(resp.status(), resp.headers(), resp.body().as_bytes(), dst);
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{strings, valid_head, ACCEPT, KEY};
    use super::super::{encode_key, find_head_end, parse_response};
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

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
    }

    #[test]
    fn smuggling_upgrade_with_a_body_is_400() {
        for extra in [
            "Content-Length: 8",
            "Transfer-Encoding: chunked",
            "Content-Length: 8\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: identity",
        ] {
            let head = head_with("Origin", extra);
            let (err, status) = err_status(&head);
            assert!(
                matches!(err, HandshakeError::BodyNotAllowed(_)),
                "{extra}: {err}"
            );
            assert_eq!(status, 400);
        }
        // An empty body is no body.
        assert!(check(&head_with("Origin", "Content-Length: 0")).is_ok());
        assert!(matches!(
            err_status(&head_with("Origin", "Content-Length: x")),
            (HandshakeError::Malformed(_), 400)
        ));
    }

    #[test]
    fn smuggling_duplicate_content_length_is_400() {
        for extra in [
            "Content-Length: 0\r\nContent-Length: 0",
            "Content-Length: 0\r\nContent-Length: 8",
        ] {
            assert_eq!(
                err_status(&head_with("Origin", extra)),
                (HandshakeError::DuplicateHeader("Content-Length"), 400),
                "{extra}"
            );
        }
    }

    #[test]
    fn leniency_asterisk_target_is_400() {
        let head = valid_head().replacen("GET /chat", "GET *", 1);
        let (err, status) = err_status(&head);
        assert!(matches!(err, HandshakeError::BadTarget(_)), "{err}");
        assert_eq!(status, 400);
        let head = valid_head().replacen("GET /chat", "GET http://h/chat", 1);
        assert!(check(&head).is_ok());
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

    #[test]
    fn extended_connect_checks_method_protocol_and_version() {
        let mut headers = HeaderMap::new();
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static("a, b"));
        let up = check_connect_parts(&Method::CONNECT, Some("websocket"), &headers).unwrap();
        assert_eq!(up.protocols, strings(&["a", "b"]));
        assert!(up.accept.is_empty());
        assert!(matches!(
            check_connect_parts(&Method::CONNECT, None, &headers),
            Err(HandshakeError::NotExtendedConnect(m)) if m == "CONNECT"
        ));
        assert!(matches!(
            check_connect_parts(&Method::GET, Some("websocket"), &headers),
            Err(HandshakeError::NotExtendedConnect(_))
        ));
        assert!(matches!(
            check_connect_parts(&Method::CONNECT, Some("chat"), &headers),
            Err(HandshakeError::WrongProtocol(p)) if p == "chat"
        ));
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        let err = check_connect_parts(&Method::CONNECT, Some("websocket"), &headers).unwrap_err();
        assert!(matches!(err, HandshakeError::UnsupportedVersion(_)));
        // Over HTTP/2: 400 with the version, and no connection-specific headers.
        let resp = error_response_h2(&err);
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert_eq!(resp.headers()[SEC_WEBSOCKET_VERSION], "13");
        assert!(resp.headers().get(CONNECTION).is_none());
        assert!(resp.headers().get(UPGRADE).is_none());
    }

    #[test]
    fn connect_response_carries_only_the_negotiated_headers() {
        let resp = response_connect(Some("chat"), Some("permessage-deflate"));
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers().len(), 2);
        assert_eq!(resp.headers()[SEC_WEBSOCKET_PROTOCOL], "chat");
        assert!(response_connect(None, None).headers().is_empty());
    }
}
