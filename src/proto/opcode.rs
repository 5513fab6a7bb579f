//! [`OpCode`]: the seed's `ws.CONTINUE` … `ws.PONG`, the opcodes of RFC 6455 §5.2.

use std::fmt;

/// A frame opcode. The discriminants are the seed's constants (`ws.CONTINUE` … `ws.PONG`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum OpCode {
    /// 0: a continuation of a fragmented message (`ws.CONTINUE`).
    Continue = 0,
    /// 1: a text frame (`ws.TEXT`).
    Text = 1,
    /// 2: a binary frame (`ws.BINARY`).
    Binary = 2,
    /// 8: the connection is closing (`ws.CLOSE`).
    Close = 8,
    /// 9: a ping (`ws.PING`).
    Ping = 9,
    /// 10: a pong (`ws.PONG`).
    Pong = 10,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` for the reserved values 3-7 and 11-15.
    pub fn from_u8(value: u8) -> Option<OpCode> {
        Some(match value {
            0 => OpCode::Continue,
            1 => OpCode::Text,
            2 => OpCode::Binary,
            8 => OpCode::Close,
            9 => OpCode::Ping,
            10 => OpCode::Pong,
            _ => return None,
        })
    }

    /// Whether this is a control opcode (CLOSE, PING, PONG).
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }

    /// Whether this opcode starts a data message (TEXT or BINARY).
    pub fn is_data(self) -> bool {
        matches!(self, OpCode::Text | OpCode::Binary)
    }
}

impl fmt::Display for OpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            OpCode::Continue => "CONTINUE",
            OpCode::Text => "TEXT",
            OpCode::Binary => "BINARY",
            OpCode::Close => "CLOSE",
            OpCode::Ping => "PING",
            OpCode::Pong => "PONG",
        };
        f.write_str(name)
    }
}
