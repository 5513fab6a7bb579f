//! [`WsStream`]: the handshaken byte stream (TCP or TLS) that `connect` returns and `upgrade`
//! accepts, which first replays any bytes read past the end of the handshake.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Any transport a socket can run on.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

/// The transport under a WebSocket: plain TCP, TLS, or anything else (boxed).
pub enum Inner {
    /// `ws://` over TCP.
    Plain(TcpStream),
    /// `wss://`, client side.
    ClientTls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// `wss://`, server side.
    ServerTls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// Any other transport (an HTTP server's upgraded connection, an in-memory pipe, ...).
    Other(Box<dyn Transport>),
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Inner::Plain(_) => "Plain",
            Inner::ClientTls(_) => "ClientTls",
            Inner::ServerTls(_) => "ServerTls",
            Inner::Other(_) => "Other",
        })
    }
}

/// A handshaken WebSocket byte stream (the seed's `Stream` returned by `ws.connect`).
///
/// Bytes that arrived right behind the handshake are kept and read first, so no frame the peer
/// sent early is lost.
#[derive(Debug)]
pub struct WsStream {
    inner: Inner,
    prefix: BytesMut,
}

impl WsStream {
    /// Wraps a transport; `prefix` holds bytes already read from it that belong after the
    /// handshake.
    pub fn new(inner: Inner, prefix: BytesMut) -> Self {
        WsStream { inner, prefix }
    }

    /// Wraps any transport.
    pub fn from_transport<T: Transport>(io: T, prefix: BytesMut) -> Self {
        WsStream::new(Inner::Other(Box::new(io)), prefix)
    }

    /// Takes the transport out (dropping any unread prefix bytes).
    pub fn into_inner(self) -> Inner {
        self.inner
    }

    /// The transport.
    pub fn get_ref(&self) -> &Inner {
        &self.inner
    }

    /// Whether this stream runs over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::ClientTls(_) | Inner::ServerTls(_))
    }

    /// Takes the bytes read past the handshake that were not yet read (the socket layer moves
    /// them straight into its read buffer).
    pub fn take_prefix(&mut self) -> BytesMut {
        std::mem::take(&mut self.prefix)
    }

    /// Sets TCP_NODELAY when the transport is TCP (directly or under TLS).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        match &self.inner {
            Inner::Plain(s) => s.set_nodelay(nodelay),
            Inner::ClientTls(s) => s.get_ref().0.set_nodelay(nodelay),
            Inner::ServerTls(s) => s.get_ref().0.set_nodelay(nodelay),
            Inner::Other(_) => Ok(()),
        }
    }
}

macro_rules! with_inner {
    ($self:ident, $s:ident => $e:expr) => {
        match &mut $self.get_mut().inner {
            Inner::Plain($s) => $e,
            Inner::ClientTls($s) => $e,
            Inner::ServerTls($s) => $e,
            Inner::Other($s) => $e,
        }
    };
}

impl AsyncRead for WsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let this = self.get_mut();
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        with_inner!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for WsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        with_inner!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        with_inner!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(s) => s.is_write_vectored(),
            Inner::ClientTls(s) => s.is_write_vectored(),
            Inner::ServerTls(s) => s.is_write_vectored(),
            Inner::Other(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with_inner!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        with_inner!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl From<TcpStream> for WsStream {
    fn from(tcp: TcpStream) -> Self {
        WsStream::new(Inner::Plain(tcp), BytesMut::new())
    }
}

impl From<tokio_rustls::server::TlsStream<TcpStream>> for WsStream {
    fn from(tls: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        WsStream::new(Inner::ServerTls(Box::new(tls)), BytesMut::new())
    }
}

impl From<tokio_rustls::client::TlsStream<TcpStream>> for WsStream {
    fn from(tls: tokio_rustls::client::TlsStream<TcpStream>) -> Self {
        WsStream::new(Inner::ClientTls(Box::new(tls)), BytesMut::new())
    }
}
