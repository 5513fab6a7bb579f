//! Upgrade requests and 101 responses built from a valid head plus fuzzer-chosen header lines
//! (bodies, duplicates, odd spellings) and arbitrary bytes, through the head reader's early
//! check, the parsers and the checks. Whatever comes in: a head the parser takes always passes
//! the early check (`could_start_head` never refuses a real head), an accepted upgrade request
//! announces no body (no `Transfer-Encoding`, at most one `Content-Length`, and it is 0) and has
//! a path as its target, and an accepted 101 is HTTP/1.1 with neither `Content-Length` nor
//! `Transfer-Encoding`.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use wsx::proto::handshake::{
    accept_key, check_request, check_response, could_start_head, find_head_end, parse_request,
    parse_response, HandshakeLimits,
};

/// Header lines the fuzzer picks from (by index), besides raw bytes.
const LINES: &[&str] = &[
    "Content-Length: 0",
    "Content-Length: 8",
    "Content-Length: 00",
    "Content-Length: -1",
    "Content-Length: 18446744073709551616",
    "content-length:0 ",
    "Transfer-Encoding: chunked",
    "Transfer-Encoding: identity",
    "transfer-encoding: gzip, chunked",
    "Host: other",
    "Connection: close",
    "Upgrade: h2c",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
    "Sec-WebSocket-Accept: x",
    "Expect: 100-continue",
];

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn count(headers: &http::HeaderMap, name: http::header::HeaderName) -> usize {
    headers.get_all(name).iter().count()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    // The start line, then header lines picked by the bytes up to the first 0xff, then those
    // bytes as raw text, the empty line and whatever is left (a body or frames).
    let split = rest.iter().position(|&b| b == 0xff).unwrap_or(rest.len());
    let (picks, raw) = rest.split_at(split);
    let response = sel & 1 != 0;
    let mut head = Vec::new();
    if response {
        let version = ["HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1"][usize::from(sel >> 1) & 3];
        head.extend_from_slice(version.as_bytes());
        head.extend_from_slice(b" 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
        head.extend_from_slice(accept_key(KEY.as_bytes()).as_bytes());
        head.extend_from_slice(b"\r\n");
    } else {
        let target = ["/chat", "*", "http://h/x", "h:80", "/"][usize::from(sel >> 1) % 5];
        head.extend_from_slice(b"GET ");
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ");
        head.extend_from_slice(KEY.as_bytes());
        head.extend_from_slice(b"\r\nSec-WebSocket-Version: 13\r\n");
    }
    for &p in picks.iter().take(16) {
        head.extend_from_slice(LINES[usize::from(p) % LINES.len()].as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let tail = raw.get(1..).unwrap_or_default();
    if sel & 0x80 != 0 {
        // Raw bytes as one more header line (may break the head).
        head.extend_from_slice(tail);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(tail);

    let limits = HandshakeLimits::default();
    let Some(end) = find_head_end(&head, 0) else {
        return;
    };
    let head = &head[..end];
    if response {
        let Ok(resp) = parse_response(head, &limits) else {
            return;
        };
        assert!(could_start_head(head), "the early check refused a response the parser took");
        if check_response(&resp, KEY, &[]).is_ok() {
            assert_eq!(resp.version(), http::Version::HTTP_11);
            assert_eq!(count(resp.headers(), http::header::CONTENT_LENGTH), 0);
            assert_eq!(count(resp.headers(), http::header::TRANSFER_ENCODING), 0);
        }
    } else {
        let Ok(req) = parse_request(head, &limits) else {
            return;
        };
        assert!(could_start_head(head), "the early check refused a request the parser took");
        if check_request(&req).is_ok() {
            assert!(req.uri().path().starts_with('/'), "{}", req.uri());
            let headers = req.headers();
            assert_eq!(count(headers, http::header::TRANSFER_ENCODING), 0);
            let lengths: Vec<_> = headers.get_all(http::header::CONTENT_LENGTH).iter().collect();
            assert!(lengths.len() <= 1);
            if let Some(v) = lengths.first() {
                let v = v.to_str().expect("accepted length is text").trim();
                assert!(v.bytes().all(|b| b == b'0') && !v.is_empty(), "{v}");
            }
        }
    }
});
