//! [`upgrade`]: the seed's `ws.upgrade(accept)`: the server side of the opening handshake.
//!
//! Two ways in:
//! - [`upgrade`] makes a `tower::Service` over `http::Request` that hyper 1 and axum take as they
//!   are (`Router::route_service`, `hyper::service::service_fn`): it answers 101, takes the
//!   connection over from the HTTP server and calls `accept(socket, request_parts)` on a task of
//!   its own (the seed's HttpServer / Chain / Routing use);
//! - [`accept`] does the whole handshake on a raw `TcpStream` or TLS stream, with no HTTP stack.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};
use crate::http_io::{read_head, write_all};
use crate::proto::deflate::DeflateConfig;
use crate::proto::handshake::{self, HandshakeError, HandshakeLimits, UpgradeRequest};
use crate::proto::Role;
use crate::socket::{Connection, Negotiated, OwnedSocket, Socket, SocketConfig};
use crate::transport::WsStream;

/// Decides whether a request's `Origin` (if any) may connect.
pub type OriginCheck = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// Server settings for [`upgrade`] and [`accept`].
#[derive(Clone)]
pub struct AcceptOptions {
    /// Subprotocols the application speaks; the first one the client offers (in the client's
    /// order) is chosen.
    pub protocols: Vec<String>,
    /// permessage-deflate to accept (`None`: never compress). On by default.
    pub deflate: Option<DeflateConfig>,
    /// How long a client may take to send its request head ([`accept`] only). Default 10 s.
    pub handshake_timeout: Duration,
    /// Limits on the request head ([`accept`] only).
    pub handshake_limits: HandshakeLimits,
    /// When set, a request whose origin it refuses gets 403.
    pub origin_check: Option<OriginCheck>,
    /// Settings of the socket once open (max payload, timeouts, queues).
    pub socket: SocketConfig,
}

impl Default for AcceptOptions {
    fn default() -> Self {
        AcceptOptions {
            protocols: Vec::new(),
            deflate: crate::proto::deflate::AVAILABLE.then(DeflateConfig::default),
            handshake_timeout: Duration::from_secs(10),
            handshake_limits: HandshakeLimits::default(),
            origin_check: None,
            socket: SocketConfig::default(),
        }
    }
}

impl fmt::Debug for AcceptOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AcceptOptions")
            .field("protocols", &self.protocols)
            .field("deflate", &self.deflate)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("handshake_limits", &self.handshake_limits)
            .field("origin_check", &self.origin_check.is_some())
            .field("socket", &self.socket)
            .finish()
    }
}

impl AcceptOptions {
    /// Adds a supported subprotocol.
    pub fn protocol(mut self, name: impl Into<String>) -> Self {
        self.protocols.push(name.into());
        self
    }

    /// Turns permessage-deflate off.
    pub fn no_deflate(mut self) -> Self {
        self.deflate = None;
        self
    }

    /// Sets the largest message accepted.
    pub fn max_payload(mut self, max: usize) -> Self {
        self.socket.max_payload = max;
        self
    }

