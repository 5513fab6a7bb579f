//! [`Protocol`]: the one state machine of a WebSocket connection, from before the opening
//! handshake completes to the closed transport. It decides everything: what each frame means,
//! when the connection fails and with which code, the close handshake, keepalive, the close,
//! write-stall and deferred-failure timers, and how the connection ended.
//!
//! It is deterministic: no sockets, no tasks, no clock. Time comes in as [`Instant`] arguments,
//! and [`Protocol::poll_timeout`] says when to call [`Protocol::handle_timeout`]. The tokio layer
//! (`src/socket/driver.rs`) only moves bytes and sleeps. When to call what:
//!
//! | when | call |
//! |---|---|
//! | the handshake succeeded / failed | [`Protocol::open`] / [`Protocol::fail_handshake`] |
//! | bytes were read (appended to the read buffer) | [`Protocol::receive_data`] |
//! | the transport reached EOF | [`Protocol::receive_eof`] |
//! | reading or writing failed | [`Protocol::transport_error`] |
//! | the application drops the connection at once | [`Protocol::drop_transport`] |
//! | the application sends or closes | [`Protocol::send`], [`Protocol::send_encoded`], [`Protocol::ping`], [`Protocol::close`] |
//! | the application wants what happened | [`Protocol::poll_event`] until `None` |
//! | output is waiting | [`Protocol::take_output`], write it, then [`Protocol::on_write`] |
//! | [`Protocol::wants_shutdown`] | shut the transport's write side, then [`Protocol::write_shutdown`] |
//! | [`Protocol::poll_timeout`] has passed | [`Protocol::handle_timeout`] |
//! | [`Protocol::state`] is [`ReadyState::Closed`] | drop the transport |
//!
//! Messages received wait in a bounded queue until the application takes them
//! ([`Protocol::wants_read`] turns false when it is full, so a slow consumer slows the peer
//! down). A protocol error or the peer's CLOSE is acted on only once the application has taken
//! the messages that came before it, so that its replies to them go out before our CLOSE.
//!
//! When this end fails the connection, or a server has completed the close handshake, it shuts
//! its write side after the CLOSE and keeps reading (and discarding) until the peer's EOF or the
//! close timeout (RFC 6455 §7.1.1): closing a TCP socket with unread input makes the kernel
//! answer with a reset, and the peer would lose our CLOSE.
//!
//! The masking keys of a client are drawn from the thread-local CSPRNG of `rand`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::close::{CloseCode, CloseFrame, ABNORMAL, NO_STATUS};
use super::codec::{Compression, Decoder, Encoder, Incoming, Limits, MaskPolicy, Output, Received};
use super::deadlines::{Deadline, Deadlines};
#[cfg(feature = "deflate")]
use super::deflate::{DeflateConfig, DeflateParams, Deflater, Inflater};
use super::error::{ProtocolError, SendError};
use super::frame::{OpCode, MAX_CONTROL_PAYLOAD};
use super::state::ReadyState;
use super::Role;

/// How far away a deadline is put when `now + duration` cannot be represented: far enough to
/// never come (about 30 years, as tokio's far future).
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// `now + d`, saturating: a duration too large to add (`Duration::MAX`) gives a deadline that
/// never comes instead of a panic.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

/// Unwritten output (bytes) beyond which PINGs are not answered at once: only the latest one
/// is remembered and answered once the output drains (RFC 6455 §5.5.3 allows answering only
/// the most recent PING), so a peer that sends PINGs and never reads cannot grow our output.
pub const PONG_HOLD_BACK: usize = 64 * 1024;

/// The settings of the state machine: limits, timeouts and the receive queue's bounds. (In
/// declaration order, `repr(C)`: the fields read while messages queue up first.)
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Config {
    /// How many received messages may wait for the application before reading stops (at least
    /// one: 0 acts as 1).
    pub recv_queue_limit: usize,
    /// How many bytes of received messages may wait before reading stops (one message is
    /// always let through, whatever its size).
    pub recv_buffer_limit: usize,
    /// Fail the connection (1008) when a data message is not complete this long after its first
    /// frame header arrived: a peer that trickles a large message cannot hold it open
    /// indefinitely. `None` (the default): no limit. Paused while the receive queue is full
    /// (then we are the ones not reading).
    pub message_timeout: Option<Duration>,
    /// Frame, message and fragment limits of the decoder.
    pub limits: Limits,
    /// How long to wait for the peer's CLOSE after ours, and for its EOF after the handshake.
    pub close_timeout: Duration,
    /// Send a PING after this long without hearing from the peer; `None`: no keepalive.
    pub ping_interval: Option<Duration>,
    /// How long a keepalive PING may go unanswered before the connection is dropped.
    pub ping_timeout: Duration,
    /// Drop the connection when the transport accepts no byte for this long while output waits.
    pub write_timeout: Option<Duration>,
    /// Whether a client, once the close handshake is complete, waits (up to `close_timeout`)
    /// for the server to end TCP, as RFC 6455 §7.1.1 advises. `false`: it is CLOSED as soon as
    /// its own CLOSE is written (§7.1.1 allows it), for clients that must not linger.
    pub client_awaits_server_eof: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            close_timeout: Duration::from_secs(10),
            ping_interval: None,
            ping_timeout: Duration::from_secs(20),
            write_timeout: Some(Duration::from_secs(60)),
            message_timeout: None,
            recv_queue_limit: 256,
            recv_buffer_limit: 4 << 20,
            client_awaits_server_eof: true,
        }
    }
}

/// The `error` event: why the connection failed, with the close code the failure maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorEvent {
    /// 1002 for a failed handshake, 1006 for a lost connection or a timeout, or the code of
    /// the peer's protocol violation.
    pub code: u16,
    /// A description a person can act on.
    pub reason: String,
}

/// The `close` event: how the connection ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseEvent {
    /// The peer's code (1005 if its CLOSE had none), ours after a failure, or 1006 when the
    /// connection ended without a close handshake.
    pub code: u16,
    /// The reason that came with it.
    pub reason: String,
    /// Whether the close handshake completed.
    pub clean: bool,
}

/// What [`Protocol::poll_event`] hands to the application, in this order: messages, then (once
/// the connection is closed) the error if it failed, then how it closed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A whole TEXT or BINARY message.
    Message(Received),
    /// The connection failed (at most once, right before [`Event::Closed`]).
    Error(ErrorEvent),
    /// The connection is closed (once, last).
    Closed(CloseEvent),
}

/// How the input ended, while the application still has messages to take.
#[derive(Debug)]
enum End {
    /// A protocol error: fail the connection.
    Failure(ProtocolError),
    /// The peer's CLOSE (its payload): answer it.
    CloseReply(Option<CloseFrame>),
}

/// See [`Protocol::deflate_idle_tick`].
#[derive(Debug)]
struct DeflateIdle {
    period: Duration,
    /// Compressor plus decompressor uses at the last look.
    seen: u64,
}

#[derive(Debug, Clone, Copy)]
struct Keepalive {
    interval: Duration,
    /// When bytes last arrived.
    heard: Instant,
    /// When the unanswered keepalive PING went out.
    ping_sent: Option<Instant>,
}

/// The state machine of one connection (see the module docs for when to call what).
///
/// In declaration order (`repr(C)`): what every message touches first, packed into as few
/// cache lines as possible (a server serves many connections in turn, and each line of a
/// connection's state that a message touches is a likely cache miss), the decoder last of them
/// (its own hot fields first), then the rest.
#[derive(Debug)]
#[repr(C)]
pub struct Protocol {
    queue: VecDeque<Received>,
    queue_bytes: usize,
    end: Option<Box<End>>,
    keepalive: Option<Box<Keepalive>>,
    /// Gives idle compression state back (permessage-deflate with `idle_release`).
    deflate_idle: Option<Box<DeflateIdle>>,
    output: Output,
    /// The earliest of `deadlines` (see [`Protocol::set_deadline`]).
    next_deadline: Option<Instant>,
    /// When the data message being received started (`None` between messages).
    message_started: Option<Instant>,
    encoder: Encoder,
    state: ReadyState,
    role: Role,
    /// The handshake succeeded at some point ([`Protocol::open`]).
    opened: bool,
    /// The application's last [`Protocol::poll_event`] found nothing: it waits for more.
    awaiting: bool,
    /// Nobody will take messages any more: they are dropped as they come.
    abandoned: bool,
    close_sent: bool,
    close_received: bool,
    failed: bool,
    eof: bool,
    write_shut: bool,
    error_reported: bool,
    close_reported: bool,
    decoder: Decoder,
    config: Config,
    /// Every timer. The message timer ([`Config::message_timeout`]) is armed when a message is
    /// first seen in progress and left alone until it fires, so that a stream of messages does
    /// not re-arm it for each; keepalive's is armed only while OPEN and no CLOSE was sent.
    deadlines: Deadlines,
    /// Bytes taken with [`Protocol::take_output`] that the transport has not accepted yet.
    backlog: usize,
    /// The latest time passed in (see [`Protocol::last_time`]).
    last_time: Option<Instant>,
    // Boxed: set once, near the end; an idle connection should stay small.
    error: Option<Box<ErrorEvent>>,
    outcome: Option<Box<CloseEvent>>,
    /// The payload of the latest PING not answered yet, held back while the output is over
    /// [`PONG_HOLD_BACK`] (boxed: rare, and an idle connection should stay small).
    held_pong: Option<Box<Bytes>>,
}

