//! The transport under a WebSocket: one enum ([`Transport`]) over plain TCP, TLS and any other
//! byte stream; [`WsStream`], the handshaken stream that `connect` returns and `upgrade` takes;
//! and the two halves a socket splits it into, so that senders can write while its driver reads.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Any byte stream a socket can run on.
pub trait AnyIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> AnyIo for T {}

/// The transport under a WebSocket.
pub enum Transport {
    /// `ws://` over TCP.
    Tcp(TcpStream),
    /// `wss://`, client side.
    #[cfg(feature = "rustls")]
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// `wss://`, server side.
    #[cfg(feature = "rustls")]
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Any other byte stream (an HTTP server's upgraded connection, an in-memory pipe, ...).
    Other(Box<dyn AnyIo>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp(_) => "Tcp",
            #[cfg(feature = "rustls")]
            Transport::ClientTls(_) => "ClientTls",
            #[cfg(feature = "rustls")]
            Transport::ServerTls(_) => "ServerTls",
            Transport::Other(_) => "Other",
        })
    }
}

macro_rules! each {
    ($t:expr, $s:ident => $e:expr) => {
        match $t {
            Transport::Tcp($s) => $e,
            #[cfg(feature = "rustls")]
            Transport::ClientTls($s) => $e,
            #[cfg(feature = "rustls")]
            Transport::ServerTls($s) => $e,
            Transport::Other($s) => $e,
        }
    };
}

impl Transport {
    /// Whether this runs over TLS.
    pub fn is_tls(&self) -> bool {
        match self {
            #[cfg(feature = "rustls")]
            Transport::ClientTls(_) | Transport::ServerTls(_) => true,
            _ => false,
        }
    }

    /// Sets TCP_NODELAY when the transport is TCP (directly or under TLS).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.set_nodelay(nodelay),
            #[cfg(feature = "rustls")]
            Transport::ClientTls(s) => s.get_ref().0.set_nodelay(nodelay),
            #[cfg(feature = "rustls")]
            Transport::ServerTls(s) => s.get_ref().0.set_nodelay(nodelay),
            Transport::Other(_) => Ok(()),
        }
    }

    /// Splits into a read half and a write half: TCP natively, anything else through tokio's
    /// lock-guarded split.
    pub(crate) fn split(self) -> (ReadHalf, WriteHalf) {
        match self {
            Transport::Tcp(tcp) => {
                let (r, w) = tcp.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            other => {
                let (r, w) = tokio::io::split(other);
                (ReadHalf::Shared(r), WriteHalf::Shared(w))
            }
        }
    }
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each!(self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The read half of a split [`Transport`] (the socket driver's).
pub(crate) enum ReadHalf {
    Tcp(OwnedReadHalf),
    Shared(tokio::io::ReadHalf<Transport>),
}

impl ReadHalf {
    /// Waits until the transport is readable, where that can be asked without reading (TCP);
    /// elsewhere it is ready at once.
    pub(crate) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            ReadHalf::Tcp(r) => r.as_ref().poll_read_ready(cx),
            ReadHalf::Shared(_) => Poll::Ready(Ok(())),
        }
    }

    /// Reads into the spare room of `buf` (growing it only when it has none), as
    /// `tokio_util::io::poll_read_buf` does; `Ok(0)` is EOF.
    pub(crate) fn poll_read_buf(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self {
            ReadHalf::Tcp(r) => poll_read_tcp(r.as_ref(), cx, buf),
            ReadHalf::Shared(r) => tokio_util::io::poll_read_buf(Pin::new(r), cx, buf),
        }
    }
}

/// [`ReadHalf::poll_read_buf`] on TCP: wait for readiness, then one non-blocking read straight
/// into `buf`. This is the read every message makes, twice (once to learn that nothing is there
/// yet and register for the wake, once to read): asking for readiness directly and reading with
/// `try_read_buf` skips the `AsyncRead` layers and their `ReadBuf` between us and the socket.
fn poll_read_tcp(
    tcp: &TcpStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    loop {
        // (Also where the runtime's cooperative budget is spent: a connection that is always
        // readable still yields now and then.)
        std::task::ready!(tcp.poll_read_ready(cx))?;
        let room = buf.capacity() - buf.len();
        let mut got = 0;
        let read = tcp.try_io(tokio::io::Interest::READABLE, || {
            got = tcp.try_read_buf(buf)?;
            if DRAINED_BY_SHORT_READ && got > 0 && got < room {
                // A read that did not fill its room drained the socket: answering "would
                // block" has the runtime forget the readiness, so the next wait registers at
                // once instead of starting with a read that finds nothing (a system call per
                // message). The bytes read are kept in `got`.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(got)
        });
        match read {
            Ok(n) => return Poll::Ready(Ok(n)),
            // (Bytes read: the error is ours, above.)
            Err(_) if got > 0 => return Poll::Ready(Ok(got)),
            // The readiness was stale: it is cleared now, wait again.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}

/// Whether a read that does not fill its buffer shows the socket is drained: so with epoll and
/// kqueue (tokio relies on the same), not on Windows.
const DRAINED_BY_SHORT_READ: bool = !cfg!(windows);

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(r) => Pin::new(r).poll_read(cx, buf),
            ReadHalf::Shared(r) => Pin::new(r).poll_read(cx, buf),
        }
    }
}

/// The write half of a split [`Transport`] (shared by the driver and direct writes from `send`).
pub(crate) enum WriteHalf {
    Tcp(OwnedWriteHalf),
    Shared(tokio::io::WriteHalf<Transport>),
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write(cx, buf),
            WriteHalf::Shared(w) => Pin::new(w).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_write_vectored(cx, bufs),
            WriteHalf::Shared(w) => Pin::new(w).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            WriteHalf::Tcp(w) => w.is_write_vectored(),
            WriteHalf::Shared(w) => w.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_flush(cx),
            WriteHalf::Shared(w) => Pin::new(w).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(w) => Pin::new(w).poll_shutdown(cx),
            WriteHalf::Shared(w) => Pin::new(w).poll_shutdown(cx),
        }
    }
}