    /// Sets an origin check.
    pub fn origin_check(
        mut self,
        check: impl Fn(Option<&str>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.origin_check = Some(Arc::new(check));
        self
    }

    /// Decides the answer to a valid upgrade request: the 101 response (200 to an HTTP/2
    /// extended CONNECT) and what was negotiated, or the refusal to send.
    fn negotiate(
        &self,
        up: &UpgradeRequest,
        http2: bool,
    ) -> std::result::Result<(http::Response<()>, Negotiated), Box<http::Response<String>>> {
        if let Some(check) = &self.origin_check {
            if !check(up.origin.as_deref()) {
                return Err(Box::new(forbidden(up.origin.as_deref())));
            }
        }
        let protocol =
            handshake::select_protocol(&up.protocols, &self.protocols).map(str::to_owned);
        let (deflate, extensions) = match &self.deflate {
            Some(config) => match config.server_negotiate(up.extensions.iter().map(String::as_str))
            {
                Some((params, header)) => (Some(params), header),
                None => (None, String::new()),
            },
            None => (None, String::new()),
        };
        let ext = (!extensions.is_empty()).then_some(extensions.as_str());
        let response = if http2 {
            handshake::response_connect(protocol.as_deref(), ext)
        } else {
            handshake::response_101(&up.accept, protocol.as_deref(), ext)
        };
        Ok((
            response,
            Negotiated {
                protocol,
                deflate,
                deflate_config: self.deflate.clone().unwrap_or_default(),
                extensions,
            },
        ))
    }
}

fn forbidden(origin: Option<&str>) -> http::Response<String> {
    let body = format!("origin {} is not allowed\n", origin.unwrap_or("(none)"));
    http::Response::builder()
        .status(http::StatusCode::FORBIDDEN)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(http::header::CONNECTION, "close")
        .body(body)
        .unwrap_or_default()
}

/// The upgrade inside an HTTP server (feature `hyper`): the `tower::Service` and the one
/// mechanism it shares with the axum extractor.
#[cfg(feature = "hyper")]
mod http_server {
    use std::convert::Infallible;
    use std::fmt;
    use std::future::{ready, Future, Ready};
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use bytes::BytesMut;
    use hyper_util::rt::TokioIo;

    use super::AcceptOptions;
    use crate::proto::handshake::{self, HandshakeError, UpgradeRequest};
    use crate::proto::Role;
    use crate::socket::Socket;
    use crate::transport::{Transport, WsStream};

    /// Makes the upgrade service (the seed's `ws.upgrade(accept)`): for each valid upgrade request
    /// it answers 101 and calls `accept(socket, parts)` on a new task once the HTTP server hands the
    /// connection over. A request that is not a valid upgrade gets a clear HTTP error (400, or 426
    /// with `Sec-WebSocket-Version: 13`; see [`UpgradeRejection`]).
    ///
    /// With the feature `http2`, an HTTP/2 extended CONNECT (RFC 8441: `:protocol websocket`) is
    /// accepted too: the answer is 200 and the socket runs over that HTTP/2 stream; a bad one gets
    /// 400. The HTTP/2 server must advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL`
    /// (`hyper::server::conn::http2::Builder::enable_connect_protocol`; `axum::serve` does).
    pub fn upgrade<F, Fut>(accept: F) -> Upgrade<F>
    where
        F: Fn(Socket, http::request::Parts) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Upgrade {
            accept,
            options: Arc::new(AcceptOptions::default()),
        }
    }

    /// The upgrade `tower::Service` made by [`upgrade`].
    #[derive(Clone)]
    pub struct Upgrade<F> {
        accept: F,
        options: Arc<AcceptOptions>,
    }

