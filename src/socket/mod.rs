//! [`Socket`]: the seed's `ws.Socket` (fibjs `WebSocket`), the event-driven connection object of
//! both the client and the server side.
//!
//! The socket is a thin layer over the protocol core ([`crate::proto::Protocol`]), which decides
//! everything about the connection. Around it:
//! - `driver.rs`: the future that reads, writes and sleeps until the core's next deadline, and
//!   does nothing else; `connection.rs` hands it out as a [`Connection`], spawned as a task of
//!   its own or run in one task with the code that uses the socket;
//! - this file: the public API, which queues what the application sends and takes what the core
//!   received. A `send` that finds nothing else waiting writes its frame itself, without a trip
//!   through the driver; the sends that find a write in progress leave their frames to it, so a
//!   burst goes out in one vectored write. Every byte leaves from the head of one queue, in order;
//! - `callbacks.rs`: `on_message` and friends, on the same receive path as [`Socket::recv`];
//! - `split.rs`: the `Stream` and `Sink` halves; `config.rs`; `prepared.rs`;
//! - `io.rs`: the read buffer, the writer and the timer, shared with `owned.rs`: the
//!   [`OwnedSocket`], which serves a connection from one task with no shared state.
//!
//! Locks: the core sits under one mutex, taken once per call; the transport's write half sits
//! under another that application tasks only ever try (`try_lock`), so no task waits on a
//! syscall that another one makes.
//!
//! Messages can be taken by pulling ([`Socket::recv`], or the `Stream` half of
//! [`Socket::split`]) or through callbacks ([`Socket::on_message`] and friends). Messages that
//! arrive before either is used wait in the core's bounded queue; when it is full the driver
//! stops reading, so a slow consumer slows the peer down instead of growing memory.

mod callbacks;
mod config;
mod connection;
mod driver;
mod io;
mod owned;
mod prepared;
mod split;

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;
use futures_util::task::AtomicWaker;

use crate::error::{Error, Result};
use crate::message::Message;
use crate::proto::{CloseCode, CloseFrame, Compression, Event, OpCode, Protocol, ReadyState, Role};
use crate::transport::WsStream;

pub use crate::proto::{CloseEvent, ErrorEvent};
pub use config::{Negotiated, SocketConfig};
pub use connection::{Connection, RunWith};
pub use owned::{CloseHandle, OwnedSocket};
pub use prepared::PreparedMessage;
pub use split::{SocketReader, SocketWriter};

use callbacks::Callbacks;
use io::Writer;

/// Tasks waiting for one thing. Nearly always one task waits, so the first one is kept apart
/// (no vector to walk or drain per message).
#[derive(Default)]
struct Wakers {
    first: Option<Waker>,
    more: Vec<Waker>,
}

impl Wakers {
    fn register(&mut self, waker: &Waker) {
        match &self.first {
            None => self.first = Some(waker.clone()),
            Some(w) if w.will_wake(waker) => {}
            Some(_) => {
                if !self.more.iter().any(|w| w.will_wake(waker)) {
                    self.more.push(waker.clone());
                }
            }
        }
    }

