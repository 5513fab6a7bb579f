//! `wsx serve`: a WebSocket server with an echo endpoint (every other path), broadcast rooms
//! (`/chat`, `/room/NAME`; see `rooms.rs`) and a small test page (`GET /`), over plain TCP or TLS.
//!
//! Each accepted connection runs on its own task: optional TLS handshake, then the request head
//! (both under the handshake timeout), then either a plain HTTP answer (the page, 426, 404) or
//! the WebSocket upgrade. Open sockets are kept in a registry so that Ctrl-C / SIGTERM can close
//! each of them with 1001 before the process exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::pin;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use http::header::{
    HeaderMap, HeaderValue, ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE,
    RETRY_AFTER, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::StatusCode;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use wsx::hub::Hub;
use wsx::proto::handshake::{write_response, HandshakeLimits};
use wsx::server::{accept_request, read_request};
use wsx::{AcceptOptions, CloseCode, OpCode, Socket, SocketConfig, WsStream};

use crate::rooms;

/// The test page served at `/`.
const PAGE: &str = include_str!("page.html");

/// How long a chat message may wait for a member whose write buffer is full before that
/// member is dropped.
pub const CHAT_SEND_GRACE: Duration = Duration::from_secs(2);

/// How long shutdown waits for open sockets to finish their close handshake.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Options of `wsx serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Do not offer permessage-deflate.
    #[arg(long)]
    pub no_deflate: bool,
    /// Largest message accepted, in bytes (larger ones close the connection with 1009).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_payload: usize,
    /// PEM certificate chain: serve wss:// (needs --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Most WebSocket connections open at once; further upgrades get 503.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Ping a peer that was silent this long, and drop it if the ping goes unanswered for as
    /// long again.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub idle_timeout: Option<Duration>,
    /// Time a client has for the TLS handshake and its request head.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "10")]
    pub handshake_timeout: Duration,
    /// Share /chat and /room/NAME with every node on this Redis (redis://HOST:PORT); without
    /// it the rooms are in memory.
    #[arg(long, value_name = "URL")]
    pub hub: Option<String>,
    /// With --hub: keep about N messages of each room for clients that reconnect with
    /// ?since=OFFSET (each message then starts with its offset and a newline).
    #[arg(long, value_name = "N", requires = "hub")]
    pub history: Option<usize>,
}

/// Parses a (possibly fractional) number of seconds.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let config = wsx::tls::server_config_from_files(cert, key)
                .context("cannot load the TLS certificate and key")?;
            Some(tokio_rustls::TlsAcceptor::from(config))
        }
        _ => None,
    };
    let hub = rooms::hub(&args).await?;
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener
        .local_addr()
        .context("cannot read the bound address")?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{local}").context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
    }

    let mut socket_config = SocketConfig {
        max_payload: args.max_payload,
        ..SocketConfig::default()
    };
    if let Some(idle) = args.idle_timeout {
        socket_config.ping_interval = Some(idle);
        socket_config.ping_timeout = idle;
    }
    let mut options = AcceptOptions {
        handshake_timeout: args.handshake_timeout,
        socket: socket_config,
        ..AcceptOptions::default()
    };
    if args.no_deflate {
        options = options.no_deflate();
    } else if let Some(deflate) = options.deflate.as_mut() {
        // Every message compressed on its own: a /chat message is then compressed once for
        // all members (see PreparedMessage), and an idle connection keeps no compressor.
        deflate.server_no_context_takeover = true;
    }
    let server = Arc::new(Server {
        options,
        limits: HandshakeLimits::default(),
        tls,
        handshake_timeout: args.handshake_timeout,
        slots: Slots::new(args.max_connections),
        registry: Registry::default(),
        hub,
    });

    let mut shutdown = pin!(shutdown_signal());
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    let server = server.clone();
                    tokio::spawn(async move { server.handle(tcp, peer).await });
                }
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            signal = &mut shutdown => {
                info!(signal, "shutting down");
                break;
            }
        }
    }
    drop(listener);
    let open = server.registry.close_all();
    info!(open = open.len(), "closing open connections with 1001");
    let all_closed = async {
        for socket in &open {
            socket.closed().await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, all_closed)
        .await
        .is_err()
    {
        warn!("some connections did not finish closing in time");
    }
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM with the signal's name.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                r = tokio::signal::ctrl_c() => match r {
                    Ok(()) => "SIGINT",
                    Err(_) => std::future::pending().await,
                },
                _ = term.recv() => "SIGTERM",
            },
            Err(e) => {
                warn!(error = %e, "cannot listen for SIGTERM");
                ctrl_c_only().await
            }
        }
    }
    #[cfg(not(unix))]
    {
        ctrl_c_only().await
    }
}