    impl<F> fmt::Debug for Upgrade<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Upgrade")
                .field("options", &self.options)
                .finish()
        }
    }

    impl<F> Upgrade<F> {
        /// Replaces the options.
        pub fn options(mut self, options: AcceptOptions) -> Self {
            self.options = Arc::new(options);
            self
        }
    }

    impl<F, Fut, B> tower_service::Service<http::Request<B>> for Upgrade<F>
    where
        F: Fn(Socket, http::request::Parts) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
        B: Send + 'static,
    {
        type Response = http::Response<String>;
        type Error = Infallible;
        type Future = Ready<std::result::Result<http::Response<String>, Infallible>>;

        fn poll_ready(
            &mut self,
            _cx: &mut Context<'_>,
        ) -> Poll<std::result::Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<B>) -> Self::Future {
            let (mut parts, _body) = req.into_parts();
            let request = match HttpUpgrade::from_parts(&mut parts) {
                Ok(request) => request,
                Err(refused) => return ready(Ok(refused.response())),
            };
            let accept = self.accept.clone();
            ready(Ok(
                request.answer(&self.options, move |socket| accept(socket, parts))
            ))
        }
    }

    /// A request that is not a valid WebSocket upgrade, and the HTTP version it came over, which
    /// decides the answer: [`upgrade`]'s service sends it, and it is the axum extractor's
    /// rejection.
    ///
    /// Over HTTP/1.1 the answer is [`handshake::error_response`] (426 with `Upgrade: websocket`
    /// and `Sec-WebSocket-Version: 13` for a missing or other version, RFC 6455 §4.2.2); over
    /// HTTP/2 it is [`handshake::error_response_h2`] (400, still with
    /// `Sec-WebSocket-Version: 13`: a 426 must name the protocol to upgrade to in `Upgrade`,
    /// which HTTP/2 forbids, RFC 9110 §15.5.22 and RFC 9113 §8.2.2).
    #[derive(Debug, thiserror::Error)]
    #[error("{error}")]
    pub struct UpgradeRejection {
        #[source]
        error: HandshakeError,
        http2: bool,
    }

    impl UpgradeRejection {
        /// Why the request was refused.
        pub fn error(&self) -> &HandshakeError {
            &self.error
        }

        /// Whether the request came over HTTP/2.
        pub fn is_http2(&self) -> bool {
            self.http2
        }

        /// The HTTP response that refuses the request.
        pub fn response(&self) -> http::Response<String> {
            if self.http2 {
                handshake::error_response_h2(&self.error)
            } else {
                handshake::error_response(&self.error)
            }
        }
    }

    /// A valid upgrade request inside an HTTP server (hyper, axum): what [`upgrade`]'s service and
    /// the axum extractor both answer, one way.
    pub(crate) struct HttpUpgrade {
        pub(crate) request: UpgradeRequest,
        on_upgrade: hyper::upgrade::OnUpgrade,
        url: String,
        /// An HTTP/2 extended CONNECT (RFC 8441) rather than an HTTP/1.1 upgrade.
        http2: bool,
    }

    impl HttpUpgrade {
        /// Checks the request head (an HTTP/1.1 upgrade, or an HTTP/2 extended CONNECT) and takes
        /// the server's upgrade handle out of it ([`HandshakeError::NotUpgradable`] when the
        /// server offers none); a refusal carries the version it is answered over.
        pub(crate) fn from_parts(
            parts: &mut http::request::Parts,
        ) -> std::result::Result<HttpUpgrade, UpgradeRejection> {
            let http2 = parts.version == http::Version::HTTP_2;
            let refused = |error| UpgradeRejection { error, http2 };
            let request = if http2 {
                handshake::check_connect_parts(&parts.method, protocol(parts), &parts.headers)
            } else {
                handshake::check_request_parts(parts)
            }
            .map_err(refused)?;
            let on_upgrade = parts
                .extensions
                .remove::<hyper::upgrade::OnUpgrade>()
                .ok_or(HandshakeError::NotUpgradable)
                .map_err(refused)?;
            Ok(HttpUpgrade {
                request,
                on_upgrade,
                url: parts.uri.to_string(),
                http2,
            })
        }

        /// Negotiates with `options` and returns the response to send: 101, after which `accept`
        /// runs on a new task with the OPEN socket once the server hands the connection over; or
        /// the refusal (a refused origin).
        pub(crate) fn answer<A, Fut>(
            self,
            options: &AcceptOptions,
            accept: A,
        ) -> http::Response<String>
        where
            A: FnOnce(Socket) -> Fut + Send + 'static,
            Fut: Future<Output = ()> + Send + 'static,
        {
            let (response, negotiated) = match options.negotiate(&self.request, self.http2) {
                Ok(ok) => ok,
                Err(refusal) => return *refusal,
            };
            let config = options.socket.clone();
            let url = self.url;
            let origin = self.request.origin.unwrap_or_default();
            let on_upgrade = self.on_upgrade;
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let stream = into_stream(upgraded);
                        // The socket's I/O and the application's code share this task.
                        let (socket, connection) = Socket::with_connection(
                            stream,
                            Role::Server,
                            negotiated,
                            config,
                            url,
                            origin,
                        );
                        connection.run_with(accept(socket)).await;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "the HTTP server did not hand over the connection")
                    }
                }
            });
            response.map(|()| String::new())
        }
    }

    /// The `:protocol` of an HTTP/2 extended CONNECT (feature `http2`; without it none is seen
    /// and such a request is refused with 400).
    fn protocol(parts: &http::request::Parts) -> Option<&str> {
        #[cfg(feature = "http2")]
        {
            parts
                .extensions
                .get::<hyper::ext::Protocol>()
                .map(hyper::ext::Protocol::as_str)
        }
        #[cfg(not(feature = "http2"))]
        {
            let _ = parts;
            None
        }
    }

    /// The upgraded connection as a [`WsStream`]: plain TCP again when the HTTP server ran straight
    /// on a `TokioIo<TcpStream>` (a bare hyper HTTP/1 connection), which lets the socket take its
    /// fastest path; any other transport (axum's `serve` wraps the stream) stays boxed. Bytes the
    /// server read past the request are kept.
    fn into_stream(upgraded: hyper::upgrade::Upgraded) -> WsStream {
        match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
            Ok(parts) => WsStream::new(
                Transport::Tcp(parts.io.into_inner()),
                BytesMut::from(&parts.read_buf[..]),
            ),
            Err(upgraded) => WsStream::from_transport(TokioIo::new(upgraded), BytesMut::new()),
        }
    }
}