    fn wake_all(&mut self) {
        if let Some(w) = self.first.take() {
            w.wake();
        }
        if !self.more.is_empty() {
            for w in self.more.drain(..) {
                w.wake();
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.more.is_empty()
    }
}

/// What the core's mutex guards. In declaration order (`repr(C)`), the wakers every message
/// touches first, next to the lock, then the core.
#[repr(C)]
struct Shared {
    recv_wakers: Wakers,
    send_wakers: Wakers,
    /// The callbacks' dispatch task.
    callback_wakers: Wakers,
    proto: Protocol,
    close_wakers: Wakers,
    callbacks: Callbacks,
}

/// In declaration order (`repr(C)`): what every message touches (the counters, the driver's
/// waker, the writer and the core) packed into as few cache lines as possible at the front; a
/// server serves many connections in turn, so each line of a connection's state that a
/// message touches is a likely cache miss.
#[repr(C)]
struct Inner {
    handles: AtomicUsize,
    /// Bytes in the writer not yet accepted by the transport (read without its lock).
    unwritten: AtomicUsize,
    /// `config.write_buffer_limit`, kept here with what it is compared with.
    write_limit: usize,
    driver: AtomicWaker,
    /// The driver has something to do that no I/O readiness will tell it.
    notified: AtomicBool,
    role: Role,
    /// The transport's write half and the bytes taken from the core that it has not accepted.
    writer: Mutex<Writer>,
    shared: Mutex<Shared>,
    /// The capacity of the driver's read buffer (for [`Socket::memory_usage`]).
    read_buffer: AtomicUsize,
    url: String,
    origin: String,
    protocol: OnceLock<String>,
    extensions: OnceLock<String>,
    config: SocketConfig,
}

/// `std::time::Instant` from tokio's clock (so that tests with a paused clock see it too).
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic in a user callback never happens under this lock, so poisoning only follows a
        // bug of ours; the state is still consistent enough to go on.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_writer(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn notify_driver(&self) {
        self.notified.store(true, Ordering::Release);
        self.driver.wake();
    }

    /// Bytes queued and not yet accepted by the transport: the core's output plus what the
    /// writer holds (counted here from the writer itself; the core's own count of it lags until
    /// the driver reports, and adding both would count those bytes twice).
    fn buffered(&self, sh: &Shared) -> usize {
        sh.proto.output_len() + self.unwritten.load(Ordering::Acquire)
    }

