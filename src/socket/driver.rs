//! The per-connection task: reads into the core, writes what the core queued, and sleeps until
//! the core's next deadline. It decides nothing; [`crate::proto::Protocol`] does.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;

use super::io::{ReadBuffer, Timer};
use super::{callbacks, finish, now, Inner};
use crate::proto::ReadyState;
use crate::transport::ReadHalf;

/// Drops the transport's write half (the transport closes once the read half is gone too).
fn drop_writer(inner: &Inner) {
    inner.lock_writer().io.detach();
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
    rbuf: ReadBuffer,
    /// Whether the core wants reading (from the last pass).
    reading: bool,
    /// `rbuf` may hold bytes not decoded yet: read past the handshake, or left when the core's
    /// receive queue filled up.
    undecoded: bool,
    /// The writer has bytes (or a flush) waiting for the transport.
    write_wanted: bool,
    report: Option<Report>,
    first: bool,
    /// A sender held the writer: the next pass takes the output.
    retry: bool,
    timer: Timer,
    /// The read buffer's capacity as last published to `Inner::read_buffer`.
    read_capacity: usize,
}

impl Driver {
    pub(super) fn new(inner: Arc<Inner>, io: ReadHalf, prefix: BytesMut) -> Driver {
        let st = State {
            io: Some(io),
            undecoded: !prefix.is_empty(),
            rbuf: ReadBuffer::new(prefix),
            reading: true,
            write_wanted: false,
            report: None,
            first: true,
            retry: false,
            timer: Timer::default(),
            read_capacity: 0,
        };
        Driver { inner, st }
    }
}

impl State {
    fn read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        match self.io.as_mut() {
            Some(io) => self.rbuf.poll_read(io, cx),
            None => Poll::Pending,
        }
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
        let had = self.rbuf.buf.len();
        match read {
            Poll::Ready(Ok(0)) => proto.receive_eof(now()),
            Poll::Ready(Ok(_)) => {
                delivered += proto.receive_data_with(&mut self.rbuf.buf, &mut now);
            }
            Poll::Ready(Err(e)) => proto.transport_error(&e.to_string()),
            Poll::Pending => {}
        }
        if self.undecoded && !proto.queue_full() {
            delivered += proto.receive_data_with(&mut self.rbuf.buf, &mut now);
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
        if timer_due || self.timer.deadline().is_some_and(|t| t <= now()) {
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
        self.undecoded = !self.rbuf.buf.is_empty() && proto.queue_full();
        let was_reading = std::mem::replace(&mut self.reading, proto.wants_read());
        let wanted = proto.bytes_wanted(&self.rbuf.buf);
        self.rbuf.decoded(had, delivered, wanted);
        let deadline = proto.poll_timeout();
        let closed = proto.state() == ReadyState::Closed;
        if self.rbuf.held() != self.read_capacity {
            self.read_capacity = self.rbuf.held();
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
        again |= self.timer.set(deadline);
        // Write outside the core's lock.
        let Some(mut w) = writer else {
            return Some(again);
        };
        if !w.is_drained() || shutdown {
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
            if shutdown && w.is_drained() && report.error.is_none() && w.io.poll_shutdown(cx) {
                report.shut = true;
            }
            report.backlog = w.backlog();
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
            let timer_due = this.timer.poll_due(cx);
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