#[cfg(feature = "axum")]
pub(crate) use http_server::HttpUpgrade;
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub use http_server::{upgrade, Upgrade, UpgradeRejection};

/// Does the server handshake on a raw stream (no HTTP stack): reads the request head (within
/// the handshake timeout and limits), validates it, answers 101 (or a clear HTTP error, and
/// then fails) and returns the OPEN socket with the request.
///
/// Cancel safety: dropping the future drops the connection.
pub async fn accept(
    stream: impl Into<WsStream>,
    options: &AcceptOptions,
) -> Result<(Socket, http::Request<()>)> {
    // Boxed: the caller's task keeps a pointer, not the handshake's buffers and futures, for as
    // long as it lives (this is most of an idle connection's memory otherwise).
    Box::pin(accept_inner(stream.into(), options)).await
}

async fn accept_inner(
    mut stream: WsStream,
    options: &AcceptOptions,
) -> Result<(Socket, http::Request<()>)> {
    let timeout = options.handshake_timeout;
    let read = tokio::time::timeout(
        timeout,
        read_request(&mut stream, &options.handshake_limits),
    )
    .await;
    let (req, leftover) = match read {
        Ok(r) => r?,
        Err(_) => {
            let _ = stream.shutdown().await;
            return Err(Error::Timeout {
                what: "opening handshake",
                after: timeout,
            });
        }
    };
    let socket = accept_request(stream, &req, leftover, options).await?;
    Ok((socket, req))
}

/// Reads and parses a request head from `stream`. On a malformed or oversized head it answers
/// with the matching HTTP error (400, 414, 431) before returning the error. The bytes after the
/// head are returned with the request.
///
/// Cancel safety: not cancel-safe: bytes read so far are lost if the future is dropped.
pub async fn read_request(
    stream: &mut WsStream,
    limits: &HandshakeLimits,
) -> Result<(http::Request<()>, BytesMut)> {
    let mut buf = BytesMut::with_capacity(1024);
    let parsed = match read_head(stream, &mut buf, limits).await {
        Ok(end) => {
            let head = buf.split_to(end);
            handshake::parse_request(&head, limits).map_err(Error::from)
        }
        Err(e) => Err(e),
    };
    match parsed {
        Ok(req) => Ok((req, buf)),
        Err(Error::Handshake(e)) => {
            reject(stream, &e).await;
            Err(Error::Handshake(e))
        }
        Err(e) => Err(e),
    }
}