/// A handshaken WebSocket byte stream (the seed's `Stream` returned by `ws.connect`).
///
/// Bytes that arrived right behind the handshake are kept and read first, so no frame the peer
/// sent early is lost.
#[derive(Debug)]
pub struct WsStream {
    transport: Transport,
    prefix: BytesMut,
}

impl WsStream {
    /// Wraps a transport; `prefix` holds bytes already read from it that belong after the
    /// handshake.
    pub fn new(transport: Transport, prefix: BytesMut) -> Self {
        WsStream { transport, prefix }
    }

    /// Wraps any byte stream.
    pub fn from_transport<T: AnyIo>(io: T, prefix: BytesMut) -> Self {
        WsStream::new(Transport::Other(Box::new(io)), prefix)
    }

    /// Takes the transport out (dropping any unread prefix bytes).
    pub fn into_inner(self) -> Transport {
        self.transport
    }

    /// The transport and the bytes read past the handshake.
    pub fn into_parts(self) -> (Transport, BytesMut) {
        (self.transport, self.prefix)
    }

    /// The transport.
    pub fn get_ref(&self) -> &Transport {
        &self.transport
    }

    /// Whether this stream runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.transport.is_tls()
    }

    /// Sets TCP_NODELAY when the transport is TCP (directly or under TLS).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.transport.set_nodelay(nodelay)
    }
}

impl AsyncRead for WsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.transport).poll_read(cx, buf)
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().transport).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().transport).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.transport.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().transport).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().transport).poll_shutdown(cx)
    }
}

impl From<TcpStream> for WsStream {
    fn from(tcp: TcpStream) -> Self {
        WsStream::new(Transport::Tcp(tcp), BytesMut::new())
    }
}

#[cfg(feature = "rustls")]
impl From<tokio_rustls::server::TlsStream<TcpStream>> for WsStream {
    fn from(tls: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        WsStream::new(Transport::ServerTls(Box::new(tls)), BytesMut::new())
    }
}

#[cfg(feature = "rustls")]
impl From<tokio_rustls::client::TlsStream<TcpStream>> for WsStream {
    fn from(tls: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        WsStream::new(Transport::ClientTls(Box::new(tls)), BytesMut::new())
    }
}
