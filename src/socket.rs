//! [`Socket`]: the seed's `ws.Socket` (fibjs `WebSocket`), the event-driven connection object of
//! both the client and the server side.
//!
//! Each socket has one driver task that reads and decodes frames, answers PINGs and the close
//! handshake, runs the timers and writes what the application queued (everything queued since
//! its last write goes out in one vectored write). A `send` that finds nothing else waiting
//! writes its frame at once instead, without a trip through the driver (the transport is split:
//! plain TCP natively, TLS and other transports behind a lock); the sends that follow it before
//! the driver runs again are batched as above. The [`Socket`] handle is cheap
//! to clone; every clone talks to the same connection.
//!
//! Messages can be taken by pulling ([`Socket::recv`], the [`futures_core::Stream`] impl,
//! [`Socket::split`]) or through callbacks ([`Socket::on_message`] and friends). Messages that
//! arrive before either is used wait in a bounded queue; when it is full the driver stops
//! reading, so a slow consumer slows the peer down instead of growing memory.

use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::{Instant, Sleep};

use crate::error::{Error, Result};
use crate::message::Message;
use crate::proto::deflate::{DeflateConfig, DeflateParams};
use crate::proto::protocol::{CloseInfo, Output};
use crate::proto::{
    CloseCode, Compression, FrameHeader, Incoming, Limits, OpCode, Protocol, ReadyState, Role,
};
use crate::stream::WsStream;

/// Settings of an open socket (both sides).
#[derive(Clone, Debug)]
pub struct SocketConfig {
    /// The largest message (and frame) accepted; larger ones close the connection with 1009.
    /// Default 64 MiB, as the seed's `maxSize`.
    pub max_payload: usize,
    /// The most frames one message may be split into.
    pub max_fragments: usize,
    /// How long `close()` waits for the peer's CLOSE (and a client for the server to end TCP)
    /// before dropping the connection. Default 10 s.
    pub close_timeout: Duration,
    /// Send a PING after this long without hearing from the peer; `None` turns keepalive off.
    pub ping_interval: Option<Duration>,
    /// Close the connection (code 1006 locally) when a keepalive PING is not answered in time.
    pub ping_timeout: Duration,
    /// `send` waits while this many bytes are queued and not yet written. Default 1 MiB.
    pub write_buffer_limit: usize,
    /// How many received messages may wait for the application before reading stops.
    pub recv_queue_limit: usize,
    /// How many bytes of received messages may wait before reading stops (one message is
    /// always let through, whatever its size). Default 4 MiB.
    pub recv_buffer_limit: usize,
    /// Drop a connection whose peer accepts no bytes for this long while we have data for it.
    pub write_timeout: Option<Duration>,
}

impl Default for SocketConfig {
    fn default() -> Self {
        SocketConfig {
            max_payload: crate::proto::codec::DEFAULT_MAX_MESSAGE_SIZE,
            max_fragments: crate::proto::codec::DEFAULT_MAX_FRAGMENTS,
            close_timeout: Duration::from_secs(10),
            ping_interval: None,
            ping_timeout: Duration::from_secs(20),
            write_buffer_limit: 1 << 20,
            recv_queue_limit: 256,
            recv_buffer_limit: 4 << 20,
            write_timeout: Some(Duration::from_secs(60)),
        }
    }
}

impl SocketConfig {
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_frame_size: self.max_payload,
            max_message_size: self.max_payload,
            max_fragments: self.max_fragments,
        }
    }
}

/// What the handshake settled, handed to [`Socket::from_stream`].
#[derive(Clone, Debug, Default)]
pub struct Negotiated {
    /// The subprotocol both ends agreed on, if any.
    pub protocol: Option<String>,
    /// The permessage-deflate parameters, when compression was negotiated.
    pub deflate: Option<DeflateParams>,
    /// The compressor settings (level, threshold, memory) to use with them.
    pub deflate_config: DeflateConfig,
    /// The `Sec-WebSocket-Extensions` value of the handshake response.
    pub extensions: String,
}

/// A message framed once, to be sent to many server sockets without re-encoding (a broadcast):
/// its frame bytes are shared by every socket that sends it.
///
/// The frame is unmasked and uncompressed (RSV1 clear, which is valid on any connection,
/// whether or not permessage-deflate was negotiated).
#[derive(Clone, Debug)]
pub struct PreparedMessage {
    message: Message,
    frame: Bytes,
}

impl PreparedMessage {
    /// Frames `msg` (TEXT, BINARY, PING or PONG) once.
    pub fn new(msg: impl Into<Message>) -> Result<Self> {
        let mut message = msg.into();
        message.set_masked(false);
        message.set_compress(false);
        if matches!(message.kind(), OpCode::Close | OpCode::Continue) {
            return Err(Error::Upgrade(
                "only data, PING and PONG messages can be prepared".into(),
            ));
        }
        let frame = message.encode()?.freeze();
        Ok(PreparedMessage { message, frame })
    }

    /// The message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The encoded frame bytes.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }
}

/// The `error` event: what went wrong, with the close code it maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorEvent {
    /// The close code of the failure (1002 for a failed connect or handshake, 1006 for a lost
    /// connection, or the protocol error's code).
    pub code: CloseCode,
    /// A description a person can act on.
    pub reason: String,
}

/// The `close` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseEvent {
    /// The code: the peer's, 1005 if its CLOSE had none, ours after a failure, 1006 when the
    /// connection ended without a close handshake.
    pub code: CloseCode,
    /// The reason.
    pub reason: String,
    /// Whether the close handshake completed.
    pub clean: bool,
}

type OpenFn = Arc<dyn Fn() + Send + Sync>;
type MessageFn = Arc<dyn Fn(Message) + Send + Sync>;
type CloseFn = Arc<dyn Fn(CloseEvent) + Send + Sync>;
type ErrorFn = Arc<dyn Fn(ErrorEvent) + Send + Sync>;

#[derive(Default)]
struct Callbacks {
    open: Option<OpenFn>,
    message: Option<MessageFn>,
    close: Option<CloseFn>,
    error: Option<ErrorFn>,
    dispatcher: bool,
    open_fired: bool,
    error_fired: bool,
    close_fired: bool,
}

impl Callbacks {
    fn any(&self) -> bool {
        self.open.is_some()
            || self.message.is_some()
            || self.close.is_some()
            || self.error.is_some()
    }
}

#[derive(Default)]
struct Wakers(Vec<Waker>);

impl Wakers {
    fn register(&mut self, waker: &Waker) {
        if !self.0.iter().any(|w| w.will_wake(waker)) {
            self.0.push(waker.clone());
        }
    }

    fn wake_all(&mut self) {
        for w in self.0.drain(..) {
            w.wake();
        }
    }
}

