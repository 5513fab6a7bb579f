//! The per-connection task: reads into the core, writes what the core queued, and sleeps until
//! the core's next deadline. It decides nothing; [`crate::proto::Protocol`] does.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::{callbacks, finish, now, Inner};
use crate::proto::{Output, ReadyState};
use crate::transport::{ReadHalf, WriteHalf};

/// The smallest growth of the read buffer after a read that filled it (bytes were waiting).
const READ_CHUNK: usize = 16 * 1024;
/// The smallest growth of the read buffer otherwise (a peer that sends little at a time).
const READ_MIN: usize = 1024;
/// The largest growth of the read buffer in one step.
const READ_MAX_STEP: usize = 1 << 20;
/// The stack buffer an idle connection reads into.
const IDLE_READ: usize = 4096;
/// Room left past the end of the frame being read: a read that does not fill the buffer tells
/// the runtime the socket is drained, which saves a read that would only find it empty.
const READ_SLACK: usize = 1024;
/// Undecoded bytes up to this size that are left after a message was cut out of the read
/// buffer move to a buffer of their own, so that a few bytes of the next frame do not keep the
/// previous message's large allocation alive.
const COMPACT_BELOW: usize = 16 * 1024;
/// The most slices handed to one vectored write.
const MAX_IOV: usize = 64;

/// The transport's write half with the bytes taken from the core that it has not accepted yet.
/// Shared by the driver and by senders that write at once (they only ever `try_lock` it).
#[derive(Default)]
pub(super) struct Writer {
    half: Option<WriteHalf>,
    backlog: Output,
    /// Bytes were handed to the transport and not flushed yet (TLS keeps records until
    /// flushed).
    unflushed: bool,
    /// The last write found the transport full: the driver waits for it to drain.
    blocked: bool,
    shut: bool,
}

impl Writer {
    pub(super) fn attach(&mut self, half: WriteHalf) {
        self.half = Some(half);
    }

    /// Whether a sender may write now: nothing is waiting ahead of it and the transport is not
    /// known to be full.
    pub(super) fn idle(&self) -> bool {
        self.half.is_some() && !self.blocked && !self.shut && self.backlog.is_empty()
    }

    /// Takes the core's output (see [`crate::proto::Protocol::take_output_into`]).
    pub(super) fn take_from(&mut self, proto: &mut crate::proto::Protocol) {
        proto.take_output_into(&mut self.backlog);
    }

    /// Bytes not yet accepted by the transport (1 for an unflushed write).
    pub(super) fn unwritten(&self) -> usize {
        self.backlog.len() + usize::from(self.unflushed)
    }

    /// Writes without waiting (from a sender); `true` if everything went out. When it did not
    /// (the transport is full, or failed) the driver takes over and sees the error, if any.
    pub(super) fn write_now(&mut self) -> bool {
        let Some(half) = self.half.as_mut() else {
            return false;
        };
        let done = match half {
            WriteHalf::Tcp(tcp) => {
                // `try_write*` leaves the driver's registration for writability alone. One
                // contiguous run (the usual small message) goes out with a plain `send`, which
                // costs the kernel less than `writev`.
                while !self.backlog.is_empty() {
                    let written = if self.backlog.is_contiguous() {
                        tcp.try_write(self.backlog.first_chunk())
                    } else {
                        let mut slices = [IoSlice::new(&[]); MAX_IOV];
                        let n = self.backlog.io_slices(&mut slices);
                        tcp.try_write_vectored(&slices[..n])
                    };
                    match written {
                        Ok(k) if k > 0 => self.backlog.advance(k),
                        _ => break,
                    }
                }
                self.backlog.is_empty()
            }
            WriteHalf::Shared(_) => {
                // The driver is not waiting on this transport's writability (`blocked` is
                // false), so polling it with a waker that does nothing takes nothing from it;
                // if the write cannot finish, the driver is woken and polls it itself.
                let mut cx = Context::from_waker(Waker::noop());
                let ok = self.poll_write_out(&mut cx).is_ok();
                ok && self.backlog.is_empty() && !self.unflushed
            }
        };
        if !done {
            self.blocked = true;
        }
        done
    }

