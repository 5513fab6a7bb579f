//! [`ReadyState`]: the seed's `ws.CONNECTING` … `ws.CLOSED`.

use std::fmt;

/// The state of a connection. The discriminants are the seed's constants (`ws.CONNECTING` …
/// `ws.CLOSED`); states are ordered as a connection goes through them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum ReadyState {
    /// 0: the handshake is under way (`ws.CONNECTING`).
    Connecting = 0,
    /// 1: open; messages flow both ways (`ws.OPEN`).
    Open = 1,
    /// 2: a CLOSE was sent or received; waiting for the handshake to end (`ws.CLOSING`).
    Closing = 2,
    /// 3: closed (`ws.CLOSED`).
    Closed = 3,
}

impl ReadyState {
    /// The state for its number (0-3); other numbers give `None`.
    pub fn from_u8(value: u8) -> Option<ReadyState> {
        Some(match value {
            0 => ReadyState::Connecting,
            1 => ReadyState::Open,
            2 => ReadyState::Closing,
            3 => ReadyState::Closed,
            _ => return None,
        })
    }
}

impl fmt::Display for ReadyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadyState::Connecting => "CONNECTING",
            ReadyState::Open => "OPEN",
            ReadyState::Closing => "CLOSING",
            ReadyState::Closed => "CLOSED",
        })
    }
}
