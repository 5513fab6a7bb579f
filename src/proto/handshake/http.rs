//! The HTTP/1.1 head shared by client and server: the head terminator search, the httparse glue,
//! header lookups, the one head writer, and the token tools (the `tchar` check and the
//! header-value tokenizer that the extension negotiation uses too).

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{StatusCode, Version};

use super::{excerpt, HandshakeError, HandshakeLimits};

// ---------------------------------------------------------------------------------------------
// Reading a head
// ---------------------------------------------------------------------------------------------

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
pub(super) fn prepare(
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

/// What httparse made of a head, as a [`HandshakeError`] unless it is complete.
pub(super) fn parse_status(
    result: httparse::Result<usize>,
    slots: usize,
    limits: &HandshakeLimits,
) -> Result<(), HandshakeError> {
    match result {
        Ok(httparse::Status::Complete(_)) => Ok(()),
        Ok(httparse::Status::Partial) => Err(HandshakeError::Malformed(
            "incomplete head: it must end with an empty line (pass `buf[..head_end]` as found by `find_head_end`)"
                .to_owned(),
        )),
        Err(httparse::Error::TooManyHeaders) if slots >= limits.max_headers => {
            Err(HandshakeError::TooManyHeaders {
                limit: limits.max_headers,
            })
        }
        Err(httparse::Error::Version) => Err(HandshakeError::Malformed(
            "invalid HTTP version in the start line, expected `HTTP/1.1`".to_owned(),
        )),
        Err(other) => Err(HandshakeError::Malformed(format!(
            "{other} (expected an HTTP/1.1 head)"
        ))),
    }
}

/// Converts httparse's header list into a [`HeaderMap`].
pub(super) fn to_header_map(parsed: &[httparse::Header<'_>]) -> Result<HeaderMap, HandshakeError> {
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
pub(super) fn to_version(minor: Option<u8>) -> Result<Version, HandshakeError> {
    match minor {
        Some(0) => Ok(Version::HTTP_10),
        Some(1) => Ok(Version::HTTP_11),
        _ => Err(HandshakeError::Malformed(
            "unknown HTTP/1 minor version, expected `HTTP/1.1`".to_owned(),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Header lookups
// ---------------------------------------------------------------------------------------------

/// Iterates the comma-separated elements of every value of header `name`, in order, trimmed of
/// spaces and tabs, skipping empty elements.
///
/// Linear in the header bytes and allocation-free. Elements that are not UTF-8 are skipped. A
/// comma inside a quoted string does not split; nothing else is interpreted, so this is for token
/// lists (`Connection`, `Upgrade`, `Sec-WebSocket-Protocol`).
pub fn header_tokens<'a>(
    headers: &'a HeaderMap,
    name: &'a HeaderName,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| list_elements(value.as_bytes()))
}

/// Whether any token of header `name` equals `token`, ASCII case-insensitively.
pub(super) fn has_token(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    header_tokens(headers, name).any(|t| t.eq_ignore_ascii_case(token))
}

/// The single value of header `name`: `Ok(None)` when absent, an error when repeated.
pub(super) fn single<'a>(
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

/// All values of header `name` as strings (non-UTF-8 bytes replaced), in order.
pub(super) fn raw_values(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Refuses a head that announces a body: any `Transfer-Encoding`, a `Content-Length` other
/// than 0, or more than one `Content-Length` (RFC 9112 §6.3). A handshake head is followed by
/// WebSocket frames, never by a body.
pub(super) fn check_no_body(headers: &HeaderMap) -> Result<(), HandshakeError> {
    if headers.contains_key(TRANSFER_ENCODING) {
        return Err(HandshakeError::BodyNotAllowed(
            "`Transfer-Encoding` is not allowed".to_owned(),
        ));
    }
    if let Some(value) = single(headers, &CONTENT_LENGTH, "Content-Length")? {
        let value = trim_ows(value.as_bytes());
        if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
            return Err(HandshakeError::Malformed(format!(
                "invalid `Content-Length: {}`",
                excerpt(value)
            )));
        }
        if value.iter().any(|&b| b != b'0') {
            return Err(HandshakeError::BodyNotAllowed(format!(
                "`Content-Length: {}` announces a body",
                excerpt(value)
            )));
        }
    }
    Ok(())
}

/// How many bytes [`could_start_head`] looks at: room for any real method or version.
const HEAD_START_WINDOW: usize = 64;

/// Whether `buf`, the first bytes of a head, can still begin an HTTP/1 request line or status
/// line: optional empty lines, then a token (the method) or `HTTP/` and a version, ending in a
/// space within the first 64 bytes. Binary bytes (a TLS ClientHello on a plain port) fail at
/// the first byte, so a reader can refuse them at once instead of waiting for a head that never
/// comes. Looks at most at 64 bytes, whatever the length of `buf`.
pub fn could_start_head(buf: &[u8]) -> bool {
    let window = &buf[..buf.len().min(HEAD_START_WINDOW)];
    let start = window
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(window.len());
    let rest = &window[start..];
    let end = rest.iter().position(|&b| b == b' ');
    if end.is_none() && window.len() == HEAD_START_WINDOW {
        return false;
    }
    let token = &rest[..end.unwrap_or(rest.len())];
    if end.is_some() && token.is_empty() {
        return false;
    }
    if token.len() >= 5 && token.starts_with(b"HTTP/") {
        return token[5..].iter().all(|&b| b.is_ascii_digit() || b == b'.');
    }
    token.iter().all(|&b| is_token_char(b))
}

/// Trims HTTP optional whitespace (spaces and tabs) from both ends of a header value.
pub(super) fn trim_ows(bytes: &[u8]) -> &[u8] {
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

// ---------------------------------------------------------------------------------------------
// Writing a head
// ---------------------------------------------------------------------------------------------

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

/// Writes one `Name: value\r\n` line.
pub(super) fn write_header(dst: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
    write_header_name(dst, name);
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value.as_bytes());
    dst.extend_from_slice(b"\r\n");
}

/// Serializes a complete HTTP/1.1 response into `dst`: the status line with the canonical reason
/// phrase, every header of `headers` in order, the empty line, then `body`.
///
/// Header names are written in their conventional capitalization (`Content-Length`,
/// `Sec-WebSocket-Accept`). Nothing is added: `Content-Length` and `Connection` are the caller's
/// to set, so a response to `HEAD` can announce a length and pass an empty `body`.
pub fn write_response(status: StatusCode, headers: &HeaderMap, body: &[u8], dst: &mut Vec<u8>) {
    dst.extend_from_slice(b"HTTP/1.1 ");
    dst.extend_from_slice(status.as_str().as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    dst.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        write_header(dst, name, value);
    }
    dst.extend_from_slice(b"\r\n");
    dst.extend_from_slice(body);
}

/// Serializes an HTTP/1.1 request head into `dst`: `{method} {target} HTTP/1.1`, every header
/// of `headers` in order, and the empty line (a proxy's `CONNECT host:port`, say). Nothing is
/// added: `Host` is the caller's to set.
pub fn write_request(method: &str, target: &str, headers: &HeaderMap, dst: &mut Vec<u8>) {
    dst.extend_from_slice(method.as_bytes());
    dst.push(b' ');
    dst.extend_from_slice(target.as_bytes());
    dst.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        write_header(dst, name, value);
    }
    dst.extend_from_slice(b"\r\n");
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

/// Whether `c` is a `tchar` (RFC 9110 §5.6.2), the characters of a `token`.
pub(super) fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Whether `b` may not appear in a header value (a control character other than tab).
pub(super) fn is_ctl(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Whether `c` may stand in a quoted string, itself or escaped (RFC 9110 §5.6.4, without
/// obs-text).
fn is_quotable(c: u8) -> bool {
    c == b'\t' || (0x20..0x7f).contains(&c)
}

/// Splits a comma-separated list (RFC 9110 §5.6.1) into its elements, trimmed of spaces and tabs,
/// skipping empty ones and those that are not UTF-8.
///
/// A comma inside a quoted string (with `\` escapes) does not split; an unterminated quoted
/// string runs to the end of the value. Linear and allocation-free: each byte is looked at once.
fn list_elements(value: &[u8]) -> impl Iterator<Item = &str> {
    let mut rest = value;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let mut quoted = false;
        let mut escaped = false;
        let end = rest
            .iter()
            .position(|&b| {
                if escaped {
                    escaped = false;
                } else if quoted {
                    escaped = b == b'\\';
                    quoted = b != b'"';
                } else if b == b'"' {
                    quoted = true;
                } else {
                    return b == b',';
                }
                false
            })
            .unwrap_or(rest.len());
        let element = trim_ows(&rest[..end]);
        rest = rest.get(end + 1..).unwrap_or_default();
        if let Some(element) = std::str::from_utf8(element).ok().filter(|e| !e.is_empty()) {
            return Some(element);
        }
    })
}

/// One list element with parameters: `name *( OWS ";" OWS param [ OWS "=" OWS value ] )`, as in
/// `Sec-WebSocket-Extensions` (RFC 6455 §9.1).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Element<'a> {
    /// The leading token.
    pub(crate) name: &'a str,
    /// The parameters in order; a quoted value is returned unescaped.
    pub(crate) params: Vec<(&'a str, Option<Cow<'a, str>>)>,
}

/// Parses every element of a comma-separated list of [`Element`]s, in order. A malformed element
/// yields `Err(reason)` and parsing goes on with the next element.
pub(crate) fn parse_elements(value: &str) -> impl Iterator<Item = Result<Element<'_>, String>> {
    list_elements(value.as_bytes()).map(|element| {
        Cursor {
            src: element,
            pos: 0,
        }
        .element()
    })
}

/// A cursor over one list element.
struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn token(&mut self, what: &str) -> Result<&'a str, String> {
        let start = self.pos;
        while self.peek().is_some_and(is_token_char) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(match self.peek() {
                Some(c) => format!("expected {what}, found `{}`", char::from(c)),
                None => format!("expected {what}, found the end of the element"),
            });
        }
        Ok(self.src.get(start..self.pos).unwrap_or_default())
    }

    /// A quoted-string (the opening quote is current); returns it unescaped.
    fn quoted(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated quoted string".to_owned()),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c) if is_quotable(c) => {
                            out.push(char::from(c));
                            self.pos += 1;
                        }
                        _ => return Err("bad escape in quoted string".to_owned()),
                    }
                }
                Some(c) if is_quotable(c) => {
                    out.push(char::from(c));
                    self.pos += 1;
                }
                Some(_) => return Err("invalid character in quoted string".to_owned()),
            }
        }
    }

    fn element(mut self) -> Result<Element<'a>, String> {
        let name = self.token("an extension name")?;
        let mut params = Vec::new();
        loop {
            self.skip_ows();
            match self.peek() {
                None => return Ok(Element { name, params }),
                Some(b';') => {
                    self.pos += 1;
                    self.skip_ows();
                    let param = self.token("a parameter name")?;
                    self.skip_ows();
                    let value = if self.peek() == Some(b'=') {
                        self.pos += 1;
                        self.skip_ows();
                        if self.peek() == Some(b'"') {
                            let value = self.quoted()?;
                            // RFC 6455 §9.1: the unescaped value must still be a token.
                            if value.is_empty() || !value.bytes().all(is_token_char) {
                                return Err(format!(
                                    "quoted value of `{param}` is not a token: \"{value}\""
                                ));
                            }
                            Some(Cow::Owned(value))
                        } else {
                            Some(Cow::Borrowed(self.token("a parameter value")?))
                        }
                    } else {
                        None
                    };
                    params.push((param, value));
                }
                Some(c) => {
                    return Err(format!(
                        "expected `;` or `,` after `{name}`, found `{}`",
                        char::from(c)
                    ))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::valid_head;
    use super::*;
    use http::header::CONNECTION;

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
    fn list_elements_keeps_quoted_commas() {
        let got: Vec<&str> = list_elements(br#"a; x="1,2", b; y="\",", "c,"#).collect();
        assert_eq!(got, [r#"a; x="1,2""#, r#"b; y="\",""#, r#""c,"#]);
        assert_eq!(list_elements(b"").count(), 0);
        assert_eq!(list_elements(b" , ,\t").count(), 0);
    }

    #[test]
    fn parse_elements_params_and_errors() {
        let got: Vec<_> = parse_elements(r#"a; x=1 ;y = "2\3", b;z, c d, e;"#).collect();
        assert_eq!(
            got[0],
            Ok(Element {
                name: "a",
                params: vec![("x", Some("1".into())), ("y", Some("23".into()))],
            })
        );
        assert_eq!(
            got[1],
            Ok(Element {
                name: "b",
                params: vec![("z", None)],
            })
        );
        assert_eq!(
            got[2],
            Err("expected `;` or `,` after `c`, found `d`".to_owned())
        );
        assert_eq!(
            got[3],
            Err("expected a parameter name, found the end of the element".to_owned())
        );
        assert_eq!(got.len(), 4);
        for bad in [
            r#"a; x="1 0""#,
            r#"a; x="""#,
            r#"a; x="1"#,
            "a; =1",
            "a; x=1=0",
        ] {
            let got: Vec<_> = parse_elements(bad).collect();
            assert!(matches!(got[..], [Err(_)]), "{bad}: {got:?}");
        }
    }

    #[test]
    fn could_start_head_refuses_binary_at_once() {
        for ok in [
            &b""[..],
            b"G",
            b"GET",
            b"GET /",
            b"\r\nGET / HTTP/1.1\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n",
            b"HTTP/",
            b"HTT",
        ] {
            assert!(could_start_head(ok), "{ok:?}");
        }
        let client_hello = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01];
        for bad in [
            &client_hello[..],
            &client_hello[..1],
            b" GET / HTTP/1.1",
            b"GE(T / HTTP/1.1",
            b"HTTP/1.1x 101",
            &[b'A'; 64][..],
        ] {
            assert!(!could_start_head(bad), "{bad:?}");
        }
    }

    #[test]
    fn token_chars_are_rfc_9110_tchar() {
        let tchars: Vec<u8> = (0..=255u8).filter(|&c| is_token_char(c)).collect();
        let mut want: Vec<u8> = b"!#$%&'*+-.^_`|~".to_vec();
        want.extend(b'0'..=b'9');
        want.extend(b'A'..=b'Z');
        want.extend(b'a'..=b'z');
        want.sort_unstable();
        assert_eq!(tchars, want);
    }

    #[test]
    fn write_response_writes_status_headers_and_body() {
        let mut headers = HeaderMap::new();
        headers.insert("content-length", HeaderValue::from(2usize));
        headers.insert("sec-websocket-version", HeaderValue::from_static("13"));
        let mut out = Vec::new();
        write_response(StatusCode::NOT_FOUND, &headers, b"no", &mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nSec-WebSocket-Version: 13\r\n\r\nno"
        );
    }

    #[test]
    fn write_request_writes_the_start_line_and_headers() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.com:443"));
        headers.insert(
            "proxy-authorization",
            HeaderValue::from_static("Basic dTpw"),
        );
        let mut out = Vec::new();
        write_request("CONNECT", "example.com:443", &headers, &mut out);
        assert_eq!(
            out,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
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