    /// Writes the backlog until it is empty or the transport is full, then flushes if anything
    /// it took is not flushed yet; returns whether anything was written.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> std::io::Result<bool> {
        let Some(w) = self.half.as_mut() else {
            return Ok(false);
        };
        let mut progress = false;
        while !self.backlog.is_empty() {
            let poll = if w.is_write_vectored() && !self.backlog.is_contiguous() {
                let mut slices = [IoSlice::new(&[]); MAX_IOV];
                let n = self.backlog.io_slices(&mut slices);
                Pin::new(&mut *w).poll_write_vectored(cx, &slices[..n])
            } else {
                Pin::new(&mut *w).poll_write(cx, self.backlog.first_chunk())
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
                    self.unflushed = true;
                    self.backlog.advance(n);
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        if self.backlog.is_empty() && self.unflushed {
            match Pin::new(&mut *w).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        self.blocked = !self.backlog.is_empty() || self.unflushed;
        Ok(progress)
    }
}

/// Drops the transport's write half (the transport closes once the read half is gone too).
fn drop_writer(inner: &Inner) {
    inner.lock_writer().half = None;
    inner.unwritten.store(0, Ordering::Release);
}

/// What the last write did, for the core (told at the next pass under its lock).
struct Report {
    backlog: usize,
    progressed: bool,
    shut: bool,
    error: Option<String>,
}

/// The driver task of one connection.
pub(super) struct Driver {
    inner: Arc<Inner>,
    st: State,
}

/// The driver's own state (apart from the socket's, so that a pass borrows both without
/// taking another reference to the socket).
struct State {
    io: Option<ReadHalf>,
    rbuf: BytesMut,
    /// Whether the core wants reading (from the last pass).
    reading: bool,
    /// `rbuf` may hold bytes not decoded yet: read past the handshake, or left when the core's
    /// receive queue filled up.
    undecoded: bool,
    /// The writer has bytes (or a flush) waiting for the transport.
    write_wanted: bool,
    report: Option<Report>,
    first: bool,
    /// How many more bytes the core wants in `rbuf` (from the last pass).
    wanted: usize,
    /// A sender held the writer: the next pass takes the output.
    retry: bool,
    sleep: Option<Pin<Box<Sleep>>>,
    deadline: Option<Instant>,
    /// The last read filled all the room it had: more bytes are likely waiting.
    filled: bool,
    /// The read buffer's capacity as last published to `Inner::read_buffer`.
    read_capacity: usize,
    /// How many bytes the last pass that delivered messages decoded, when more than the stack
    /// buffer holds: bytes that really arrived, so the next message is read straight into a
    /// buffer that large (one read, no copy). A read that brings much less forgets it.
    read_hint: usize,
}

/// How much room to add to a read buffer that holds `len` bytes when the decoder wants
/// `wanted` more. The buffer grows with what actually arrived, never with what a frame header
/// announces: by up to 3 × `len` (at least [`READ_CHUNK`]) when the last read `filled` its room,
/// else by up to `len` (at least [`READ_MIN`]); never by more than the frame still needs
/// (unless that is less than the minimum step) nor by more than [`READ_MAX_STEP`]. A peer that
/// announces a large frame and trickles it costs about twice what it sent.
fn growth(len: usize, wanted: usize, filled: bool) -> usize {
    let (step, floor) = if filled {
        (len.saturating_mul(3), READ_CHUNK)
    } else {
        (len, READ_MIN)
    };
    step.min(wanted).max(floor).min(READ_MAX_STEP)
}

impl Driver {
    pub(super) fn new(inner: Arc<Inner>, io: ReadHalf, prefix: BytesMut) -> Driver {
        let st = State {
            io: Some(io),
            undecoded: !prefix.is_empty(),
            rbuf: prefix,
            reading: true,
            write_wanted: false,
            report: None,
            first: true,
            wanted: 1,
            retry: false,
            sleep: None,
            deadline: None,
            filled: false,
            read_capacity: 0,
            read_hint: 0,
        };
        Driver { inner, st }
    }
}

impl State {
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Pending;
        };
        if self.rbuf.is_empty() && self.read_hint > 0 {
            // The last messages were large: read the next straight into a buffer of their size.
            // On TCP, wait for readability first, so that a driver woken for other reasons does
            // not allocate the buffer for nothing.
            if let Err(e) = std::task::ready!(io.poll_read_ready(cx)) {
                return Poll::Ready(Err(e));
            }
            self.rbuf.reserve(self.read_hint + READ_SLACK);
            let room = self.rbuf.capacity();
            let poll = tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut self.rbuf);
            let n = self.rbuf.len();
            if n == 0 {
                // Nothing came (yet): the buffer goes back.
                self.rbuf = BytesMut::new();
            } else if n.saturating_mul(4) < self.read_hint {
                // Much less came than the hint promised: keep only what came, in a buffer of
                // its size, and grow from there with what arrives.
                self.rbuf = BytesMut::from(&self.rbuf[..]);
                self.read_hint = 0;
                self.filled = false;
            } else {
                self.filled = n >= room;
            }
            return poll;
        }
        if self.rbuf.is_empty() {
            // Between messages an idle connection holds no read buffer at all (it is given back
            // once everything is decoded): read into the stack (uninitialized: nothing to zero)
            // and copy what came into a buffer of its size, with a step more when the read
            // filled the stack buffer (more is waiting).
            let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); IDLE_READ];
            let mut buf = ReadBuf::uninit(&mut stack);
            return match Pin::new(io).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    let data = buf.filled();
                    let n = data.len();
                    if n > 0 {
                        // A full stack buffer: more is waiting (growth's floor for a full read).
                        let more = if n == IDLE_READ { READ_CHUNK } else { 0 };
                        if self.rbuf.capacity() == 0 {
                            // (Allocating outright is cheaper than growing an empty buffer.)
                            self.rbuf = BytesMut::with_capacity(n + more);
                        } else {
                            self.rbuf.reserve(n + more);
                        }
                        self.rbuf.extend_from_slice(data);
                    }
                    // The step for a full read is taken here already.
                    self.filled = false;
                    Poll::Ready(Ok(n))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        let len = self.rbuf.len();
        let spare = self.rbuf.capacity() - len;
        if self.filled || spare < READ_MIN {
            self.rbuf
                .reserve(growth(len, self.wanted, self.filled) + READ_SLACK);
        }
        let room = self.rbuf.capacity() - self.rbuf.len();
        let poll = tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut self.rbuf);
        if let Poll::Ready(Ok(n)) = poll {
            self.filled = n >= room;
        }
        poll
    }

    /// One pass: feeds what was read (and what the last write did) to the core, runs its
    /// timers, takes its output into the writer and writes it. Returns whether to go round
    /// again, or `None` once the connection is closed.
    fn pass(
        &mut self,
        inner: &Inner,
        read: Poll<std::io::Result<usize>>,
        timer_due: bool,
        cx: &mut Context<'_>,
    ) -> Option<bool> {
        // The clock is read once, and only if something needs the time (most messages do not).
        let mut read_at = None;
        let mut now = || *read_at.get_or_insert_with(now);
        let mut sh = inner.lock();
        let shared = &mut *sh;
        let proto = &mut shared.proto;
        let mut delivered = 0;
        let had = self.rbuf.len();
        match read {
            Poll::Ready(Ok(0)) => proto.receive_eof(now()),
            Poll::Ready(Ok(_)) => delivered += proto.receive_data_with(&mut self.rbuf, &mut now),
            Poll::Ready(Err(e)) => proto.transport_error(&e.to_string()),
            Poll::Pending => {}
        }
        if self.undecoded && !proto.queue_full() {
            delivered += proto.receive_data_with(&mut self.rbuf, &mut now);
        }
        if let Some(r) = self.report.take() {
            match r.error {
                Some(e) => proto.transport_error(&e),
                None => {
                    proto.on_write(r.backlog, r.progressed, now());
                    if r.shut {
                        proto.write_shutdown();
                    }
                }
            }
        }
        // (Deadlines armed since the last pass lie ahead: the last one seen is enough here.)
        if timer_due || self.deadline.is_some_and(|t| t <= now()) {
            proto.handle_timeout(now());
        }
        if inner.handles.load(Ordering::Acquire) == 0 && !shared.callbacks.any() {
            // Nobody will take messages or events any more.
            proto.abandon(now());
        }
        let shutdown = proto.wants_shutdown();
        // The writer is only ever tried under the core's lock (senders do the same), so nobody
        // waits on a lock while holding the other; if a sender is writing, go round again.
        let mut writer = None;
        // (A sender that could not write everything leaves the rest in the writer, counted in
        // `unwritten`.)
        let unwritten = inner.unwritten.load(Ordering::Acquire) > 0;
        if proto.has_output() || self.write_wanted || unwritten || shutdown {
            match inner.writer.try_lock() {
                Ok(mut w) => {
                    if proto.has_output() {
                        w.take_from(proto);
                    }
                    writer = Some(w);
                }
                Err(_) => self.retry = true,
            }
        }
        if delivered > 0 {
            let decoded = had.saturating_sub(self.rbuf.len());
            self.read_hint = if decoded > IDLE_READ {
                decoded.min(READ_MAX_STEP)
            } else {
                0
            };
        }
        self.undecoded = !self.rbuf.is_empty() && proto.queue_full();
        let was_reading = std::mem::replace(&mut self.reading, proto.wants_read());
        self.wanted = proto.bytes_wanted(&self.rbuf);
        let deadline = proto.poll_timeout();
        let closed = proto.state() == ReadyState::Closed;
        if self.rbuf.is_empty() {
            if self.rbuf.capacity() > 0 {
                // Everything is decoded: give the buffer back (messages keep their own slices).
                self.rbuf = BytesMut::new();
            }
        } else if delivered > 0 && self.rbuf.len() <= COMPACT_BELOW {
            // The rest would keep the allocation of the messages cut out of it alive. It moves
            // to a buffer with the room the next read would add anyway (one allocation, not two).
            let len = self.rbuf.len();
            let mut rest =
                BytesMut::with_capacity(len + growth(len, self.wanted, self.filled) + READ_SLACK);
            rest.extend_from_slice(&self.rbuf);
            self.rbuf = rest;
            self.filled = false;
        }
        if self.rbuf.capacity() != self.read_capacity {
            self.read_capacity = self.rbuf.capacity();
            inner
                .read_buffer
                .store(self.read_capacity, Ordering::Relaxed);
        }
        if delivered > 0 {
            shared.recv_wakers.wake_all();
            callbacks::wake(shared);
        }
        if !shared.send_wakers.is_empty() && inner.buffered(shared) < inner.write_limit {
            shared.send_wakers.wake_all();
        }
        if closed {
            tracing::debug!(url = %inner.url, "connection closed");
            finish(shared);
            drop(writer);
            drop(sh);
            // Dropping the halves closes the transport; the peer's EOF was read, or the close
            // timeout passed, so no unread input makes the kernel answer with a reset.
            drop_writer(inner);
            self.io = None;
            return None;
        }
        drop(sh);

        // Reading resumed (the application made room): read now, or no readiness is awaited.
        let mut again = std::mem::take(&mut self.retry) || (self.reading && !was_reading);
        if deadline != self.deadline {
            self.deadline = deadline;
            if let Some(t) = deadline {
                let at = tokio::time::Instant::from_std(t);
                match self.sleep.as_mut() {
                    Some(s) => s.as_mut().reset(at),
                    None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
                }
            }
            again = true;
        }
        // Write outside the core's lock.
        let Some(mut w) = writer else {
            return Some(again);
        };
        if !w.backlog.is_empty() || w.unflushed || shutdown {
            let before = w.unwritten();
            let mut report = Report {
                backlog: 0,
                progressed: false,
                shut: false,
                error: None,
            };
            match w.poll_write_out(cx) {
                Ok(progressed) => report.progressed = progressed,
                Err(e) => report.error = Some(e.to_string()),
            }
            if shutdown && w.backlog.is_empty() && !w.unflushed && report.error.is_none() {
                if let Some(half) = w.half.as_mut() {
                    match Pin::new(half).poll_shutdown(cx) {
                        Poll::Ready(_) => {
                            w.shut = true;
                            report.shut = true;
                        }
                        Poll::Pending => {}
                    }
                }
            }
            report.backlog = w.backlog.len();
            let after = w.unwritten();
            inner.unwritten.store(after, Ordering::Release);
            self.write_wanted = after > 0;
            again |= report.progressed || report.shut || report.error.is_some() || after != before;
            self.report = Some(report);
        } else {
            self.write_wanted = false;
        }
        drop(w);
        Some(again)
    }
}

