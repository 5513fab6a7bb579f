//! The transport's read half and who reads it.
//!
//! Whoever holds the [`Reader`] reads: the driver, or a task waiting in [`super::Socket::recv`]
//! with nothing queued. The second saves a wake-up of the driver and a hand-over per message
//! for the common request/response loop. Both read with the same waker ([`Wakeup`]), which sends
//! the transport's readiness to the waiting receiver while there is one and to the driver
//! otherwise, so that input is always read by someone who will come back for it.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::Instant;

use bytes::BytesMut;
use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, ReadBuf};

use crate::proto::{FrameHeader, Protocol};
use crate::transport::ReadHalf;

/// Read buffer growth step.
const READ_CHUNK: usize = 16 * 1024;
/// The stack buffer an idle connection reads into.
const IDLE_READ: usize = 4096;
/// Room left past the end of the frame being read: a read that does not fill the buffer tells
/// the runtime the socket is drained, which saves a read that would only find it empty.
const READ_SLACK: usize = 1024;

/// Where the transport's read readiness (and the driver's other work) goes.
#[derive(Default)]
pub(super) struct Wakeup {
    /// The driver task.
    driver: AtomicWaker,
    /// The driver has something to do that no I/O readiness will tell it.
    notified: AtomicBool,
    /// A task waiting in `recv` that reads for itself.
    receiver: AtomicWaker,
    /// Whether such a task is waiting (readiness goes to it, not to the driver).
    receiving: AtomicBool,
    /// Readiness went to the waiting receiver since it last read.
    receiver_woken: AtomicBool,
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // Flag first, then look: a receiver that stops waiting in between sees the flag and
        // hands the readiness to the driver itself (see `stop_receiving`).
        self.receiver_woken.store(true, Ordering::SeqCst);
        if self.receiving.load(Ordering::SeqCst) {
            self.receiver.wake();
        } else {
            self.driver.wake();
        }
    }
}

impl Wakeup {
    pub(super) fn register_driver(&self, cx: &Context<'_>) {
        self.driver.register(cx.waker());
    }

    /// Wakes the driver for work that no readiness will announce.
    pub(super) fn notify_driver(&self) {
        self.notified.store(true, Ordering::Release);
        self.driver.wake();
    }

    /// Takes the driver's notification.
    pub(super) fn take_notified(&self) -> bool {
        self.notified.swap(false, Ordering::AcqRel)
    }

    /// A receiver is about to read: readiness goes to its task from now on.
    pub(super) fn start_receiving(&self, cx: &Context<'_>) {
        self.receiver.register(cx.waker());
        self.receiving.store(true, Ordering::SeqCst);
        self.receiver_woken.store(false, Ordering::SeqCst);
    }

    /// The receiver stops waiting (it got a message, or its future was dropped): readiness
    /// goes to the driver again, with any that reached the receiver and was not read.
    pub(super) fn stop_receiving(&self) {
        self.receiving.store(false, Ordering::SeqCst);
        if self.receiver_woken.swap(false, Ordering::SeqCst) {
            self.driver.wake();
        }
    }

    /// Input was delivered by someone else: a receiver waiting for readiness takes it from the
    /// queue.
    pub(super) fn wake_receiver(&self) {
        if self.receiving.load(Ordering::SeqCst) {
            self.receiver.wake();
        }
    }
}

/// The transport's read half with the bytes read and not decoded yet.
#[derive(Default)]
pub(super) struct Reader {
    io: Option<ReadHalf>,
    rbuf: BytesMut,
    /// `rbuf` may hold bytes not decoded yet: read past the handshake, or left when the core's
    /// receive queue filled up.
    pub(super) undecoded: bool,
    /// How many more bytes the core wants in `rbuf`.
    wanted: usize,
    /// The size of the large frame the last message started with (0 after a small one): how
    /// much to read at once when the next one comes.
    read_hint: usize,
}

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

impl Reader {
    /// Takes the transport's read half and the bytes read past the handshake.
    pub(super) fn attach(&mut self, io: ReadHalf, prefix: BytesMut) {
        self.io = Some(io);
        self.undecoded = !prefix.is_empty();
        self.rbuf = prefix;
        self.wanted = 1;
    }

    /// Whether there is a plain TCP transport to read (the one a waiting receiver reads).
    pub(super) fn is_tcp(&self) -> bool {
        matches!(self.io, Some(ReadHalf::Tcp(_)))
    }

    /// Drops the read half (the connection is over).
    pub(super) fn detach(&mut self) {
        self.io = None;
        self.rbuf = BytesMut::new();
        self.undecoded = false;
    }

    /// Reads what the transport has into the buffer.
    pub(super) fn read(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let Some(io) = self.io.as_mut() else {
            return Poll::Pending;
        };
        if self.rbuf.is_empty() {
            // Between messages an idle connection holds no read buffer at all (it is given back
            // once everything is decoded).
            if self.read_hint > 0 {
                // The last message started with a large frame: read the next one straight into
                // a buffer of that size (one read, no copy); give the buffer back if nothing
                // came. On TCP, wait for readability first, so that a reader woken for other
                // reasons does not allocate the buffer for nothing.
                if let Err(e) = std::task::ready!(io.poll_read_ready(cx)) {
                    return Poll::Ready(Err(e));
                }
                self.rbuf.reserve(self.read_hint + READ_SLACK);
                let poll = tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut self.rbuf);
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
            return match Pin::new(io).poll_read(cx, &mut buf) {
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
        let wanted = self.wanted;
        let spare = self.rbuf.capacity() - self.rbuf.len();
        if spare < READ_CHUNK / 4 || wanted > spare {
            self.rbuf
                .reserve(wanted.clamp(READ_CHUNK, 1 << 20) + READ_SLACK);
        }
        tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut self.rbuf)
    }

    /// Feeds what `read` gave (and anything left undecoded that now fits) to the core; returns
    /// how many messages it queued.
    pub(super) fn deliver(
        &mut self,
        proto: &mut Protocol,
        read: Poll<std::io::Result<usize>>,
        now: Instant,
    ) -> usize {
        let mut delivered = 0;
        match read {
            Poll::Ready(Ok(0)) => proto.receive_eof(now),
            Poll::Ready(Ok(_)) => delivered += proto.receive_data(&mut self.rbuf, now),
            Poll::Ready(Err(e)) => proto.transport_error(&e.to_string()),
            Poll::Pending => {}
        }
        if self.undecoded && !proto.queue_full() {
            delivered += proto.receive_data(&mut self.rbuf, now);
        }
        self.undecoded = !self.rbuf.is_empty() && proto.queue_full();
        self.wanted = proto.bytes_wanted(&self.rbuf);
        if self.rbuf.is_empty() && self.rbuf.capacity() > 0 {
            // Everything is decoded: give the buffer back (messages keep their own slices).
            self.rbuf = BytesMut::new();
        }
        delivered
    }
}
