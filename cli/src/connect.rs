//! `wsx connect URL`: a WebSocket client on stdin/stdout, like websocat.
//!
//! Each stdin line goes out as a TEXT message (`--binary`: raw stdin chunks as BINARY). Each
//! message received goes to stdout: text as a line, binary as raw bytes or, with `--base64`, as
//! one base64 line per message. At stdin EOF the client closes with 1000 and keeps printing
//! until the server's CLOSE arrives; it exits as soon as the close handshake is done (RFC 6455
//! §7.1.1 lets a client close TCP then), or after `--close-timeout` with a message and a
//! non-zero status.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use base64::Engine as _;
use bytes::Bytes;
use clap::Args;
use http::header::HOST;
use http::{HeaderName, HeaderValue};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use wsx::{CloseCode, ConnectOptions, Message, Proxy, Socket};

use crate::serve::parse_secs;

/// Options of `wsx connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The ws:// or wss:// URL to connect to.
    pub url: String,
    /// The Origin header to send.
    #[arg(long)]
    pub origin: Option<String>,
    /// A subprotocol to offer (repeatable, in order of preference).
    #[arg(long = "protocol", value_name = "NAME")]
    pub protocols: Vec<String>,
    /// An extra request header, "Name: value" (repeatable).
    #[arg(long = "header", short = 'H', value_name = "K: V")]
    pub headers: Vec<String>,
    /// Trust only the certificates in this PEM file (for wss://).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (for wss://; testing only).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// Do not offer permessage-deflate.
    #[arg(long)]
    pub no_deflate: bool,
    /// Send raw stdin chunks as BINARY messages instead of lines as TEXT.
    #[arg(long)]
    pub binary: bool,
    /// Print received BINARY messages as one base64 line each instead of raw bytes.
    #[arg(long)]
    pub base64: bool,
    /// The proxy to go through: http://[user:pw@]host:port, socks5:// or socks5h://
    /// (default: from HTTPS_PROXY / HTTP_PROXY / ALL_PROXY / NO_PROXY, as curl).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Follow up to N redirects of the opening handshake.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_redirects: usize,
    /// How long to wait for the server to answer our CLOSE, in seconds.
    #[arg(long, value_name = "SECS", value_parser = parse_secs, default_value = "2")]
    pub close_timeout: Duration,
    /// Open the WebSocket as a stream of an HTTP/2 connection (RFC 8441: ALPN h2 for wss://,
    /// prior knowledge for ws://), falling back to HTTP/1.1 when the server does not offer it.
    #[arg(long)]
    pub http2: bool,
}

/// Sets the proxy: `--proxy URL` if given, else the environment's (curl's variables).
pub fn with_proxy(options: ConnectOptions, proxy: Option<&str>) -> anyhow::Result<ConnectOptions> {
    Ok(match proxy {
        Some(url) => options.proxy(Proxy::parse(url).map_err(|e| anyhow!("--proxy: {e}"))?),
        None => options.proxy_from_env(),
    })
}

/// Parses a "Name: value" header argument.
fn parse_header(h: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let (name, value) = h
        .split_once(':')
        .ok_or_else(|| anyhow!("--header `{h}`: expected \"Name: value\""))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
        anyhow!(
            "--header `{h}`: `{}` is not a valid header name",
            name.trim()
        )
    })?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| anyhow!("--header `{h}`: the value is not a valid header value"))?;
    if name == HOST {
        bail!("--header `{h}`: `Host` comes from the URL; put the host (and port) in the URL");
    }
    if wsx::proto::handshake::is_handshake_header(&name) {
        bail!("--header `{h}`: `{name}` is set by the handshake itself (see --origin, --protocol, --no-deflate)");
    }
    Ok((name, value))
}