async fn reject(stream: &mut WsStream, err: &HandshakeError) {
    let mut out = Vec::new();
    handshake::encode_error_response(err, &mut out);
    let _ = write_all(stream, &out).await;
    let _ = stream.shutdown().await;
}

/// Completes the handshake for a request already read from `stream` (with `leftover`, the bytes
/// read after its head): validates it, negotiates, answers 101 and returns the OPEN socket. An
/// invalid request gets its HTTP error response, then the error is returned.
///
/// Cancel safety: dropping the future drops the connection.
pub async fn accept_request(
    stream: WsStream,
    req: &http::Request<()>,
    leftover: BytesMut,
    options: &AcceptOptions,
) -> Result<Socket> {
    let (socket, connection) =
        accept_request_with_connection(stream, req, leftover, options).await?;
    tokio::spawn(connection);
    Ok(socket)
}

/// [`accept_request`] that hands the socket's I/O back as a [`Connection`] instead of spawning
/// it, for a server that runs it in the connection's task with the code that serves the socket
/// ([`Connection::run_with`]).
///
/// Cancel safety: dropping the future drops the connection.
pub async fn accept_request_with_connection(
    stream: WsStream,
    req: &http::Request<()>,
    leftover: BytesMut,
    options: &AcceptOptions,
) -> Result<(Socket, Connection)> {
    let (stream, negotiated, origin) = answer_request(stream, req, leftover, options).await?;
    Ok(Socket::with_connection(
        stream,
        Role::Server,
        negotiated,
        options.socket.clone(),
        req.uri().to_string(),
        origin,
    ))
}

/// [`accept_request`] for a server that serves the connection from one task: the socket
/// comes back as an [`OwnedSocket`], which does its own I/O.
///
/// Cancel safety: dropping the future drops the connection.
pub async fn accept_request_owned(
    stream: WsStream,
    req: &http::Request<()>,
    leftover: BytesMut,
    options: &AcceptOptions,
) -> Result<OwnedSocket> {
    let (stream, negotiated, _) = answer_request(stream, req, leftover, options).await?;
    Ok(OwnedSocket::new(
        stream,
        Role::Server,
        negotiated,
        &options.socket,
    ))
}

/// Answers an upgrade request (101, or the refusal, which is also returned as the error):
/// the handshaken stream, what was negotiated and the client's origin ("" when none).
async fn answer_request(
    mut stream: WsStream,
    req: &http::Request<()>,
    leftover: BytesMut,
    options: &AcceptOptions,
) -> Result<(WsStream, Negotiated, String)> {
    let up = match handshake::check_request(req) {
        Ok(up) => up,
        Err(e) => {
            reject(&mut stream, &e).await;
            return Err(e.into());
        }
    };
    let (response, negotiated) = match options.negotiate(&up, false) {
        Ok(ok) => ok,
        Err(refusal) => {
            // The refusal as `error_response` built it, plus the length and the close.
            let mut headers = refusal.headers().clone();
            headers.insert(http::header::CONTENT_LENGTH, refusal.body().len().into());
            headers.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
            let mut out = Vec::with_capacity(256);
            handshake::write_response(
                refusal.status(),
                &headers,
                refusal.body().as_bytes(),
                &mut out,
            );
            let _ = write_all(&mut stream, &out).await;
            let _ = stream.shutdown().await;
            return Err(Error::Upgrade(refusal.body().trim_end().to_owned()));
        }
    };
    let mut out = Vec::with_capacity(256);
    handshake::encode_response(&response, &mut out);
    write_all(&mut stream, &out).await?;
    let _ = stream.set_nodelay(true);
    let stream = WsStream::new(stream.into_inner(), leftover);
    Ok((stream, negotiated, up.origin.unwrap_or_default()))
}
