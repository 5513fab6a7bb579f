//! The seed's constants (`ws.CONTINUE` … `ws.PONG`, `ws.CONNECTING` … `ws.CLOSED`), as values of
//! the [`OpCode`] and [`ReadyState`] enums whose discriminants they are.

use crate::proto::{OpCode, ReadyState};

/// `ws.CONTINUE = 0`: a continuation frame.
pub const CONTINUE: OpCode = OpCode::Continue;
/// `ws.TEXT = 1`: a text frame.
pub const TEXT: OpCode = OpCode::Text;
/// `ws.BINARY = 2`: a binary frame.
pub const BINARY: OpCode = OpCode::Binary;
/// `ws.CLOSE = 8`: closes the connection.
pub const CLOSE: OpCode = OpCode::Close;
/// `ws.PING = 9`: a ping frame.
pub const PING: OpCode = OpCode::Ping;
/// `ws.PONG = 10`: a pong frame.
pub const PONG: OpCode = OpCode::Pong;

/// `ws.CONNECTING = 0`: the connection is being made.
pub const CONNECTING: ReadyState = ReadyState::Connecting;
/// `ws.OPEN = 1`: the connection is open.
pub const OPEN: ReadyState = ReadyState::Open;
/// `ws.CLOSING = 2`: a CLOSE was sent; waiting for the close to complete.
pub const CLOSING: ReadyState = ReadyState::Closing;
/// `ws.CLOSED = 3`: the connection is closed.
pub const CLOSED: ReadyState = ReadyState::Closed;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_values() {
        let ops = [CONTINUE, TEXT, BINARY, CLOSE, PING, PONG].map(|o| o as u8);
        assert_eq!(ops, [0, 1, 2, 8, 9, 10]);
        let states = [CONNECTING, OPEN, CLOSING, CLOSED].map(|s| s as u8);
        assert_eq!(states, [0, 1, 2, 3]);
    }
}
