//! The byte-moving parts shared by the two ways a connection's I/O runs (the [`super::Socket`]'s
//! driver task, and [`super::OwnedSocket`], which does its own I/O): the read buffer, sized from
//! what arrives, and the write half with the bytes the transport has not accepted yet.

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use crate::proto::Output;
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
/// A read buffer at most this large is kept once everything in it is decoded (an empty view of
/// its allocation, which the decoder leaves in place): when the messages cut out of it are gone
/// by the next read (an echo, a request answered), that read reuses it instead of allocating.
/// Larger ones are given back: by the connection's next message its own buffer has left the
/// cache, while the allocator hands out a block freed a moment ago, and past a few cache lines
/// the misses cost more than the allocation saves.
const KEEP_SMALL: usize = crate::proto::REUSABLE_BUFFER;
/// The smallest read buffer allocated for a small read.
const SMALL_MIN: usize = 64;
/// The most slices handed to one vectored write.
const MAX_IOV: usize = 64;

/// The transport's write half and what its last writes left to do. It writes whatever
/// [`Output`] it is given: [`super::OwnedSocket`] hands it the core's own output, written in
/// place; the driver hands it the [`Writer`]'s backlog.
#[derive(Default)]
pub(super) struct WriteIo {
    half: Option<WriteHalf>,
    /// Bytes were handed to the transport and not flushed yet (TLS keeps records until
    /// flushed).
    unflushed: bool,
    /// The last write found the transport full: the task waits for it to drain.
    blocked: bool,
    shut: bool,
}

impl WriteIo {
    pub(super) fn attach(&mut self, half: WriteHalf) {
        self.half = Some(half);
    }

    /// Drops the transport's write half.
    pub(super) fn detach(&mut self) {
        self.half = None;
    }

    /// Whether a write made so far waits to be flushed (1 byte's worth of "unwritten").
    pub(super) fn unflushed(&self) -> bool {
        self.unflushed
    }

    /// Shuts the transport's write side (once everything is written); `true` once done.
    pub(super) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> bool {
        if self.shut {
            return true;
        }
        if let Some(half) = self.half.as_mut() {
            if Pin::new(half).poll_shutdown(cx).is_ready() {
                self.shut = true;
            }
        }
        self.shut
    }

    /// Whether a write may start now: the transport is there, not known to be full, not shut.
    pub(super) fn ready(&self) -> bool {
        self.half.is_some() && !self.blocked && !self.shut
    }

    /// Writes `out` without waiting; `true` if everything went out. When it did not (the
    /// transport is full, or failed) `blocked` is set: the next [`WriteIo::poll_write`] waits
    /// for the transport and sees the error, if any.
    pub(super) fn write_now(&mut self, out: &mut Output) -> bool {
        let Some(half) = self.half.as_mut() else {
            return false;
        };
        let done = match half {
            WriteHalf::Tcp(tcp) => {
                // `try_write*` leaves the registration for writability alone. One contiguous
                // run (the usual small message) goes out with a plain `send`, which costs the
                // kernel less than `writev`.
                while !out.is_empty() {
                    let written = if out.is_contiguous() {
                        tcp.try_write(out.first_chunk())
                    } else {
                        let mut slices = [IoSlice::new(&[]); MAX_IOV];
                        let n = out.io_slices(&mut slices);
                        tcp.try_write_vectored(&slices[..n])
                    };
                    match written {
                        Ok(k) if k > 0 => out.advance(k),
                        _ => break,
                    }
                }
                out.is_empty()
            }
            WriteHalf::Shared(_) => {
                // Nobody waits on this transport's writability (`blocked` is false), so
                // polling it with a waker that does nothing takes nothing from it; if the
                // write cannot finish, the next `poll_write` polls it with the real waker.
                let mut cx = Context::from_waker(Waker::noop());
                let ok = self.poll_write(out, &mut cx).is_ok();
                ok && out.is_empty() && !self.unflushed
            }
        };
        if !done {
            self.blocked = true;
        }
        done
    }

