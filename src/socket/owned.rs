//! [`OwnedSocket`]: a connection owned by one task, which does its I/O itself.
//!
//! [`super::Socket`] is shared: any number of handles and tasks use it at once, so its state
//! sits behind a lock and its I/O runs in a driver that hands messages over. When one task does
//! everything with a connection (an echo, a proxy, a request/response loop), none of that is
//! needed: `recv` and `send` take `&mut self`, read and write the transport themselves and call
//! the protocol core directly. The same core decides everything (PINGs answered, the close
//! handshake, limits, timers), the same read buffer and writer move the bytes.

use std::future::{poll_fn, Future};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;

use super::io::{ReadBuffer, Timer, WriteIo};
use super::{close_args, closed_error, compression_of, not_open, now, Negotiated, SocketConfig};
use crate::error::Result;
use crate::message::Message;
use crate::proto::{CloseCode, CloseEvent, OpCode, Protocol, ReadyState, Role};
use crate::transport::{ReadHalf, WsStream};

/// A WebSocket connection owned by one task: [`OwnedSocket::recv`] and [`OwnedSocket::send`]
/// take `&mut self` and do the reading and writing themselves, with no lock, no second task and
/// no hand-over between them. The cheapest way to serve a connection from one task; use
/// [`super::Socket`] to share a connection between tasks or to use callbacks.
///
/// The connection is served while one of its methods is awaited: PINGs are answered, the close
/// handshake completes and its timers run inside [`OwnedSocket::recv`] (and
/// [`OwnedSocket::close`]; while [`OwnedSocket::send`] or [`OwnedSocket::flush`] wait, the
/// timers run too), so a task that stops receiving stops serving the connection, as
/// with any socket owned by one task. Dropping it closes the transport at once; to end
/// cleanly, call [`OwnedSocket::close`], or receive until `recv` returns [`Error::Closed`](crate::Error::Closed).
#[repr(C)]
pub struct OwnedSocket {
    // In declaration order (`repr(C)`): what every message touches, in three cache lines, then
    // the core (whose own hot fields come first), then what only the application asks for.
    /// Bytes after the last message handed over are still in the read buffer, not decoded
    /// (with the buffer's length before the first message of that read).
    undecoded: Option<usize>,
    read: Option<ReadHalf>,
    rbuf: ReadBuffer,
    /// Writes the core's output where it is (no lock between them: nothing is taken out).
    writer: WriteIo,
    timer: Timer,
    /// The last write left bytes behind: the next one reports to the core.
    stalled: bool,
    write_limit: usize,
    close_request: Option<Arc<CloseRequest>>,
    /// The waker last registered with `close_request` (registering the same one again, on
    /// every wait, would cost two atomic operations per message).
    registered: Option<Waker>,
    proto: Protocol,
    negotiated_protocol: String,
    extensions: String,
}

impl std::fmt::Debug for OwnedSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedSocket")
            .field("role", &self.proto.role())
            .field("ready_state", &self.proto.state())
            .finish_non_exhaustive()
    }
}

/// A close asked for from elsewhere ([`CloseHandle`]).
#[derive(Default)]
struct CloseRequest {
    asked: AtomicBool,
    frame: Mutex<Option<(CloseCode, String)>>,
    waker: AtomicWaker,
}

/// Starts closing an [`OwnedSocket`] from another task (a server shutting down, say); see
/// [`OwnedSocket::close_handle`]. Cloning gives another handle to the same socket.
#[derive(Clone)]
pub struct CloseHandle {
    request: Arc<CloseRequest>,
}

impl std::fmt::Debug for CloseHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloseHandle").finish_non_exhaustive()
    }
}

impl CloseHandle {
    /// Asks the socket to close with `code` and `reason`: its task sends the CLOSE the next
    /// time it is served (at once if it waits in `recv`). A socket already closing ignores
    /// it.
    pub fn close(&self, code: CloseCode, reason: &str) {
        let mut frame = self.request.frame.lock().unwrap_or_else(|p| p.into_inner());
        if frame.is_none() {
            *frame = Some((code, reason.to_owned()));
        }
        drop(frame);
        self.request.asked.store(true, Ordering::Release);
        self.request.waker.wake();
    }
}