struct Shared {
    proto: Option<Protocol>,
    incoming: VecDeque<Message>,
    incoming_bytes: usize,
    /// The write side of the transport, shared so that `send` can write at once when nothing
    /// else is queued. `None` before the socket opens and after it closed.
    writer: Option<Writer>,
    /// The last write found the transport full (or could not flush it): the driver waits for
    /// it to drain.
    write_blocked: bool,
    /// Bytes were handed to the transport and not flushed yet (TLS keeps records in its own
    /// buffer until flushed).
    unflushed: bool,
    /// A `send` wrote straight to the transport since the driver last ran: the next ones are
    /// left to the driver, so that a burst of sends goes out in one vectored write.
    wrote_direct: bool,
    opened: bool,
    error: Option<ErrorEvent>,
    closed: Option<CloseEvent>,
    driver: Option<Waker>,
    recv_wakers: Wakers,
    send_wakers: Wakers,
    close_wakers: Wakers,
    dispatch_wakers: Wakers,
    callbacks: Callbacks,
    /// How the input ended (a protocol error, or the peer's CLOSE), not acted on yet: the
    /// connection fails, or the CLOSE is answered, once the application has taken the messages
    /// that arrived before it (so its replies to them go out before our CLOSE), or when nobody
    /// takes them in time.
    pending_end: Option<PendingEnd>,
}

impl Shared {
    /// Bytes queued for sending and not yet handed to the transport.
    fn queued(&mut self) -> usize {
        self.proto.as_mut().map_or(0, |p| p.output().len())
    }

    /// After a message was queued: writes it at once when that is cheap (the transport is not
    /// known to be full, no write since the driver last ran, no received message left that the
    /// application is about to answer); otherwise leaves it to the driver, which writes
    /// everything queued by then in one go. Either way bytes leave from the head of the one
    /// output queue, so nothing can be reordered.
    fn write_or_wake(&mut self) {
        if self.writer.is_some()
            && !self.write_blocked
            && !self.wrote_direct
            && self.incoming.is_empty()
        {
            self.wrote_direct = true;
            if self.try_write_direct() {
                self.send_wakers.wake_all();
                return;
            }
        }
        Inner::wake_driver(self);
    }

    /// Writes the queued output without waiting; `true` if all of it went out. When it did
    /// not (the transport is full, or failed), the driver takes over and sees the error, if any.
    fn try_write_direct(&mut self) -> bool {
        let (Some(writer), Some(proto)) = (self.writer.as_mut(), self.proto.as_mut()) else {
            return false;
        };
        let out = proto.output();
        let done = match writer {
            Writer::Tcp(tcp) => {
                // `try_write_vectored` leaves the driver's registration for writability alone.
                while !out.is_empty() {
                    let mut slices = [IoSlice::new(&[]); MAX_IOV];
                    let n = out.io_slices(&mut slices);
                    match tcp.try_write_vectored(&slices[..n]) {
                        Ok(k) if k > 0 => out.advance(k),
                        _ => break,
                    }
                }
                out.is_empty()
            }
            Writer::Split(w) => {
                // The driver is not waiting on this transport's writability (`write_blocked` is
                // false), so polling it with a waker that does nothing takes nothing from it;
                // if the write cannot finish, the driver is woken and polls it itself.
                let mut cx = Context::from_waker(Waker::noop());
                let mut unflushed = self.unflushed;
                let ok = write_out(w, out, &mut unflushed, &mut cx).is_ok();
                self.unflushed = unflushed;
                ok && out.is_empty() && !unflushed
            }
        };
        if !done {
            self.write_blocked = true;
        }
        done
    }

    /// Whether a consumer (a `recv` call or the message callback) is waiting for a message.
    fn consumer_waiting(&self) -> bool {
        !self.recv_wakers.0.is_empty()
            || (self.callbacks.message.is_some() && !self.dispatch_wakers.0.is_empty())
    }

    /// Acts on how the input ended, if that waits: fails the connection for a protocol error,
    /// or answers the peer's CLOSE.
    fn apply_pending_end(&mut self) {
        match self.pending_end.take() {
            None => return,
            Some(PendingEnd::Failure(err)) => {
                if let Some(proto) = self.proto.as_mut() {
                    proto.fail_with(&err);
                }
                Inner::record_error(self, err.close_code(), err.to_string());
                tracing::debug!(error = %err, "failing the connection");
            }
            Some(PendingEnd::CloseReply) => {
                if let Some(proto) = self.proto.as_mut() {
                    proto.reply_close();
                }
            }
        }
        Inner::wake_driver(self);
    }

    /// Whether the receive queue is at its count or byte limit (reading pauses).
    fn queue_full(&self, config: &SocketConfig) -> bool {
        self.incoming.len() >= config.recv_queue_limit
            || self.incoming_bytes >= config.recv_buffer_limit
    }

    /// Takes the next received message, waking the driver if that makes room.
    fn pop_incoming(&mut self, config: &SocketConfig) -> Option<Message> {
        let was_full = self.queue_full(config);
        let msg = self.incoming.pop_front()?;
        self.incoming_bytes -= msg.len().min(self.incoming_bytes);
        if was_full {
            Inner::wake_driver(self);
        }
        Some(msg)
    }
}

/// How the input ended, while the application still has messages to take.
enum PendingEnd {
    /// A protocol error: fail the connection.
    Failure(crate::proto::ProtocolError),
    /// The peer's CLOSE: answer it.
    CloseReply,
}

struct Inner {
    role: Role,
    url: String,
    origin: String,
    protocol: OnceLock<String>,
    extensions: OnceLock<String>,
    state: AtomicU8,
    handles: AtomicUsize,
    config: SocketConfig,
    shared: Mutex<Shared>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic in a user callback never happens under this lock, so poisoning only follows a
        // bug of ours; the state is still consistent enough to go on.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_state(&self, state: ReadyState) {
        self.state.store(state as u8, Ordering::Release);
    }

    fn wake_driver(sh: &Shared) {
        if let Some(w) = &sh.driver {
            w.wake_by_ref();
        }
    }

    /// Records the end of the connection and wakes everyone waiting.
    fn finish(&self, sh: &mut Shared) {
        if let Some(p) = sh.proto.as_mut() {
            p.transport_closed();
        }
        if sh.closed.is_none() {
            let info = sh
                .proto
                .as_ref()
                .and_then(|p| p.close_info().cloned())
                .unwrap_or(CloseInfo {
                    code: CloseCode::ABNORMAL,
                    reason: "connection closed".into(),
                    clean: false,
                });
            sh.closed = Some(CloseEvent {
                code: info.code,
                reason: info.reason,
                clean: info.clean,
            });
        }
        self.set_state(ReadyState::Closed);
        // Dropping the write half of a TCP transport shuts it down; the read half goes with
        // the driver.
        sh.writer = None;
        sh.recv_wakers.wake_all();
        sh.send_wakers.wake_all();
        sh.close_wakers.wake_all();
        sh.dispatch_wakers.wake_all();
    }

    fn record_error(sh: &mut Shared, code: CloseCode, reason: String) {
        if sh.error.is_none() {
            sh.error = Some(ErrorEvent { code, reason });
        }
    }
}

