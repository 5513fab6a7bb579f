//! Arbitrary bytes as an upgrade request head: `find_head_end` (whole and incremental),
//! `parse_request` with small and default limits, `check_request`; an accepted request must
//! lead to a 101 response that the client side accepts.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use wsx::proto::handshake::{
    check_request, check_response, encode_response, find_head_end, parse_request, parse_response,
    response_101, HandshakeLimits,
};

#[path = "common.rs"]
mod common;

/// `find_head_end` over growing prefixes (as reads arrive) finds the same end as one full scan.
fn check_find_head_end(data: &[u8], seed: u8) -> Option<usize> {
    let whole = find_head_end(data, 0);
    if let Some(end) = whole {
        assert!(end >= 4 && end <= data.len());
        assert_eq!(&data[end - 4..end], b"\r\n\r\n");
        assert!(
            find_head_end(&data[..end - 1], 0).is_none(),
            "not the first terminator"
        );
    }
    let mut seen = 0;
    let mut found = None;
    for piece in common::chunks(data, &[seed], 1 + usize::from(seed % 32)) {
        let before = seen;
        seen += piece.len();
        if let Some(end) = find_head_end(&data[..seen], before) {
            found = Some(end);
            break;
        }
    }
    assert_eq!(found, whole, "incremental scan disagrees");
    // `from` beyond the length is clamped, never a panic.
    let _ = find_head_end(data, usize::MAX);
    whole
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let head = match check_find_head_end(data, seed) {
        Some(end) => &data[..end],
        None => data,
    };
    let small = HandshakeLimits {
        max_header_bytes: 64 + usize::from(seed),
        max_headers: usize::from(seed % 8),
        max_request_line: usize::from(seed % 64),
    };
    let _ = parse_request(head, &small);
    let Ok(req) = parse_request(head, &HandshakeLimits::default()) else {
        return;
    };
    let Ok(up) = check_request(&req) else {
        return;
    };
    assert_eq!(up.accept.len(), 28);
    // Answer it and check the answer as the client would.
    let key = req
        .headers()
        .get("sec-websocket-key")
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim_matches([' ', '\t'])
                .to_owned()
        })
        .expect("an accepted request has a key");
    let protocol = up.protocols.first().map(String::as_str);
    let resp = response_101(&up.accept, protocol, None);
    let mut wire = Vec::new();
    encode_response(&resp, &mut wire);
    let end = find_head_end(&wire, 0).expect("encoded response has an end");
    assert_eq!(end, wire.len());
    let parsed = parse_response(&wire, &HandshakeLimits::default()).expect("own 101 parses");
    if let Err(err) = check_response(&parsed, &key, &up.protocols) {
        panic!("own 101 rejected: {err}");
    }
});