impl OwnedSocket {
    /// An OPEN socket over a handshaken stream (as [`super::Socket::with_connection`], without
    /// the shared state).
    pub fn new(
        stream: WsStream,
        role: Role,
        negotiated: Negotiated,
        config: &SocketConfig,
    ) -> OwnedSocket {
        let mut proto = Protocol::new(role, config.protocol());
        #[cfg(feature = "deflate")]
        if let Some(params) = negotiated.deflate {
            proto.enable_deflate(params, &negotiated.deflate_config);
        }
        proto.open(now());
        let (transport, prefix) = stream.into_parts();
        let (read, write) = transport.split();
        let mut writer = WriteIo::default();
        writer.attach(write);
        OwnedSocket {
            proto,
            read: Some(read),
            rbuf: ReadBuffer::new(prefix),
            writer,
            timer: Timer::default(),
            stalled: false,
            write_limit: config.write_buffer_limit,
            close_request: None,
            registered: None,
            undecoded: None,
            negotiated_protocol: negotiated.protocol.unwrap_or_default(),
            extensions: negotiated.extensions,
        }
    }

    /// Which end this socket is.
    pub fn role(&self) -> Role {
        self.proto.role()
    }

    /// The current state.
    pub fn ready_state(&self) -> ReadyState {
        self.proto.state()
    }

    /// The negotiated subprotocol ("" when none).
    pub fn protocol(&self) -> &str {
        &self.negotiated_protocol
    }

    /// The negotiated `Sec-WebSocket-Extensions` ("" when none).
    pub fn extensions(&self) -> &str {
        &self.extensions
    }

    /// How the connection ended, once it is CLOSED.
    pub fn close_event(&self) -> Option<&CloseEvent> {
        self.proto.close_event()
    }

    /// A handle that starts the close from another task ([`CloseHandle::close`]).
    pub fn close_handle(&mut self) -> CloseHandle {
        let request = self.close_request.get_or_insert_with(Arc::default).clone();
        CloseHandle { request }
    }