/// A WebSocket connection (the seed's `ws.Socket`). Cloning gives another handle to the same
/// connection.
///
/// When the last handle is dropped while the connection is open and no callback is set, the
/// socket closes itself with 1001 (going away).
pub struct Socket {
    inner: Arc<Inner>,
}

impl Clone for Socket {
    fn clone(&self) -> Self {
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        Socket {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            let sh = self.inner.lock();
            Inner::wake_driver(&sh);
        }
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("url", &self.inner.url)
            .field("role", &self.inner.role)
            .field("ready_state", &self.ready_state())
            .finish()
    }
}

impl Socket {
    fn new_inner(role: Role, url: String, origin: String, config: SocketConfig) -> Socket {
        Socket {
            inner: Arc::new(Inner {
                role,
                url,
                origin,
                protocol: OnceLock::new(),
                extensions: OnceLock::new(),
                state: AtomicU8::new(ReadyState::Connecting as u8),
                handles: AtomicUsize::new(1),
                config,
                shared: Mutex::new(Shared {
                    proto: None,
                    incoming: VecDeque::new(),
                    incoming_bytes: 0,
                    writer: None,
                    write_blocked: false,
                    unflushed: false,
                    wrote_direct: false,
                    opened: false,
                    error: None,
                    closed: None,
                    driver: None,
                    recv_wakers: Wakers::default(),
                    send_wakers: Wakers::default(),
                    close_wakers: Wakers::default(),
                    dispatch_wakers: Wakers::default(),
                    callbacks: Callbacks::default(),
                    pending_end: None,
                }),
            }),
        }
    }

    /// Makes an OPEN socket over a handshaken stream and starts its driver task (on the current
    /// tokio runtime). `url` and `origin` are what [`Socket::url`] and [`Socket::origin`] report.
    pub fn from_stream(
        stream: WsStream,
        role: Role,
        negotiated: Negotiated,
        config: SocketConfig,
        url: impl Into<String>,
        origin: impl Into<String>,
    ) -> Socket {
        let socket = Socket::new_inner(role, url.into(), origin.into(), config);
        socket.start(stream, negotiated);
        socket
    }