/// Builds the connect options from the command line.
fn options(args: &ConnectArgs) -> anyhow::Result<ConnectOptions> {
    let mut options = ConnectOptions::default();
    if args.no_deflate {
        options = options.no_deflate();
    }
    if let Some(origin) = &args.origin {
        options = options.origin(origin.clone());
    }
    for p in &args.protocols {
        options = options.protocol(p.clone());
    }
    for h in &args.headers {
        let (name, value) = parse_header(h)?;
        options.headers.append(name, value);
    }
    options.http2 = args.http2;
    if let Some(ca) = &args.ca {
        options = options.tls(wsx::tls::client_config_with_ca(ca)?);
    } else if args.insecure {
        options = options.tls(wsx::tls::client_config_insecure()?);
    }
    options = options.follow_redirects(args.max_redirects);
    options.socket.close_timeout = args.close_timeout;
    // Give the prompt back once the close handshake is done, without waiting for the server's
    // TCP close.
    options.socket.await_server_close = false;
    with_proxy(options, args.proxy.as_deref())
}

/// Runs the client; exits 0 after a clean close.
pub async fn run(args: ConnectArgs) -> anyhow::Result<ExitCode> {
    let options = options(&args)?;
    let socket = Socket::open(&args.url, options)
        .await
        .map_err(|e| anyhow!("cannot connect to {}: {e}", args.url))?;
    tracing::debug!(
        protocol = socket.protocol(),
        extensions = socket.extensions(),
        "connected"
    );

    let pump = tokio::spawn(pump_stdin(socket.clone(), args.binary));
    let printed = print_messages(&socket, args.base64).await;
    pump.abort();
    if let Err(e) = printed {
        // Stdout is gone (a closed pipe): leave politely (the close timeout bounds the wait).
        socket.close(CloseCode::NORMAL, "").await;
        return Err(e);
    }
    let ev = socket.closed().await;
    if ev.clean {
        if ev.code != CloseCode::NORMAL {
            eprintln!(
                "wsx: the server closed the connection with {}{}",
                ev.code,
                reason_suffix(&ev.reason)
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let why = socket.error().map_or(ev.reason, |e| e.reason);
    bail!("connection lost ({}){}", ev.code, reason_suffix(&why))
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// Writes every received message to stdout until the connection ends.
async fn print_messages(socket: &Socket, base64: bool) -> anyhow::Result<()> {
    let mut out = tokio::io::stdout();
    let mut line = Vec::new();
    while let Ok(msg) = socket.recv().await {
        line.clear();
        if msg.is_text() {
            line.extend_from_slice(msg.body());
            line.push(b'\n');
        } else if msg.is_binary() {
            if base64 {
                let encoded = base64::engine::general_purpose::STANDARD.encode(msg.body());
                line.extend_from_slice(encoded.as_bytes());
                line.push(b'\n');
            } else {
                line.extend_from_slice(msg.body());
            }
        } else {
            continue;
        }
        out.write_all(&line)
            .await
            .context("cannot write to stdout")?;
        out.flush().await.context("cannot write to stdout")?;
    }
    Ok(())
}

/// Sends stdin to the socket; at EOF starts the close handshake with 1000.
async fn pump_stdin(socket: Socket, binary: bool) {
    let result = if binary {
        pump_binary(&socket).await
    } else {
        pump_lines(&socket).await
    };
    match result {
        Ok(()) => {
            socket.close(CloseCode::NORMAL, "");
        }
        Err(e) => {
            // The socket is already closing (the server hung up) or stdin broke.
            tracing::debug!(error = %e, "stopped sending");
            socket.close(CloseCode::NORMAL, "");
        }
    }
}

/// One TEXT message per stdin line (without its line ending).
async fn pump_lines(socket: &Socket) -> anyhow::Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = stdin
            .read_until(b'\n', &mut buf)
            .await
            .context("cannot read stdin")?;
        if n == 0 {
            return Ok(());
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        let text = match std::str::from_utf8(&buf) {
            Ok(s) => s.to_owned(),
            Err(_) => {
                tracing::warn!("a stdin line is not UTF-8; invalid bytes were replaced");
                String::from_utf8_lossy(&buf).into_owned()
            }
        };
        socket.send(Message::text(text)).await?;
    }
}

/// One BINARY message per chunk read from stdin.
async fn pump_binary(socket: &Socket) -> anyhow::Result<()> {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stdin.read(&mut buf).await.context("cannot read stdin")?;
        if n == 0 {
            return Ok(());
        }
        socket
            .send(Message::binary(Bytes::copy_from_slice(&buf[..n])))
            .await?;
    }
}
