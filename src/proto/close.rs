//! Close codes (RFC 6455 §7.4) and the CLOSE frame payload.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ProtocolError;

/// A close status code that may be sent in a CLOSE frame (RFC 6455 §7.4 and the IANA registry):
/// 1000-1003, 1007-1014 or 3000-4999. No other value can be held, so [`crate::Socket::close`]
/// cannot be given one.
///
/// The statuses that are only ever reported, never sent (1005 no status, 1006 abnormal closure,
/// 1015 TLS failure), are plain `u16`s: see [`NO_STATUS`], [`ABNORMAL`] and [`TLS_FAILED`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

/// 1005: the peer's CLOSE carried no status code (reported, never sent).
pub const NO_STATUS: u16 = 1005;
/// 1006: the connection ended without a close handshake (reported, never sent).
pub const ABNORMAL: u16 = 1006;
/// 1015: the TLS handshake failed (reported, never sent).
pub const TLS_FAILED: u16 = 1015;

impl CloseCode {
    /// 1000: normal closure; the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigated away).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1007: message data not consistent with its type (e.g. invalid UTF-8 in a text message).
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: the message violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: the message is too big to process.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected the server to negotiate an extension it did not.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later (temporary overload).
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: a gateway received an invalid response from upstream.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// The code, if a CLOSE frame may carry it (1000-1003, 1007-1014, 3000-4999); `None` for
    /// the reserved and unassigned ones (1004-1006, 1015, 0-999, 1016-2999, 5000 and up).
    pub const fn new(code: u16) -> Option<CloseCode> {
        if matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
            Some(CloseCode(code))
        } else {
            None
        }
    }

    /// The number.
    pub const fn as_u16(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for CloseCode {
    type Error = ProtocolError;

    /// As [`CloseCode::new`], with [`ProtocolError::InvalidCloseCode`] for a code that may not
    /// be sent.
    fn try_from(code: u16) -> Result<Self, ProtocolError> {
        CloseCode::new(code).ok_or(ProtocolError::InvalidCloseCode(code))
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl PartialEq<u16> for CloseCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl PartialEq<CloseCode> for u16 {
    fn eq(&self, other: &CloseCode) -> bool {
        *self == other.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseCode({})", self.0)
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The payload of a CLOSE frame that carried a status code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// The UTF-8 reason (at most 123 bytes on the wire).
    pub reason: String,
}

/// The largest reason that fits a CLOSE frame next to its 2-byte code (125 - 2).
pub const MAX_REASON_LEN: usize = 123;

impl CloseFrame {
    /// Makes a close frame payload description.
    pub fn new(code: CloseCode, reason: impl Into<String>) -> Self {
        CloseFrame {
            code,
            reason: reason.into(),
        }
    }

    /// Parses a CLOSE frame payload: empty (no status), or a valid code followed by UTF-8.
    ///
    /// A 1-byte payload, a code that is not valid on the wire, or a reason that is not UTF-8 is
    /// an error (close code 1002, 1002 and 1007).
    pub fn parse(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ProtocolError::CloseTooShort),
            _ => {
                let code = CloseCode::try_from(u16::from_be_bytes([payload[0], payload[1]]))?;
                let reason = simdutf8::basic::from_utf8(&payload[2..])
                    .map_err(|_| ProtocolError::InvalidUtf8)?
                    .to_owned();
                Ok(Some(CloseFrame { code, reason }))
            }
        }
    }

    /// Encodes the payload (code + reason). A reason longer than [`MAX_REASON_LEN`] bytes is cut
    /// at the last character boundary that fits.
    pub fn encode(&self) -> Bytes {
        let reason = truncate_utf8(&self.reason, MAX_REASON_LEN);
        let mut buf = BytesMut::with_capacity(2 + reason.len());
        buf.put_u16(self.code.0);
        buf.put_slice(reason.as_bytes());
        buf.freeze()
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl ProtocolError {
    /// The close code to send to the peer for this failure (1002 for input that ended early,
    /// which only a standalone reader can meet).
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            ProtocolError::FrameTooBig { .. }
            | ProtocolError::MessageTooBig { .. }
            | ProtocolError::TooManyFragments { .. } => CloseCode::MESSAGE_TOO_BIG,
            ProtocolError::BadCompressedData(_) => CloseCode::INVALID_PAYLOAD,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_codes_valid_on_the_wire_can_be_held() {
        for code in 0u16..=5999 {
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode::new(code).is_some(), expected, "{code}");
            assert_eq!(CloseCode::try_from(code).is_ok(), expected, "{code}");
        }
        for reserved in [NO_STATUS, ABNORMAL, TLS_FAILED, 1004, 1016, 2999, 5000] {
            assert!(CloseCode::new(reserved).is_none());
        }
        assert_eq!(CloseCode::new(4321).map(u16::from), Some(4321));
    }

    #[test]
    fn parse_close_payloads() {
        assert_eq!(CloseFrame::parse(b"").unwrap(), None);
        assert_eq!(
            CloseFrame::parse(&[0x03]).unwrap_err().close_code(),
            CloseCode::PROTOCOL_ERROR
        );
        let f = CloseFrame::parse(&[0x03, 0xe8, b'o', b'k'])
            .unwrap()
            .unwrap();
        assert_eq!(f, CloseFrame::new(CloseCode::NORMAL, "ok"));
        let err = CloseFrame::parse(&[0x03, 0xed]).unwrap_err(); // 1005
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
        let err = CloseFrame::parse(&[0x03, 0xe8, 0xff]).unwrap_err();
        assert_eq!(err.close_code(), CloseCode::INVALID_PAYLOAD);
    }

    #[test]
    fn encode_truncates_long_reasons_on_char_boundary() {
        let reason = "é".repeat(100); // 200 bytes
        let payload = CloseFrame::new(CloseCode(4000), reason).encode();
        assert!(payload.len() <= 125);
        let back = CloseFrame::parse(&payload).unwrap().unwrap();
        assert_eq!(back.code, CloseCode(4000));
        assert_eq!(back.reason.len(), 122);
    }
}