impl Protocol {
    /// A connection in the CONNECTING state, without compression: call [`Protocol::open`] once
    /// the handshake succeeded.
    pub fn new(role: Role, config: Config) -> Self {
        let policy = match role {
            Role::Server => MaskPolicy::Require,
            Role::Client => MaskPolicy::Forbid,
        };
        Protocol {
            role,
            decoder: Decoder::new(policy, config.limits),
            config,
            state: ReadyState::Connecting,
            opened: false,
            encoder: Encoder::new(),
            output: Output::default(),
            backlog: 0,
            queue: VecDeque::new(),
            queue_bytes: 0,
            end: None,
            // Before taking any message the application is answering none.
            awaiting: true,
            abandoned: false,
            close_sent: false,
            close_received: false,
            failed: false,
            eof: false,
            write_shut: false,
            error: None,
            outcome: None,
            error_reported: false,
            close_reported: false,
            held_pong: None,
            deadlines: Deadlines::default(),
            next_deadline: None,
            message_started: None,
            keepalive: None,
            last_time: None,
            deflate_idle: None,
        }
    }

    /// An OPEN connection (the handshake was done elsewhere) with `limits` and the other
    /// settings at their defaults.
    pub fn new_open(role: Role, limits: Limits, now: Instant) -> Self {
        let mut p = Protocol::new(
            role,
            Config {
                limits,
                ..Config::default()
            },
        );
        p.open(now);
        p
    }

    /// Turns on permessage-deflate with the negotiated parameters.
    #[cfg(feature = "deflate")]
    #[cfg_attr(docsrs, doc(cfg(feature = "deflate")))]
    pub fn enable_deflate(&mut self, params: DeflateParams, config: &DeflateConfig) {
        self.decoder
            .set_inflater(Some(Inflater::new(params, self.role)));
        let mut deflater = Deflater::new(
            params,
            self.role,
            config.compression_level,
            config.mem_level,
        )
        .limit_window(config.compressor_window_bits);
        self.deflate_idle = config.idle_release.map(|period| {
            deflater.keep_history();
            Box::new(DeflateIdle { period, seen: 0 })
        });
        self.encoder.set_deflater(Some(deflater), config.threshold);
    }

    /// Frees the compression state once no compressed message went either way for the
    /// configured period: called with every `now`, it re-arms the check whenever the
    /// compressor or decompressor was used since the last call.
    fn deflate_idle_tick(&mut self, now: Instant) {
        let Some(idle) = self.deflate_idle.as_deref_mut() else {
            return;
        };
        let uses = self
            .encoder
            .deflater_uses()
            .wrapping_add(self.decoder.inflater_uses());
        if uses != idle.seen {
            idle.seen = uses;
            let check = now.checked_add(idle.period);
            self.set_deadline(Deadline::DeflateIdle, check);
        } else if self.deadlines.is_due(Deadline::DeflateIdle, now) {
            self.set_deadline(Deadline::DeflateIdle, None);
            let freed = self.encoder.release_deflater() | self.decoder.release_inflater();
            tracing::trace!(freed, "compression idle: state released");
        }
    }

    /// The handshake succeeded: CONNECTING becomes OPEN and keepalive starts.
    pub fn open(&mut self, now: Instant) {
        self.last_time = self.last_time.max(Some(now));
        if self.state != ReadyState::Connecting {
            return;
        }
        self.state = ReadyState::Open;
        self.opened = true;
        if let Some(interval) = self.config.ping_interval {
            self.keepalive = Some(Box::new(Keepalive {
                interval,
                heard: now,
                ping_sent: None,
            }));
            self.set_deadline(Deadline::Keepalive, Some(later(now, interval)));
        }
    }