    /// After a frame was queued: writes it at once when that is cheap (no received message left
    /// that the application is about to answer, and no write in progress); otherwise leaves it
    /// to the driver, which writes everything queued by then in one go.
    fn write_or_notify(&self, mut sh: MutexGuard<'_, Shared>) {
        if sh.proto.queued_messages() == 0 {
            if let Ok(mut w) = self.writer.try_lock() {
                if w.idle() {
                    w.take_from(&mut sh.proto);
                    drop(sh);
                    let done = w.write_now();
                    self.unwritten.store(w.unwritten(), Ordering::Release);
                    drop(w);
                    if !done {
                        self.notify_driver();
                    }
                    return;
                }
            }
        }
        drop(sh);
        self.notify_driver();
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

/// A handle that does not keep the socket alive ([`Socket::downgrade`]); for registries of
/// sockets (rooms, connection lists) that must not keep closed connections in memory.
#[derive(Clone, Debug)]
pub struct WeakSocket {
    inner: Weak<Inner>,
}

impl WeakSocket {
    /// The socket, if it still exists.
    pub fn upgrade(&self) -> Option<Socket> {
        let inner = self.inner.upgrade()?;
        inner.handles.fetch_add(1, Ordering::Relaxed);
        Some(Socket { inner })
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket").field("url", &self.url).finish()
    }
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
            // The driver closes the connection (1001) unless a callback still wants events.
            self.inner.notify_driver();
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
    /// A CONNECTING socket; [`Socket::start`] opens it, [`Socket::fail_connect`] fails it.
    pub(crate) fn new_connecting(
        role: Role,
        url: String,
        origin: String,
        config: SocketConfig,
    ) -> Socket {
        let proto = Protocol::new(role, config.protocol());
        Socket {
            inner: Arc::new(Inner {
                role,
                url,
                origin,
                protocol: OnceLock::new(),
                extensions: OnceLock::new(),
                handles: AtomicUsize::new(1),
                write_limit: config.write_buffer_limit,
                config,
                shared: Mutex::new(Shared {
                    proto,
                    recv_wakers: Wakers::default(),
                    send_wakers: Wakers::default(),
                    close_wakers: Wakers::default(),
                    callback_wakers: Wakers::default(),
                    callbacks: Callbacks::default(),
                }),
                writer: Mutex::new(Writer::default()),
                unwritten: AtomicUsize::new(0),
                read_buffer: AtomicUsize::new(0),
                driver: AtomicWaker::new(),
                notified: AtomicBool::new(false),
            }),
        }
    }

    /// Makes an OPEN socket over a handshaken stream and spawns its [`Connection`] (on the
    /// current tokio runtime). `url` and `origin` are what [`Socket::url`] and [`Socket::origin`]
    /// report.
    pub fn from_stream(
        stream: WsStream,
        role: Role,
        negotiated: Negotiated,
        config: SocketConfig,
        url: impl Into<String>,
        origin: impl Into<String>,
    ) -> Socket {
        let (socket, connection) =
            Socket::with_connection(stream, role, negotiated, config, url, origin);
        tokio::spawn(connection);
        socket
    }

    /// Like [`Socket::from_stream`], but the socket's I/O comes back as a [`Connection`] for
    /// the caller to run, typically with the code that uses the socket in one task
    /// ([`Connection::run_with`]), which saves a task and a wake-up per message.
    pub fn with_connection(
        stream: WsStream,
        role: Role,
        negotiated: Negotiated,
        config: SocketConfig,
        url: impl Into<String>,
        origin: impl Into<String>,
    ) -> (Socket, Connection) {
        let socket = Socket::new_connecting(role, url.into(), origin.into(), config);
        let connection = socket.start(stream, negotiated);
        (socket, connection)
    }

    /// Moves a CONNECTING socket to OPEN over `stream`; the returned connection does its I/O.
    pub(crate) fn start(&self, stream: WsStream, negotiated: Negotiated) -> Connection {
        let inner = &self.inner;
        let _ = inner
            .protocol
            .set(negotiated.protocol.clone().unwrap_or_default());
        let _ = inner.extensions.set(negotiated.extensions.clone());
        let (transport, prefix) = stream.into_parts();
        let (read, write) = transport.split();
        inner.lock_writer().io.attach(write);
        {
            let mut sh = inner.lock();
            #[cfg(feature = "deflate")]
            if let Some(params) = negotiated.deflate {
                sh.proto.enable_deflate(params, &negotiated.deflate_config);
            }
            sh.proto.open(now());
            sh.recv_wakers.wake_all();
            sh.send_wakers.wake_all();
            callbacks::wake(&mut sh);
        }
        Connection::new(driver::Driver::new(inner.clone(), read, prefix))
    }

    /// Fails a CONNECTING socket: error event (1002), then close event (1006).
    pub(crate) fn fail_connect(&self, reason: String) {
        let mut sh = self.inner.lock();
        sh.proto.fail_handshake(&reason);
        finish(&mut sh);
    }

    /// A handle that does not keep the socket alive.
    pub fn downgrade(&self) -> WeakSocket {
        WeakSocket {
            inner: Arc::downgrade(&self.inner),
        }
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
        self.inner.lock().proto.state()
    }

    /// The settings in force.
    pub fn config(&self) -> &SocketConfig {
        &self.inner.config
    }

    /// Bytes held by this connection's compression state, read buffer (a partly received
    /// frame), partly received message, received messages not taken yet, and output not
    /// written yet.
    pub fn memory_usage(&self) -> usize {
        let sh = self.inner.lock();
        sh.proto.memory_usage()
            + self.inner.buffered(&sh)
            + self.inner.read_buffer.load(Ordering::Relaxed)
    }

    /// Queues the message in `slot` (taking it out): `Pending` (with `cx` registered, the
    /// message left in place) while the write buffer is over its limit, unless `wait` is false.
    /// Taking the message, rather than cloning its body, keeps a received body unshared, so
    /// echoing it back allocates nothing.
    fn poll_queue(
        &self,
        cx: &Context<'_>,
        slot: &mut Option<Message>,
        wait: bool,
    ) -> Poll<Result<()>> {
        let mut sh = self.inner.lock();
        if let Some(refused) = self.admit(&mut sh, cx, wait) {
            return refused;
        }
        let Some(msg) = slot.take() else {
            return Poll::Ready(Ok(()));
        };
        let compression = compression_of(&msg);
        match msg.kind() {
            OpCode::Close => {
                let (code, reason) = close_args(&msg)?;
                sh.proto.close(code, &reason, now());
                drop(sh);
                self.inner.notify_driver();
                Poll::Ready(Ok(()))
            }
            kind => {
                sh.proto.send(kind, msg.into_body(), compression)?;
                self.inner.write_or_notify(sh);
                Poll::Ready(Ok(()))
            }
        }
    }

    /// Whether a message may be queued now: `Some(Ready(Err))` unless OPEN, `Some(Pending)`
    /// while the write buffer is over its limit (and `wait`), `None` to go ahead.
    fn admit(&self, sh: &mut Shared, cx: &Context<'_>, wait: bool) -> Option<Poll<Result<()>>> {
        if !sh.proto.can_send() {
            return Some(Poll::Ready(Err(not_open(&sh.proto))));
        }
        let pending = self.inner.buffered(sh);
        if wait && pending > 0 && pending >= self.inner.write_limit {
            sh.send_wakers.register(cx.waker());
            return Some(Poll::Pending);
        }
        None
    }

    /// Sends a message: a `&str`/`String` as TEXT, bytes as BINARY, or a whole [`Message`]
    /// (TEXT, BINARY, PING or PONG). Messages go out in the order `send` was called, from any
    /// number of tasks. Waits while the write buffer is over its limit (backpressure); returns
    /// once the message is queued, not once it is written.
    ///
    /// Cancel safety: dropping the future before it completes sends nothing.
    /// Errors with [`Error::NotOpen`] unless the socket is OPEN.
    // (Not an `async fn`, which would keep the argument and the slot it moves to both in the
    // future: the message once is enough, and a task that echoes keeps this future.)
    pub fn send(&self, msg: impl Into<Message>) -> impl Future<Output = Result<()>> + '_ {
        let mut slot = Some(msg.into());
        poll_fn(move |cx| self.poll_queue(cx, &mut slot, true))
    }

    /// Queues a message only if the write buffer is under its limit: `Ok(true)` if queued,
    /// `Ok(false)` if the buffer is full (nothing was queued), an error if the socket is not
    /// OPEN. For broadcasters that must never wait on one slow peer.
    pub fn try_send(&self, msg: impl Into<Message>) -> Result<bool> {
        let cx = Context::from_waker(Waker::noop());
        match self.poll_queue(&cx, &mut Some(msg.into()), true) {
            Poll::Ready(r) => r.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }

    /// Queues a message without waiting, even past the write buffer limit (the `Sink`, whose
    /// `poll_ready` did the waiting).
    pub(crate) fn queue(&self, msg: impl Into<Message>) -> Result<()> {
        let cx = Context::from_waker(Waker::noop());
        match self.poll_queue(&cx, &mut Some(msg.into()), false) {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(()),
        }
    }

    /// Bytes queued for sending and not yet handed to the transport (the browser's
    /// `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        let sh = self.inner.lock();
        self.inner.buffered(&sh)
    }

    /// Sends a frame encoded once for many sockets (see [`PreparedMessage`]). On a server
    /// socket the shared bytes are queued as they are, without copying or re-encoding (when
    /// the socket compresses without context takeover, the shared compressed frame); a
    /// client socket (which must mask) encodes the message itself. Waits like [`Socket::send`], and
    /// is cancel-safe as it is.
    pub async fn send_prepared(&self, prepared: &PreparedMessage) -> Result<()> {
        poll_fn(|cx| self.poll_queue_prepared(cx, prepared)).await
    }

    /// [`Socket::send_prepared`] without waiting: `Ok(false)` if the write buffer is full.
    pub fn try_send_prepared(&self, prepared: &PreparedMessage) -> Result<bool> {
        let cx = Context::from_waker(Waker::noop());
        match self.poll_queue_prepared(&cx, prepared) {
            Poll::Ready(r) => r.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }

    fn poll_queue_prepared(
        &self,
        cx: &Context<'_>,
        prepared: &PreparedMessage,
    ) -> Poll<Result<()>> {
        if self.inner.role == Role::Client {
            return self.poll_queue(cx, &mut Some(prepared.message.clone()), true);
        }
        let mut sh = self.inner.lock();
        if let Some(refused) = self.admit(&mut sh, cx, true) {
            return refused;
        }
        let msg = &prepared.message;
        let compression = compression_of(msg);
        let (kind, len) = (msg.kind(), msg.body().len());
        let encoder = sh.proto.encoder();
        if !encoder.would_compress(kind, len, compression) {
            sh.proto.send_encoded(prepared.frame.clone())?;
        } else {
            match encoder.shared_compression() {
                #[cfg(feature = "deflate")]
                Some(settings) => sh
                    .proto
                    .send_encoded(prepared.compressed_frame(settings)?)?,
                // Compressed with context takeover: this socket's own stream.
                _ => sh.proto.send(kind, msg.body().clone(), compression)?,
            }
        }
        self.inner.write_or_notify(sh);
        Poll::Ready(Ok(()))
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
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut sh = self.inner.lock();
        if self.inner.buffered(&sh) == 0 || sh.proto.state() == ReadyState::Closed {
            return Poll::Ready(Ok(()));
        }
        sh.send_wakers.register(cx.waker());
        drop(sh);
        self.inner.notify_driver();
        Poll::Pending
    }

    /// Closes the connection (the seed's `close(code, reason)`): queues a CLOSE with `code`
    /// and `reason` (cut to 123 bytes) at once, and returns a future that resolves once the
    /// connection is CLOSED (the peer's CLOSE arrived and the transport ended, or the close
    /// timeout passed) with how it ended.
    ///
    /// The close starts whether or not the future is awaited, so callbacks and other
    /// synchronous code call it and drop the result. [`CloseCode`] only holds codes that may be
    /// sent. Closing twice, or after the peer closed, does nothing more. Cancel safety:
    /// dropping the future leaves the close handshake to complete in the background.
    pub fn close(&self, code: CloseCode, reason: &str) -> Closing<'_> {
        let mut sh = self.inner.lock();
        sh.proto.close(code, reason, now());
        if sh.proto.state() == ReadyState::Closed {
            // Still connecting: the attempt is abandoned.
            finish(&mut sh);
        }
        drop(sh);
        self.inner.notify_driver();
        Closing { socket: self }
    }

    /// Drops the connection at once, without a close handshake (fibjs tests kill a connection
    /// from inside a message handler this way): unwritten output is discarded, the transport is
    /// closed, and the events are those of a lost connection: error, then close, both 1006
    /// (a close handshake that was already complete stays clean). Does nothing once CLOSED;
    /// while CONNECTING it abandons the attempt.
    pub fn abort(&self) {
        let mut sh = self.inner.lock();
        sh.proto.drop_transport("aborted by the application");
        finish(&mut sh);
        drop(sh);
        // The driver sees CLOSED on its next pass and drops both halves of the transport.
        self.inner.notify_driver();
    }

    /// Polls until the socket is CLOSED (see [`Socket::closed`]).
    pub(crate) fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseEvent> {
        let mut sh = self.inner.lock();
        match sh.proto.close_event() {
            Some(ev) => Poll::Ready(ev.clone()),
            None => {
                sh.close_wakers.register(cx.waker());
                Poll::Pending
            }
        }
    }

    /// Waits until the socket is CLOSED and returns how it ended. Cancel-safe.
    pub async fn closed(&self) -> CloseEvent {
        poll_fn(|cx| self.poll_closed(cx)).await
    }

    /// The error event, if one happened.
    pub fn error(&self) -> Option<ErrorEvent> {
        self.inner.lock().proto.error().cloned()
    }

    /// Polls for the next message (see [`Socket::recv`]).
    pub(crate) fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Message>> {
        let mut sh = self.inner.lock();
        poll_recv_locked(&self.inner, &mut sh, cx)
    }

    /// Receives the next message. At the end of the connection it returns
    /// [`Error::Closed`] with the close code and reason (the error's, if it failed).
    ///
    /// Cancel safety: cancel-safe. A message is taken from the queue only by a call that
    /// returns it, so dropping `recv()` (in a `select!`, say) loses nothing.
    pub async fn recv(&self) -> Result<Message> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Splits into a reader (a `Stream` of messages) and a writer (a `Sink` of messages). Both
    /// halves drive the same connection: PINGs keep being answered and the close handshake
    /// completes whichever half is in use.
    pub fn split(&self) -> (SocketReader, SocketWriter) {
        (
            SocketReader::new(self.clone()),
            SocketWriter::new(self.clone()),
        )
    }
}

/// What [`Socket::close`] returns: the close handshake is already under way; awaiting this
/// waits until the connection is CLOSED and gives the close event.
#[derive(Debug)]
pub struct Closing<'a> {
    socket: &'a Socket,
}

