//! Arbitrary bytes split at two arbitrary points into `Utf8Validator`: accepted exactly when
//! the whole is valid UTF-8, and a failure is never reported for a piece that still forms a
//! valid prefix.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use wsx::proto::Utf8Validator;

/// Whether `bytes` can be extended into valid UTF-8.
fn is_valid_prefix(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let text = &data[2..];
    let a = usize::from(data[0]) % (text.len() + 1);
    let b = a + usize::from(data[1]) % (text.len() - a + 1);
    let expected = std::str::from_utf8(text).is_ok();

    let mut v = Utf8Validator::new();
    let mut ok = true;
    // Feed the three pieces, checking fail-fast: an error only once the prefix is invalid.
    let mut fed = 0;
    for piece in [&text[..a], &text[a..b], &text[b..]] {
        fed += piece.len();
        if v.feed(piece).is_err() {
            assert!(
                !is_valid_prefix(&text[..fed]),
                "rejected a valid prefix of {text:?}"
            );
            ok = false;
            break;
        }
        // Fail fast: an invalid prefix is reported by the piece that made it invalid.
        assert!(
            is_valid_prefix(&text[..fed]),
            "accepted the invalid prefix {:?}",
            &text[..fed]
        );
        assert_eq!(
            v.is_incomplete(),
            std::str::from_utf8(&text[..fed]).is_err()
        );
    }
    if ok {
        ok = v.finish().is_ok();
    }
    assert_eq!(
        ok, expected,
        "validator disagrees with std on {text:?} split at {a},{b}"
    );
});