    /// Receives the next message, serving the connection meanwhile (see [`OwnedSocket`]). At
    /// the end of the connection it returns [`Error::Closed`](crate::Error::Closed) with the close code and reason
    /// (the error's, if it failed).
    ///
    /// Cancel safety: cancel-safe; a message is taken only by a call that returns it.
    pub fn recv(&mut self) -> impl Future<Output = Result<Message>> + '_ {
        poll_fn(move |cx| self.poll_recv(cx))
    }

    /// Polls for the next message (see [`OwnedSocket::recv`]).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Message>> {
        loop {
            if let Some(m) = self.proto.next_message() {
                return Poll::Ready(Ok(Message::from_received(m)));
            }
            self.take_close_request();
            if self.proto.event_needs_time() {
                // No message waits: act on a waiting end (an error, the peer's CLOSE).
                let t = now();
                while self.proto.poll_event(t).is_some() {}
            }
            if self.undecoded.is_some() {
                // What came with the last message is decoded before reading more, and before
                // writing: the answers to messages that came together go out together.
                if let Some(m) = self.decode() {
                    return Poll::Ready(Ok(m));
                }
                continue;
            }
            self.poll_write(cx);
            if self.proto.state() == ReadyState::Closed {
                self.finish();
                return Poll::Ready(Err(closed_error(&self.proto)));
            }
            if let (true, Some(io)) = (self.proto.wants_read(), self.read.as_mut()) {
                match self.rbuf.poll_read(io, cx) {
                    Poll::Ready(Ok(0)) => self.proto.receive_eof(now()),
                    Poll::Ready(Ok(_)) => {
                        if let Some(m) = self.decode() {
                            return Poll::Ready(Ok(m));
                        }
                    }
                    Poll::Ready(Err(e)) => self.proto.transport_error(&e.to_string()),
                    Poll::Pending => {
                        if !self.poll_timers(cx) {
                            return self.pending(cx);
                        }
                    }
                }
                continue;
            }
            if !self.poll_timers(cx) {
                return self.pending(cx);
            }
        }
    }

    /// Decodes the read buffer up to the first message, which is handed straight over (the
    /// receive queue is not involved); notes whether bytes after it are left to decode.
    fn decode(&mut self) -> Option<Message> {
        // (Within a run of messages from one read, `had` is the buffer before the first.)
        let run = self.undecoded.take();
        let had = run.unwrap_or(self.rbuf.buf.len());
        let next = self.proto.receive_next(&mut self.rbuf.buf, now);
        if next.is_some() && !self.rbuf.buf.is_empty() {
            // More may be whole behind it: the buffer stays as it is until the run ends (the
            // read buffer's tidying would copy the rest once per message).
            self.undecoded = Some(had);
        } else {
            let delivered = usize::from(next.is_some() || run.is_some());
            let wanted = self.proto.bytes_wanted(&self.rbuf.buf);
            self.rbuf.decoded(had, delivered, wanted);
        }
        next.map(Message::from_received)
    }

    /// Arms the timer for the core's next deadline and acts on it if it passed. Only before
    /// waiting: while bytes keep arriving the task gets here anyway, as the runtime's budget
    /// makes every read wait now and then. `true`: a timer acted (look at the state again).
    #[inline]
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> bool {
        let deadline = self.proto.poll_timeout();
        self.timer.set(deadline);
        if !self.timer.poll_due(cx) {
            return false;
        }
        self.proto.handle_timeout(now());
        self.proto.poll_timeout() != deadline
    }

    /// Nothing to do until the transport or a timer wakes `cx`, or a [`CloseHandle`] does.
    fn pending<T>(&mut self, cx: &Context<'_>) -> Poll<T> {
        if let Some(request) = self.close_request.as_ref() {
            if !self
                .registered
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                request.waker.register(cx.waker());
                self.registered = Some(cx.waker().clone());
            }
            if request.asked.load(Ordering::Acquire) {
                // Asked for since it was last looked at.
                cx.waker().wake_by_ref();
            }
        }
        Poll::Pending
    }

    /// Sends a message: a `&str`/`String` as TEXT, bytes as BINARY, or a whole [`Message`]
    /// (TEXT, BINARY, PING, PONG, or CLOSE, which starts the close as [`OwnedSocket::close`]
    /// does without waiting). The frame is written at once when the transport takes it; what
    /// it does not take yet is written by the next call. Waits while more than the write
    /// buffer limit is unwritten.
    ///
    /// Cancel safety: dropping the future before it completes sends nothing.
    /// Errors with [`Error::NotOpen`](crate::Error::NotOpen) unless the socket is OPEN.
    pub fn send(&mut self, msg: impl Into<Message>) -> impl Future<Output = Result<()>> + '_ {
        let mut slot = Some(msg.into());
        poll_fn(move |cx| self.poll_send(cx, &mut slot, true))
    }

    /// Queues a message as [`OwnedSocket::send`] does, without writing it yet: it goes out
    /// with the next write, which [`OwnedSocket::recv`] makes before it waits for the
    /// transport (and `send` and [`OwnedSocket::flush`] make at once). A loop that answers
    /// what it receives (an echo, requests and replies) and feeds its answers writes the
    /// answers to messages that arrived together in one write, not one write each. Waits, as
    /// `send`, while more than the write buffer limit is unwritten.
    ///
    /// Cancel safety: dropping the future before it completes queues nothing.
    pub fn feed(&mut self, msg: impl Into<Message>) -> impl Future<Output = Result<()>> + '_ {
        let mut slot = Some(msg.into());
        poll_fn(move |cx| self.poll_send(cx, &mut slot, false))
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        slot: &mut Option<Message>,
        write: bool,
    ) -> Poll<Result<()>> {
        if !self.proto.can_send() {
            return Poll::Ready(Err(not_open(&self.proto)));
        }
        while self.unwritten() >= self.write_limit.max(1) {
            self.poll_write(cx);
            if self.unwritten() < self.write_limit.max(1) {
                break;
            }
            // The write-stall timer runs while we wait.
            if !self.poll_timers(cx) {
                return Poll::Pending;
            }
            if !self.proto.can_send() {
                return Poll::Ready(Err(not_open(&self.proto)));
            }
        }
        let Some(msg) = slot.take() else {
            return Poll::Ready(Ok(()));
        };
        if msg.kind() == OpCode::Close {
            let (code, reason) = close_args(&msg)?;
            self.proto.close(code, &reason, now());
            self.poll_write(cx);
            return Poll::Ready(Ok(()));
        }
        let compression = compression_of(&msg);
        self.proto.send(msg.kind(), msg.into_body(), compression)?;
        if write {
            self.poll_write(cx);
        }
        Poll::Ready(Ok(()))
    }

    /// Waits until everything sent so far has been handed to the transport.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| loop {
            self.poll_write(cx);
            if self.unwritten() == 0 || self.proto.state() == ReadyState::Closed {
                return Poll::Ready(Ok(()));
            }
            if !self.poll_timers(cx) {
                return Poll::Pending;
            }
        })
        .await
    }

    /// Closes the connection: sends a CLOSE with `code` and `reason` (cut to 123 bytes) and
    /// serves the connection until it is CLOSED (messages that still arrive are dropped), then
    /// returns how it ended. Closing twice, or after the peer closed, sends nothing more.
    pub async fn close(&mut self, code: CloseCode, reason: &str) -> CloseEvent {
        self.proto.close(code, reason, now());
        self.closed().await
    }

    /// Serves the connection until it is CLOSED (messages that arrive are dropped) and returns
    /// how it ended; at once if it already is.
    pub async fn closed(&mut self) -> CloseEvent {
        while self.recv().await.is_ok() {}
        // (CLOSED always comes with its close event.)
        self.proto.close_event().cloned().unwrap_or(CloseEvent {
            code: crate::proto::ABNORMAL,
            reason: String::new(),
            clean: false,
        })
    }

    /// Bytes sent and not yet accepted by the transport.
    fn unwritten(&self) -> usize {
        self.proto.output_len() + usize::from(self.writer.unflushed())
    }

    /// A close asked for through a [`CloseHandle`] starts now.
    fn take_close_request(&mut self) {
        let Some(request) = self.close_request.as_ref() else {
            return;
        };
        // (A load first: the swap is a locked instruction, and the answer is almost always no.)
        if !request.asked.load(Ordering::Acquire) || !request.asked.swap(false, Ordering::AcqRel) {
            return;
        }
        // Its wake took the registered waker: register again on the next wait.
        self.registered = None;
        let frame = request
            .frame
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some((code, reason)) = frame {
            self.proto.close(code, &reason, now());
        }
    }

    /// Writes what the core queued (and what waited), shuts the write side when the core
    /// wants it, and tells the core what the writes did.
    #[inline]
    fn poll_write(&mut self, cx: &mut Context<'_>) {
        if !self.proto.has_output()
            && !self.writer.unflushed()
            && !self.stalled
            && !self.proto.wants_shutdown()
        {
            // Nothing to write (the usual case between messages).
            return;
        }
        self.write_out(cx);
    }

    /// [`OwnedSocket::poll_write`] when there is something to do.
    fn write_out(&mut self, cx: &mut Context<'_>) {
        if !self.stalled && self.proto.state() == ReadyState::Open && self.writer.ready() {
            // The usual case: nothing waits ahead of what was just queued. When the transport
            // takes it all there is no waker to register and nothing to tell the core (nothing
            // was left before or after, so no write timer; not closing, so no shutdown).
            if self.writer.write_now(self.proto.output_mut()) {
                return;
            }
        }
        let progressed = match self.writer.poll_write(self.proto.output_mut(), cx) {
            Ok(progressed) => progressed,
            Err(e) => {
                self.proto.transport_error(&e.to_string());
                return;
            }
        };
        // (What the transport has not taken is still the core's output: no backlog.)
        self.proto.on_write(0, progressed, now());
        self.stalled = self.proto.has_output() || self.writer.unflushed();
        if self.proto.wants_shutdown() && !self.writer.unflushed() && self.writer.poll_shutdown(cx)
        {
            self.proto.write_shutdown();
        }
    }

    /// The connection is CLOSED: the transport goes (both halves).
    fn finish(&mut self) {
        self.read = None;
        self.writer.detach();
        self.rbuf.buf = bytes::BytesMut::new();
    }
}
