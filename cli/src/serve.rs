//! `wsx serve`: a WebSocket server with an echo endpoint (every other path), broadcast rooms
//! (`/chat`, `/room/NAME`; see `rooms.rs`) and a small test page (`GET /`), over plain TCP or TLS.
//!
//! Each accepted connection runs on its own task: optional TLS handshake, then the request head
//! (both under the handshake timeout), then either a plain HTTP answer (the page, 426, 404) or
//! the WebSocket upgrade. A connection that speaks HTTP/2 (the h2c preface, or `h2` chosen by
//! ALPN) is served by hyper instead, with WebSockets as extended CONNECT streams (RFC 8441).
//! Open sockets are kept in a registry so that Ctrl-C / SIGTERM can close each of them with 1001
//! before the process exits.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
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
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use wsx::hub::Hub;
use wsx::proto::handshake::{write_response, HandshakeLimits};
use wsx::server::{accept_request_owned, accept_request_with_connection, read_request};
use wsx::{
    AcceptOptions, CloseCode, CloseEvent, CloseHandle, Connection, OpCode, OwnedSocket, Socket,
    SocketConfig, WsStream,
};

use crate::rooms;

/// The test page served at `/`.
const PAGE: &str = include_str!("page.html");

/// How long shutdown waits for open sockets to finish their close handshake.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Most streams (WebSockets, mostly) one HTTP/2 connection may have open at once (hyper's
/// default of 200 would make the 201st WebSocket of a client wait for one to close).
const MAX_H2_STREAMS: u32 = 4096;

/// Options of `wsx serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Do not offer permessage-deflate.
    #[arg(long)]
    pub no_deflate: bool,
    /// Largest message accepted, in bytes (larger ones close the connection with 1009); at
    /// least 1.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20, value_parser = parse_payload)]
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
    /// long again (more than 0, at most a year).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    pub idle_timeout: Option<Duration>,
    /// Time a client has for the TLS handshake and its request head, and an HTTP/2
    /// connection with no open stream stays open (more than 0, at most a year).
    #[arg(long, value_name = "SECS", value_parser = parse_timeout, default_value = "10")]
    pub handshake_timeout: Duration,
    /// Share /chat and /room/NAME with every node on this Redis (redis://HOST:PORT); without
    /// it the rooms are in memory.
    #[arg(long, value_name = "URL")]
    pub hub: Option<String>,
    /// With --hub: keep about N messages of each room for clients that reconnect with
    /// ?since=OFFSET (each message then starts with its offset and a newline).
    #[arg(long, value_name = "N", requires = "hub")]
    pub history: Option<usize>,
    /// Time a peer has to complete a message once its first frame header arrived (a peer that
    /// trickles a message is closed with 1008); more than 0, at most a year.
    #[arg(long, value_name = "SECS", value_parser = parse_timeout, default_value = "300")]
    pub message_timeout: Duration,
    /// Serve on N threads, each with a single-threaded runtime and its own listener on the
    /// same address (SO_REUSEPORT: the kernel spreads new connections over them); a
    /// connection stays on the thread that accepted it. Without it: one runtime whose worker
    /// threads (one per core) share all connections and balance them (1 to 1024).
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,
}

