//! [`Handler`]: the seed's `ws.Handler` (fibjs `WebSocketHandler`, a "packet protocol conversion
//! handler"): serves a WebSocket connection as a stream of requests, each TEXT or BINARY message
//! answered by an inner handler whose reply is sent back.
//!
//! PINGs are answered with a PONG carrying the same body, PONGs are dropped, and unmasked client
//! frames close the connection with 1002: the server [`Socket`] underneath does all three.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures_util::stream::{FuturesOrdered, StreamExt};

use crate::message::Message;
use crate::proto::{CloseCode, OpCode};
use crate::socket::Socket;
#[cfg(feature = "hyper")]
use crate::upgrade::{upgrade, AcceptOptions, Upgrade};

/// The error an inner handler may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type BoxFuture = Pin<Box<dyn Future<Output = Result<Message, BoxError>> + Send>>;
type InnerFn = Arc<dyn Fn(Message) -> BoxFuture + Send + Sync>;
type ErrorHook = Arc<dyn Fn(&BoxError) + Send + Sync>;

/// Counters shared by every connection a [`Handler`] serves (fibjs `stats`).
#[derive(Debug, Default)]
pub struct HandlerStats {
    total: AtomicU64,
    pending: AtomicU64,
    request: AtomicU64,
    response: AtomicU64,
    error: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests ever taken in (never reset).
    pub total: u64,
    /// Requests being handled right now (never reset).
    pub pending: u64,
    /// Requests taken in since the last [`HandlerStats::reset`].
    pub request: u64,
    /// Replies sent since the last reset.
    pub response: u64,
    /// Inner-handler errors since the last reset.
    pub error: u64,
}

impl HandlerStats {
    /// Reads all counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            total: self.total.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            request: self.request.load(Ordering::Relaxed),
            response: self.response.load(Ordering::Relaxed),
            error: self.error.load(Ordering::Relaxed),
        }
    }

    /// Sets `request`, `response` and `error` back to zero (`total` and `pending` stay).
    pub fn reset(&self) {
        self.request.store(0, Ordering::Relaxed);
        self.response.store(0, Ordering::Relaxed);
        self.error.store(0, Ordering::Relaxed);
    }
}

/// Serves WebSocket connections as request/response (the seed's `ws.Handler`).
///
/// ```
/// use wsx::{Handler, Message};
///
/// // Replies with the request's text in upper case.
/// let handler = Handler::new(|req: Message| async move {
///     let text = req.as_text().unwrap_or_default().to_uppercase();
///     Ok::<_, std::convert::Infallible>(Message::text(text))
/// });
/// // Plug it into hyper or axum as the upgrade service:
/// let _service = handler.upgrade();
/// ```
#[derive(Clone)]
pub struct Handler {
    inner: InnerFn,
    stats: Arc<HandlerStats>,
    concurrency: usize,
    max_size: usize,
    on_error: ErrorHook,
}

impl fmt::Debug for Handler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handler")
            .field("concurrency", &self.concurrency)
            .field("max_size", &self.max_size)
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

