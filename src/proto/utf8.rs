//! Incremental UTF-8 validation for text that arrives in pieces (fragments, or parts of a frame).
//!
//! The bulk goes through `simdutf8`; only a character split between two pieces is handled by hand.
//! Validation fails as soon as the bytes seen make valid text impossible, not at the end of the
//! message (RFC 6455 §8.1 asks to fail fast; Autobahn 6.4.x checks it).

use super::error::ProtocolError;

/// Validates a UTF-8 byte stream fed in pieces.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// The bytes of a character cut at the end of the last piece.
    partial: [u8; 4],
    partial_len: u8,
}

/// How long a sequence starting with `first` is, or 0 if `first` cannot start one.
fn sequence_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

/// Whether `bytes` (shorter than a full character) can still become a valid character.
fn is_valid_prefix(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets any pending partial character (for the start of a new message).
    pub fn reset(&mut self) {
        self.partial_len = 0;
    }

    /// Whether a character is cut at the end of what was fed so far.
    pub fn is_incomplete(&self) -> bool {
        self.partial_len != 0
    }

    /// Feeds the next piece. Fails as soon as the text can no longer be valid.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ProtocolError> {
        if self.partial_len > 0 {
            let have = self.partial_len as usize;
            let need = sequence_len(self.partial[0]);
            let take = (need - have).min(data.len());
            self.partial[have..have + take].copy_from_slice(&data[..take]);
            let now = have + take;
            data = &data[take..];
            if now < need {
                self.partial_len = now as u8;
                return if is_valid_prefix(&self.partial[..now]) {
                    Ok(())
                } else {
                    Err(ProtocolError::InvalidUtf8)
                };
            }
            if std::str::from_utf8(&self.partial[..need]).is_err() {
                return Err(ProtocolError::InvalidUtf8);
            }
            self.partial_len = 0;
        }
        if simdutf8::basic::from_utf8(data).is_ok() {
            return Ok(());
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                // A valid prefix of a character is cut at the end: keep it for the next piece.
                let tail = &data[e.valid_up_to()..];
                self.partial[..tail.len()].copy_from_slice(tail);
                self.partial_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(ProtocolError::InvalidUtf8),
        }
    }

    /// Ends the text: a character still cut is an error.
    pub fn finish(&mut self) -> Result<(), ProtocolError> {
        if self.partial_len != 0 {
            self.partial_len = 0;
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_all_splits(text: &[u8]) -> bool {
        let whole = std::str::from_utf8(text).is_ok();
        for a in 0..=text.len() {
            for b in a..=text.len() {
                let mut v = Utf8Validator::new();
                let ok = v.feed(&text[..a]).is_ok()
                    && v.feed(&text[a..b]).is_ok()
                    && v.feed(&text[b..]).is_ok()
                    && v.finish().is_ok();
                assert_eq!(ok, whole, "{text:?} split at {a},{b}");
            }
        }
        whole
    }

    #[test]
    fn valid_text_split_anywhere() {
        assert!(check_all_splits("κόσμε".as_bytes()));
        assert!(check_all_splits("a€𝄞z".as_bytes()));
        assert!(check_all_splits(b""));
    }

    #[test]
    fn invalid_text_split_anywhere() {
        for bad in [
            &b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"[..],
            b"\xf4\x90\x80\x80",
            b"\xc0\xaf",
            b"abc\xff",
            b"\xe2\x82",
        ] {
            assert!(!check_all_splits(bad));
        }
    }

    #[test]
    fn fails_fast_on_impossible_prefix() {
        // 0xF4 0x90 can never start a valid character (above U+10FFFF): fail before the rest.
        let mut v = Utf8Validator::new();
        v.feed(b"ok\xf4").unwrap();
        assert_eq!(v.feed(b"\x90").unwrap_err(), ProtocolError::InvalidUtf8);
        // A surrogate start ED A0 is rejected right there too.
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"\xed\xa0").is_err());
    }

    #[test]
    fn cut_character_at_end_is_an_error() {
        let mut v = Utf8Validator::new();
        v.feed(b"\xe2\x82").unwrap();
        assert!(v.is_incomplete());
        assert!(v.finish().is_err());
    }
}