async fn ctrl_c_only() -> &'static str {
    match tokio::signal::ctrl_c().await {
        Ok(()) => "SIGINT",
        Err(e) => {
            warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending().await
        }
    }
}

/// Everything the connection tasks share.
struct Server {
    options: AcceptOptions,
    limits: HandshakeLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: Duration,
    slots: Slots,
    registry: Registry,
    hub: Hub,
}

impl Server {
    /// Serves one TCP connection from accept to close.
    async fn handle(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        let _ = tcp.set_nodelay(true);
        let deadline = Instant::now() + self.handshake_timeout;
        let mut stream: WsStream = match &self.tls {
            None => tcp.into(),
            Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls.into(),
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
        };
        let (req, leftover) = match tokio::time::timeout_at(
            deadline,
            read_request(&mut stream, &self.limits),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "bad request head");
                return;
            }
            Err(_) => {
                debug!(%peer, "request head timed out");
                let _ = stream.shutdown().await;
                return;
            }
        };
        let path = req.uri().path().to_owned();
        if !is_upgrade(&req) {
            let status = answer_http(&mut stream, &req).await;
            info!(%peer, method = %req.method(), %path, status, "http");
            return;
        }
        let room = match rooms::route(&req, &self.hub) {
            Ok(room) => room,
            Err(e) => {
                refuse(&mut stream, StatusCode::BAD_REQUEST, &format!("{e}\n")).await;
                info!(%peer, %path, status = 400, error = %e, "refused");
                return;
            }
        };
        let Some(_slot) = self.slots.acquire() else {
            let text = "too many connections; try again later\n";
            refuse(&mut stream, StatusCode::SERVICE_UNAVAILABLE, text).await;
            info!(%peer, %path, status = 503, "refused: connection limit reached");
            return;
        };
        let joined = match room {
            Some(room) => match rooms::join(&self.hub, room).await {
                Ok(joined) => Some(joined),
                Err(e) => {
                    let text = format!("{e}\n");
                    refuse(&mut stream, StatusCode::SERVICE_UNAVAILABLE, &text).await;
                    info!(%peer, %path, status = 503, error = %e, "refused");
                    return;
                }
            },
            None => None,
        };
        let socket = match accept_request(stream, &req, leftover, &self.options).await {
            Ok(socket) => socket,
            Err(e) => {
                info!(%peer, %path, error = %e, "upgrade refused");
                return;
            }
        };
        info!(%peer, %path, extensions = socket.extensions(), "open");
        let Some(_registered) = self.registry.insert(&socket) else {
            // Shutdown began while this one was upgrading.
            going_away(&socket);
            socket.closed().await;
            return;
        };
        match joined {
            Some(joined) => rooms::run(joined, &socket).await,
            None => echo(&socket).await,
        }
        let ev = socket.closed().await;
        info!(%peer, %path, code = ev.code, reason = %ev.reason, clean = ev.clean, "close");
    }
}

/// Sends every TEXT/BINARY message back with the same type until the connection ends.
async fn echo(socket: &Socket) {
    while let Ok(msg) = socket.recv().await {
        if !matches!(msg.kind(), OpCode::Text | OpCode::Binary) {
            continue;
        }
        if socket.send(msg).await.is_err() {
            break;
        }
    }
}

/// Starts closing `socket` with 1001 (a socket already closing ignores it).
fn going_away(socket: &Socket) {
    socket.close(CloseCode::GOING_AWAY, "server shutting down");
}

/// Whether a request asks for a WebSocket upgrade (then the library validates the rest and
/// answers 400/426 itself when something is missing).
fn is_upgrade(req: &http::Request<()>) -> bool {
    let headers = req.headers();
    headers.contains_key(http::header::SEC_WEBSOCKET_KEY)
        || wsx::proto::handshake::header_tokens(headers, &http::header::UPGRADE)
            .any(|t| t.eq_ignore_ascii_case("websocket"))
}