    /// Writes `out` until it is empty or the transport is full, then flushes if anything it
    /// took is not flushed yet; returns whether anything was written.
    pub(super) fn poll_write(
        &mut self,
        out: &mut Output,
        cx: &mut Context<'_>,
    ) -> std::io::Result<bool> {
        let Some(w) = self.half.as_mut() else {
            return Ok(false);
        };
        let mut progress = false;
        while !out.is_empty() {
            let poll = if w.is_write_vectored() && !out.is_contiguous() {
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
                    self.unflushed = true;
                    out.advance(n);
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        if out.is_empty() && self.unflushed {
            match Pin::new(&mut *w).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.unflushed = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        self.blocked = !out.is_empty() || self.unflushed;
        Ok(progress)
    }
}

/// The driver's writer: the transport's write half with the bytes taken from the core that it
/// has not accepted yet. Shared by the driver and by senders that write at once (they only
/// ever `try_lock` it).
#[derive(Default)]
pub(super) struct Writer {
    /// The write half itself (attach, detach and shutdown go to it directly).
    pub(super) io: WriteIo,
    backlog: Output,
}

impl Writer {
    /// Whether everything taken was handed to the transport and flushed.
    pub(super) fn is_drained(&self) -> bool {
        self.backlog.is_empty() && !self.io.unflushed()
    }

    /// Bytes taken from the core that the transport has not accepted yet.
    pub(super) fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Whether a sender may write now: nothing is waiting ahead of it and the transport is not
    /// known to be full.
    pub(super) fn idle(&self) -> bool {
        self.io.ready() && self.backlog.is_empty()
    }

    /// Takes the core's output (see [`crate::proto::Protocol::take_output_into`]).
    pub(super) fn take_from(&mut self, proto: &mut crate::proto::Protocol) {
        proto.take_output_into(&mut self.backlog);
    }

    /// Bytes not yet accepted by the transport (1 for an unflushed write).
    pub(super) fn unwritten(&self) -> usize {
        self.backlog.len() + usize::from(self.io.unflushed())
    }

    /// Writes without waiting (from a sender); `true` if everything went out. When it did not
    /// (the transport is full, or failed) the driver takes over and sees the error, if any.
    pub(super) fn write_now(&mut self) -> bool {
        self.io.write_now(&mut self.backlog)
    }

    /// Writes the backlog until it is empty or the transport is full, then flushes if anything
    /// it took is not flushed yet; returns whether anything was written.
    pub(super) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> std::io::Result<bool> {
        self.io.poll_write(&mut self.backlog, cx)
    }
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

/// The read buffer of one connection. Between messages an idle connection holds none; a
/// message is read into a buffer of about its size, and the buffer grows with what actually
/// arrives (see [`growth`]).
pub(super) struct ReadBuffer {
    /// Bytes read and not decoded yet.
    pub(super) buf: BytesMut,
    /// How many more bytes the core wants in `buf` (from the last decode).
    wanted: usize,
    /// The last read filled all the room it had: more bytes are likely waiting.
    filled: bool,
    /// How many bytes the last decode that delivered messages took, when more than the stack
    /// buffer holds: bytes that really arrived, so the next message is read straight into a
    /// buffer that large (one read, no copy). A read that brings much less forgets it.
    read_hint: usize,
    /// The size of the allocation `buf` views (0: none).
    allocated: usize,
}

impl ReadBuffer {
    /// A buffer holding `prefix` (bytes read past the handshake).
    pub(super) fn new(prefix: BytesMut) -> ReadBuffer {
        // (An empty prefix may still hold the handshake's buffer.)
        let prefix = if prefix.is_empty() {
            BytesMut::new()
        } else {
            prefix
        };
        ReadBuffer {
            allocated: prefix.capacity(),
            buf: prefix,
            wanted: 1,
            filled: false,
            read_hint: 0,
        }
    }

    /// Bytes of memory the buffer holds (for [`super::Socket::memory_usage`]).
    pub(super) fn held(&self) -> usize {
        self.allocated.max(self.buf.capacity())
    }

    /// Reads from `io` into the buffer, sized as described on [`ReadBuffer`].
    pub(super) fn poll_read(
        &mut self,
        io: &mut ReadHalf,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        if self.buf.is_empty() && self.read_hint > 0 {
            return self.poll_read_hinted(io, cx);
        }
        if self.buf.is_empty() && self.allocated > 0 && self.buf.try_reclaim(self.allocated) {
            // The kept small buffer is free again (the messages cut out of it are gone): read
            // straight into it. A few hundred bytes filling it say little about what waits:
            // the next read grows it by the small step, not by the step for a full buffer.
            self.filled = false;
            return io.poll_read_buf(cx, &mut self.buf);
        }
        if self.buf.is_empty() {
            return self.poll_read_idle(io, cx);
        }
        let len = self.buf.len();
        let spare = self.buf.capacity() - len;
        if self.filled || spare < READ_MIN {
            self.buf
                .reserve(growth(len, self.wanted, self.filled) + READ_SLACK);
            self.allocated = self.allocated.max(self.buf.capacity());
        }
        let room = self.buf.capacity() - self.buf.len();
        let poll = io.poll_read_buf(cx, &mut self.buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.filled = n >= room;
        }
        poll
    }

    /// [`ReadBuffer::poll_read`] after large messages: read the next straight into a buffer of
    /// their size. (Out of line: the small-message path stays short.)
    #[inline(never)]
    fn poll_read_hinted(
        &mut self,
        io: &mut ReadHalf,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        // On TCP, wait for readability first, so that a driver woken for other reasons does
        // not allocate the buffer for nothing.
        if let Err(e) = std::task::ready!(io.poll_read_ready(cx)) {
            return Poll::Ready(Err(e));
        }
        self.buf.reserve(self.read_hint + READ_SLACK);
        self.allocated = self.buf.capacity();
        let room = self.buf.capacity();
        let poll = io.poll_read_buf(cx, &mut self.buf);
        let n = self.buf.len();
        if n == 0 {
            // Nothing came (yet): the buffer goes back.
            self.buf = BytesMut::new();
            self.allocated = 0;
        } else if n.saturating_mul(4) < self.read_hint && n < READ_CHUNK {
            // Much less came than the hint promised, and little: keep only what came, in a
            // buffer of its size, and grow from there with what arrives. (A peer sending
            // a large message fast brings a full chunk or more in its first read: its
            // buffer stays, and the message is read without a copy per growth step. The
            // buffer is then the size of a message this peer really sent.)
            self.buf = BytesMut::from(&self.buf[..]);
            self.allocated = self.buf.capacity();
            self.read_hint = 0;
            self.filled = false;
        } else {
            self.filled = n >= room;
        }
        poll
    }

    /// [`ReadBuffer::poll_read`] with no buffer: read into the stack. Kept out of line: its
    /// 4 KiB stack frame costs every call a stack probe.
    #[inline(never)]
    fn poll_read_idle(
        &mut self,
        io: &mut ReadHalf,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<usize>> {
        // Between messages an idle connection holds no read buffer at all (it is given back
        // once everything is decoded): read into the stack (uninitialized: nothing to zero)
        // and copy what came into a buffer of its size, with a step more when the read
        // filled the stack buffer (more is waiting).
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); IDLE_READ];
        let mut buf = ReadBuf::uninit(&mut stack);
        match Pin::new(io).poll_read(cx, &mut buf) {
            Poll::Ready(Ok(())) => {
                let data = buf.filled();
                let n = data.len();
                if n > 0 {
                    // A full stack buffer: more is waiting (growth's floor for a full read).
                    let more = if n == IDLE_READ { READ_CHUNK } else { 0 };
                    // A small read gets a small buffer with room to spare, which is kept
                    // and read into directly next time (a read that fills its room leaves
                    // the socket marked readable: one more read to learn it is empty).
                    let size = if n + more < KEEP_SMALL {
                        n.saturating_mul(2).clamp(SMALL_MIN, KEEP_SMALL)
                    } else {
                        n + more
                    };
                    // (Allocating outright is cheaper than growing an empty buffer.)
                    self.buf = BytesMut::with_capacity(size);
                    self.allocated = self.buf.capacity();
                    self.buf.extend_from_slice(data);
                }
                // The step for a full read is taken here already.
                self.filled = false;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// After the core decoded from `buf`: it held `had` bytes before, `delivered` messages came
    /// out, and the core wants `wanted` more bytes. Gives the buffer back once everything is
    /// decoded, or moves a small rest to a buffer of its own.
    #[inline]
    pub(super) fn decoded(&mut self, had: usize, delivered: usize, wanted: usize) {
        self.wanted = wanted;
        if delivered > 0 {
            let decoded = had.saturating_sub(self.buf.len());
            self.read_hint = if decoded > IDLE_READ {
                decoded.min(READ_MAX_STEP)
            } else {
                0
            };
        }
        if self.buf.is_empty() {
            if self.allocated > KEEP_SMALL {
                // Everything is decoded: give the buffer back (messages keep their own slices).
                self.buf = BytesMut::new();
                self.allocated = 0;
            }
        } else if delivered > 0 && self.buf.len() <= COMPACT_BELOW {
            // The rest would keep the allocation of the messages cut out of it alive. It moves
            // to a buffer with the room the next read would add anyway (one allocation, not two).
            let len = self.buf.len();
            let mut rest =
                BytesMut::with_capacity(len + growth(len, self.wanted, self.filled) + READ_SLACK);
            rest.extend_from_slice(&self.buf);
            self.buf = rest;
            self.allocated = self.buf.capacity();
            self.filled = false;
        }
    }
}

/// The sleep until the core's next deadline ([`crate::proto::Protocol::poll_timeout`]).
#[derive(Default)]
pub(super) struct Timer {
    sleep: Option<Pin<Box<Sleep>>>,
    deadline: Option<Instant>,
}

impl Timer {
    /// Sleeps until `deadline` from now on; `true` if it changed (the sleep must be polled to
    /// be armed).
    #[inline]
    pub(super) fn set(&mut self, deadline: Option<Instant>) -> bool {
        if deadline == self.deadline {
            return false;
        }
        self.deadline = deadline;
        if let Some(t) = deadline {
            let at = tokio::time::Instant::from_std(t);
            match self.sleep.as_mut() {
                Some(s) => s.as_mut().reset(at),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        true
    }

    /// The deadline slept until.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether the deadline has passed (otherwise `cx` is woken when it does).
    pub(super) fn poll_due(&mut self, cx: &mut Context<'_>) -> bool {
        match (&mut self.sleep, self.deadline) {
            (Some(s), Some(_)) => s.as_mut().poll(cx).is_ready(),
            _ => false,
        }
    }
}
