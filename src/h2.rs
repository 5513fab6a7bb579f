//! WebSockets over HTTP/2 (RFC 8441), client side (feature `http2`): a socket is one stream of an
//! HTTP/2 connection, opened by an extended CONNECT (`:protocol websocket`). hyper does the
//! HTTP/2; this file dials, keeps one connection per server in a small pool, and does the
//! WebSocket part of the handshake with the sans-I/O core.
//!
//! - `wss://`: TLS with ALPN `h2, http/1.1`; a server that picks `http/1.1` gets the HTTP/1.1
//!   upgrade on that same connection.
//! - `ws://`: HTTP/2 with prior knowledge (h2c).
//! - Either way, a server that does not advertise `SETTINGS_ENABLE_CONNECT_PROTOCOL` (or does
//!   not speak HTTP/2 at all) is asked again over a new HTTP/1.1 connection.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;

use crate::connect::{
    dial as tcp_dial, negotiate_extensions, request_for, tls_connect, ConnectOptions, Connected,
    Target,
};
use crate::error::{Error, Result};
use crate::proto::handshake;
use crate::transport::{Transport, WsStream};

/// The request body type: extended CONNECT sends nothing in the request itself (the stream is
/// the WebSocket).
type Body = String;

/// What makes two sockets share a connection: scheme, authority, and the TLS configuration
/// (by identity: `None` is the default roots).
#[derive(Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    tls: bool,
    host: String,
    port: u16,
    tls_config: usize,
}

/// One slot per server: its lock is held while a connection to it is dialed, so that sockets
/// opened at once share the first connection instead of each dialing its own.
type Slot = Arc<tokio::sync::Mutex<Option<SendRequest<Body>>>>;

static POOL: LazyLock<Mutex<HashMap<PoolKey, Slot>>> = LazyLock::new(Mutex::default);

/// How long to wait for the server's first SETTINGS after the connection is up, at least (the
/// server sends them at once; the wait is also at least twice the time the connection took).
const MIN_SETTINGS_WAIT: Duration = Duration::from_millis(50);