impl Handler {
    /// A handler calling `inner` for each request.
    pub fn new<F, Fut, E>(inner: F) -> Handler
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Message, E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let inner: InnerFn = Arc::new(move |m| {
            let fut = inner(m);
            Box::pin(async move { fut.await.map_err(Into::into) })
        });
        Handler {
            inner,
            stats: Arc::new(HandlerStats::default()),
            concurrency: 1,
            max_size: crate::proto::codec::DEFAULT_MAX_MESSAGE_SIZE,
            on_error: Arc::new(|e| tracing::warn!(error = %e, "websocket handler failed")),
        }
    }

    /// A handler calling a `tower::Service` from request to reply (cloned per request).
    pub fn from_service<S>(service: S) -> Handler
    where
        S: tower_service::Service<Message, Response = Message> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        Handler::new(move |m| {
            let mut svc = service.clone();
            async move {
                poll_fn(|cx| svc.poll_ready(cx)).await.map_err(Into::into)?;
                svc.call(m).await.map_err(Into::into)
            }
        })
    }

    /// How many requests of one connection may be handled at once (default 1). Replies are
    /// always sent in request order.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// The largest request accepted (default 64 MiB); a larger one closes the connection with
    /// 1009.
    pub fn max_size(mut self, max: usize) -> Self {
        self.max_size = max;
        self
    }

    /// Where inner-handler errors go (default: a `tracing` warning). The connection goes on.
    pub fn on_error(mut self, hook: impl Fn(&BoxError) + Send + Sync + 'static) -> Self {
        self.on_error = Arc::new(hook);
        self
    }

    /// The counters, shared by all connections this handler (and its clones) serve.
    pub fn stats(&self) -> &HandlerStats {
        &self.stats
    }

    /// The configured maximum request size.
    pub fn get_max_size(&self) -> usize {
        self.max_size
    }

    /// The upgrade service serving each accepted connection with this handler (for hyper or
    /// axum). Its socket size limit is the handler's `max_size`.
    #[cfg(feature = "hyper")]
    #[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
    pub fn upgrade(
        &self,
    ) -> Upgrade<
        impl Fn(Socket, http::request::Parts) -> HandlerServe + Clone + Send + Sync + 'static,
    > {
        let this = self.clone();
        let mut options = AcceptOptions::default();
        options.socket.max_payload = self.max_size;
        upgrade(move |socket, _parts| HandlerServe(Box::pin(this.clone().serve_owned(socket))))
            .options(options)
    }

    #[cfg(feature = "hyper")]
    async fn serve_owned(self, socket: Socket) {
        self.serve(&socket).await;
    }

    /// Serves a raw, already handshaken server-side stream (no compression, no subprotocol)
    /// until it closes.
    pub async fn serve_stream(&self, stream: crate::transport::WsStream) {
        let config = crate::socket::SocketConfig {
            max_payload: self.max_size,
            ..Default::default()
        };
        let (socket, connection) = Socket::with_connection(
            stream,
            crate::proto::Role::Server,
            crate::socket::Negotiated::default(),
            config,
            "",
            "",
        );
        connection.run_with(self.serve(&socket)).await;
    }

    /// Serves one connection until it closes.
    ///
    /// Cancel safety: dropping it stops serving; requests in flight are dropped unanswered.
    pub async fn serve(&self, socket: &Socket) {
        let mut inflight = FuturesOrdered::new();
        loop {
            tokio::select! {
                biased;
                Some(result) = inflight.next(), if !inflight.is_empty() => {
                    self.stats.pending.fetch_sub(1, Ordering::Relaxed);
                    match result {
                        Ok(reply) => {
                            if socket.send(reply).await.is_err() {
                                break;
                            }
                            self.stats.response.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            self.stats.error.fetch_add(1, Ordering::Relaxed);
                            (self.on_error)(&e);
                        }
                    }
                }
                msg = socket.recv(), if inflight.len() < self.concurrency => {
                    let Ok(msg) = msg else { break };
                    if !matches!(msg.kind(), OpCode::Text | OpCode::Binary) {
                        continue;
                    }
                    if msg.len() > self.max_size {
                        // (The close goes on without waiting for it.)
                        socket.close(CloseCode::MESSAGE_TOO_BIG, "request too large");
                        break;
                    }
                    self.stats.total.fetch_add(1, Ordering::Relaxed);
                    self.stats.request.fetch_add(1, Ordering::Relaxed);
                    self.stats.pending.fetch_add(1, Ordering::Relaxed);
                    inflight.push_back((self.inner)(msg));
                }
            }
        }
        let dropped = inflight.len() as u64;
        self.stats.pending.fetch_sub(dropped, Ordering::Relaxed);
    }
}

/// The future [`Handler::upgrade`]'s accept callback returns.
pub struct HandlerServe(Pin<Box<dyn Future<Output = ()> + Send>>);

impl Future for HandlerServe {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for HandlerServe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandlerServe")
    }
}