/// Paths that only speak WebSocket: a plain request there gets 426.
const WS_ENDPOINTS: &[&str] = &["/echo", "/chat"];

/// Answers a request that is not an upgrade and closes; returns the status sent.
async fn answer_http(stream: &mut WsStream, req: &http::Request<()>) -> u16 {
    let path = req.uri().path();
    let head_only = req.method() == http::Method::HEAD;
    let get = req.method() == http::Method::GET || head_only;
    let text = "text/plain; charset=utf-8";
    let (status, ctype, body): (StatusCode, &'static str, &[u8]) = if path == "/" && get {
        (StatusCode::OK, "text/html; charset=utf-8", PAGE.as_bytes())
    } else if WS_ENDPOINTS.contains(&path) || path.starts_with("/room/") {
        (
            StatusCode::UPGRADE_REQUIRED,
            text,
            b"this is a WebSocket endpoint: connect with a WebSocket client\n",
        )
    } else if path == "/" {
        (StatusCode::METHOD_NOT_ALLOWED, text, b"use GET\n")
    } else {
        (StatusCode::NOT_FOUND, text, b"not found\n")
    };
    let _ = respond(stream, status, ctype, body, head_only).await;
    status.as_u16()
}

/// Answers an upgrade that cannot go ahead with `status` and a plain-text reason.
async fn refuse(stream: &mut WsStream, status: StatusCode, text: &str) {
    let ctype = "text/plain; charset=utf-8";
    let _ = respond(stream, status, ctype, text.as_bytes(), false).await;
}

/// Writes a complete `Connection: close` response, then ends the connection.
async fn respond(
    stream: &mut WsStream,
    status: StatusCode,
    content_type: &'static str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match status {
        StatusCode::UPGRADE_REQUIRED => {
            headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        }
        StatusCode::METHOD_NOT_ALLOWED => {
            headers.insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        _ => {}
    }
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    let mut head = Vec::with_capacity(256);
    write_response(status, &headers, &[], &mut head);
    let result = write_and_close(stream, &head, if head_only { &[] } else { body }).await;
    // Give the client a moment to read before the socket goes away, so unread request bytes
    // do not turn the close into a reset that could destroy the response.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::io::copy(stream, &mut tokio::io::sink()),
    )
    .await;
    result
}

async fn write_and_close<W: AsyncWrite + Unpin>(
    stream: &mut W,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<()> {
    stream.write_all(head).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// Counts WebSocket connections against `--max-connections`.
struct Slots {
    max: Option<usize>,
    used: Arc<AtomicUsize>,
}

/// One taken slot; given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    fn new(max: Option<usize>) -> Self {
        Slots {
            max,
            used: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Takes a slot, or `None` when all are in use.
    fn acquire(&self) -> Option<Slot> {
        let max = self.max.unwrap_or(usize::MAX);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(Slot(self.used.clone()))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while these locks are held; recover rather than propagate a poison.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The open sockets, for closing them all at shutdown.
#[derive(Default)]
struct Registry {
    inner: Arc<Mutex<RegistryInner>>,
}

#[derive(Default)]
struct RegistryInner {
    next: u64,
    closing: bool,
    sockets: HashMap<u64, Socket>,
}

/// A registered socket; unregistered on drop.
struct Registered {
    id: u64,
    inner: Arc<Mutex<RegistryInner>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.inner).sockets.remove(&self.id);
    }
}

impl Registry {
    /// Registers `socket`; `None` once shutdown has begun.
    fn insert(&self, socket: &Socket) -> Option<Registered> {
        let mut reg = lock(&self.inner);
        if reg.closing {
            return None;
        }
        let id = reg.next;
        reg.next += 1;
        reg.sockets.insert(id, socket.clone());
        Some(Registered {
            id,
            inner: self.inner.clone(),
        })
    }

    /// Refuses further sockets, starts closing every open one with 1001 and returns them.
    fn close_all(&self) -> Vec<Socket> {
        let mut reg = lock(&self.inner);
        reg.closing = true;
        let open: Vec<Socket> = reg.sockets.values().cloned().collect();
        drop(reg);
        for socket in &open {
            going_away(socket);
        }
        open
    }
}
