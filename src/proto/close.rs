//! Close codes (RFC 6455 §7.4) and the CLOSE frame payload.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ProtocolError;

/// A WebSocket close status code (RFC 6455 §7.4 and the IANA registry).
///
/// Any `u16` can be held; [`CloseCode::is_valid_on_wire`] says whether a peer may send it and
/// [`CloseCode::is_allowed_for_app`] whether an application may pass it to `close()`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: normal closure; the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigated away).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: protocol error.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: a data type the endpoint cannot accept.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reserved; means "no status code was present". Never sent on the wire.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reserved; means "closed without a close handshake". Never sent on the wire.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
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
    /// 1015: reserved; means "TLS handshake failed". Never sent on the wire.
    pub const TLS_HANDSHAKE: CloseCode = CloseCode(1015);

    /// Whether a CLOSE frame may carry this code: 1000-1003, 1007-1014 and 3000-4999.
    /// 1004, 1005, 1006 and 1015 are reserved and never valid on the wire.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// Whether an application may close with this code: 1000 or 3000-4999 (as in browsers).
    pub fn is_allowed_for_app(self) -> bool {
        matches!(self.0, 1000 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
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
                let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
                if !code.is_valid_on_wire() {
                    return Err(ProtocolError::InvalidCloseCode(code.0));
                }
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
    /// The close code to send to the peer for this failure.
    pub fn close_code(&self) -> CloseCode {
        match self {
            ProtocolError::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            ProtocolError::FrameTooBig { .. }
            | ProtocolError::MessageTooBig { .. }
            | ProtocolError::TooManyFragments { .. } => CloseCode::MESSAGE_TOO_BIG,
            ProtocolError::BadCompressedData(_) => CloseCode::INVALID_PAYLOAD,
            ProtocolError::Truncated => CloseCode::ABNORMAL,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_validity_follows_the_registry() {
        for code in 0u16..=5999 {
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode(code).is_valid_on_wire(), expected, "{code}");
        }
        for reserved in [1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(!CloseCode(reserved).is_valid_on_wire());
        }
    }

    #[test]
    fn app_codes_are_1000_or_3000_to_4999() {
        assert!(CloseCode(1000).is_allowed_for_app());
        assert!(CloseCode(3000).is_allowed_for_app());
        assert!(CloseCode(4999).is_allowed_for_app());
        assert!(!CloseCode(1001).is_allowed_for_app());
        assert!(!CloseCode(2999).is_allowed_for_app());
        assert!(!CloseCode(5000).is_allowed_for_app());
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
