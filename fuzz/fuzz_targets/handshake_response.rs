//! Arbitrary bytes as an upgrade response head: `find_head_end`, `parse_response` (small and
//! default limits) and `check_response` against the RFC 6455 sample key.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use wsx::proto::handshake::{check_response, find_head_end, parse_response, HandshakeLimits};

/// The key of the RFC 6455 §1.3 example; its accept value is `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fuzz_target!(|data: &[u8]| {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let head = match find_head_end(data, usize::from(seed)) {
        Some(end) => {
            assert_eq!(&data[end - 4..end], b"\r\n\r\n");
            &data[..end]
        }
        None => data,
    };
    let small = HandshakeLimits {
        max_header_bytes: 64 + usize::from(seed),
        max_headers: usize::from(seed % 8),
        max_request_line: usize::from(seed % 64),
    };
    let _ = parse_response(head, &small);
    let Ok(resp) = parse_response(head, &HandshakeLimits::default()) else {
        return;
    };
    let offered = ["chat".to_owned(), "superchat".to_owned()];
    if let Ok(up) = check_response(&resp, KEY, &offered) {
        assert_eq!(resp.status(), 101);
        if let Some(p) = &up.protocol {
            assert!(
                offered.contains(p),
                "selected a protocol that was not offered: {p}"
            );
        }
    }
    let _ = check_response(&resp, KEY, &[]);
});
