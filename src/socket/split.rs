//! [`Socket::split`]'s halves: a `Stream` of messages and a `Sink` of messages.

use std::pin::Pin;
use std::task::{Context, Poll};

use super::Socket;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::proto::CloseCode;

/// The reading half of a split socket: a `Stream` of messages that ends after the close.
#[derive(Debug)]
pub struct SocketReader {
    socket: Socket,
    done: bool,
}

impl SocketReader {
    pub(super) fn new(socket: Socket) -> Self {
        SocketReader {
            socket,
            done: false,
        }
    }

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

    /// Yields each message; at the end, one `Err` if the connection failed (not after a clean
    /// close), then `None`.
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
                    .proto
                    .close_event()
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
    pub(super) fn new(socket: Socket) -> Self {
        SocketWriter {
            socket,
            closing: false,
        }
    }

    /// Sends a message (see [`Socket::send`]).
    pub async fn send(&self, msg: impl Into<Message>) -> Result<()> {
        self.socket.send(msg).await
    }

    /// Closes the connection (see [`Socket::close`]).
    pub fn close(&self, code: CloseCode, reason: &str) -> super::Closing<'_> {
        self.socket.close(code, reason)
    }

    /// The socket this half belongs to.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }
}

impl futures_sink::Sink<Message> for SocketWriter {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let inner = &self.socket.inner;
        let mut sh = inner.lock();
        let pending = inner.buffered(&sh);
        if pending > 0 && pending >= inner.write_limit {
            sh.send_wakers.register(cx.waker());
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, item: Message) -> Result<()> {
        self.socket.queue(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.socket.poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if !self.closing {
            self.closing = true;
            self.socket.close(CloseCode::NORMAL, "");
        }
        self.socket.poll_closed(cx).map(|_| Ok(()))
    }
}
