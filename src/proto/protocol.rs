//! [`Protocol`]: the state machine of one open WebSocket connection, without I/O.
//!
//! When to call what:
//! - bytes read from the transport: append them to a read buffer and call
//!   [`Protocol::receive`] until it returns `Ok(None)`; it answers PINGs and the peer's CLOSE by
//!   itself (the answers land in [`Protocol::output`]);
//! - the transport reached EOF: [`Protocol::receive_eof`];
//! - the application sends: [`Protocol::send`], [`Protocol::ping`], [`Protocol::close`];
//! - after each of these, write out [`Protocol::output`]; once it is empty and
//!   [`Protocol::should_close_transport`] says so, close the transport and call
//!   [`Protocol::transport_closed`].
//!
//! The masking keys of a client are drawn from the thread-local CSPRNG of `rand`; nothing else
//! here depends on the outside world, and there is no clock: timeouts belong to the caller.

use std::collections::VecDeque;
use std::fmt;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use super::close::{CloseCode, CloseFrame};
use super::codec::{Compression, Decoder, Encoder, Incoming, Limits, MaskPolicy};
use super::deflate::{DeflateConfig, DeflateParams, Deflater, Inflater};
use super::error::ProtocolError;
use super::frame::{FrameHeader, OpCode};
use super::Role;

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

/// Payloads at least this large are queued as their own `Bytes` instead of being copied into the
/// output buffer (when they need neither masking nor compression).
pub const ZERO_COPY_MIN: usize = 4096;

/// Bytes waiting to be written: a buffer for small frames plus large payloads kept as they came.
#[derive(Debug, Default)]
pub struct Output {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl Output {
    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many bytes are waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The buffer that small frames are encoded into; call [`Output::commit_tail`] after writing
    /// to it.
    fn tail_mut(&mut self) -> &mut BytesMut {
        &mut self.tail
    }

    fn commit_tail(&mut self, before: usize) {
        self.len += self.tail.len() - before;
    }

    fn push_chunk(&mut self, chunk: Bytes) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Fills `dst` with slices of the waiting bytes, in order; returns how many it filled.
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let parts = self
            .chunks
            .iter()
            .map(|c| &c[..])
            .chain(std::iter::once(&self.tail[..]));
        let mut n = 0;
        for part in parts.filter(|p| !p.is_empty()) {
            if n == dst.len() {
                break;
            }
            dst[n] = IoSlice::new(part);
            n += 1;
        }
        n
    }

    /// The first contiguous run of waiting bytes.
    pub fn first_chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&self.tail[..], |c| &c[..])
    }

    /// Drops the first `n` waiting bytes (after they were written).
    pub fn advance(&mut self, mut n: usize) {
        self.len -= n.min(self.len);
        while n > 0 {
            match self.chunks.front_mut() {
                Some(front) => {
                    let k = n.min(front.len());
                    front.advance(k);
                    n -= k;
                    if front.is_empty() {
                        self.chunks.pop_front();
                    }
                }
                None => {
                    let k = n.min(self.tail.len());
                    self.tail.advance(k);
                    n = 0;
                }
            }
        }
        if self.len == 0 && self.tail.is_empty() && self.tail.capacity() > 64 * 1024 {
            // Give back a buffer grown by a burst.
            self.tail = BytesMut::new();
        }
    }
}

/// How a connection ended, as reported to the application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseInfo {
    /// The code: the peer's (or 1005 when its CLOSE had none), the one we failed with, or 1006
    /// when the transport ended without a close handshake.
    pub code: CloseCode,
    /// The reason that came with it.
    pub reason: String,
    /// Whether the close handshake was completed.
    pub clean: bool,
}

/// The state machine of one open connection.
#[derive(Debug)]
pub struct Protocol {
    role: Role,
    state: ReadyState,
    decoder: Decoder,
    encoder: Encoder,
    output: Output,
    close_sent: bool,
    close_received: bool,
    failed: bool,
    /// The input broke a rule ([`Protocol::receive_deferred`]): nothing more is decoded.
    input_failed: bool,
    /// The peer's CLOSE arrived and awaits our answer (with the code to echo).
    close_reply: Option<Option<CloseCode>>,
    close_info: Option<CloseInfo>,
    /// The payload of the latest PING not answered yet, held back while the output is over
    /// [`PONG_HOLD_BACK`].
    held_pong: Option<Bytes>,
}

