//! The frame header (RFC 6455 §5.2): incremental decode and encode.

use super::error::ProtocolError;
pub(crate) use super::opcode::OpCode;

impl TryFrom<u8> for OpCode {
    type Error = ProtocolError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        OpCode::from_u8(value).ok_or(ProtocolError::ReservedOpcode(value))
    }
}

/// The longest frame header: 2 bytes + 8 bytes of length + 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;
/// The largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// RSV1: set on the first frame of a permessage-deflate compressed message.
pub const RSV1: u8 = 0b100;
/// RSV2 (no extension of ours uses it).
pub const RSV2: u8 = 0b010;
/// RSV3 (no extension of ours uses it).
pub const RSV3: u8 = 0b001;

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this is the last frame of its message.
    pub fin: bool,
    /// The reserved bits as `RSV1 | RSV2 | RSV3` (bit 2 = RSV1).
    pub rsv: u8,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, when the mask bit is set.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// A header for an unfragmented frame without reserved bits.
    pub fn new(opcode: OpCode, payload_len: u64, mask: Option<[u8; 4]>) -> Self {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask,
            payload_len,
        }
    }

    /// Whether RSV1 (the permessage-deflate "compressed" bit) is set.
    pub fn rsv1(&self) -> bool {
        self.rsv & RSV1 != 0
    }

    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds too few bytes yet (call again with more), or the header
    /// and how many bytes it took. Errors that the first bytes already prove (a reserved opcode, a
    /// 64-bit length with its top bit set, a non-minimal length) are reported as soon as those
    /// bytes are there. Never panics, never reads past `buf`.
    pub fn decode(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let Some(&b0) = buf.first() else {
            return Ok(None);
        };
        let opcode = OpCode::try_from(b0 & 0x0f)?;
        let Some(&b1) = buf.get(1) else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        let rsv = (b0 >> 4) & 0x07;
        let masked = b1 & 0x80 != 0;
        let (payload_len, mut pos) = match b1 & 0x7f {
            126 => {
                let Some(b) = buf.get(2..4) else {
                    return Ok(None);
                };
                let len = u16::from_be_bytes([b[0], b[1]]) as u64;
                if len < 126 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 4)
            }
            127 => {
                let Some(b) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut raw = [0u8; 8];
                raw.copy_from_slice(b);
                let len = u64::from_be_bytes(raw);
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthTopBit);
                }
                if len <= u16::MAX as u64 {
                    return Err(ProtocolError::NonMinimalLength);
                }
                (len, 10)
            }
            n => (n as u64, 2),
        };
        let mask = if masked {
            let Some(b) = buf.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            Some([b[0], b[1], b[2], b[3]])
        } else {
            None
        };
        Ok(Some((
            FrameHeader {
                fin,
                rsv,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// How many more bytes the header at the front of `buf` needs before
    /// [`FrameHeader::decode`] can return it (0 once it is complete). Looks at the first two
    /// bytes only, so it is exact as soon as they are there.
    pub fn needed(buf: &[u8]) -> usize {
        let Some(&b1) = buf.get(1) else {
            return 2 - buf.len();
        };
        let ext: usize = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        (2 + ext + mask).saturating_sub(buf.len())
    }

    /// The number of bytes [`FrameHeader::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Encodes the header into `dst` and returns how many bytes it wrote (at most
    /// [`MAX_HEADER_LEN`]). The length is written in its minimal form.
    pub fn encode(&self, dst: &mut [u8; MAX_HEADER_LEN]) -> usize {
        dst[0] = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode as u8;
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let mut pos = match self.payload_len {
            n @ 0..=125 => {
                dst[1] = mask_bit | n as u8;
                2
            }
            n @ 126..=0xffff => {
                dst[1] = mask_bit | 126;
                dst[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                4
            }
            n => {
                dst[1] = mask_bit | 127;
                dst[2..10].copy_from_slice(&n.to_be_bytes());
                10
            }
        };
        if let Some(key) = self.mask {
            dst[pos..pos + 4].copy_from_slice(&key);
            pos += 4;
        }
        pos
    }

    /// Appends the encoded header to `dst`.
    pub fn encode_to(&self, dst: &mut bytes::BytesMut) {
        let mut raw = [0u8; MAX_HEADER_LEN];
        let n = self.encode(&mut raw);
        dst.extend_from_slice(&raw[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(buf: &[u8]) -> (FrameHeader, usize) {
        FrameHeader::decode(buf).unwrap().unwrap()
    }

    #[test]
    fn opcodes_have_the_seed_numbers() {
        assert_eq!(OpCode::Continue as u8, 0);
        assert_eq!(OpCode::Text as u8, 1);
        assert_eq!(OpCode::Binary as u8, 2);
        assert_eq!(OpCode::Close as u8, 8);
        assert_eq!(OpCode::Ping as u8, 9);
        assert_eq!(OpCode::Pong as u8, 10);
        for v in 0u8..16 {
            let reserved = matches!(v, 3..=7 | 11..=15);
            assert_eq!(OpCode::from_u8(v).is_none(), reserved, "{v}");
        }
        assert!(OpCode::Ping.is_control() && !OpCode::Binary.is_control());
    }

    #[test]
    fn rfc_examples() {
        // A single-frame unmasked text message "Hello".
        let (h, n) = decode_all(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(
            (h.fin, h.opcode, h.mask, h.payload_len, n),
            (true, OpCode::Text, None, 5, 2)
        );
        // A single-frame masked text message "Hello".
        let (h, n) = decode_all(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(h.mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!((h.payload_len, n), (5, 6));
        // Fragmented: "Hel" then "lo".
        let (h, _) = decode_all(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert_eq!((h.fin, h.opcode), (false, OpCode::Text));
        let (h, _) = decode_all(&[0x80, 0x02, 0x6c, 0x6f]);
        assert_eq!((h.fin, h.opcode), (true, OpCode::Continue));
        // Unmasked ping "Hello".
        let (h, _) = decode_all(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!((h.opcode, h.payload_len), (OpCode::Ping, 5));
        // 256 bytes binary, unmasked: 0x82 0x7E 0x0100.
        let (h, n) = decode_all(&[0x82, 0x7e, 0x01, 0x00]);
        assert_eq!((h.opcode, h.payload_len, n), (OpCode::Binary, 256, 4));
        // 64 KiB binary, unmasked: 0x82 0x7F 0x0000000000010000.
        let (h, n) = decode_all(&[0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, n), (65536, 10));
    }

    #[test]
    fn needed_counts_the_missing_header_bytes() {
        let mut wire = bytes::BytesMut::new();
        FrameHeader::new(OpCode::Binary, 70_000, Some([1, 2, 3, 4])).encode_to(&mut wire);
        assert_eq!(wire.len(), 14);
        for cut in 0..wire.len() {
            let need = FrameHeader::needed(&wire[..cut]);
            assert!(need > 0, "cut {cut}");
            assert!(FrameHeader::decode(&wire[..cut]).unwrap().is_none());
            if cut >= 2 {
                assert_eq!(need, 14 - cut);
            }
        }
        assert_eq!(FrameHeader::needed(&wire), 0);
    }

    #[test]
    fn partial_input_needs_more() {
        let full = [0x82, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for cut in 0..full.len() {
            assert_eq!(FrameHeader::decode(&full[..cut]).unwrap(), None, "{cut}");
        }
        let (h, n) = decode_all(&full);
        assert_eq!((h.payload_len, h.mask, n), (65536, Some([1, 2, 3, 4]), 14));
    }

    #[test]
    fn bad_headers() {
        assert_eq!(
            FrameHeader::decode(&[0x83]).unwrap_err(),
            ProtocolError::ReservedOpcode(3)
        );
        assert_eq!(
            FrameHeader::decode(&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            ProtocolError::LengthTopBit
        );
        assert_eq!(
            FrameHeader::decode(&[0x82, 0x7e, 0, 125]).unwrap_err(),
            ProtocolError::NonMinimalLength
        );
        assert_eq!(
            FrameHeader::decode(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff]).unwrap_err(),
            ProtocolError::NonMinimalLength
        );
    }

    #[test]
    fn encode_decode_round_trip() {
        for len in [0u64, 1, 125, 126, 127, 65535, 65536, 1 << 40] {
            for mask in [None, Some([9, 8, 7, 6])] {
                for rsv in [0, RSV1, RSV1 | RSV2 | RSV3] {
                    let h = FrameHeader {
                        fin: len % 2 == 0,
                        rsv,
                        opcode: OpCode::Binary,
                        mask,
                        payload_len: len,
                    };
                    let mut raw = [0u8; MAX_HEADER_LEN];
                    let n = h.encode(&mut raw);
                    assert_eq!(n, h.encoded_len());
                    assert_eq!(decode_all(&raw[..n]), (h, n));
                }
            }
        }
    }
}
