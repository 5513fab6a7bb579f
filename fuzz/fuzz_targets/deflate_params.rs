//! Arbitrary strings as `Sec-WebSocket-Extensions` values for the server's negotiation and the
//! client's check of the answer. Whatever the server agrees to, its answer must be accepted by a
//! client that made the default offer.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use wsx::proto::deflate::DeflateConfig;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Up to a few header values, split at `\n`.
    let values: Vec<&str> = text.split('\n').take(8).collect();
    let config = DeflateConfig::default();
    if let Some((params, answer)) = config.server_negotiate(values.iter().copied()) {
        assert!((8..=15).contains(&params.server_max_window_bits));
        assert!((8..=15).contains(&params.client_max_window_bits));
        // When the client's own offer comes first, the server answers it: the client must take
        // that answer.
        let offer = config.client_offer();
        if values.first().is_some_and(|v| v.trim() == offer.trim()) {
            match config.client_accept([answer.as_str()]) {
                Ok(Some(_)) => {}
                other => panic!("client rejects the server's answer {answer:?}: {other:?}"),
            }
        }
    }
    // The values as a server's answer to the default offer.
    let _ = config.client_accept(values.iter().copied());
    let _ = config.client_offer();
    let strict = DeflateConfig {
        server_no_context_takeover: true,
        client_no_context_takeover: true,
        server_max_window_bits: Some(9),
        client_max_window_bits: Some(10),
        ..DeflateConfig::default()
    };
    let _ = strict.server_negotiate(values.iter().copied());
    let _ = strict.client_accept(values.iter().copied());
});