/// Unwritten output (bytes) beyond which PINGs are not answered at once: only the latest one
/// is remembered and answered once the output drains (RFC 6455 §5.5.3 allows answering only
/// the most recent PING), so a peer that sends PINGs and never reads cannot grow our output.
pub const PONG_HOLD_BACK: usize = 64 * 1024;

impl Protocol {
    /// A protocol in the OPEN state (the handshake is done elsewhere), without compression.
    pub fn new(role: Role, limits: Limits) -> Self {
        let policy = match role {
            Role::Server => MaskPolicy::Require,
            Role::Client => MaskPolicy::Forbid,
        };
        Protocol {
            role,
            state: ReadyState::Open,
            decoder: Decoder::new(policy, limits),
            encoder: Encoder::new(),
            output: Output::default(),
            close_sent: false,
            close_received: false,
            failed: false,
            input_failed: false,
            close_reply: None,
            close_info: None,
            held_pong: None,
        }
    }

    /// Turns on permessage-deflate with the negotiated parameters.
    pub fn enable_deflate(&mut self, params: DeflateParams, config: &DeflateConfig) {
        self.decoder
            .set_inflater(Some(Inflater::new(params, self.role)));
        self.encoder.set_deflater(
            Some(Deflater::new(
                params,
                self.role,
                config.compression_level,
                config.mem_level,
            )),
            config.threshold,
        );
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current state.
    pub fn state(&self) -> ReadyState {
        self.state
    }

    /// Whether permessage-deflate is on.
    pub fn compresses(&self) -> bool {
        self.encoder.compresses()
    }

    /// The decoder's limits.
    pub fn limits(&self) -> &Limits {
        self.decoder.limits()
    }

    /// Bytes held by compression state and partial messages.
    pub fn memory_usage(&self) -> usize {
        self.decoder.memory_usage() + self.encoder.memory_usage()
    }

    /// How the connection ended, once it has (or once the close handshake started).
    pub fn close_info(&self) -> Option<&CloseInfo> {
        self.close_info.as_ref()
    }

    /// The bytes to write to the transport.
    pub fn output(&mut self) -> &mut Output {
        &mut self.output
    }

    /// Answers the PING held back while the output was full ([`PONG_HOLD_BACK`]), once the
    /// output is below that again. Call it after writing.
    pub fn release_held_pong(&mut self) {
        if self.output.len() < PONG_HOLD_BACK {
            if let Some(payload) = self.held_pong.take() {
                if !self.close_sent {
                    self.write_control(OpCode::Pong, &payload);
                }
            }
        }
    }

    /// Hint for how many bytes the read buffer should have room for.
    pub fn bytes_wanted(&self, buffered: usize) -> usize {
        self.decoder.bytes_wanted(buffered)
    }

    /// Processes bytes from the transport. Returns the next message or control frame, or
    /// `Ok(None)` when more bytes are needed.
    ///
    /// PINGs are answered and the peer's CLOSE is echoed here. After an error the CLOSE frame
    /// with the error's code is already queued and the transport should be closed once the output
    /// is written ([`Protocol::should_close_transport`]).
    pub fn receive(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, ProtocolError> {
        match self.receive_deferred(buf) {
            Err(err) => {
                self.fail_with(&err);
                Err(err)
            }
            Ok(Some(Incoming::Close(frame))) => {
                self.reply_close();
                Ok(Some(Incoming::Close(frame)))
            }
            ok => ok,
        }
    }

    /// Like [`Protocol::receive`], but neither a protocol error nor the peer's CLOSE ends the
    /// connection yet: the input is dropped from then on (nothing more is decoded), while the
    /// connection stays OPEN so that replies to the messages received before can still be sent.
    /// The caller then fails the connection with [`Protocol::fail_with`], or answers the CLOSE
    /// with [`Protocol::reply_close`] (say, once the application has taken those messages), so
    /// that the peer sees the replies before our CLOSE.
    pub fn receive_deferred(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<Incoming>, ProtocolError> {
        if self.close_received
            || self.failed
            || self.input_failed
            || self.state == ReadyState::Closed
        {
            // Nothing may follow the peer's CLOSE; nothing is read after a failure.
            buf.clear();
            return Ok(None);
        }
        match self.decoder.decode(buf) {
            Ok(Some(Incoming::Ping(payload))) => {
                if self.output.len() >= PONG_HOLD_BACK {
                    self.held_pong = Some(payload.clone());
                } else {
                    self.held_pong = None;
                    if !self.close_sent {
                        self.write_control(OpCode::Pong, &payload);
                    }
                }
                Ok(Some(Incoming::Ping(payload)))
            }
            Ok(Some(Incoming::Close(frame))) => {
                self.close_received = true;
                let info = match &frame {
                    Some(f) => CloseInfo {
                        code: f.code,
                        reason: f.reason.clone(),
                        clean: true,
                    },
                    None => CloseInfo {
                        code: CloseCode::NO_STATUS,
                        reason: String::new(),
                        clean: true,
                    },
                };
                if !self.close_sent {
                    // Our answer waits for `reply_close` (the caller may first send replies to
                    // the messages that arrived before this CLOSE).
                    self.close_reply = Some(frame.as_ref().map(|f| f.code));
                    self.close_info = Some(info);
                } else {
                    // We started the handshake: report the peer's answer.
                    self.close_info = Some(info);
                    self.state = ReadyState::Closing;
                }
                buf.clear();
                Ok(Some(Incoming::Close(frame)))
            }
            Ok(other) => Ok(other),
            Err(err) => {
                self.input_failed = true;
                buf.clear();
                Err(err)
            }
        }
    }

    /// Answers the peer's CLOSE, if one arrived and is not answered yet: echoes its code (RFC
    /// 6455 §5.5.1; an empty CLOSE gets an empty CLOSE). [`Protocol::receive`] does this at
    /// once; after [`Protocol::receive_deferred`] the caller does, once it has sent what it
    /// wanted to send first.
    pub fn reply_close(&mut self) {
        let Some(code) = self.close_reply.take() else {
            return;
        };
        if !self.close_sent {
            let payload = code
                .map(|c| CloseFrame::new(c, "").encode())
                .unwrap_or_default();
            self.write_control(OpCode::Close, &payload);
            self.close_sent = true;
        }
        if self.state != ReadyState::Closed {
            self.state = ReadyState::Closing;
        }
    }

    /// Whether the peer's CLOSE arrived and still waits for [`Protocol::reply_close`].
    pub fn close_reply_pending(&self) -> bool {
        self.close_reply.is_some()
    }

    /// Fails the connection for `err` (see [`Protocol::fail`]).
    pub fn fail_with(&mut self, err: &ProtocolError) {
        self.fail(err.close_code(), &err.to_string());
    }

    /// Fails the connection: queues a CLOSE with `code` (unless one was sent) and marks the
    /// transport for closing without waiting for the peer.
    pub fn fail(&mut self, code: CloseCode, reason: &str) {
        if !self.close_sent {
            let wire = if code.is_valid_on_wire() {
                code
            } else {
                CloseCode::PROTOCOL_ERROR
            };
            let payload = CloseFrame::new(wire, reason).encode();
            self.write_control(OpCode::Close, &payload);
            self.close_sent = true;
        }
        self.failed = true;
        self.close_info = Some(CloseInfo {
            code,
            reason: reason.to_owned(),
            clean: false,
        });
        if self.state != ReadyState::Closed {
            self.state = ReadyState::Closing;
        }
    }

    /// The transport reached EOF.
    pub fn receive_eof(&mut self) -> Result<(), ProtocolError> {
        let cut = !self.close_received && !self.failed;
        if cut && self.close_info.as_ref().is_none_or(|i| i.clean) {
            self.close_info = Some(CloseInfo {
                code: CloseCode::ABNORMAL,
                reason: "connection closed without a close handshake".to_owned(),
                clean: false,
            });
        }
        self.state = ReadyState::Closed;
        if cut {
            self.decoder.decode_eof()?;
            return Err(ProtocolError::Truncated);
        }
        Ok(())
    }

    /// Whether we should close the transport once the output is written: after a failure, and on
    /// the server side once CLOSE went both ways (RFC 6455 §7.1.1: the server closes TCP first).
    /// A client waits for the server to close, with a timeout of the caller's.
    pub fn should_close_transport(&self) -> bool {
        self.failed || (self.close_sent && self.close_received && self.role == Role::Server)
    }

    /// Whether the close handshake is done (CLOSE sent and received, or the connection failed).
    pub fn close_handshake_done(&self) -> bool {
        self.failed || (self.close_sent && self.close_received)
    }

    /// Whether our CLOSE has been queued.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Marks the transport closed: the state becomes CLOSED.
    pub fn transport_closed(&mut self) {
        if self.close_info.is_none() {
            self.close_info = Some(CloseInfo {
                code: CloseCode::ABNORMAL,
                reason: "connection closed".to_owned(),
                clean: false,
            });
        }
        self.state = ReadyState::Closed;
    }

    /// Queues a data message (TEXT or BINARY) or a PING/PONG as one frame.
    ///
    /// Errors with [`ProtocolError::NotOpen`] unless OPEN. A large payload that needs no masking
    /// and no compression is queued as it is, without a copy.
    pub fn send(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        compression: Compression,
    ) -> Result<(), ProtocolError> {
        if self.state != ReadyState::Open || self.close_sent {
            return Err(ProtocolError::NotOpen(self.state));
        }
        if opcode == OpCode::Close || opcode == OpCode::Continue {
            return Err(ProtocolError::NotOpen(self.state));
        }
        if opcode.is_control() && payload.len() > super::frame::MAX_CONTROL_PAYLOAD {
            return Err(ProtocolError::ControlTooLong(payload.len() as u64));
        }
        let mask = self.next_mask();
        if mask.is_none()
            && payload.len() >= ZERO_COPY_MIN
            && !self
                .encoder
                .would_compress(opcode, payload.len(), compression)
        {
            let tail = self.output.tail_mut();
            let before = tail.len();
            FrameHeader::new(opcode, payload.len() as u64, None).encode_to(tail);
            self.output.commit_tail(before);
            self.output.push_chunk(payload);
            return Ok(());
        }
        let tail = self.output.tail_mut();
        let before = tail.len();
        let result = self
            .encoder
            .encode(opcode, &payload, compression, mask, tail);
        self.output.commit_tail(before);
        result
    }

    /// Queues a frame that is already encoded (unmasked: server side only), without copying.
    /// The caller guarantees `frame` holds exactly one valid, unmasked, uncompressed data or
    /// PING/PONG frame.
    pub fn send_encoded(&mut self, frame: Bytes) -> Result<(), ProtocolError> {
        if self.state != ReadyState::Open || self.close_sent {
            return Err(ProtocolError::NotOpen(self.state));
        }
        if self.role == Role::Client {
            return Err(ProtocolError::Masking(
                "a client must mask every frame it sends",
            ));
        }
        self.output.push_chunk(frame);
        Ok(())
    }

    /// Queues a PING.
    pub fn ping(&mut self, payload: Bytes) -> Result<(), ProtocolError> {
        self.send(OpCode::Ping, payload, Compression::Never)
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123 bytes). Does nothing if a
    /// CLOSE was already sent. If the peer's CLOSE already arrived, it was answered then.
    pub fn close(&mut self, code: CloseCode, reason: &str) {
        if self.close_sent || self.state == ReadyState::Closed {
            return;
        }
        let payload = CloseFrame::new(code, reason).encode();
        self.write_control(OpCode::Close, &payload);
        self.close_sent = true;
        self.close_info = Some(CloseInfo {
            code,
            reason: reason.to_owned(),
            clean: true,
        });
        self.state = ReadyState::Closing;
    }

    fn next_mask(&self) -> Option<[u8; 4]> {
        match self.role {
            Role::Client => Some(rand::random::<[u8; 4]>()),
            Role::Server => None,
        }
    }

    fn write_control(&mut self, opcode: OpCode, payload: &[u8]) {
        let mask = self.next_mask();
        let tail = self.output.tail_mut();
        let before = tail.len();
        super::codec::write_frame(
            FrameHeader::new(opcode, payload.len() as u64, mask),
            payload,
            tail,
        );
        self.output.commit_tail(before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moves everything one side wrote into the other's read buffer.
    fn pump(from: &mut Protocol, to: &mut Protocol) -> Vec<Incoming> {
        let mut buf = BytesMut::new();
        while !from.output().is_empty() {
            let chunk = from.output().first_chunk().to_vec();
            buf.extend_from_slice(&chunk);
            from.output().advance(chunk.len());
        }
        let mut got = Vec::new();
        while let Ok(Some(item)) = to.receive(&mut buf) {
            got.push(item);
        }
        got
    }

    fn pair() -> (Protocol, Protocol) {
        (
            Protocol::new(Role::Client, Limits::default()),
            Protocol::new(Role::Server, Limits::default()),
        )
    }

    #[test]
    fn messages_both_ways() {
        let (mut c, mut s) = pair();
        c.send(OpCode::Text, Bytes::from_static(b"hi"), Compression::Auto)
            .unwrap();
        let big = Bytes::from(vec![5u8; 100_000]);
        c.send(OpCode::Binary, big.clone(), Compression::Auto)
            .unwrap();
        let got = pump(&mut c, &mut s);
        assert_eq!(got.len(), 2);
        assert!(
            matches!(&got[1], Incoming::Message { payload, masked: true, .. } if *payload == big)
        );
        s.send(OpCode::Binary, big.clone(), Compression::Auto)
            .unwrap();
        let got = pump(&mut s, &mut c);
        assert!(
            matches!(&got[0], Incoming::Message { payload, masked: false, .. } if *payload == big)
        );
    }

    #[test]
    fn ping_is_answered_with_same_payload() {
        let (mut c, mut s) = pair();
        c.ping(Bytes::from_static(b"abc")).unwrap();
        assert_eq!(
            pump(&mut c, &mut s),
            vec![Incoming::Ping(Bytes::from_static(b"abc"))]
        );
        assert_eq!(
            pump(&mut s, &mut c),
            vec![Incoming::Pong(Bytes::from_static(b"abc"))]
        );
    }

    #[test]
    fn pings_are_held_back_while_the_output_is_full_and_only_the_latest_answered() {
        let (mut c, mut s) = pair();
        // The server has more than PONG_HOLD_BACK bytes it could not write yet.
        let big = Bytes::from(vec![1u8; PONG_HOLD_BACK + 10]);
        s.send(OpCode::Binary, big, Compression::Never).unwrap();
        let queued = s.output().len();
        for payload in [&b"one"[..], b"two", b"three"] {
            c.ping(Bytes::copy_from_slice(payload)).unwrap();
        }
        assert_eq!(pump(&mut c, &mut s).len(), 3);
        assert_eq!(
            s.output().len(),
            queued,
            "no PONG is queued behind a full output"
        );
        s.release_held_pong();
        assert_eq!(s.output().len(), queued, "still full: still held");
        // The peer reads what was queued; then the latest PING alone is answered.
        let got = pump(&mut s, &mut c);
        assert_eq!(got.len(), 1);
        s.release_held_pong();
        assert_eq!(
            pump(&mut s, &mut c),
            vec![Incoming::Pong(Bytes::from_static(b"three"))]
        );
        s.release_held_pong();
        assert!(s.output().is_empty(), "answered once");
    }

    #[test]
    fn close_handshake_client_initiated() {
        let (mut c, mut s) = pair();
        c.close(CloseCode(4001), "bye");
        assert_eq!(c.state(), ReadyState::Closing);
        assert!(c
            .send(OpCode::Text, Bytes::new(), Compression::Auto)
            .is_err());
        let got = pump(&mut c, &mut s);
        assert_eq!(
            got,
            vec![Incoming::Close(Some(CloseFrame::new(
                CloseCode(4001),
                "bye"
            )))]
        );
        assert!(s.should_close_transport());
        let got = pump(&mut s, &mut c);
        assert_eq!(
            got,
            vec![Incoming::Close(Some(CloseFrame::new(CloseCode(4001), "")))]
        );
        assert!(c.close_handshake_done() && !c.should_close_transport());
        assert_eq!(c.close_info().unwrap().code, CloseCode(4001));
        c.transport_closed();
        assert_eq!(c.state(), ReadyState::Closed);
    }

    #[test]
    fn empty_close_is_echoed_empty_and_reported_1005() {
        let (mut c, mut s) = pair();
        c.write_control(OpCode::Close, b"");
        c.close_sent = true;
        pump(&mut c, &mut s);
        assert_eq!(s.close_info().unwrap().code, CloseCode::NO_STATUS);
        assert_eq!(pump(&mut s, &mut c), vec![Incoming::Close(None)]);
    }

    #[test]
    fn protocol_error_queues_close_and_fails() {
        let (_, mut s) = pair();
        let mut buf = BytesMut::from(&[0x81u8, 0x01, b'x'][..]); // unmasked client frame
        assert!(s.receive(&mut buf).is_err());
        assert!(s.should_close_transport());
        let out = s.output().first_chunk().to_vec();
        assert_eq!((out[0], &out[2..4]), (0x88, &[0x03, 0xea][..]));
        assert_eq!(s.close_info().unwrap().code, CloseCode::PROTOCOL_ERROR);
    }

    #[test]
    fn deferred_error_lets_replies_go_out_before_the_close() {
        // Autobahn 3.2, 4.1.3, 5.15: a valid message, then a bad frame, in one read. The echo
        // of the valid message must reach the peer before our CLOSE.
        let (_, mut s) = pair();
        let mut wire = BytesMut::new();
        write_frame_for_test(&mut wire, 0x81, b"hi");
        write_frame_for_test(&mut wire, 0xa1, b"rsv2");
        let first = s.receive_deferred(&mut wire).unwrap().unwrap();
        assert!(matches!(first, Incoming::Message { .. }));
        let err = s.receive_deferred(&mut wire).unwrap_err();
        assert!(s.output().is_empty() && !s.should_close_transport());
        // Nothing more is decoded, and the connection still takes the reply.
        write_frame_for_test(&mut wire, 0x89, b"");
        assert_eq!(s.receive_deferred(&mut wire).unwrap(), None);
        s.send(OpCode::Text, Bytes::from_static(b"hi"), Compression::Auto)
            .unwrap();
        s.fail_with(&err);
        assert!(s.should_close_transport());
        let mut out = BytesMut::new();
        while !s.output().is_empty() {
            let chunk = s.output().first_chunk().to_vec();
            out.extend_from_slice(&chunk);
            s.output().advance(chunk.len());
        }
        assert_eq!(&out[..4], b"\x81\x02hi");
        assert_eq!((out[4], &out[6..8]), (0x88, &[0x03, 0xea][..]));
    }

    fn write_frame_for_test(buf: &mut BytesMut, b0: u8, payload: &[u8]) {
        let key = [1, 2, 3, 4];
        buf.extend_from_slice(&[b0, 0x80 | payload.len() as u8]);
        buf.extend_from_slice(&key);
        buf.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }

    #[test]
    fn eof_without_close_is_1006() {
        let (mut c, _) = pair();
        assert!(c.receive_eof().is_err());
        assert_eq!(c.close_info().unwrap().code, CloseCode::ABNORMAL);
        assert_eq!(c.state(), ReadyState::Closed);
    }

    #[test]
    fn large_server_payload_is_not_copied() {
        let (_, mut s) = pair();
        let big = Bytes::from(vec![1u8; 10_000]);
        s.send(OpCode::Binary, big.clone(), Compression::Never)
            .unwrap();
        let mut slices = [IoSlice::new(&[]); 4];
        let n = s.output().io_slices(&mut slices);
        assert_eq!(n, 2);
        assert_eq!(slices[1].as_ptr(), big.as_ptr());
        assert_eq!(s.output().len(), 4 + 10_000);
    }
}