/// The longest duration a flag takes: one year (longer means "never" in practice, and must
/// not overflow a deadline).
const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Parses a (possibly fractional) number of seconds, from 0 to a year.
pub fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.0..=MAX_SECS).contains(&secs) {
        return Err(format!(
            "`{s}` is out of range: give 0 to {MAX_SECS} seconds (a year)"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

/// Parses a timeout: [`parse_secs`], and more than 0 (a zero timeout would drop every peer).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match parse_secs(s)? {
        Duration::ZERO => Err(format!(
            "`{s}` would time out at once: give more than 0 seconds"
        )),
        d => Ok(d),
    }
}

/// Parses a payload limit in bytes: at least 1 (any larger value that fits is taken as is).
fn parse_payload(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => {
            Err("`0` would refuse every message that is not empty: give at least 1 byte".to_owned())
        }
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

/// Parses a thread count: 1 to 1024.
fn parse_threads(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        Ok(_) => Err(format!("`{s}` is out of range: give 1 to 1024 threads")),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

/// Runs the server until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let config = wsx::tls::server_config_from_files(cert, key)
                .context("cannot load the TLS certificate and key")?;
            // HTTP/2 first by ALPN: WebSockets go over it too (RFC 8441).
            Some(tokio_rustls::TlsAcceptor::from(wsx::tls::with_h2(config)))
        }
        _ => None,
    };
    let hub = rooms::hub(&args).await?;
    let (local, listeners) = listen(&args.listen, args.threads)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let mut socket_config = SocketConfig {
        max_payload: args.max_payload,
        message_timeout: Some(args.message_timeout),
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

    // (watch channels: they work across the threads' runtimes.)
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (done, all_done) = tokio::sync::watch::channel(false);
    let (listener, per_thread) = match listeners {
        Listeners::Shared(listener) => (Some(listener), Vec::new()),
        Listeners::PerThread(all) => (None, all),
    };
    let mut threads = Vec::new();
    for (i, listener) in per_thread.into_iter().enumerate() {
        let (server, stopped, all_done) = (server.clone(), stopped.clone(), all_done.clone());
        let thread = std::thread::Builder::new()
            .name(format!("wsx-serve-{}", i + 1))
            .spawn(move || serve_thread(listener, server, stopped, all_done))
            .context("cannot start a server thread")?;
        threads.push(thread);
    }
    let scheme = if server.tls.is_some() { "wss" } else { "ws" };
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {scheme}://{local}").context("cannot write to stdout")?;
        out.flush().context("cannot write to stdout")?;
    }

    let signal = async {
        let signal = shutdown_signal().await;
        info!(signal, "shutting down");
    };
    match listener {
        Some(listener) => accept_until(listener, &server, signal).await,
        // (--threads: this thread only waits; the server threads accept.)
        None => signal.await,
    }
    let _ = stop.send(true);
    let open = server.registry.close_all();
    info!(open, "closing open connections with 1001");
    if tokio::time::timeout(SHUTDOWN_GRACE, server.registry.all_closed())
        .await
        .is_err()
    {
        warn!("some connections did not finish closing in time");
    }
    let _ = done.send(true);
    for thread in threads {
        if tokio::task::spawn_blocking(move || thread.join())
            .await
            .is_err()
        {
            warn!("a server thread did not end cleanly");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Where `wsx serve` accepts.
enum Listeners {
    /// One socket, accepted on by the main runtime (the default).
    Shared(TcpListener),
    /// With `--threads`: one socket per server thread, all on the same address (SO_REUSEPORT),
    /// detached from this runtime for the thread that will use each. The main thread keeps only
    /// the signal, the hub and the shutdown, so every server thread is alike.
    PerThread(Vec<std::net::TcpListener>),
}

/// The bound address and the listening socket(s) for `addr` (see [`Listeners`]).
async fn listen(addr: &str, threads: Option<usize>) -> std::io::Result<(SocketAddr, Listeners)> {
    let Some(threads) = threads else {
        let listener = TcpListener::bind(addr).await?;
        return Ok((listener.local_addr()?, Listeners::Shared(listener)));
    };
    let mut last = None;
    for candidate in tokio::net::lookup_host(addr).await? {
        match reuse_port_listener(candidate) {
            Ok(first) => {
                // (Port 0 picked a port: the others take the same one.)
                let local = first.local_addr()?;
                let mut all = vec![first.into_std()?];
                for _ in 1..threads {
                    all.push(reuse_port_listener(local)?.into_std()?);
                }
                return Ok((local, Listeners::PerThread(all)));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolved to nothing",
        )
    }))
}

/// A listening socket on `addr` that other sockets of this process may share
/// (SO_REUSEPORT).
fn reuse_port_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    socket.set_reuseport(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// One server thread of `--threads`: accepts on its own listener with a runtime of its own
/// until `stopped`, then keeps serving its open connections until the main thread is `done`
/// closing them.
fn serve_thread(
    listener: std::net::TcpListener,
    server: Arc<Server>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    mut done: tokio::sync::watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            warn!(error = %e, "cannot start a server thread's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                warn!(error = %e, "cannot use a server thread's listener");
                return;
            }
        };
        accept_until(listener, &server, async {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .await;
        let _ = done.wait_for(|done| *done).await;
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
}

/// Accepts connections until `stop` resolves; each is served on a task of this thread's
/// runtime.
async fn accept_until(listener: TcpListener, server: &Arc<Server>, stop: impl Future<Output = ()>) {
    let mut stop = pin!(stop);
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
            () = &mut stop => break,
        }
    }
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
    /// Serves one TCP connection: opens it (TLS, the request head, the upgrade; or a whole
    /// HTTP/2 connection), then hands an open WebSocket to a task of its own, which runs its
    /// I/O and its echo (or room) together. The opening's state is large and short-lived and
    /// goes with this task; the task of an open WebSocket is as large as a running socket.
    async fn handle(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        if let Some((connection, app)) = self.open(tcp, peer).await {
            tokio::spawn(connection.run_with(app));
        }
    }

    /// Everything before an HTTP/1.1 WebSocket runs, which it returns: the socket's I/O and
    /// its echo (or room); `None` when the connection was answered otherwise (a
    /// plain request, a refusal, an HTTP/2 connection served to its end).
    async fn open(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> Option<(Connection, impl Future<Output = ()>)> {
        let _ = tcp.set_nodelay(true);
        let deadline = Instant::now() + self.handshake_timeout;
        let mut stream: WsStream = match &self.tls {
            None => tcp.into(),
            Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls.into(),
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "TLS handshake failed");
                    return None;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            },
        };
        let http2 = if self.tls.is_some() {
            alpn_is_h2(&stream)
        } else {
            match tokio::time::timeout_at(deadline, sniff_h2c(stream)).await {
                Ok(Ok((sniffed, h2))) => {
                    stream = sniffed;
                    h2
                }
                Ok(Err(e)) => {
                    debug!(%peer, error = %e, "read failed");
                    return None;
                }
                Err(_) => {
                    debug!(%peer, "request head timed out");
                    return None;
                }
            }
        };
        if http2 {
            self.serve_h2(stream, peer, deadline).await;
            return None;
        }
        let (req, leftover) = match tokio::time::timeout_at(
            deadline,
            read_request(&mut stream, &self.limits),
        )
        .await
        {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "bad request head");
                return None;
            }
            Err(_) => {
                debug!(%peer, "request head timed out");
                let _ = stream.shutdown().await;
                return None;
            }
        };
        let path = req.uri().path().to_owned();
        if !is_upgrade(&req) {
            let status = answer_http(&mut stream, &req).await;
            info!(%peer, method = %req.method(), %path, status, "http");
            return None;
        }
        let (slot, joined) = match self.admit(req.uri(), peer, "http/1.1").await {
            Ok(admitted) => admitted,
            Err((status, text)) => {
                refuse(&mut stream, status, &text).await;
                return None;
            }
        };
        if joined.is_none() {
            // An echo: served from its own task by an owned socket (no shared state).
            let socket = match accept_request_owned(stream, &req, leftover, &self.options).await {
                Ok(socket) => socket,
                Err(e) => {
                    info!(%peer, %path, error = %e, "upgrade refused");
                    return None;
                }
            };
            let opened = Opened { joined, peer, path };
            tokio::spawn(self.run_echo(socket, opened, slot));
            return None;
        }
        let (socket, connection) =
            match accept_request_with_connection(stream, &req, leftover, &self.options).await {
                Ok(opened) => opened,
                Err(e) => {
                    info!(%peer, %path, error = %e, "upgrade refused");
                    return None;
                }
            };
        let opened = Opened { joined, peer, path };
        Some((
            connection,
            self.run_socket(socket, opened, slot, "http/1.1"),
        ))
    }

    /// Runs an HTTP/1.1 echo until it closes (as [`Server::run_socket`] does for a shared
    /// socket).
    #[allow(clippy::manual_async_fn)]
    fn run_echo(
        self: Arc<Self>,
        mut socket: OwnedSocket,
        opened: Opened,
        slot: Slot,
    ) -> impl Future<Output = ()> {
        async move {
            let _slot = slot;
            let (peer, path) = (opened.peer, &opened.path);
            let extensions = socket.extensions();
            info!(%peer, %path, extensions, over = "http/1.1", "open");
            let handle = socket.close_handle();
            let registered = self.registry.insert(Member::Owned(handle.clone()));
            if registered.is_none() {
                // Shutdown began while this one was upgrading.
                Member::Owned(handle).going_away();
            }
            let ev = echo_owned(&mut socket).await;
            info!(%peer, %path, code = ev.code, reason = %ev.reason, clean = ev.clean, "close");
        }
    }

    /// Whether an upgrade to `uri` may go ahead, over either HTTP version: its room name (400),
    /// a connection slot (503) and, for a room, the membership (503 when the hub cannot take
    /// it). Refusals are logged here and come back as the status and text to answer with.
    async fn admit(
        &self,
        uri: &http::Uri,
        peer: SocketAddr,
        over: &str,
    ) -> Result<(Slot, Option<rooms::Joined>), (StatusCode, String)> {
        let path = uri.path();
        let room = rooms::route(uri, &self.hub).map_err(|e| {
            info!(%peer, %path, status = 400, error = %e, over, "refused");
            (StatusCode::BAD_REQUEST, format!("{e}\n"))
        })?;
        let Some(slot) = self.slots.acquire() else {
            info!(%peer, %path, status = 503, over, "refused: connection limit reached");
            let text = "too many connections; try again later\n";
            return Err((StatusCode::SERVICE_UNAVAILABLE, text.to_owned()));
        };
        let joined = match room {
            Some(room) => Some(rooms::join(&self.hub, room).await.map_err(|e| {
                info!(%peer, %path, status = 503, error = %e, over, "refused");
                (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n"))
            })?),
            None => None,
        };
        Ok((slot, joined))
    }

    /// Runs an open WebSocket (echo, or its room when it `joined` one) until it closes; `over`
    /// is the HTTP version it came through, for the logs, and `slot` its place under
    /// `--max-connections`, given back when it ends.
    ///
    /// (Not an `async fn`: rustc keeps the arguments of one twice in its future, 544 bytes
    /// against 392 here, and this future lives as long as the connection.)
    #[allow(clippy::manual_async_fn)]
    fn run_socket(
        self: Arc<Self>,
        socket: Socket,
        opened: Opened,
        slot: Slot,
        over: &'static str,
    ) -> impl Future<Output = ()> {
        async move {
            let _slot = slot;
            let extensions = socket.extensions();
            info!(peer = %opened.peer, path = %opened.path, extensions, over, "open");
            let member = Member::Shared(socket.clone());
            let Some(_registered) = self.registry.insert(member) else {
                // Shutdown began while this one was upgrading.
                Member::Shared(socket.clone()).going_away();
                socket.closed().await;
                return;
            };
            match opened.joined {
                // (Boxed: a room member's state would otherwise make every echo task as large.)
                Some(joined) => Box::pin(rooms::run(joined, &socket)).await,
                None => echo(&socket).await,
            }
            let ev = socket.closed().await;
            let (peer, path) = (opened.peer, &opened.path);
            info!(%peer, %path, code = ev.code, reason = %ev.reason, clean = ev.clean, "close");
        }
    }

    /// Serves an HTTP/2 connection (h2c prior knowledge, or h2 by ALPN) with hyper: each
    /// WebSocket is one stream, opened by an extended CONNECT (RFC 8441), which is why the
    /// connection advertises SETTINGS_ENABLE_CONNECT_PROTOCOL; other requests get the same
    /// answers as over HTTP/1.1.
    ///
    /// A connection with no open stream is closed (GOAWAY) when it stays so until `deadline`
    /// (the accept's handshake deadline), or for the handshake timeout after its last stream
    /// ended: like an HTTP/1.1 connection that sends no request head, it cannot be held open
    /// without work.
    async fn serve_h2(self: Arc<Self>, stream: WsStream, peer: SocketAddr, deadline: Instant) {
        let streams = Streams::default();
        let server = self.clone();
        let counted = streams.clone();
        let service = hyper::service::service_fn(move |req| {
            server.clone().h2_request(req, peer, counted.open())
        });
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .enable_connect_protocol()
            .max_concurrent_streams(MAX_H2_STREAMS);
        let mut conn = pin!(builder.serve_connection(TokioIo::new(stream), service));
        let ended = tokio::select! {
            ended = conn.as_mut() => ended,
            () = streams.idle(deadline, self.handshake_timeout) => {
                debug!(%peer, "HTTP/2 connection idle: closing it");
                conn.as_mut().graceful_shutdown();
                // With no stream open this ends at once; a peer that does not read the GOAWAY
                // loses the connection after the grace.
                match tokio::time::timeout(self.handshake_timeout, conn).await {
                    Ok(ended) => ended,
                    Err(_) => return,
                }
            }
        };
        if let Err(e) = ended {
            debug!(%peer, error = %e, "HTTP/2 connection ended");
        }
    }

    /// Answers one HTTP/2 request: the WebSocket upgrade (by `wsx::upgrade`) or a plain answer.
    /// Rooms are routed and joined before the answer, as over HTTP/1.1.
    /// `stream` counts the request as open until it is answered, or, for a WebSocket, until
    /// the socket ends.
    async fn h2_request(
        self: Arc<Self>,
        req: http::Request<hyper::body::Incoming>,
        peer: SocketAddr,
        stream: OpenStream,
    ) -> Result<http::Response<String>, Infallible> {
        let path = req.uri().path().to_owned();
        if req.method() != http::Method::CONNECT {
            let head_only = req.method() == http::Method::HEAD;
            let (status, ctype, body) = plain_answer(req.method(), &path);
            info!(%peer, method = %req.method(), %path, status = status.as_u16(), over = "h2", "http");
            let body = if head_only { "" } else { body };
            return Ok(h2_response(status, ctype, body));
        }
        let (slot, joined) = match self.admit(req.uri(), peer, "h2").await {
            Ok(admitted) => admitted,
            Err((status, text)) => return Ok(h2_response(status, TEXT, text)),
        };
        // The slot and the membership go with the socket (or back, with the service, when the
        // request is refused).
        let taken = Arc::new(Mutex::new(Some((slot, joined, stream))));
        let server = self.clone();
        let mut upgrade = wsx::upgrade(move |socket, parts: http::request::Parts| {
            let server = server.clone();
            let taken = lock(&taken).take();
            async move {
                let Some((slot, joined, _stream)) = taken else {
                    return;
                };
                let path = parts.uri.path().to_owned();
                let opened = Opened { joined, peer, path };
                server.run_socket(socket, opened, slot, "h2").await;
            }
        })
        .options(self.options.clone());
        let Ok(resp) = tower_service::Service::call(&mut upgrade, req).into_inner();
        if !resp.status().is_success() {
            info!(%peer, %path, status = resp.status().as_u16(), over = "h2", "upgrade refused");
        }
        Ok(resp)
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

/// [`echo`] on an owned socket; returns how the connection ended.
async fn echo_owned(socket: &mut OwnedSocket) -> CloseEvent {
    loop {
        match socket.recv().await {
            // Fed, not sent: `recv` writes the answers before it waits for more, so the
            // answers to messages that came in one read go out in one write. (A feed that
            // fails finds the socket closing: receiving runs the close to its end.)
            Ok(msg) if matches!(msg.kind(), OpCode::Text | OpCode::Binary) => {
                let _ = socket.feed(msg).await;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    socket.closed().await
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

const TEXT: &str = "text/plain; charset=utf-8";

/// The answer to a request that is not an upgrade: status, content type, body.
fn plain_answer(method: &http::Method, path: &str) -> (StatusCode, &'static str, &'static str) {
    let get = method == http::Method::GET || method == http::Method::HEAD;
    if path == "/" && get {
        (StatusCode::OK, "text/html; charset=utf-8", PAGE)
    } else if WS_ENDPOINTS.contains(&path) || path.starts_with("/room/") {
        (
            StatusCode::UPGRADE_REQUIRED,
            TEXT,
            "this is a WebSocket endpoint: connect with a WebSocket client\n",
        )
    } else if path == "/" {
        (StatusCode::METHOD_NOT_ALLOWED, TEXT, "use GET\n")
    } else {
        (StatusCode::NOT_FOUND, TEXT, "not found\n")
    }
}

/// Answers a request that is not an upgrade and closes; returns the status sent.
async fn answer_http(stream: &mut WsStream, req: &http::Request<()>) -> u16 {
    let head_only = req.method() == http::Method::HEAD;
    let (status, ctype, body) = plain_answer(req.method(), req.uri().path());
    let _ = respond(stream, status, ctype, body.as_bytes(), head_only).await;
    status.as_u16()
}

/// Answers an upgrade that cannot go ahead with `status` and a plain-text reason.
async fn refuse(stream: &mut WsStream, status: StatusCode, text: &str) {
    let _ = respond(stream, status, TEXT, text.as_bytes(), false).await;
}

/// The headers of every plain answer, and those its status calls for. `http1_length`: the
/// body length of a `Connection: close` HTTP/1.1 response, which may carry `Upgrade` (HTTP/2
/// has neither, and hyper sets the length).
fn answer_headers(
    status: StatusCode,
    content_type: &'static str,
    http1_length: Option<usize>,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Some(len) = http1_length {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match status {
        StatusCode::UPGRADE_REQUIRED => {
            if http1_length.is_some() {
                headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
            }
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
    if http1_length.is_some() {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    headers
}

/// A plain answer over HTTP/2 (hyper adds the length).
fn h2_response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<String>,
) -> http::Response<String> {
    let mut resp = http::Response::new(body.into());
    *resp.status_mut() = status;
    *resp.headers_mut() = answer_headers(status, content_type, None);
    resp
}

/// Whether TLS chose HTTP/2 by ALPN.
fn alpn_is_h2(stream: &WsStream) -> bool {
    match stream.get_ref() {
        wsx::Transport::ServerTls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        _ => false,
    }
}

/// Reads the first bytes of a plaintext connection until they show whether it opens with the
/// HTTP/2 preface (h2c with prior knowledge); the bytes stay in the stream for whichever
/// protocol follows.
async fn sniff_h2c(stream: WsStream) -> std::io::Result<(WsStream, bool)> {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let (mut transport, mut buf) = stream.into_parts();
    while buf.len() < PREFACE.len() && PREFACE.starts_with(&buf) {
        if transport.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    let h2 = buf.starts_with(PREFACE);
    Ok((WsStream::new(transport, buf), h2))
}

/// Writes a complete `Connection: close` response, then ends the connection.
async fn respond(
    stream: &mut WsStream,
    status: StatusCode,
    content_type: &'static str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let headers = answer_headers(status, content_type, Some(body.len()));
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

/// The streams open on one HTTP/2 connection, and whether any opened or ended since a moment.
#[derive(Clone, Default)]
struct Streams(Arc<tokio::sync::watch::Sender<StreamCount>>);

#[derive(Clone, Copy, Default)]
struct StreamCount {
    open: usize,
    /// Bumped on every open and end, so that a stream opened and ended while the idle timer
    /// runs restarts it.
    changes: u64,
}

/// One open stream of [`Streams`]; ends on drop.
struct OpenStream(Streams);

impl Drop for OpenStream {
    fn drop(&mut self) {
        (self.0).0.send_modify(|c| {
            c.open = c.open.saturating_sub(1);
            c.changes = c.changes.wrapping_add(1);
        });
    }
}

impl Streams {
    fn open(&self) -> OpenStream {
        self.0.send_modify(|c| {
            c.open = c.open.saturating_add(1);
            c.changes = c.changes.wrapping_add(1);
        });
        OpenStream(self.clone())
    }

    /// Resolves once no stream was open from `first` on, or later for `idle` after the last
    /// one ended.
    async fn idle(&self, first: Instant, idle: Duration) {
        let mut counts = self.0.subscribe();
        let mut first = Some(first);
        loop {
            // (The borrows `wait_for` returns hold a lock: copied out at once.)
            let idle_since = counts.wait_for(|c| c.open == 0).await.map(|c| c.changes);
            let Ok(changes) = idle_since else {
                // The sender lives in `self`: this cannot happen.
                return std::future::pending().await;
            };
            let until = first.take().unwrap_or_else(|| Instant::now() + idle);
            let changed = async { counts.wait_for(|c| c.changes != changes).await.is_ok() };
            if tokio::time::timeout_at(until, changed).await.is_err() {
                return;
            }
        }
    }
}

/// Counts WebSocket connections against `--max-connections`.
struct Slots {
    max: Option<usize>,
    used: Arc<AtomicUsize>,
}

/// What the logs and the room of an open WebSocket need, from its opening.
struct Opened {
    joined: Option<rooms::Joined>,
    peer: SocketAddr,
    path: String,
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
    /// Told when the last socket leaves after shutdown began.
    emptied: Arc<tokio::sync::Notify>,
}

#[derive(Default)]
struct RegistryInner {
    next: u64,
    closing: bool,
    sockets: HashMap<u64, Member>,
}

/// What the registry closes a socket through.
enum Member {
    Shared(Socket),
    Owned(CloseHandle),
}

impl Member {
    /// Starts closing with 1001 (a socket already closing ignores it).
    fn going_away(&self) {
        const REASON: &str = "server shutting down";
        match self {
            Member::Shared(socket) => {
                socket.close(CloseCode::GOING_AWAY, REASON);
            }
            Member::Owned(handle) => handle.close(CloseCode::GOING_AWAY, REASON),
        }
    }
}

/// A registered socket; unregistered on drop.
struct Registered {
    id: u64,
    inner: Arc<Mutex<RegistryInner>>,
    emptied: Arc<tokio::sync::Notify>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut reg = lock(&self.inner);
        reg.sockets.remove(&self.id);
        if reg.closing && reg.sockets.is_empty() {
            self.emptied.notify_one();
        }
    }
}

impl Registry {
    /// Registers a socket; `None` once shutdown has begun.
    fn insert(&self, member: Member) -> Option<Registered> {
        let mut reg = lock(&self.inner);
        if reg.closing {
            return None;
        }
        let id = reg.next;
        reg.next += 1;
        reg.sockets.insert(id, member);
        Some(Registered {
            id,
            inner: self.inner.clone(),
            emptied: self.emptied.clone(),
        })
    }

    /// Refuses further sockets and starts closing every open one with 1001; returns how many
    /// were open.
    fn close_all(&self) -> usize {
        let mut reg = lock(&self.inner);
        reg.closing = true;
        for member in reg.sockets.values() {
            member.going_away();
        }
        reg.sockets.len()
    }

    /// Waits until every registered socket has ended (after [`Registry::close_all`]).
    async fn all_closed(&self) {
        if lock(&self.inner).sockets.is_empty() {
            return;
        }
        // (`notify_one` keeps its permit when the last one left before this waits.)
        self.emptied.notified().await;
    }
}