/// The outcome of trying HTTP/2.
pub(crate) enum Attempt {
    /// The socket is open over an HTTP/2 stream.
    Open(Connected),
    /// The TLS server chose HTTP/1.1 by ALPN: upgrade on this connection.
    Http1(Transport),
    /// No extended CONNECT there: open a new HTTP/1.1 connection.
    Fallback,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing panics while these locks are held; recover rather than propagate a poison.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn slot(key: &PoolKey) -> Slot {
    let mut pool = lock(&POOL);
    // Forget servers whose connection is gone and that nobody is dialing.
    pool.retain(|_, slot| match slot.try_lock() {
        Ok(guard) => guard.as_ref().is_some_and(|s| !s.is_closed()),
        Err(_) => true,
    });
    pool.entry(key.clone()).or_default().clone()
}

/// Opens the socket as a stream of a (shared) HTTP/2 connection to `target`, within the
/// connect and handshake timeouts.
pub(crate) async fn open(target: &Target, options: &ConnectOptions) -> Result<Attempt> {
    let key = PoolKey {
        tls: target.tls,
        host: target.host.clone(),
        port: target.port,
        #[cfg(feature = "rustls")]
        tls_config: options.tls.as_ref().map_or(0, |c| Arc::as_ptr(c) as usize),
        #[cfg(not(feature = "rustls"))]
        tls_config: 0,
    };
    let slot = slot(&key);
    let mut sender = {
        let mut conn = slot.lock().await;
        match conn.as_ref().filter(|s| !s.is_closed()) {
            Some(sender) => sender.clone(),
            None => match dial(target, options).await? {
                Dialed::H2(sender) => {
                    *conn = Some(sender.clone());
                    sender
                }
                Dialed::Http1(transport) => return Ok(Attempt::Http1(transport)),
                Dialed::NoConnect => return Ok(Attempt::Fallback),
            },
        }
    };
    let timeout = options.handshake_timeout;
    tokio::time::timeout(timeout, request(&mut sender, target, options))
        .await
        .map_err(|_| Error::Timeout {
            what: "opening handshake",
            after: timeout,
        })?
        .map(Attempt::Open)
}

enum Dialed {
    H2(SendRequest<Body>),
    Http1(Transport),
    NoConnect,
}

/// A new HTTP/2 connection whose server advertised extended CONNECT.
async fn dial(target: &Target, options: &ConnectOptions) -> Result<Dialed> {
    let started = Instant::now();
    let tcp = tcp_dial(target, options).await?;
    let transport = if target.tls {
        let transport = tls_connect(tcp, target, options, options.connect_timeout, true).await?;
        if !alpn_is_h2(&transport) {
            return Ok(Dialed::Http1(transport));
        }
        transport
    } else {
        Transport::Tcp(tcp)
    };
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Body>(TokioIo::new(transport))
        .await
        .map_err(|e| Error::Upgrade(format!("HTTP/2 handshake failed: {e}")))?;
    // hyper runs the connection's I/O on a task of its own; `conn` dispatches requests to it
    // and is where the server's settings can be read, so it is shared with its task.
    let conn = Arc::new(Mutex::new(Box::pin(conn)));
    let driver = conn.clone();
    tokio::spawn(async move {
        let driven = std::future::poll_fn(|cx| lock(&driver).as_mut().poll(cx)).await;
        if let Err(e) = driven {
            tracing::debug!(error = %e, "HTTP/2 connection ended");
        }
    });
    // The server's SETTINGS come first, within about a round trip (which the connection took).
    let wait = (started.elapsed() * 2)
        .max(MIN_SETTINGS_WAIT)
        .min(options.handshake_timeout);
    let deadline = Instant::now() + wait;
    while !lock(&conn).is_extended_connect_protocol_enabled() {
        if sender.is_closed() || Instant::now() >= deadline {
            tracing::debug!(
                host = target.host,
                "no SETTINGS_ENABLE_CONNECT_PROTOCOL: falling back to HTTP/1.1"
            );
            return Ok(Dialed::NoConnect);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(Dialed::H2(sender))
}

fn alpn_is_h2(transport: &Transport) -> bool {
    match transport {
        #[cfg(feature = "rustls")]
        Transport::ClientTls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        _ => false,
    }
}

/// The extended CONNECT on one new stream, and its answer.
async fn request(
    sender: &mut SendRequest<Body>,
    target: &Target,
    options: &ConnectOptions,
) -> Result<Connected> {
    let client_request = request_for(target, options.headers.clone(), options);
    client_request.validate()?;
    let scheme = if target.tls { "https" } else { "http" };
    let path = if client_request.path_and_query.is_empty() {
        "/"
    } else {
        client_request.path_and_query.as_str()
    };
    let uri = format!("{scheme}://{}{path}", target.host_header);
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .version(http::Version::HTTP_2)
        .uri(uri)
        .extension(hyper::ext::Protocol::from_static("websocket"))
        .body(Body::new())
        .map_err(|e| Error::InvalidUrl(format!("{}: {e}", target.url)))?;
    *req.headers_mut() = client_request.connect_headers()?;
    sender
        .ready()
        .await
        .map_err(|e| Error::Upgrade(format!("HTTP/2 connection lost: {e}")))?;
    let mut response = sender
        .send_request(req)
        .await
        .map_err(|e| Error::Upgrade(format!("extended CONNECT failed: {e}")))?;
    let on_upgrade = hyper::upgrade::on(&mut response);
    let (parts, _body) = response.into_parts();
    let response = http::Response::from_parts(parts, ());
    let checked = handshake::check_connect_response(&response, &options.protocols)?;
    let (deflate, extensions) = negotiate_extensions(options, &checked.extensions)?;
    let upgraded = on_upgrade
        .await
        .map_err(|e| Error::Upgrade(format!("HTTP/2 stream not handed over: {e}")))?;
    Ok(Connected {
        stream: WsStream::from_transport(TokioIo::new(upgraded), BytesMut::new()),
        response,
        protocol: checked.protocol,
        deflate,
        extensions,
    })
}