    /// Moves a CONNECTING socket to OPEN over `stream` and spawns the driver.
    fn start(&self, mut stream: WsStream, negotiated: Negotiated) {
        let inner = &self.inner;
        let _ = inner
            .protocol
            .set(negotiated.protocol.clone().unwrap_or_default());
        let _ = inner.extensions.set(negotiated.extensions.clone());
        let mut proto = Protocol::new(inner.role, inner.config.limits());
        if let Some(params) = negotiated.deflate {
            proto.enable_deflate(params, &negotiated.deflate_config);
        }
        let rbuf = stream.take_prefix();
        // The transport is split so that senders can write without a trip through the driver
        // (plain TCP natively, anything else behind a lock).
        let (io, writer) = match stream.into_inner() {
            crate::stream::Inner::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (Io::Tcp(read), Writer::Tcp(write))
            }
            other => {
                let (read, write) = tokio::io::split(WsStream::new(other, BytesMut::new()));
                (Io::Split(read), Writer::Split(write))
            }
        };
        {
            let mut sh = inner.lock();
            sh.writer = Some(writer);
            sh.proto = Some(proto);
            sh.opened = true;
            inner.set_state(ReadyState::Open);
            sh.dispatch_wakers.wake_all();
            sh.recv_wakers.wake_all();
            sh.send_wakers.wake_all();
        }
        let driver = Driver {
            inner: inner.clone(),
            io,
            rbuf,
            read_eof: false,
            shutdown: false,
            close_timer: None,
            failure_timer: None,
            write_timer: None,
            ping_timer: inner
                .config
                .ping_interval
                .map(|d| Box::pin(tokio::time::sleep(d))),
            awaiting_pong: false,
            heard: false,
            undecoded: true,
            read_hint: 0,
        };
        tokio::spawn(driver);
    }

    /// Fails a CONNECTING socket: error event (1002), then close event (1006).
    fn fail_connect(&self, reason: String) {
        let mut sh = self.inner.lock();
        Inner::record_error(&mut sh, CloseCode::PROTOCOL_ERROR, reason.clone());
        sh.closed = Some(CloseEvent {
            code: CloseCode::ABNORMAL,
            reason,
            clean: false,
        });
        self.inner.finish(&mut sh);
    }

    /// Starts connecting to `url` and returns at once, in the CONNECTING state; the `open` event
    /// (or `error` then `close`) follows. Must be called inside a tokio runtime.
    pub fn connect(url: &str, options: crate::connect::ConnectOptions) -> Socket {
        let origin = options.origin.clone().unwrap_or_default();
        let socket =
            Socket::new_inner(Role::Client, url.to_owned(), origin, options.socket.clone());
        let task_socket = socket.clone();
        let url = url.to_owned();
        tokio::spawn(async move {
            match crate::connect::connect_with(&url, &options).await {
                Ok(conn) => {
                    let negotiated = Negotiated {
                        protocol: conn.protocol,
                        deflate: conn.deflate,
                        deflate_config: options.deflate.clone().unwrap_or_default(),
                        extensions: conn.extensions,
                    };
                    task_socket.start(conn.stream, negotiated);
                }
                Err(e) => task_socket.fail_connect(e.to_string()),
            }
            // Dropping this handle only counts down; the driver holds the connection.
        });
        socket
    }

    /// Connects and returns once the socket is OPEN, or with the error that stopped it.
    ///
    /// Cancel safety: dropping the future abandons the attempt and closes its TCP connection.
    pub async fn open(url: &str, options: crate::connect::ConnectOptions) -> Result<Socket> {
        let conn = crate::connect::connect_with(url, &options).await?;
        let origin = options.origin.clone().unwrap_or_default();
        let negotiated = Negotiated {
            protocol: conn.protocol,
            deflate: conn.deflate,
            deflate_config: options.deflate.clone().unwrap_or_default(),
            extensions: conn.extensions,
        };
        Ok(Socket::from_stream(
            conn.stream,
            Role::Client,
            negotiated,
            options.socket,
            url,
            origin,
        ))
    }

    /// The URL this socket connected to (client) or was requested at (server).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The negotiated subprotocol ("" when none, or while connecting).
    pub fn protocol(&self) -> &str {
        self.inner.protocol.get().map_or("", String::as_str)
    }

    /// The origin: what the client sent, on either side ("" when none).
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// The negotiated `Sec-WebSocket-Extensions` ("" when none).
    pub fn extensions(&self) -> &str {
        self.inner.extensions.get().map_or("", String::as_str)
    }

    /// Which end this socket is.
    pub fn role(&self) -> Role {
        self.inner.role
    }

    /// The current state (the seed's `readyState`).
    pub fn ready_state(&self) -> ReadyState {
        ReadyState::from_u8(self.inner.state.load(Ordering::Acquire)).unwrap_or(ReadyState::Closed)
    }

    /// The settings in force.
    pub fn config(&self) -> &SocketConfig {
        &self.inner.config
    }

    /// Bytes held by this connection's compression state and partly received message.
    pub fn memory_usage(&self) -> usize {
        let mut sh = self.inner.lock();
        sh.proto.as_ref().map_or(0, Protocol::memory_usage) + sh.queued()
    }

    /// Whether a message may be queued now: `Some(Ready(Err))` unless OPEN, `Some(Pending)`
    /// (with `cx` registered) while the write buffer is over its limit, `None` to go ahead. With
    /// no `cx`, a full buffer does not stop the message.
    fn admit(&self, sh: &mut Shared, cx: Option<&Context<'_>>) -> Option<Poll<Result<()>>> {
        let pending = sh.queued();
        let Some(proto) = sh.proto.as_ref() else {
            return Some(Poll::Ready(Err(Error::NotOpen(self.ready_state()))));
        };
        if proto.state() != ReadyState::Open || proto.close_sent() {
            let state = self.ready_state().max(proto.state());
            return Some(Poll::Ready(Err(Error::NotOpen(state))));
        }
        if pending > 0 && pending >= self.inner.config.write_buffer_limit {
            if let Some(cx) = cx {
                sh.send_wakers.register(cx.waker());
                return Some(Poll::Pending);
            }
        }
        None
    }

    fn poll_queue(&self, cx: Option<&Context<'_>>, msg: &Message) -> Poll<Result<()>> {
        let mut sh = self.inner.lock();
        if let Some(refused) = self.admit(&mut sh, cx) {
            return refused;
        }
        let Some(proto) = sh.proto.as_mut() else {
            return Poll::Ready(Err(Error::NotOpen(self.ready_state())));
        };
        let compression = match msg.compress_setting() {
            Some(false) => Compression::Never,
            _ => Compression::Auto,
        };
        let result = match msg.kind() {
            OpCode::Close => {
                let frame = crate::proto::CloseFrame::parse(msg.body())?;
                let (code, reason) =
                    frame.map_or((CloseCode::NORMAL, String::new()), |f| (f.code, f.reason));
                proto.close(code, &reason);
                Ok(())
            }
            OpCode::Continue => Err(Error::Upgrade(
                "a CONTINUE message cannot be sent on its own".into(),
            )),
            kind => proto
                .send(kind, msg.body().clone(), compression)
                .map_err(Error::from),
        };
        if msg.kind() == OpCode::Close {
            Inner::wake_driver(&sh);
        } else if result.is_ok() {
            sh.write_or_wake();
        }
        Poll::Ready(result)
    }

    /// Sends a message: a `&str`/`String` as TEXT, bytes as BINARY, or a whole [`Message`]
    /// (TEXT, BINARY, PING or PONG). Messages go out in the order `send` was called, from any
    /// number of tasks. Waits while the write buffer is over its limit (backpressure); returns
    /// once the message is queued, not once it is written.
    ///
    /// Cancel safety: dropping the future before it completes sends nothing.
    /// Errors with [`Error::NotOpen`] unless the socket is OPEN.
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        let msg = msg.into();
        poll_fn(|cx| self.poll_queue(Some(cx), &msg)).await
    }

    /// Queues a message only if the write buffer is under its limit: `Ok(true)` if queued,
    /// `Ok(false)` if the buffer is full (nothing was queued), an error if the socket is not
    /// OPEN. For broadcasters that must never wait on one slow peer.
    pub fn try_send(&self, msg: impl Into<Message>) -> Result<bool> {
        let cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_queue(Some(&cx), &msg.into()) {
            Poll::Ready(r) => r.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }

    /// Bytes queued for sending and not yet handed to the transport (the browser's
    /// `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        let mut sh = self.inner.lock();
        sh.queued()
    }

    /// Sends a frame encoded once for many sockets (see [`PreparedMessage`]). On a server
    /// socket the shared bytes are queued as they are, without copying or re-encoding; a client
    /// socket (which must mask) encodes the message itself. Waits like [`Socket::send`], and
    /// is cancel-safe as it is.
    pub async fn send_prepared(&self, prepared: &PreparedMessage) -> Result<()> {
        poll_fn(|cx| self.poll_queue_prepared(Some(cx), prepared)).await
    }

    /// [`Socket::send_prepared`] without waiting: `Ok(false)` if the write buffer is full.
    pub fn try_send_prepared(&self, prepared: &PreparedMessage) -> Result<bool> {
        let cx = Context::from_waker(std::task::Waker::noop());
        match self.poll_queue_prepared(Some(&cx), prepared) {
            Poll::Ready(r) => r.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }

    fn poll_queue_prepared(
        &self,
        cx: Option<&Context<'_>>,
        prepared: &PreparedMessage,
    ) -> Poll<Result<()>> {
        if self.inner.role == Role::Client {
            return self.poll_queue(cx, &prepared.message);
        }
        let mut sh = self.inner.lock();
        if let Some(refused) = self.admit(&mut sh, cx) {
            return refused;
        }
        let Some(proto) = sh.proto.as_mut() else {
            return Poll::Ready(Err(Error::NotOpen(self.ready_state())));
        };
        let result = proto
            .send_encoded(prepared.frame.clone())
            .map_err(Error::from);
        if result.is_ok() {
            sh.write_or_wake();
        }
        Poll::Ready(result)
    }

    /// Queues a message without waiting, even past the write buffer limit.
    pub fn send_now(&self, msg: impl Into<Message>) -> Result<()> {
        match self.poll_queue(None, &msg.into()) {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(()),
        }
    }

    /// Sends a PING with `payload` (at most 125 bytes). Cancel safety: as [`Socket::send`].
    pub async fn ping(&self, payload: impl Into<Bytes>) -> Result<()> {
        self.send(Message::ping(payload)).await
    }

    /// Waits until everything queued so far has been handed to the transport.
    ///
    /// Cancel safety: safe to drop; nothing is lost.
    pub async fn flush(&self) -> Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Polls until everything queued so far has been handed to the transport.
    pub fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut sh = self.inner.lock();
        let queued = sh.queued();
        if (queued == 0 && !sh.unflushed) || sh.closed.is_some() {
            return Poll::Ready(Ok(()));
        }
        sh.send_wakers.register(cx.waker());
        Inner::wake_driver(&sh);
        Poll::Pending
    }

    /// Starts the close handshake without waiting: validates `code` (1000 or 3000-4999) and
    /// queues the CLOSE. A second call, or a call after the peer's CLOSE, does nothing.
    pub fn start_close(&self, code: u16, reason: &str) -> Result<()> {
        if !CloseCode(code).is_allowed_for_app() {
            return Err(Error::InvalidCloseCode(code));
        }
        self.close_internal(CloseCode(code), reason);
        Ok(())
    }

    /// Starts the close handshake with any code that may be sent on the wire (for example 1001,
    /// 1008, 1011 or 1013 from a server), without waiting. [`Socket::close`] keeps to the codes
    /// an application may use (1000, 3000-4999), as browsers do.
    pub fn start_close_with(&self, code: CloseCode, reason: &str) -> Result<()> {
        if !code.is_valid_on_wire() {
            return Err(Error::InvalidCloseCode(code.0));
        }
        self.close_internal(code, reason);
        Ok(())
    }

    pub(crate) fn close_internal(&self, code: CloseCode, reason: &str) {
        let mut sh = self.inner.lock();
        match sh.proto.as_mut() {
            Some(proto) => {
                proto.close(code, reason);
                if proto.state() != ReadyState::Open {
                    self.inner.set_state(ReadyState::Closing.max(proto.state()));
                }
                Inner::wake_driver(&sh);
            }
            None => {
                // Still connecting: the attempt is abandoned.
                if sh.closed.is_none() {
                    sh.closed = Some(CloseEvent {
                        code: CloseCode::ABNORMAL,
                        reason: "closed before the connection opened".into(),
                        clean: false,
                    });
                    self.inner.finish(&mut sh);
                }
            }
        }
    }

    /// Closes the connection (the seed's `close(code = 1000, reason = "")`): sends CLOSE with
    /// `code` and `reason` and waits until the connection is closed (the peer's CLOSE arrived
    /// and the transport ended, or the close timeout passed).
    ///
    /// Only 1000 and 3000-4999 are accepted ([`Error::InvalidCloseCode`] otherwise). Closing
    /// twice, or after the peer closed, is not an error. Cancel safety: if dropped after the
    /// CLOSE was queued, the close handshake still completes in the background.
    pub async fn close(&self, code: u16, reason: &str) -> Result<()> {
        self.start_close(code, reason)?;
        self.closed().await;
        Ok(())
    }

    /// Waits until the socket is CLOSED and returns how it ended. Cancel-safe.
    pub async fn closed(&self) -> CloseEvent {
        poll_fn(|cx| {
            let mut sh = self.inner.lock();
            match &sh.closed {
                Some(ev) => Poll::Ready(ev.clone()),
                None => {
                    sh.close_wakers.register(cx.waker());
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// The error event, if one happened.
    pub fn error(&self) -> Option<ErrorEvent> {
        self.inner.lock().error.clone()
    }

    /// Polls for the next message (see [`Socket::recv`]).
    pub fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Message>> {
        let mut sh = self.inner.lock();
        if let Some(msg) = sh.pop_incoming(&self.inner.config) {
            return Poll::Ready(Ok(msg));
        }
        // Everything received before a protocol error was taken: fail now.
        sh.apply_pending_end();
        if let Some(closed) = &sh.closed {
            return Poll::Ready(Err(match &sh.error {
                Some(e) if !closed.clean => Error::Closed {
                    code: e.code,
                    reason: e.reason.clone(),
                },
                _ => Error::Closed {
                    code: closed.code,
                    reason: closed.reason.clone(),
                },
            }));
        }
        sh.recv_wakers.register(cx.waker());
        Poll::Pending
    }

    /// Receives the next message. At the end of the connection it returns
    /// [`Error::Closed`] with the close code and reason (the error's, if it failed).
    ///
    /// Cancel safety: cancel-safe. A message is taken from the queue only by a call that
    /// returns it, so dropping `recv()` (in a `select!`, say) loses nothing.
    pub async fn recv(&self) -> Result<Message> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// A `Stream` of this socket's messages (a [`SocketReader`] on a new handle).
    pub fn stream(&self) -> SocketReader {
        SocketReader {
            socket: self.clone(),
            done: false,
        }
    }

    /// Splits into a reader (a `Stream` of messages) and a writer (a `Sink` of messages). Both
    /// halves drive the same connection: PINGs keep being answered and the close handshake
    /// completes whichever half is in use.
    pub fn split(&self) -> (SocketReader, SocketWriter) {
        (
            SocketReader {
                socket: self.clone(),
                done: false,
            },
            SocketWriter {
                socket: self.clone(),
                closing: false,
            },
        )
    }

    fn set_callback(&self, set: impl FnOnce(&mut Callbacks)) {
        let mut sh = self.inner.lock();
        set(&mut sh.callbacks);
        sh.dispatch_wakers.wake_all();
        if !sh.callbacks.dispatcher {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                sh.callbacks.dispatcher = true;
                handle.spawn(dispatch(self.inner.clone()));
            }
        }
    }

    /// Calls `f` when the socket opens (also if it opened a moment before `f` was set).
    pub fn on_open(&self, f: impl Fn() + Send + Sync + 'static) {
        self.set_callback(|c| c.open = Some(Arc::new(f)));
    }

    /// Calls `f` with each message, in order, starting with those already queued. Once set,
    /// messages no longer reach [`Socket::recv`].
    pub fn on_message(&self, f: impl Fn(Message) + Send + Sync + 'static) {
        self.set_callback(|c| c.message = Some(Arc::new(f)));
    }

    /// Calls `f` once when the socket is closed, after the queued messages were delivered.
    pub fn on_close(&self, f: impl Fn(CloseEvent) + Send + Sync + 'static) {
        self.set_callback(|c| c.close = Some(Arc::new(f)));
    }

    /// Calls `f` once if the connection fails (before the close event).
    pub fn on_error(&self, f: impl Fn(ErrorEvent) + Send + Sync + 'static) {
        self.set_callback(|c| c.error = Some(Arc::new(f)));
    }
}

enum Dispatch {
    Open(OpenFn),
    Message(MessageFn, Message),
    Error(ErrorFn, ErrorEvent),
    Close(CloseFn, CloseEvent),
    Done,
}

/// Delivers events to the callbacks, in order, on a task of its own.
async fn dispatch(inner: Arc<Inner>) {
    loop {
        let next = poll_fn(|cx| {
            let mut sh = inner.lock();
            let sh = &mut *sh;
            if sh.opened && !sh.callbacks.open_fired {
                if let Some(f) = sh.callbacks.open.clone() {
                    sh.callbacks.open_fired = true;
                    return Poll::Ready(Dispatch::Open(f));
                }
            }
            if let Some(f) = sh.callbacks.message.clone() {
                if let Some(msg) = sh.pop_incoming(&inner.config) {
                    return Poll::Ready(Dispatch::Message(f, msg));
                }
                sh.apply_pending_end();
            }
            if let Some(closed) = sh.closed.clone() {
                let cbs = &mut sh.callbacks;
                if let (Some(e), Some(f), false) = (&sh.error, &cbs.error, cbs.error_fired) {
                    cbs.error_fired = true;
                    return Poll::Ready(Dispatch::Error(f.clone(), e.clone()));
                }
                if let (Some(f), false) = (&cbs.close, cbs.close_fired) {
                    cbs.close_fired = true;
                    return Poll::Ready(Dispatch::Close(f.clone(), closed));
                }
                let all_done = (cbs.error_fired || sh.error.is_none() || cbs.error.is_none())
                    && cbs.close_fired
                    && (cbs.message.is_none() || sh.incoming.is_empty());
                if all_done {
                    return Poll::Ready(Dispatch::Done);
                }
            }
            sh.dispatch_wakers.register(cx.waker());
            Poll::Pending
        })
        .await;
        match next {
            Dispatch::Open(f) => f(),
            Dispatch::Message(f, m) => f(m),
            Dispatch::Error(f, e) => f(e),
            Dispatch::Close(f, c) => f(c),
            Dispatch::Done => return,
        }
    }
}

/// The reading half of a split socket: a `Stream` of messages that ends after the close.
#[derive(Debug)]
pub struct SocketReader {
    socket: Socket,
    done: bool,
}

impl SocketReader {
    /// Receives the next message (see [`Socket::recv`]). Cancel-safe.
    pub async fn recv(&mut self) -> Result<Message> {
        self.socket.recv().await
    }

    /// The socket this half belongs to.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }
}

impl futures_core::Stream for SocketReader {
    type Item = Result<Message>;

    /// Yields each message; at the end, one `Err` if the connection failed, then `None`.
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.socket.poll_recv(cx) {
            Poll::Ready(Ok(m)) => Poll::Ready(Some(Ok(m))),
            Poll::Ready(Err(e)) => {
                self.done = true;
                let clean = self
                    .socket
                    .inner
                    .lock()
                    .closed
                    .as_ref()
                    .is_some_and(|c| c.clean);
                Poll::Ready(if clean { None } else { Some(Err(e)) })
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// The writing half of a split socket: a `Sink` of messages.
#[derive(Debug)]
pub struct SocketWriter {
    socket: Socket,
    closing: bool,
}

impl SocketWriter {
    /// Sends a message (see [`Socket::send`]).
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        self.socket.send(msg).await
    }

    /// Closes the connection (see [`Socket::close`]).
    pub async fn close(&self, code: u16, reason: &str) -> Result<()> {
        self.socket.close(code, reason).await
    }

    /// The socket this half belongs to.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }
}

impl futures_sink::Sink<Message> for SocketWriter {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut sh = self.socket.inner.lock();
        let pending = sh.queued();
        if pending > 0 && pending >= self.socket.inner.config.write_buffer_limit {
            sh.send_wakers.register(cx.waker());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.socket.send_now(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.socket.poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if !self.closing {
            self.closing = true;
            self.socket.close_internal(CloseCode::NORMAL, "");
        }
        let mut sh = self.socket.inner.lock();
        if sh.closed.is_some() {
            return Poll::Ready(Ok(()));
        }
        sh.close_wakers.register(cx.waker());
        Poll::Pending
    }
}

/// The read half of the transport, which the driver owns.
enum Io {
    /// Plain TCP.
    Tcp(OwnedReadHalf),
    /// Any other transport (TLS, an HTTP server's upgraded connection, ...).
    Split(ReadHalf<WsStream>),
}

/// The write half of the transport, in [`Shared::writer`].
enum Writer {
    /// Plain TCP.
    Tcp(OwnedWriteHalf),
    /// Any other transport.
    Split(WriteHalf<WsStream>),
}

impl AsyncWrite for Writer {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            Writer::Split(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            Writer::Split(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Writer::Tcp(w) => w.is_write_vectored(),
            Writer::Split(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_flush(cx),
            Writer::Split(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Writer::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            Writer::Split(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            Io::Split(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// What [`Driver::sync`] found.
struct Synced {
    close_sent: bool,
    should_close: bool,
    handshake_done: bool,
    /// Bytes still queued after writing.
    pending: usize,
    /// Whether anything was written.
    progress: bool,
    /// The receive queue is at its limit (reading pauses).
    queue_full: bool,
    /// A protocol error or the peer's CLOSE waits for the application ([`Shared::pending_end`]).
    pending_end: bool,
}

/// The per-connection task: moves bytes between the transport and the protocol.
struct Driver {
    inner: Arc<Inner>,
    io: Io,
    rbuf: BytesMut,
    read_eof: bool,
    shutdown: bool,
    close_timer: Option<Pin<Box<Sleep>>>,
    /// Runs while a protocol error waits for the application ([`Shared::pending_failure`]).
    failure_timer: Option<Pin<Box<Sleep>>>,
    write_timer: Option<Pin<Box<Sleep>>>,
    ping_timer: Option<Pin<Box<Sleep>>>,
    awaiting_pong: bool,
    heard: bool,
    /// `rbuf` may hold bytes not decoded yet (after the handshake, or after the receive queue
    /// filled up in the middle of a read).
    undecoded: bool,
    /// The size of the large frame the last message started with (0 after a small one): how
    /// much to read at once when the next one comes.
    read_hint: usize,
}

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// The stack buffer an idle connection reads into.
const IDLE_READ: usize = 4096;
/// Room left past the end of the frame being read: a read that does not fill the buffer tells
/// the runtime the socket is drained, which saves a read that would only find it empty.
const READ_SLACK: usize = 1024;
/// The most slices handed to one vectored write.
const MAX_IOV: usize = 64;

/// The size (up to 1 MiB) of the frame that `data` starts with, if that is more than
/// [`IDLE_READ`]; 0 for a smaller frame or an incomplete header.
fn large_frame(data: &[u8]) -> usize {
    match FrameHeader::decode(data) {
        Ok(Some((h, header_len))) => {
            let len = (header_len as u64)
                .saturating_add(h.payload_len)
                .min(1 << 20) as usize;
            if len > IDLE_READ {
                len
            } else {
                0
            }
        }
        _ => 0,
    }
}

/// Writes `out` to `w` until it is empty or `w` is full, then flushes `w` if anything it took
/// is not flushed yet (`unflushed`); returns whether anything was written.
fn write_out<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Output,
    unflushed: &mut bool,
    cx: &mut Context<'_>,
) -> std::io::Result<bool> {
    let mut progress = false;
    while !out.is_empty() {
        let poll = if w.is_write_vectored() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = out.io_slices(&mut slices);
            Pin::new(&mut *w).poll_write_vectored(cx, &slices[..n])
        } else {
            Pin::new(&mut *w).poll_write(cx, out.first_chunk())
        };
        match poll {
            Poll::Ready(Ok(0)) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the transport accepted no bytes",
                ))
            }
            Poll::Ready(Ok(n)) => {
                progress = true;
                *unflushed = true;
                out.advance(n);
            }
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => break,
        }
    }
    if out.is_empty() && *unflushed {
        match Pin::new(&mut *w).poll_flush(cx) {
            Poll::Ready(Ok(())) => *unflushed = false,
            Poll::Ready(Err(e)) => return Err(e),
            Poll::Pending => {}
        }
    }
    Ok(progress)
}

enum Step {
    Continue,
    Finished,
}

impl Driver {
    /// Writes what the protocol queued (from the head of its output, so no sender's bytes can
    /// overtake another's) and reads the close-related state.
    fn sync(&mut self, cx: &mut Context<'_>) -> std::io::Result<Synced> {
        let inner = &self.inner;
        let mut sh = inner.lock();
        let sh = &mut *sh;
        match &sh.driver {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => sh.driver = Some(cx.waker().clone()),
        }
        sh.wrote_direct = false;
        if inner.handles.load(Ordering::Acquire) == 0 && !sh.callbacks.any() {
            // Nobody will take the messages received before a protocol error.
            sh.apply_pending_end();
        }
        let Some(proto) = sh.proto.as_mut() else {
            return Ok(Synced {
                close_sent: false,
                should_close: true,
                handshake_done: false,
                pending: 0,
                progress: false,
                queue_full: false,
                pending_end: false,
            });
        };
        if inner.handles.load(Ordering::Acquire) == 0
            && !sh.callbacks.any()
            && proto.state() == ReadyState::Open
        {
            proto.close(CloseCode::GOING_AWAY, "");
        }
        if proto.state() != ReadyState::Open {
            inner.set_state(ReadyState::Closing);
        }
        proto.release_held_pong();
        let out = proto.output();
        let progress = match sh.writer.as_mut() {
            Some(w) => write_out(w, out, &mut sh.unflushed, cx)?,
            None => false,
        };
        let pending = out.len();
        sh.write_blocked = pending > 0 || sh.unflushed;
        let synced = Synced {
            close_sent: proto.close_sent(),
            should_close: proto.should_close_transport(),
            handshake_done: proto.close_handshake_done(),
            pending,
            progress,
            queue_full: sh.queue_full(&inner.config),
            pending_end: sh.pending_end.is_some(),
        };
        if pending < inner.config.write_buffer_limit {
            sh.send_wakers.wake_all();
        }
        Ok(synced)
    }

    /// Shuts the transport's write side down.
    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.inner.lock().writer.as_mut() {
            Some(w) => Pin::new(w).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        if self.rbuf.is_empty() {
            // Between messages an idle connection holds no read buffer at all (`process`
            // releases it once everything is decoded).
            if self.read_hint > 0 {
                // The last message started with a large frame: read the next one straight into
                // a buffer of that size (one read, no copy); give the buffer back if nothing
                // came. On TCP, wait for readability first, so that a driver woken for other
                // reasons (its writes draining) does not allocate the buffer for nothing.
                if let Io::Tcp(tcp) = &self.io {
                    if let Err(e) = std::task::ready!(tcp.as_ref().poll_read_ready(cx)) {
                        return Poll::Ready(Err(e));
                    }
                }
                self.rbuf.reserve(self.read_hint + READ_SLACK);
                let poll =
                    tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf);
                if self.rbuf.is_empty() {
                    self.rbuf = BytesMut::new();
                } else {
                    self.read_hint = large_frame(&self.rbuf);
                }
                return poll;
            }
            // Small messages: read into the stack (uninitialized: nothing to zero) and copy
            // what came into a buffer of its size.
            let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); IDLE_READ];
            let mut buf = ReadBuf::uninit(&mut stack);
            return match Pin::new(&mut self.io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    let data = buf.filled();
                    let n = data.len();
                    if n > 0 {
                        // Room for the whole frame that starts here (up to 1 MiB), so that the
                        // next read can take the rest of it at once.
                        self.read_hint = large_frame(data);
                        let room = if self.read_hint > n {
                            self.read_hint + READ_SLACK
                        } else {
                            n
                        };
                        let room = if n == IDLE_READ {
                            room.max(READ_CHUNK)
                        } else {
                            room
                        };
                        self.rbuf.reserve(room);
                        self.rbuf.extend_from_slice(data);
                    }
                    Poll::Ready(Ok(n))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        let wanted = {
            let sh = self.inner.lock();
            sh.proto
                .as_ref()
                .map_or(1, |p| p.bytes_wanted(self.rbuf.len()))
        };
        let spare = self.rbuf.capacity() - self.rbuf.len();
        if spare < READ_CHUNK / 4 || wanted > spare {
            self.rbuf
                .reserve(wanted.clamp(READ_CHUNK, 1 << 20) + READ_SLACK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.rbuf)
    }

    /// Decodes what was read, delivering messages and recording the end.
    fn process(&mut self) {
        let inner = &self.inner;
        let mut sh = inner.lock();
        let sh = &mut *sh;
        self.undecoded = false;
        let Some(proto) = sh.proto.as_mut() else {
            return;
        };
        let mut delivered = false;
        loop {
            match proto.receive_deferred(&mut self.rbuf) {
                Ok(Some(Incoming::Message {
                    opcode,
                    payload,
                    compressed,
                    masked,
                })) => {
                    sh.incoming_bytes += payload.len();
                    sh.incoming.push_back(Message::received(
                        opcode,
                        payload,
                        compressed,
                        masked,
                        inner.config.max_payload,
                    ));
                    delivered = true;
                    if sh.incoming.len() >= inner.config.recv_queue_limit
                        || sh.incoming_bytes >= inner.config.recv_buffer_limit
                    {
                        // The rest stays in rbuf until the application catches up.
                        self.undecoded = true;
                        break;
                    }
                }
                Ok(Some(Incoming::Pong(_))) => self.awaiting_pong = false,
                Ok(Some(Incoming::Ping(_))) => {}
                Ok(Some(Incoming::Close(_))) => {
                    if proto.close_reply_pending() {
                        // Answered once the application has taken what came before it.
                        sh.pending_end = Some(PendingEnd::CloseReply);
                        if sh.incoming.is_empty() {
                            sh.apply_pending_end();
                        }
                    } else {
                        inner.set_state(ReadyState::Closing);
                    }
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    // Messages received before the error are answered before our CLOSE: the
                    // failure waits until the application has taken them (or a timeout).
                    sh.pending_end = Some(PendingEnd::Failure(e));
                    if sh.incoming.is_empty() && sh.consumer_waiting() {
                        sh.apply_pending_end();
                    }
                    break;
                }
            }
        }
        self.heard = true;
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            // Everything is decoded: give the buffer back (messages keep their own slices).
            self.rbuf = BytesMut::new();
        }
        if delivered {
            sh.recv_wakers.wake_all();
            sh.dispatch_wakers.wake_all();
        }
    }

    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        loop {
            let mut progress = false;
            let Synced {
                close_sent,
                should_close,
                handshake_done,
                pending,
                progress: wrote,
                queue_full,
                pending_end,
            } = match self.sync(cx) {
                Ok(synced) => synced,
                Err(e) => return self.fail_io(e),
            };
            progress |= wrote;
            if close_sent && self.close_timer.is_none() {
                self.close_timer = Some(Box::pin(tokio::time::sleep(
                    self.inner.config.close_timeout,
                )));
            }
            if pending > 0 {
                if let Some(limit) = self.inner.config.write_timeout {
                    let timer = self
                        .write_timer
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                    if wrote {
                        timer.as_mut().reset(Instant::now() + limit);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        let mut sh = self.inner.lock();
                        Inner::record_error(
                            &mut sh,
                            CloseCode::ABNORMAL,
                            format!("the peer read nothing for {limit:?}; dropped"),
                        );
                        return Step::Finished;
                    }
                }
            } else {
                self.write_timer = None;
            }
            if pending == 0
                && (should_close
                    || (self.read_eof && handshake_done)
                    || (self.read_eof && close_sent))
                && !self.shutdown
            {
                match self.poll_shutdown(cx) {
                    Poll::Ready(_) => {
                        self.shutdown = true;
                        return Step::Finished;
                    }
                    Poll::Pending => {}
                }
            }
            if self.read_eof && pending == 0 {
                return Step::Finished;
            }
            if self.undecoded && !queue_full {
                self.process();
                continue;
            }
            // Reading goes on while our writes wait (both ends may be sending at once): the
            // application's own backpressure stops it through the receive queue, and PONGs
            // are held back while the output is full (`Protocol::release_held_pong`).
            if !self.read_eof && !queue_full && !self.shutdown {
                match self.read(cx) {
                    Poll::Ready(Ok(0)) => {
                        self.read_eof = true;
                        progress = true;
                        let mut sh = self.inner.lock();
                        sh.apply_pending_end();
                        if let Some(p) = sh.proto.as_mut() {
                            if let Err(e) = p.receive_eof() {
                                let reason = match e {
                                    crate::proto::ProtocolError::Truncated => {
                                        "the connection was lost without a close handshake"
                                            .to_owned()
                                    }
                                    other => other.to_string(),
                                };
                                Inner::record_error(&mut sh, CloseCode::ABNORMAL, reason);
                            }
                        }
                    }
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        self.process();
                    }
                    Poll::Ready(Err(e)) => return self.fail_io(e),
                    Poll::Pending => {}
                }
            }
            if let Some(timer) = self.close_timer.as_mut() {
                if timer.as_mut().poll(cx).is_ready() {
                    tracing::debug!(url = %self.inner.url, "close handshake timed out");
                    return Step::Finished;
                }
            }
            // (Set by `process` in this round, it is seen in the next: reading made progress.)
            if pending_end {
                // The application does not take the messages that came before a protocol error:
                // fail anyway after the close timeout.
                let limit = self.inner.config.close_timeout;
                let timer = self
                    .failure_timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                if timer.as_mut().poll(cx).is_ready() {
                    self.inner.lock().apply_pending_end();
                    progress = true;
                }
            }
            if let Some(interval) = self.inner.config.ping_interval {
                if let Some(timer) = self.ping_timer.as_mut() {
                    if self.heard {
                        self.heard = false;
                        self.awaiting_pong = false;
                        timer.as_mut().reset(Instant::now() + interval);
                    }
                    if timer.as_mut().poll(cx).is_ready() {
                        if self.awaiting_pong {
                            let mut sh = self.inner.lock();
                            let timeout = self.inner.config.ping_timeout;
                            Inner::record_error(
                                &mut sh,
                                CloseCode::ABNORMAL,
                                format!("no answer to a keepalive ping within {timeout:?}"),
                            );
                            return Step::Finished;
                        }
                        let mut sh = self.inner.lock();
                        if let Some(p) = sh.proto.as_mut() {
                            if p.ping(Bytes::new()).is_ok() {
                                self.awaiting_pong = true;
                            }
                        }
                        drop(sh);
                        let timeout = self.inner.config.ping_timeout;
                        timer.as_mut().reset(Instant::now() + timeout);
                        progress = true;
                    }
                }
            }
            if !progress {
                return Step::Continue;
            }
        }
    }

    fn fail_io(&mut self, e: std::io::Error) -> Step {
        let mut sh = self.inner.lock();
        let done = sh.proto.as_ref().is_some_and(|p| p.close_handshake_done());
        if !done {
            Inner::record_error(
                &mut sh,
                CloseCode::ABNORMAL,
                format!("connection lost: {e}"),
            );
        }
        Step::Finished
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.step(cx) {
            Step::Continue => Poll::Pending,
            Step::Finished => {
                let inner = self.inner.clone();
                let mut sh = inner.lock();
                inner.finish(&mut sh);
                tracing::debug!(url = %inner.url, "connection closed");
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A masked client frame.
    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let key = [7, 1, 9, 3];
        let mut out = vec![b0, 0x80 | payload.len() as u8];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        out
    }

    /// An echo server over one end of a pipe; the test speaks raw frames on the other.
    fn echo_server() -> tokio::io::DuplexStream {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        let stream = WsStream::from_transport(theirs, BytesMut::new());
        let socket = Socket::from_stream(
            stream,
            Role::Server,
            Negotiated::default(),
            SocketConfig::default(),
            "/",
            "",
        );
        tokio::spawn(async move {
            while let Ok(msg) = socket.recv().await {
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
        });
        ours
    }

    #[tokio::test]
    async fn messages_before_a_protocol_error_are_echoed_before_the_close() {
        // Autobahn 3.2 / 4.1.3 / 5.15: a valid message, then a bad frame (RSV2), then a PING,
        // all in one write. The echo must come first, then CLOSE 1002, then EOF.
        let mut peer = echo_server();
        let mut wire = client_frame(0x81, b"Hello");
        wire.extend(client_frame(0xa1, b"Hello"));
        wire.extend(client_frame(0x89, b""));
        peer.write_all(&wire).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got[..7], b"\x81\x05Hello");
        assert_eq!((got[7], &got[9..11]), (0x88, &[0x03, 0xea][..]));
    }

    #[tokio::test]
    async fn a_protocol_error_with_nothing_pending_fails_at_once() {
        // Autobahn 6.4.x: invalid UTF-8 inside a frame still arriving fails the connection
        // without waiting for the rest of the frame.
        let mut peer = echo_server();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A header announcing 100 bytes, then 3 of them: "ok" and 0xff.
        let key = [7u8, 1, 9, 3];
        let mut wire = vec![0x81, 0x80 | 100];
        wire.extend_from_slice(&key);
        wire.extend([b'o' ^ key[0], b'k' ^ key[1], 0xff ^ key[2]]);
        peer.write_all(&wire).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((got[0], &got[2..4]), (0x88, &[0x03, 0xef][..]));
    }
}