/// A driver dropped before the connection ended (its task was dropped: the runtime shut
/// down, the application's code beside it in [`super::Connection::run_with`] panicked, or the
/// [`super::Connection`] was never run): nothing will read, write or time the connection any
/// more, so it ends as a lost connection (error and close events, 1006) and the transport is
/// closed, rather than staying OPEN for whoever still holds the socket.
impl Drop for Driver {
    fn drop(&mut self) {
        if self.st.io.is_none() {
            // Ended with the connection.
            return;
        }
        let mut sh = self.inner.lock();
        if sh.proto.state() != ReadyState::Closed {
            sh.proto.drop_transport("the connection's task ended");
            finish(&mut sh);
        }
        drop(sh);
        drop_writer(&self.inner);
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Driver { inner, st: this } = &mut *self;
        inner.driver.register(cx.waker());
        // A pass runs when something happened; `force` makes one run anyway (the first poll,
        // and after a pass that changed what the next one would see).
        let mut force = std::mem::take(&mut this.first);
        let mut retried = false;
        loop {
            // Read first, outside any lock.
            let read = if this.reading {
                this.read(cx)
            } else {
                Poll::Pending
            };
            let notified = inner.notified.swap(false, Ordering::AcqRel);
            let timer_due = match (&mut this.sleep, this.deadline) {
                (Some(s), Some(_)) => s.as_mut().poll(cx).is_ready(),
                _ => false,
            };
            let idle = read.is_pending() && !notified && !timer_due && !this.write_wanted;
            if idle && !force {
                return Poll::Pending;
            }
            let was_ready = read.is_ready();
            match this.pass(inner, read, timer_due, cx) {
                None => return Poll::Ready(()),
                Some(again) if again || was_ready => force = again,
                Some(_) if this.report.is_some() && !retried => {
                    // Once more to tell the core what the write did (it arms the write-stall
                    // timer); a transport that stays full wakes us when it drains.
                    retried = true;
                    force = true;
                }
                Some(_) => return Poll::Pending,
            }
        }
    }
}