impl Future for Closing<'_> {
    type Output = CloseEvent;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CloseEvent> {
        self.socket.poll_closed(cx)
    }
}

/// Why a message cannot be sent: the state, where still OPEN with our CLOSE out reads as
/// CLOSING (as `ready_state` soon will).
fn not_open(proto: &Protocol) -> Error {
    Error::NotOpen(match proto.state() {
        ReadyState::Open => ReadyState::Closing,
        other => other,
    })
}

/// The code and reason a CLOSE message asks for (1000 and none when its body is empty).
fn close_args(msg: &Message) -> Result<(CloseCode, String)> {
    let frame = CloseFrame::parse(msg.body())?;
    Ok(frame.map_or((CloseCode::NORMAL, String::new()), |f| (f.code, f.reason)))
}

/// How a socket may send `msg`: [`Message::set_compress`]`(false)` forbids compression.
fn compression_of(msg: &Message) -> Compression {
    match msg.compress_setting() {
        Some(false) => Compression::Never,
        _ => Compression::Auto,
    }
}

/// The one receive path under [`Socket::recv`], the `Stream` and the message callback: the next
/// message from the core, or the end.
fn poll_recv_locked(inner: &Inner, sh: &mut Shared, cx: &Context<'_>) -> Poll<Result<Message>> {
    let was_full = sh.proto.queue_full();
    // A message waiting (the usual case) is taken without the rest of the events' machinery;
    // taking it can only make room.
    if let Some(m) = sh.proto.next_message() {
        if was_full && !sh.proto.queue_full() {
            inner.notify_driver();
        }
        return Poll::Ready(Ok(Message::from_received(m)));
    }
    let had_output = sh.proto.has_output();
    // No message waits (and none can come from here on): act on a waiting end (an error, the
    // peer's CLOSE) and pass the error and close events, which are read from the core's state
    // below for every caller.
    loop {
        // The clock is read only when the core will use it (to act on a waiting end).
        let t = match sh.proto.last_time() {
            Some(t) if !sh.proto.event_needs_time() => t,
            _ => now(),
        };
        match sh.proto.poll_event(t) {
            None => break,
            Some(event) => debug_assert!(!matches!(event, Event::Message(_))),
        }
    }
    if !had_output && sh.proto.has_output() {
        // An answer to the peer's CLOSE (or our failure) to write.
        inner.notify_driver();
    }
    if sh.proto.close_event().is_some() {
        return Poll::Ready(Err(closed_error(&sh.proto)));
    }
    sh.recv_wakers.register(cx.waker());
    Poll::Pending
}

/// What receiving returns once the connection is CLOSED: the close code and reason, or the
/// error's when it failed.
fn closed_error(proto: &Protocol) -> Error {
    let (code, reason) = match (proto.close_event(), proto.error()) {
        (Some(closed), Some(e)) if !closed.clean => (e.code, e.reason.clone()),
        (Some(closed), _) => (closed.code, closed.reason.clone()),
        (None, _) => (crate::proto::ABNORMAL, String::new()),
    };
    Error::Closed { code, reason }
}

/// The connection is CLOSED: wakes everyone waiting on it.
fn finish(sh: &mut Shared) {
    sh.recv_wakers.wake_all();
    sh.send_wakers.wake_all();
    sh.close_wakers.wake_all();
    callbacks::wake(sh);
}

#[cfg(test)]
mod tests;