    /// The connection attempt or the handshake failed: the error (1002) and the close (1006)
    /// follow, and the state is CLOSED.
    pub fn fail_handshake(&mut self, reason: &str) {
        if self.state == ReadyState::Closed {
            return;
        }
        self.set_error(CloseCode::PROTOCOL_ERROR.as_u16(), reason);
        self.outcome = Some(Box::new(CloseEvent {
            code: ABNORMAL,
            reason: reason.to_owned(),
            clean: false,
        }));
        self.state = ReadyState::Closed;
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> ReadyState {
        self.state
    }

    /// Whether the connection ever opened (the `open` event is due).
    pub fn was_opened(&self) -> bool {
        self.opened
    }

    /// Whether permessage-deflate is on.
    pub fn compresses(&self) -> bool {
        self.encoder.compresses()
    }

    /// Bytes held by compression state, a partly received message and queued messages.
    pub fn memory_usage(&self) -> usize {
        self.decoder.memory_usage() + self.encoder.memory_usage() + self.queue_bytes
    }

    /// Whether our CLOSE has been queued.
    pub fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// Whether messages may be queued now (OPEN, and no CLOSE sent).
    pub fn can_send(&self) -> bool {
        self.state == ReadyState::Open && !self.close_sent
    }

    /// The error, once the connection failed.
    pub fn error(&self) -> Option<&ErrorEvent> {
        self.error.as_deref()
    }

    /// How the connection ended, once it is CLOSED.
    pub fn close_event(&self) -> Option<&CloseEvent> {
        match self.state {
            ReadyState::Closed => self.outcome.as_deref(),
            _ => None,
        }
    }

    /// Bytes queued and not taken with [`Protocol::take_output`] yet.
    pub fn output_len(&self) -> usize {
        self.output.len()
    }

    /// Bytes queued for sending that the transport has not accepted yet (the browser's
    /// `bufferedAmount`): the output plus what was taken and is still being written.
    pub fn buffered(&self) -> usize {
        self.output.len() + self.backlog
    }

    /// Received messages waiting for the application.
    pub fn queued_messages(&self) -> usize {
        self.queue.len()
    }

    /// Whether the receive queue is at its count or byte limit.
    pub fn queue_full(&self) -> bool {
        // (An empty queue always takes one message, whatever the limits: then the
        // configuration, on another cache line, is not read for the usual message.)
        !self.queue.is_empty()
            && (self.queue.len() >= self.config.recv_queue_limit
                || self.queue_bytes >= self.config.recv_buffer_limit)
    }

    /// Whether nothing more is decoded: after a protocol error (acted on or waiting), the
    /// peer's CLOSE, or EOF.
    fn input_done(&self) -> bool {
        self.failed || self.close_received || self.eof || self.end.is_some()
    }

    /// Whether the transport should be read now: not once it reached EOF or closed, and not
    /// while the receive queue is full (call [`Protocol::receive_data`] again with what is
    /// left in the buffer once [`Protocol::poll_event`] made room).
    pub fn wants_read(&self) -> bool {
        // Once nothing more is decoded, reading only drops bytes until the peer's EOF.
        !self.eof && self.state != ReadyState::Closed && (self.input_done() || !self.queue_full())
    }

    /// How many more bytes the read buffer `buf` needs before decoding can make progress (a
    /// hint for sizing reads; at least 1).
    pub fn bytes_wanted(&self, buf: &[u8]) -> usize {
        self.decoder.bytes_wanted(buf)
    }

    /// Decodes what `buf` holds (bytes read from the transport, appended to what was left):
    /// messages go to the receive queue, PINGs are answered, the peer's CLOSE is answered and
    /// protocol errors fail the connection (each once the messages before it were taken). Stops
    /// when the queue is full, leaving the rest in `buf`. Returns how many messages it queued.
    pub fn receive_data(&mut self, buf: &mut BytesMut, now: Instant) -> usize {
        self.last_time = self.last_time.max(Some(now));
        self.receive_data_with(buf, || now)
    }

    /// [`Protocol::receive_data`] with the time read from `clock` only if it is needed: for
    /// keepalive, a message left in progress under [`Config::message_timeout`], an error or the
    /// peer's CLOSE, or compression's idle timer (and [`Protocol::last_time`] moves only then).
    /// A clock read costs about as much as decoding a small message, and most messages need
    /// none.
    pub fn receive_data_with(
        &mut self,
        buf: &mut BytesMut,
        clock: impl FnMut() -> Instant,
    ) -> usize {
        self.receive_clocked(buf, clock, None)
    }

    /// [`Protocol::receive_data_with`] for a caller that takes one message at a time: when the
    /// receive queue is empty, the first message decoded is returned instead of queued and
    /// decoding stops there (what follows it stays in `buf` for the next call).
    pub fn receive_next(
        &mut self,
        buf: &mut BytesMut,
        clock: impl FnMut() -> Instant,
    ) -> Option<Received> {
        let mut next = None;
        self.receive_clocked(buf, clock, Some(&mut next));
        next
    }

    fn receive_clocked(
        &mut self,
        buf: &mut BytesMut,
        mut clock: impl FnMut() -> Instant,
        direct: Option<&mut Option<Received>>,
    ) -> usize {
        let mut read = None;
        let mut now = || *read.get_or_insert_with(&mut clock);
        let queued = self.receive_timed(buf, &mut now, direct);
        if let Some(t) = read {
            self.last_time = self.last_time.max(Some(t));
        }
        queued
    }

    /// The one receive path: decodes `buf` into the queue (or, with `direct` and an empty
    /// queue, the first message into `direct`); returns how many messages came out.
    fn receive_timed(
        &mut self,
        buf: &mut BytesMut,
        now: &mut impl FnMut() -> Instant,
        mut direct: Option<&mut Option<Received>>,
    ) -> usize {
        if let Some(k) = self.keepalive.as_mut() {
            k.heard = now();
        }
        if self.input_done() || self.state == ReadyState::Closed {
            // Nothing may follow the peer's CLOSE; after a failure the rest is read and dropped.
            buf.clear();
            return 0;
        }
        let mut queued = 0;
        let mut completed = false;
        // (An empty buffer cannot complete anything: every frame starts with a header.)
        while !buf.is_empty() && !self.queue_full() {
            let item = match self.decoder.decode(buf) {
                Ok(Some(item)) => item,
                Ok(None) => break,
                Err(err) => {
                    buf.clear();
                    self.end_input(End::Failure(err), now());
                    break;
                }
            };
            match item {
                Incoming::Message(msg) => {
                    completed = true;
                    if self.abandoned {
                        continue;
                    }
                    if let Some(slot) = direct.take() {
                        if self.queue.is_empty() {
                            // Handed out at once: the caller takes it now (as `next_message`).
                            *slot = Some(msg);
                            self.awaiting = false;
                            queued += 1;
                            break;
                        }
                    }
                    self.queue_bytes += msg.payload.len();
                    if self.queue.capacity() == 0 {
                        // Room for one: most connections never hold more than one message at
                        // a time, and the queue keeps its room for the connection's life (a
                        // first push would take room for four).
                        self.queue.reserve_exact(1);
                    }
                    self.queue.push_back(msg);
                    queued += 1;
                }
                Incoming::Ping { payload, .. } => {
                    if self.buffered() >= PONG_HOLD_BACK {
                        self.held_pong = Some(Box::new(payload));
                    } else {
                        self.held_pong = None;
                        if !self.close_sent {
                            self.write_control(OpCode::Pong, &payload);
                        }
                    }
                }
                // Any byte from the peer counts as an answer to keepalive (`heard` above).
                Incoming::Pong { .. } => {}
                Incoming::Close { frame, .. } => {
                    self.close_received = true;
                    buf.clear();
                    if !self.failed {
                        self.outcome = Some(Box::new(CloseEvent {
                            code: frame.as_ref().map_or(NO_STATUS, |f| f.code.as_u16()),
                            reason: frame.as_ref().map(|f| f.reason.clone()).unwrap_or_default(),
                            clean: true,
                        }));
                    }
                    if self.close_sent {
                        // The answer to ours.
                        self.state = ReadyState::Closing;
                        self.close_if_drained();
                    } else {
                        self.end_input(End::CloseReply(frame), now());
                    }
                    break;
                }
            }
        }
        self.track_message(completed, now);
        if self.deflate_idle.is_some() {
            self.deflate_idle_tick(now());
        }
        queued
    }

    /// Notes when the data message in progress started (`completed`: a message ended in this
    /// call, so what is in progress now is a new one), and arms the message timer if it is not.
    fn track_message(&mut self, completed: bool, now: &mut impl FnMut() -> Instant) {
        // (Between messages first: that is where a decode usually ends, and it needs no look
        // at the configuration.)
        if self.decoder.is_idle() || self.input_done() {
            self.message_started = None;
            return;
        }
        let Some(limit) = self.config.message_timeout else {
            return;
        };
        if completed || self.message_started.is_none() {
            let now = now();
            self.message_started = Some(now);
            if self.deadlines.get(Deadline::Message).is_none() {
                self.set_deadline(Deadline::Message, Some(later(now, limit)));
            }
        }
    }

    /// The input ended (an error or the peer's CLOSE): act now if the application has taken
    /// everything before it (for an error: and is waiting for more), else once it has, or once
    /// the close timeout passed.
    fn end_input(&mut self, end: End, now: Instant) {
        let at_once = self.queue.is_empty()
            && (self.awaiting || self.abandoned || matches!(end, End::CloseReply(_)));
        if at_once {
            self.apply_end(end, now);
        } else {
            self.end = Some(Box::new(end));
            let due = later(now, self.config.close_timeout);
            self.set_deadline(Deadline::End, Some(due));
        }
    }

    fn apply_end(&mut self, end: End, now: Instant) {
        self.set_deadline(Deadline::End, None);
        match end {
            End::Failure(err) => {
                tracing::debug!(error = %err, "failing the connection");
                self.fail(err.close_code(), &err.to_string(), now);
            }
            End::CloseReply(frame) => {
                if !self.close_sent {
                    // Echo the peer's code and reason (RFC 6455 §5.5.1); an empty CLOSE gets an
                    // empty CLOSE.
                    let payload = frame.map(|f| f.encode()).unwrap_or_default();
                    self.write_control(OpCode::Close, &payload);
                    self.mark_close_sent(now);
                }
                if self.state != ReadyState::Closed {
                    self.state = ReadyState::Closing;
                }
            }
        }
    }

    fn mark_close_sent(&mut self, now: Instant) {
        self.close_sent = true;
        self.held_pong = None;
        let due = later(now, self.config.close_timeout);
        self.set_deadline(Deadline::Close, Some(due));
        // No keepalive once closing.
        self.set_deadline(Deadline::Keepalive, None);
    }

    fn set_error(&mut self, code: u16, reason: &str) {
        if self.error.is_none() {
            self.error = Some(Box::new(ErrorEvent {
                code,
                reason: reason.to_owned(),
            }));
        }
    }

    /// Fails the connection: queues a CLOSE with `code` unless one was sent, records the error,
    /// and from then on reads only to drop what comes until the peer's EOF.
    pub fn fail(&mut self, code: CloseCode, reason: &str, now: Instant) {
        self.last_time = self.last_time.max(Some(now));
        if self.state == ReadyState::Closed {
            return;
        }
        if !self.close_sent {
            let payload = CloseFrame::new(code, reason).encode();
            self.write_control(OpCode::Close, &payload);
            self.mark_close_sent(now);
        }
        self.failed = true;
        self.set_error(code.as_u16(), reason);
        self.outcome = Some(Box::new(CloseEvent {
            code: code.as_u16(),
            reason: reason.to_owned(),
            clean: false,
        }));
        self.state = ReadyState::Closing;
    }

    /// Ends the connection at once, without a close handshake (a timeout, a lost transport):
    /// error and close both carry 1006.
    fn abort(&mut self, reason: &str) {
        if self.state == ReadyState::Closed {
            return;
        }
        self.set_error(ABNORMAL, reason);
        match self.outcome.as_mut() {
            // The peer's CLOSE came, ours did not go out: its code stands, not clean.
            Some(o) if self.close_received && !self.failed => o.clean = false,
            _ => {
                self.outcome = Some(Box::new(CloseEvent {
                    code: ABNORMAL,
                    reason: reason.to_owned(),
                    clean: false,
                }))
            }
        }
        self.state = ReadyState::Closed;
    }

    /// The next thing for the application: a received message, then, once the connection is
    /// closed, the error (if it failed) and the close. `None`: nothing now.
    ///
    /// A protocol error or the peer's CLOSE that waits for the application is acted on here,
    /// once it has taken every message that came before. That is the only use of `now` (it
    /// starts the close timer); when [`Protocol::event_needs_time`] is false a caller that
    /// would rather not read the clock may pass [`Protocol::last_time`].
    pub fn poll_event(&mut self, now: Instant) -> Option<Event> {
        self.last_time = self.last_time.max(Some(now));
        if let Some(msg) = self.next_message() {
            return Some(Event::Message(msg));
        }
        if let Some(end) = self.end.take() {
            self.apply_end(*end, now);
        }
        self.awaiting = true;
        if self.state != ReadyState::Closed {
            return None;
        }
        if !self.error_reported {
            self.error_reported = true;
            if let Some(e) = &self.error {
                return Some(Event::Error(ErrorEvent::clone(e)));
            }
        }
        if !self.close_reported {
            self.close_reported = true;
            return self.outcome.as_deref().cloned().map(Event::Closed);
        }
        None
    }

    /// The next received message, if one waits: what [`Protocol::poll_event`] gives first,
    /// for a caller that only wants messages now (it needs no time).
    pub fn next_message(&mut self) -> Option<Received> {
        let msg = self.queue.pop_front()?;
        self.queue_bytes -= msg.payload.len().min(self.queue_bytes);
        self.awaiting = false;
        Some(msg)
    }

    /// Whether the next [`Protocol::poll_event`] uses its `now`: the queue is empty and a
    /// protocol error or the peer's CLOSE waits to be acted on.
    pub fn event_needs_time(&self) -> bool {
        self.end.is_some() && self.queue.is_empty()
    }

    /// The latest time any call passed in (`None` before the first).
    pub fn last_time(&self) -> Option<Instant> {
        self.last_time
    }

    /// Nobody will take messages from now on (the application dropped every handle): queued
    /// and later messages are dropped, a waiting failure or CLOSE answer is acted on, and an
    /// open connection is closed with 1001 (going away).
    pub fn abandon(&mut self, now: Instant) {
        self.last_time = self.last_time.max(Some(now));
        self.abandoned = true;
        self.queue.clear();
        self.queue_bytes = 0;
        if let Some(end) = self.end.take() {
            self.apply_end(*end, now);
        }
        if self.state == ReadyState::Open {
            self.close(CloseCode::GOING_AWAY, "", now);
        }
    }

    /// The transport reached EOF.
    pub fn receive_eof(&mut self, now: Instant) {
        self.last_time = self.last_time.max(Some(now));
        if self.eof || self.state == ReadyState::Closed {
            return;
        }
        self.eof = true;
        if let Some(end) = self.end.take() {
            self.apply_end(*end, now);
        }
        if !self.close_received && !self.failed {
            self.set_error(
                ABNORMAL,
                "the connection was lost without a close handshake",
            );
            self.outcome = Some(Box::new(CloseEvent {
                code: ABNORMAL,
                reason: "connection closed without a close handshake".to_owned(),
                clean: false,
            }));
        }
        self.close_if_drained();
    }

    /// Reading or writing the transport failed: the connection is CLOSED (1006 unless the
    /// close handshake was complete).
    pub fn transport_error(&mut self, reason: &str) {
        self.drop_transport(&format!("connection lost: {reason}"));
    }

    /// The application drops the transport at once, without a close handshake (`reason` says
    /// why): the connection is CLOSED, with the error and close events of a lost connection
    /// (1006), unless the close handshake was already complete. Output not written is dropped.
    pub fn drop_transport(&mut self, reason: &str) {
        if self.handshake_complete() {
            self.state = ReadyState::Closed;
        } else {
            self.abort(reason);
        }
    }

    /// CLOSED once everything is written and either the peer's EOF came or (a client that does
    /// not wait for it) the close handshake is complete.
    fn close_if_drained(&mut self) {
        let handshake_done = self.role == Role::Client
            && !self.config.client_awaits_server_eof
            && self.handshake_complete();
        if (self.eof || handshake_done) && self.buffered() == 0 {
            self.state = ReadyState::Closed;
        }
    }

    /// Moves the queued output out for writing. What the transport does not accept at once is
    /// the caller's backlog, reported with [`Protocol::on_write`] (a write that took everything
    /// needs no report).
    pub fn take_output(&mut self) -> Output {
        self.output.take()
    }

    /// The queued output, for a caller that writes it where it is (nothing stands between
    /// the core and the transport, so nothing needs taking out): advance it past what the
    /// transport accepted ([`Output::advance`]) and report writes with a backlog of 0.
    pub fn output_mut(&mut self) -> &mut Output {
        &mut self.output
    }

    /// Like [`Protocol::take_output`], into the caller's buffer: when `dst` is empty the two are
    /// swapped, so the buffers go back and forth and no allocation is made per message.
    pub fn take_output_into(&mut self, dst: &mut Output) {
        if dst.is_empty() {
            std::mem::swap(&mut self.output, dst);
        } else {
            dst.append(self.output.take());
        }
    }

    /// Whether output is waiting to be taken.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// After writing: `backlog` bytes taken with [`Protocol::take_output`] are still not
    /// accepted by the transport, and `progressed` says whether it accepted any. Runs the
    /// write-stall timer and answers a held-back PING once the output has drained.
    pub fn on_write(&mut self, backlog: usize, progressed: bool, now: Instant) {
        self.last_time = self.last_time.max(Some(now));
        self.backlog = backlog;
        if self.buffered() == 0 {
            self.set_deadline(Deadline::Write, None);
        } else if let Some(limit) = self.config.write_timeout {
            if progressed || self.deadlines.get(Deadline::Write).is_none() {
                self.set_deadline(Deadline::Write, Some(later(now, limit)));
            }
        }
        if self.buffered() < PONG_HOLD_BACK {
            if let Some(payload) = self.held_pong.take() {
                if !self.close_sent {
                    self.write_control(OpCode::Pong, &payload);
                }
            }
        }
        self.deflate_idle_tick(now);
        self.close_if_drained();
    }

    /// Whether to shut the transport's write side now: everything is written and either the
    /// connection failed or, on the server, the close handshake is complete (RFC 6455 §7.1.1:
    /// the server closes first). The peer then sees our CLOSE and EOF, while we keep reading.
    pub fn wants_shutdown(&self) -> bool {
        // (The usual answer, no, from the first test.)
        (self.failed || (self.role == Role::Server && self.handshake_complete()))
            && !self.write_shut
            && self.state != ReadyState::Closed
            && self.buffered() == 0
    }

    /// Both CLOSE frames went through and nothing failed.
    fn handshake_complete(&self) -> bool {
        self.close_sent && self.close_received && !self.failed
    }

    /// The transport's write side is shut (after [`Protocol::wants_shutdown`]).
    pub fn write_shutdown(&mut self) {
        self.write_shut = true;
        self.close_if_drained();
    }

    /// When [`Protocol::handle_timeout`] should be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == ReadyState::Closed {
            return None;
        }
        self.next_deadline
    }

    /// Arms one of the timers for `at`, or disarms it (`None`): the one way a deadline changes,
    /// so that the earliest, which every wait reads, stays up to date.
    fn set_deadline(&mut self, timer: Deadline, at: Option<Instant>) {
        self.next_deadline = self.deadlines.set(timer, at);
    }

    /// Acts on every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_time = self.last_time.max(Some(now));
        if self.deadlines.is_due(Deadline::End, now) {
            // The application does not take the messages that came before the end.
            if let Some(end) = self.end.take() {
                self.apply_end(*end, now);
            }
            self.set_deadline(Deadline::End, None);
        }
        if self.deadlines.is_due(Deadline::Close, now) {
            tracing::debug!("close handshake timed out");
            if self.close_received || self.failed {
                self.state = ReadyState::Closed;
            } else {
                self.abort("the peer did not answer our CLOSE in time");
            }
        }
        if let Some(limit) = self.config.write_timeout {
            if self.deadlines.is_due(Deadline::Write, now) {
                self.abort(&format!("the peer read nothing for {limit:?}; dropped"));
            }
        }
        if let Some(limit) = self.config.message_timeout {
            if self.deadlines.is_due(Deadline::Message, now) {
                // Whatever is in progress now: none (the timer rests), one started less than
                // the limit ago (look again when it is due), or one that is late.
                self.set_deadline(Deadline::Message, None);
                match self.message_started.map(|start| later(start, limit)) {
                    None => {}
                    Some(_) if self.input_done() => self.message_started = None,
                    Some(due) if due > now => self.set_deadline(Deadline::Message, Some(due)),
                    Some(_) if self.queue_full() => {
                        // We stopped reading: the peer is not to blame for the wait.
                        self.message_started = Some(now);
                        let due = later(now, limit);
                        self.set_deadline(Deadline::Message, Some(due));
                    }
                    Some(_) if self.state == ReadyState::Open => self.fail(
                        CloseCode::POLICY_VIOLATION,
                        &format!("a message was not completed within {limit:?}"),
                        now,
                    ),
                    Some(_) => {}
                }
            }
        }
        self.keepalive_timeout(now);
        self.deflate_idle_tick(now);
    }

    fn keepalive_timeout(&mut self, now: Instant) {
        if !self.deadlines.is_due(Deadline::Keepalive, now) {
            return;
        }
        let Some(k) = self.keepalive.as_deref_mut() else {
            return;
        };
        if self.state != ReadyState::Open || self.close_sent {
            // (Disarmed when our CLOSE goes out; this covers any other way out of OPEN.)
            self.set_deadline(Deadline::Keepalive, None);
            return;
        }
        if let Some(sent) = k.ping_sent {
            if k.heard < sent {
                let timeout = self.config.ping_timeout;
                self.abort(&format!("no answer to a keepalive ping within {timeout:?}"));
                return;
            }
            k.ping_sent = None;
        }
        let quiet_until = later(k.heard, k.interval);
        let due = if quiet_until > now {
            quiet_until
        } else {
            k.ping_sent = Some(now);
            self.write_control(OpCode::Ping, b"");
            later(now, self.config.ping_timeout)
        };
        self.set_deadline(Deadline::Keepalive, Some(due));
    }

    /// Queues a data message (TEXT or BINARY) or a PING/PONG as one frame. A large payload that
    /// needs no masking and no compression is queued as it is, without a copy.
    #[inline]
    pub fn send(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        compression: Compression,
    ) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::NotOpen(self.state));
        }
        if matches!(opcode, OpCode::Close | OpCode::Continue) {
            return Err(SendError::NotSendable(opcode));
        }
        if opcode.is_control() && payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong(payload.len()));
        }
        let mask = self.next_mask();
        self.encoder
            .encode_to_output(opcode, payload, compression, mask, &mut self.output)
    }

    /// The frame encoder (what it would compress, and how: see [`Encoder::would_compress`]
    /// and [`Encoder::shared_compression`]).
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Queues a frame that is already encoded (unmasked: server side only), without copying.
    /// The caller guarantees `frame` holds exactly one valid, unmasked data or PING/PONG frame.
    pub fn send_encoded(&mut self, frame: Bytes) -> Result<(), SendError> {
        if !self.can_send() {
            return Err(SendError::NotOpen(self.state));
        }
        if self.role == Role::Client {
            return Err(SendError::ClientMustMask);
        }
        self.encoder.push_encoded(frame, &mut self.output);
        Ok(())
    }

    /// Queues a PING.
    pub fn ping(&mut self, payload: Bytes) -> Result<(), SendError> {
        self.send(OpCode::Ping, payload, Compression::Never)
    }

    /// Starts the close handshake with `code` and `reason` (cut to 123 bytes). Does nothing if a
    /// CLOSE was already sent or the connection is closed; while CONNECTING it abandons the
    /// attempt (CLOSED, 1006).
    pub fn close(&mut self, code: CloseCode, reason: &str, now: Instant) {
        self.last_time = self.last_time.max(Some(now));
        match self.state {
            ReadyState::Closed => return,
            ReadyState::Connecting => {
                self.outcome = Some(Box::new(CloseEvent {
                    code: ABNORMAL,
                    reason: "closed before the connection opened".to_owned(),
                    clean: false,
                }));
                self.state = ReadyState::Closed;
                return;
            }
            ReadyState::Open | ReadyState::Closing => {}
        }
        if self.close_sent {
            return;
        }
        let payload = CloseFrame::new(code, reason).encode();
        self.write_control(OpCode::Close, &payload);
        self.mark_close_sent(now);
        if !self.close_received {
            self.outcome = Some(Box::new(CloseEvent {
                code: code.as_u16(),
                reason: reason.to_owned(),
                clean: true,
            }));
        }
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
        // Control payloads are at most 125 bytes and never compressed: this cannot fail.
        let _ = self.encoder.encode_to_output(
            opcode,
            Bytes::copy_from_slice(payload),
            Compression::Never,
            mask,
            &mut self.output,
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSlice;

    use super::*;

    /// Writes everything `p` queued as if the transport took it all; returns the bytes.
    fn wire(p: &mut Protocol, now: Instant) -> BytesMut {
        let mut out = p.take_output();
        let mut bytes = BytesMut::new();
        while !out.is_empty() {
            let chunk = out.first_chunk().to_vec();
            bytes.extend_from_slice(&chunk);
            out.advance(chunk.len());
        }
        p.on_write(0, true, now);
        bytes
    }

    /// Moves what `from` wrote to `to` and returns the events `to` then yields.
    fn pump(from: &mut Protocol, to: &mut Protocol, now: Instant) -> Vec<Event> {
        let mut buf = wire(from, now);
        to.receive_data(&mut buf, now);
        events(to, now)
    }

    fn events(p: &mut Protocol, now: Instant) -> Vec<Event> {
        std::iter::from_fn(|| p.poll_event(now)).collect()
    }

    fn pair(now: Instant) -> (Protocol, Protocol) {
        let config = Config {
            ping_interval: Some(Duration::from_secs(5)),
            ..Config::default()
        };
        let mut c = Protocol::new(Role::Client, config.clone());
        let mut s = Protocol::new(Role::Server, config);
        c.open(now);
        s.open(now);
        (c, s)
    }

    #[test]
    fn receive_next_hands_the_first_message_over_and_leaves_the_rest() {
        let now = Instant::now();
        let (mut c, mut s) = pair(now);
        for text in ["one", "two"] {
            c.send(OpCode::Text, Bytes::from(text), Compression::Auto)
                .unwrap();
        }
        c.ping(Bytes::from_static(b"p")).unwrap();
        let mut buf = wire(&mut c, now);
        let first = s.receive_next(&mut buf, || now).unwrap();
        assert_eq!(&first.payload[..], b"one");
        // Handed over, not queued; the rest waits undecoded in the buffer.
        assert_eq!(s.queued_messages(), 0);
        assert!(!s.has_output(), "the PING behind it is not decoded yet");
        let second = s.receive_next(&mut buf, || now).unwrap();
        assert_eq!(&second.payload[..], b"two");
        assert!(s.receive_next(&mut buf, || now).is_none());
        assert!(buf.is_empty());
        // The PING is answered as on the queueing path.
        let mut pong = wire(&mut s, now);
        c.receive_data(&mut pong, now);
        assert!(events(&mut c, now).is_empty());
        assert!(pong.is_empty());
        // A message waiting in the queue goes first: the next one is queued behind it.
        c.send(OpCode::Text, Bytes::from_static(b"3"), Compression::Auto)
            .unwrap();
        c.send(OpCode::Text, Bytes::from_static(b"4"), Compression::Auto)
            .unwrap();
        let mut buf = wire(&mut c, now);
        let mut three = buf.split_to(buf.len() / 2);
        assert_eq!(s.receive_data(&mut three, now), 1);
        assert!(s.receive_next(&mut buf, || now).is_none());
        assert_eq!(s.queued_messages(), 2);
    }

    #[test]
    fn the_receive_queue_keeps_room_for_one_message_only() {
        // The queue keeps its room for the connection's life: one message taken at a time
        // must not leave room for four in every idle connection.
        let now = Instant::now();
        let (mut c, mut s) = pair(now);
        for text in ["one", "two"] {
            c.send(
                OpCode::Text,
                Bytes::from_static(text.as_bytes()),
                Compression::Auto,
            )
            .unwrap();
            assert_eq!(pump(&mut c, &mut s, now).len(), 1);
            assert_eq!(s.queue.capacity(), 1);
        }
        // Two waiting at once still fit.
        c.send(OpCode::Text, Bytes::from_static(b"3"), Compression::Auto)
            .unwrap();
        c.send(OpCode::Text, Bytes::from_static(b"4"), Compression::Auto)
            .unwrap();
        assert_eq!(pump(&mut c, &mut s, now).len(), 2);
    }

    fn text(payload: &'static str, masked: bool) -> Event {
        Event::Message(Received {
            opcode: OpCode::Text,
            payload: Bytes::from_static(payload.as_bytes()),
            compressed: false,
            masked,
        })
    }

    fn masked_frame(buf: &mut BytesMut, b0: u8, payload: &[u8]) {
        let key = [1, 2, 3, 4];
        buf.extend_from_slice(&[b0, 0x80 | payload.len() as u8]);
        buf.extend_from_slice(&key);
        buf.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    }

    #[test]
    fn starts_connecting_and_opens() {
        let now = Instant::now();
        let mut p = Protocol::new(Role::Client, Config::default());
        assert_eq!(p.state(), ReadyState::Connecting);
        assert_eq!(
            p.send(OpCode::Text, Bytes::new(), Compression::Auto),
            Err(SendError::NotOpen(ReadyState::Connecting))
        );
        p.open(now);
        assert_eq!(p.state(), ReadyState::Open);
    }

    #[test]
    fn failed_handshake_gives_error_1002_then_close_1006() {
        let mut p = Protocol::new(Role::Client, Config::default());
        p.fail_handshake("refused");
        let now = Instant::now();
        let got = events(&mut p, now);
        assert_eq!(
            got,
            vec![
                Event::Error(ErrorEvent {
                    code: CloseCode::PROTOCOL_ERROR.as_u16(),
                    reason: "refused".into()
                }),
                Event::Closed(CloseEvent {
                    code: ABNORMAL,
                    reason: "refused".into(),
                    clean: false
                })
            ]
        );
        assert_eq!(p.state(), ReadyState::Closed);
    }

    #[test]
    fn messages_both_ways() {
        let now = Instant::now();
        let (mut c, mut s) = pair(now);
        c.send(OpCode::Text, Bytes::from_static(b"hi"), Compression::Auto)
            .unwrap();
        let big = Bytes::from(vec![5u8; 100_000]);
        c.send(OpCode::Binary, big.clone(), Compression::Auto)
            .unwrap();
        let got = pump(&mut c, &mut s, now);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], text("hi", true));
        assert!(matches!(&got[1], Event::Message(m) if m.payload == big && m.masked));
        s.send(OpCode::Binary, big.clone(), Compression::Auto)
            .unwrap();
        let got = pump(&mut s, &mut c, now);
        assert!(matches!(&got[0], Event::Message(m) if m.payload == big && !m.masked));
    }

    #[test]
    fn caller_mistakes_are_send_errors() {
        let now = Instant::now();
        let (mut c, _) = pair(now);
        assert_eq!(
            c.send(OpCode::Continue, Bytes::new(), Compression::Auto),
            Err(SendError::NotSendable(OpCode::Continue))
        );
        assert_eq!(
            c.send(OpCode::Close, Bytes::new(), Compression::Auto),
            Err(SendError::NotSendable(OpCode::Close))
        );
        assert_eq!(
            c.ping(Bytes::from(vec![0u8; 126])),
            Err(SendError::ControlTooLong(126))
        );
        assert_eq!(
            c.send_encoded(Bytes::from_static(b"\x81\x00")),
            Err(SendError::ClientMustMask)
        );
    }

    #[test]
    fn ping_is_answered_with_same_payload() {
        let now = Instant::now();
        let (mut c, mut s) = pair(now);
        c.ping(Bytes::from_static(b"abc")).unwrap();
        assert!(pump(&mut c, &mut s, now).is_empty());
        let pong = wire(&mut s, now);
        assert_eq!(&pong[..], b"\x8a\x03abc");
    }

    #[test]
    fn pings_are_held_back_while_the_output_is_full_and_only_the_latest_answered() {
        let now = Instant::now();
        let (mut c, mut s) = pair(now);
        // The server has more than PONG_HOLD_BACK bytes the transport has not taken yet.
        let big = Bytes::from(vec![1u8; PONG_HOLD_BACK + 10]);
        s.send(OpCode::Binary, big, Compression::Never).unwrap();
        let taken = s.take_output();
        let queued = taken.len();
        s.on_write(queued, false, now);
        for payload in [&b"one"[..], b"two", b"three"] {
            c.ping(Bytes::copy_from_slice(payload)).unwrap();
        }
        pump(&mut c, &mut s, now);
        assert!(!s.has_output(), "no PONG is queued behind a full output");
        s.on_write(queued, false, now);
        assert!(!s.has_output(), "still full: still held");
        // The transport takes the backlog; then the latest PING alone is answered.
        s.on_write(0, true, now);
        assert_eq!(&wire(&mut s, now)[..], b"\x8a\x05three");
        s.on_write(0, true, now);
        assert!(!s.has_output(), "answered once");
    }

    #[test]
    fn close_reply_echoes_the_peers_code_and_reason() {
        let now = Instant::now();
        let (mut c, mut s) = pair(now);
        c.close(CloseCode::new(4001).unwrap(), "bye", now);
        assert_eq!(c.state(), ReadyState::Closing);
        assert!(c
            .send(OpCode::Text, Bytes::new(), Compression::Auto)
            .is_err());
        assert!(pump(&mut c, &mut s, now).is_empty());
        assert_eq!(s.state(), ReadyState::Closing);
        let reply = wire(&mut s, now);
        assert_eq!(&reply[..], b"\x88\x05\x0f\xa1bye", "code and reason echoed");
        // The server has completed the handshake: it shuts its write side, then waits for EOF.
        assert!(s.wants_shutdown());
        s.write_shutdown();
        assert_eq!(s.state(), ReadyState::Closing);
        assert!(
            s.wants_read(),
            "the server keeps reading until the peer's EOF"
        );
        s.receive_eof(now);
        assert_eq!(s.state(), ReadyState::Closed);
        let expected = CloseEvent {
            code: 4001,
            reason: "bye".into(),
            clean: true,
        };
        assert_eq!(events(&mut s, now), vec![Event::Closed(expected.clone())]);
        // The client reads the answer, waits for the server's EOF and reports the close.
        let mut buf = reply;
        c.receive_data(&mut buf, now);
        assert!(
            !c.wants_shutdown(),
            "a client waits for the server to close"
        );
        c.receive_eof(now);
        assert_eq!(events(&mut c, now), vec![Event::Closed(expected)]);
    }

    #[test]
    fn empty_close_is_echoed_empty_and_reported_1005() {
        let now = Instant::now();
        let (_, mut s) = pair(now);
        let mut buf = BytesMut::new();
        masked_frame(&mut buf, 0x88, b"");
        s.receive_data(&mut buf, now);
        assert_eq!(&wire(&mut s, now)[..], b"\x88\x00");
        s.receive_eof(now);
        assert!(matches!(
            &events(&mut s, now)[..],
            [Event::Closed(CloseEvent {
                code: NO_STATUS,
                clean: true,
                ..
            })]
        ));
    }

    #[test]
    fn a_protocol_error_fails_with_close_then_half_closes_and_drains_until_eof() {
        let now = Instant::now();
        let (_, mut s) = pair(now);
        assert!(s.poll_event(now).is_none(), "the application waits");
        let mut buf = BytesMut::from(&[0x81u8, 0x01, b'x'][..]); // unmasked client frame
        s.receive_data(&mut buf, now);
        assert_eq!(s.state(), ReadyState::Closing);
        assert!(!s.wants_shutdown(), "the CLOSE is not written yet");
        let out = wire(&mut s, now);
        assert_eq!((out[0], &out[2..4]), (0x88, &[0x03, 0xea][..]));
        assert!(s.wants_shutdown());
        s.write_shutdown();
        // The client goes on sending: read and dropped, never decoded.
        let mut more = BytesMut::new();
        masked_frame(&mut more, 0x81, b"ignored");
        assert!(s.wants_read());
        assert_eq!(s.receive_data(&mut more, now), 0);
        assert!(more.is_empty());
        assert!(
            s.poll_event(now).is_none(),
            "not closed before the peer's EOF"
        );
        s.receive_eof(now);
        let got = events(&mut s, now);
        assert!(matches!(&got[0], Event::Error(e) if e.code == CloseCode::PROTOCOL_ERROR));
        assert!(matches!(
            &got[1],
            Event::Closed(CloseEvent {
                code: 1002,
                clean: false,
                ..
            })
        ));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn lingering_after_a_failure_ends_at_the_close_timeout() {
        let now = Instant::now();
        let (_, mut s) = pair(now);
        s.poll_event(now);
        let mut buf = BytesMut::from(&[0x81u8, 0x01, b'x'][..]);
        s.receive_data(&mut buf, now);
        wire(&mut s, now);
        s.write_shutdown();
        let deadline = s.poll_timeout().unwrap();
        assert_eq!(deadline, now + s.config().close_timeout);
        s.handle_timeout(deadline);
        assert_eq!(s.state(), ReadyState::Closed);
    }

    #[test]
    fn messages_before_a_protocol_error_are_answered_before_the_close() {
        // Autobahn 3.2, 4.1.3, 5.15: a valid message, then a bad frame, in one read. The echo
        // of the valid message must reach the peer before our CLOSE.
        let now = Instant::now();
        let (_, mut s) = pair(now);
        let mut buf = BytesMut::new();
        masked_frame(&mut buf, 0x81, b"hi");
        masked_frame(&mut buf, 0xa1, b"rsv2");
        masked_frame(&mut buf, 0x89, b"");
        assert_eq!(s.receive_data(&mut buf, now), 1);
        assert!(!s.has_output(), "no CLOSE while the message waits");
        assert!(s.can_send());
        assert_eq!(s.poll_event(now), Some(text("hi", true)));
        s.send(OpCode::Text, Bytes::from_static(b"hi"), Compression::Auto)
            .unwrap();
        // The application asks for more: the failure is acted on now, behind the reply.
        assert_eq!(s.poll_event(now), None);
        let out = wire(&mut s, now);
        assert_eq!(&out[..4], b"\x81\x02hi");
        assert_eq!((out[4], &out[6..8]), (0x88, &[0x03, 0xea][..]));
        assert_eq!(
            out.len(),
            8 + "reserved bit set that no extension negotiated (rsv bits 0b010)".len()
        );
    }

    #[test]
    fn a_waiting_failure_is_acted_on_after_the_close_timeout_if_nobody_takes_the_messages() {
        let now = Instant::now();
        let mut s = Protocol::new_open(Role::Server, Limits::default(), now);
        let mut buf = BytesMut::new();
        masked_frame(&mut buf, 0x81, b"hi");
        masked_frame(&mut buf, 0xa1, b"rsv2");
        s.receive_data(&mut buf, now);
        assert!(!s.has_output());
        s.handle_timeout(now + s.config().close_timeout - Duration::from_millis(1));
        assert!(!s.has_output(), "not before the close timeout");
        s.handle_timeout(now + s.config().close_timeout);
        assert!(s.has_output());
        assert!(s.error().is_some());
    }

    #[test]
    fn eof_without_close_is_1006() {
        let now = Instant::now();
        let (mut c, _) = pair(now);
        c.receive_eof(now);
        assert_eq!(c.state(), ReadyState::Closed);
        let got = events(&mut c, now);
        assert!(matches!(&got[0], Event::Error(e) if e.code == ABNORMAL));
        assert!(matches!(
            &got[1],
            Event::Closed(CloseEvent {
                code: ABNORMAL,
                clean: false,
                ..
            })
        ));
    }

    #[test]
    fn a_client_that_does_not_wait_for_eof_is_closed_once_the_handshake_is_done() {
        let now = Instant::now();
        let config = Config {
            client_awaits_server_eof: false,
            ..Config::default()
        };
        // Our CLOSE, then the server's answer: CLOSED at once, clean.
        let (_, mut s) = pair(now);
        let mut c = Protocol::new(Role::Client, config.clone());
        c.open(now);
        c.close(CloseCode::NORMAL, "", now);
        pump(&mut c, &mut s, now);
        let mut reply = wire(&mut s, now);
        c.receive_data(&mut reply, now);
        assert_eq!(c.state(), ReadyState::Closed);
        assert!(c.close_event().unwrap().clean);
        // The server's CLOSE first: CLOSED once our answer is written, not before.
        let (_, mut s) = pair(now);
        let mut c = Protocol::new(Role::Client, config);
        c.open(now);
        s.close(CloseCode::NORMAL, "bye", now);
        pump(&mut s, &mut c, now);
        assert_eq!(
            c.state(),
            ReadyState::Closing,
            "the answer is not written yet"
        );
        let answer = c.take_output();
        assert!(!answer.is_empty());
        c.on_write(0, true, now);
        assert_eq!(c.state(), ReadyState::Closed);
        assert_eq!(c.close_event().unwrap().reason, "bye");
    }

    #[test]
    fn dropping_the_transport_is_a_lost_connection_unless_the_handshake_was_done() {
        let now = Instant::now();
        let (mut c, mut s) = pair(now);
        c.send(OpCode::Text, Bytes::from_static(b"x"), Compression::Never)
            .unwrap();
        c.drop_transport("aborted");
        assert_eq!(c.state(), ReadyState::Closed);
        let got = events(&mut c, now);
        assert_eq!(
            got,
            vec![
                Event::Error(ErrorEvent {
                    code: ABNORMAL,
                    reason: "aborted".into()
                }),
                Event::Closed(CloseEvent {
                    code: ABNORMAL,
                    reason: "aborted".into(),
                    clean: false
                })
            ]
        );
        // After a complete close handshake the end stays clean.
        s.close(CloseCode::NORMAL, "", now);
        let (mut c, _) = pair(now);
        pump(&mut s, &mut c, now);
        wire(&mut c, now);
        c.drop_transport("aborted");
        assert!(c.close_event().unwrap().clean);
        assert!(c.error().is_none());
    }

    #[test]
    fn unanswered_close_times_out_as_1006() {
        let now = Instant::now();
        let (mut c, _) = pair(now);
        c.close(CloseCode::NORMAL, "", now);
        wire(&mut c, now);
        let t = c.poll_timeout().unwrap();
        assert_eq!(
            t,
            now + c.config().close_timeout,
            "no keepalive once closing"
        );
        c.handle_timeout(t);
        assert_eq!(c.state(), ReadyState::Closed);
        assert_eq!(c.close_event().unwrap().code, ABNORMAL);
        assert!(!c.close_event().unwrap().clean);
    }

    #[test]
    fn keepalive_pings_when_quiet_and_drops_when_unanswered() {
        let now = Instant::now();
        let (mut c, mut s) = pair(now);
        let interval = Duration::from_secs(5);
        assert_eq!(s.poll_timeout(), Some(now + interval));
        // Hearing from the peer pushes the ping back.
        c.send(OpCode::Text, Bytes::from_static(b"x"), Compression::Auto)
            .unwrap();
        let later = now + Duration::from_secs(3);
        pump(&mut c, &mut s, later);
        s.handle_timeout(now + interval);
        assert!(!s.has_output(), "heard 2 s ago: no ping yet");
        assert_eq!(s.poll_timeout(), Some(later + interval));
        // Quiet for a whole interval: a PING goes out.
        s.handle_timeout(later + interval);
        assert_eq!(&wire(&mut s, later + interval)[..], b"\x89\x00");
        // The client answers: the timer goes back to the interval.
        let answered = later + interval + Duration::from_secs(1);
        let mut ping = BytesMut::from(&b"\x89\x00"[..]);
        c.receive_data(&mut ping, answered);
        pump(&mut c, &mut s, answered);
        assert_eq!(
            s.poll_timeout(),
            Some(later + interval + s.config().ping_timeout)
        );
        let quiet = later + interval + s.config().ping_timeout;
        s.handle_timeout(quiet);
        assert_eq!(s.state(), ReadyState::Open, "answered: not dropped");
        assert_eq!(
            &wire(&mut s, quiet)[..],
            b"\x89\x00",
            "quiet again: the next PING"
        );
        // This time nothing comes back.
        let t = s.poll_timeout().unwrap();
        assert_eq!(t, quiet + s.config().ping_timeout);
        s.handle_timeout(t);
        assert_eq!(s.state(), ReadyState::Closed);
        assert!(s.error().unwrap().reason.contains("keepalive"));
    }

    #[test]
    fn a_peer_that_reads_nothing_is_dropped_after_the_write_timeout() {
        let now = Instant::now();
        let (_, mut s) = pair(now);
        s.send(
            OpCode::Binary,
            Bytes::from(vec![0u8; 10]),
            Compression::Never,
        )
        .unwrap();
        let out = s.take_output();
        s.on_write(out.len(), false, now);
        let limit = s.config().write_timeout.unwrap();
        // Progress moves the deadline.
        let later = now + limit / 2;
        s.on_write(3, true, later);
        s.handle_timeout(now + limit);
        assert_eq!(s.state(), ReadyState::Open);
        s.handle_timeout(later + limit);
        assert_eq!(s.state(), ReadyState::Closed);
        assert!(s.error().unwrap().reason.contains("read nothing"));
    }

    #[test]
    fn a_full_receive_queue_stops_decoding_until_the_application_takes_one() {
        let now = Instant::now();
        let mut s = Protocol::new(
            Role::Server,
            Config {
                recv_queue_limit: 2,
                ..Config::default()
            },
        );
        s.open(now);
        let mut buf = BytesMut::new();
        for _ in 0..3 {
            masked_frame(&mut buf, 0x81, b"m");
        }
        assert_eq!(s.receive_data(&mut buf, now), 2);
        assert!(!s.wants_read());
        assert!(!buf.is_empty(), "the third message stays in the buffer");
        assert!(s.poll_event(now).is_some());
        assert!(s.wants_read());
        assert_eq!(s.receive_data(&mut buf, now), 1);
        assert!(buf.is_empty());
    }

    #[test]
    fn a_receive_queue_limit_of_zero_still_takes_one_message_at_a_time() {
        let now = Instant::now();
        let mut s = Protocol::new(
            Role::Server,
            Config {
                recv_queue_limit: 0,
                recv_buffer_limit: 0,
                ..Config::default()
            },
        );
        s.open(now);
        let mut buf = BytesMut::new();
        for _ in 0..2 {
            masked_frame(&mut buf, 0x81, b"m");
        }
        assert!(s.wants_read(), "an empty queue is never full");
        assert_eq!(s.receive_data(&mut buf, now), 1);
        assert!(!s.wants_read());
        assert!(s.poll_event(now).is_some());
        assert_eq!(s.receive_data(&mut buf, now), 1);
        assert!(buf.is_empty());
    }

    #[test]
    fn abandoned_connection_closes_with_1001_and_drops_messages() {
        let now = Instant::now();
        let (mut c, mut s) = pair(now);
        c.send(OpCode::Text, Bytes::from_static(b"x"), Compression::Auto)
            .unwrap();
        let mut buf = wire(&mut c, now);
        s.abandon(now);
        assert_eq!(s.receive_data(&mut buf, now), 0);
        assert_eq!(&wire(&mut s, now)[..4], b"\x88\x02\x03\xe9");
    }

    #[test]
    fn large_server_payload_is_not_copied() {
        let now = Instant::now();
        let (_, mut s) = pair(now);
        let big = Bytes::from(vec![1u8; 10_000]);
        s.send(OpCode::Binary, big.clone(), Compression::Never)
            .unwrap();
        let out = s.take_output();
        let mut slices = [IoSlice::new(&[]); 4];
        let n = out.io_slices(&mut slices);
        assert_eq!(n, 2);
        assert_eq!(slices[1].as_ptr(), big.as_ptr());
        assert_eq!(out.len(), 4 + 10_000);
        s.on_write(out.len(), false, now);
        assert_eq!(s.buffered(), 4 + 10_000, "taken but not written yet");
    }

    #[test]
    fn extreme_durations_saturate_instead_of_overflowing() {
        let now = Instant::now();
        let config = Config {
            close_timeout: Duration::MAX,
            ping_interval: Some(Duration::MAX),
            ping_timeout: Duration::MAX,
            write_timeout: Some(Duration::MAX),
            message_timeout: Some(Duration::MAX),
            ..Config::default()
        };
        let mut s = Protocol::new(Role::Server, config.clone());
        let mut c = Protocol::new(Role::Client, config);
        s.open(now);
        c.open(now);
        assert!(s.poll_timeout().is_some_and(|t| t > now));
        // Half a message (arms the message timer), a write that stalls, then the close.
        let mut half = BytesMut::new();
        masked_frame(&mut half, 0x82, &[7; 100]);
        half.truncate(50);
        s.receive_data(&mut half, now);
        s.send(OpCode::Text, Bytes::from_static(b"x"), Compression::Never)
            .unwrap();
        let _ = s.take_output();
        s.on_write(3, false, now);
        s.close(CloseCode::NORMAL, "", now);
        let later = now + Duration::from_secs(3600);
        s.handle_timeout(later);
        c.handle_timeout(later);
        assert_eq!(s.state(), ReadyState::Closing, "no timer fired");
        assert!(s.poll_timeout().is_some_and(|t| t > later));
    }

    /// A masked BINARY frame of 1000 bytes.
    fn binary_1000() -> BytesMut {
        let mut frame = BytesMut::new();
        let header = super::super::FrameHeader::new(OpCode::Binary, 1000, Some([1, 2, 3, 4]));
        super::super::codec::write_frame(header, &[1; 1000], &mut frame);
        frame
    }

    #[test]
    fn a_stream_of_messages_each_in_time_is_not_failed_by_the_message_timeout() {
        let now = Instant::now();
        let limit = Duration::from_secs(10);
        let config = Config {
            message_timeout: Some(limit),
            ..Config::default()
        };
        let mut s = Protocol::new(Role::Server, config);
        s.open(now);
        let mut first = binary_1000();
        let mut second = binary_1000();
        // The first message starts at 0 s and ends at 8 s, in the read that starts the second.
        let mut buf = first.split_to(20);
        s.receive_data(&mut buf, now);
        let at8 = now + Duration::from_secs(8);
        buf.extend_from_slice(&first);
        buf.extend_from_slice(&second.split_to(20));
        s.receive_data(&mut buf, at8);
        // The first message's deadline passes while the second (8 s old at most) is in time.
        s.handle_timeout(now + limit);
        assert_eq!(s.state(), ReadyState::Open);
        assert_eq!(s.poll_timeout(), Some(at8 + limit));
        // The second completes at 12 s: nothing fails, and the timer rests once it fires.
        buf.extend_from_slice(&second);
        s.receive_data(&mut buf, now + Duration::from_secs(12));
        s.handle_timeout(at8 + limit);
        assert_eq!(s.state(), ReadyState::Open);
        assert!(s.error().is_none());
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn a_trickled_message_fails_with_1008_at_the_message_timeout() {
        let now = Instant::now();
        let limit = Duration::from_secs(30);
        let config = Config {
            message_timeout: Some(limit),
            ..Config::default()
        };
        let mut s = Protocol::new(Role::Server, config.clone());
        s.open(now);
        // A whole message arms nothing.
        let mut whole = BytesMut::new();
        masked_frame(&mut whole, 0x81, b"hi");
        s.receive_data(&mut whole, now);
        assert_eq!(s.poll_timeout(), None);
        // A frame whose payload trickles: the timer runs from its header.
        let mut frame = binary_1000();
        let mut buf = frame.split_to(20);
        s.receive_data(&mut buf, now);
        assert_eq!(s.poll_timeout(), Some(now + limit));
        for i in 1..10 {
            buf.extend_from_slice(&frame.split_to(1));
            s.receive_data(&mut buf, now + Duration::from_secs(i));
        }
        assert_eq!(
            s.poll_timeout(),
            Some(now + limit),
            "bytes do not extend it"
        );
        s.handle_timeout(now + limit - Duration::from_millis(1));
        assert_eq!(s.state(), ReadyState::Open);
        s.handle_timeout(now + limit);
        let _ = events(&mut s, now + limit);
        assert_eq!(s.state(), ReadyState::Closing);
        assert_eq!(s.error().map(|e| e.code), Some(1008));
        // Off by default.
        let mut d = Protocol::new(Role::Server, Config::default());
        d.open(now);
        let mut frame = binary_1000();
        frame.truncate(20);
        d.receive_data(&mut frame, now);
        assert_eq!(d.poll_timeout(), None);
    }

    /// A client and a server with permessage-deflate `params` under `config`, one compressed
    /// 1 KiB message echoed; returns them and the time after the echo.
    #[cfg(feature = "deflate")]
    fn deflate_echo(params: DeflateParams, config: &DeflateConfig) -> (Protocol, Protocol) {
        let now = Instant::now();
        let (mut c, mut s) = pair(now);
        c.enable_deflate(params, config);
        s.enable_deflate(params, config);
        let payload = Bytes::from("{\"user\":\"alice\",\"text\":\"hello\"} ".repeat(30));
        c.send(OpCode::Text, payload.clone(), Compression::Auto)
            .unwrap();
        let got = pump(&mut c, &mut s, now);
        assert!(matches!(&got[..], [Event::Message(m)] if m.compressed && m.payload == payload));
        s.send(OpCode::Text, payload.clone(), Compression::Auto)
            .unwrap();
        let got = pump(&mut s, &mut c, now);
        assert!(matches!(&got[..], [Event::Message(m)] if m.compressed && m.payload == payload));
        (c, s)
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn idle_compression_state_is_released_after_the_quiet_period() {
        let config = DeflateConfig {
            idle_release: Some(Duration::from_secs(2)),
            ..DeflateConfig::default()
        };
        let no_ctx = DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateParams::default()
        };
        for params in [no_ctx, DeflateParams::default()] {
            let (mut c, mut s) = deflate_echo(params, &config);
            let now = s.last_time().unwrap();
            let held = s.memory_usage();
            assert!(held > 100 * 1024, "{held}");
            // Not yet: the deadline is the quiet period after the last use.
            let due = s.poll_timeout().unwrap();
            assert!(due >= now + Duration::from_secs(2), "{params:?}");
            s.handle_timeout(now + Duration::from_secs(1));
            assert_eq!(s.memory_usage(), held);
            s.handle_timeout(due);
            let after = s.memory_usage();
            if params.client_no_context_takeover {
                // Nothing needs keeping: compressor, decompressor and scratch are gone.
                assert_eq!(after, 0, "{params:?}");
            } else {
                // The compressor keeps its last bytes; the decompressor its window.
                assert!(after < 50 * 1024, "{after}");
                assert!(after > 1024, "{after}");
            }
            // Still working: the next messages use new streams (with the kept history).
            let t = due + Duration::from_secs(1);
            for _ in 0..2 {
                let payload = Bytes::from("{\"user\":\"alice\",\"text\":\"again\"} ".repeat(30));
                s.send(OpCode::Text, payload.clone(), Compression::Auto)
                    .unwrap();
                let mut buf = wire(&mut s, t);
                assert!(buf.len() < payload.len() / 4, "{}", buf.len());
                c.receive_data(&mut buf, t);
                let got = events(&mut c, t);
                assert!(matches!(&got[..], [Event::Message(m)] if m.payload == payload));
            }
        }
    }

    #[cfg(feature = "deflate")]
    #[test]
    fn compression_state_is_kept_without_idle_release() {
        let config = DeflateConfig {
            idle_release: None,
            ..DeflateConfig::default()
        };
        let (_, mut s) = deflate_echo(DeflateParams::default(), &config);
        let held = s.memory_usage();
        let later = s.last_time().unwrap() + Duration::from_secs(3600);
        s.handle_timeout(later);
        assert_eq!(s.memory_usage(), held);
    }
    #[cfg(feature = "deflate")]
    #[test]
    fn the_compressor_window_is_capped_below_the_negotiated_one_without_telling_the_peer() {
        let now = Instant::now();
        // Negotiated: 15 bits both ways (DeflateParams::default()).
        let capped = DeflateConfig::default();
        let full = DeflateConfig {
            compressor_window_bits: 15,
            ..DeflateConfig::default()
        };
        let mut sizes = Vec::new();
        for config in [&capped, &full] {
            let (mut c, mut s) = pair(now);
            c.enable_deflate(DeflateParams::default(), config);
            s.enable_deflate(DeflateParams::default(), config);
            // 16 KiB of noise repeated once: only a window that reaches 16 KiB back sees the
            // repeat. The peer decodes either stream with its 15-bit window.
            let mut x = 0x9e37_79b9_7f4a_7c15_u64;
            let noise: Vec<u8> = (0..16 * 1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let payload = Bytes::from([&noise[..], &noise[..]].concat());
            s.send(OpCode::Binary, payload.clone(), Compression::Auto)
                .unwrap();
            let mut buf = wire(&mut s, now);
            sizes.push(buf.len());
            c.receive_data(&mut buf, now);
            let got = events(&mut c, now);
            assert!(matches!(&got[..], [Event::Message(m)] if m.payload == payload));
            sizes.push(s.memory_usage());
        }
        let [capped_wire, capped_held, full_wire, full_held] = sizes[..] else {
            unreachable!()
        };
        assert!(
            capped_wire > 32 * 1024,
            "an 8 KiB window misses the repeat: {sizes:?}"
        );
        assert!(full_wire < 20 * 1024, "a 32 KiB window finds it");
        assert!(
            capped_held + 64 * 1024 < full_held,
            "{capped_held} {full_held}"
        );
    }
}
