//! Shared bits of the comparison harness (issue 8): argument parsing, the listener every echo
//! server prints the address of, and the RFC 6455 accept key.
//!
//! The binaries:
//! - `echo-wsx`: echo on `wsx::accept` + `Socket::recv`/`send` (`--deflate` enables
//!   permessage-deflate, off by default so that it compares with peers that lack it);
//! - `echo-tungstenite`: tokio-tungstenite, read a message and send it back (`--batch`: feed
//!   everything already readable before one flush, as its own `forward` example amounts to);
//! - `echo-fastws`: fastwebsockets with its hyper `upgrade` and a `FragmentCollector`, as its
//!   own `echo_server` example;
//! - `echo-fastws-raw`: fastwebsockets on the raw `TcpStream`, after the minimal handshake of
//!   [`server_handshake`] (no hyper): the leanest way to serve with it;
//! - `echo-ceiling`: no WebSocket library: a fixed handshake by hand, then per connection big
//!   reads, every complete (or partial) frame in the buffer unmasked into one output buffer,
//!   one write. What this machine and the load generator allow;
//! - `load-tungstenite`: a load generator on tokio-tungstenite's client, one frame per write,
//!   with the options and the `--json` report of `wsx bench` (`scripts/bench.sh`'s `LOADGEN`);
//! - `idle-clients`: opens N handshaken connections and holds them (for `scripts/idle_memory.sh`).
//!
//! Each server prints `listening on ws://127.0.0.1:PORT` first and takes `--listen ADDR`.
#![forbid(unsafe_code)]

use std::io::{self, ErrorKind};
use std::net::SocketAddr;

use base64::Engine as _;
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The RFC 6455 GUID appended to the client's key.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Command-line options common to the servers.
#[derive(Debug, Clone)]
pub struct ServerArgs {
    /// Where to listen (`--listen ADDR`, default `127.0.0.1:0`).
    pub listen: String,
    /// `--deflate` was given.
    pub deflate: bool,
}

impl ServerArgs {
    /// Parses `--listen ADDR` (or `--listen=ADDR`) and `--deflate`; exits with a usage line on
    /// anything else.
    pub fn parse(name: &str, allow_deflate: bool) -> ServerArgs {
        ServerArgs::parse_from(name, allow_deflate, std::env::args().skip(1))
    }

    /// [`ServerArgs::parse`] over given arguments (without the program name).
    pub fn parse_from(
        name: &str,
        allow_deflate: bool,
        args: impl IntoIterator<Item = String>,
    ) -> ServerArgs {
        let mut it = args.into_iter();
        let mut args = ServerArgs {
            listen: "127.0.0.1:0".to_owned(),
            deflate: false,
        };
        while let Some(arg) = it.next() {
            if arg == "--listen" {
                match it.next() {
                    Some(v) => args.listen = v,
                    None => usage(name, allow_deflate),
                }
            } else if let Some(v) = arg.strip_prefix("--listen=") {
                args.listen = v.to_owned();
            } else if arg == "--deflate" && allow_deflate {
                args.deflate = true;
            } else if arg == "--exit-after" {
                // For heap profilers that report at exit (valgrind DHAT/massif): leave normally.
                let secs: f64 = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage(name, allow_deflate));
                std::thread::spawn(move || {
                    std::thread::sleep(std::time::Duration::from_secs_f64(secs));
                    std::process::exit(0);
                });
            } else {
                usage(name, allow_deflate);
            }
        }
        args
    }
}

fn usage(name: &str, allow_deflate: bool) -> ! {
    let deflate = if allow_deflate { " [--deflate]" } else { "" };
    eprintln!("usage: {name} [--listen ADDR]{deflate} [--exit-after SECS]");
    std::process::exit(2);
}

/// Binds `addr` and prints `listening on ws://ADDR` (flushed: the scripts wait for it).
pub async fn listen(addr: &str) -> std::io::Result<TcpListener> {
    let listener = TcpListener::bind(addr).await?;
    let local: SocketAddr = listener.local_addr()?;
    println!("listening on ws://{local}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    Ok(listener)
}

/// Accepts the next connection with TCP_NODELAY set; transient accept errors (EMFILE, aborted
/// connections) are logged and retried after a short pause.
pub async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                let _ = tcp.set_nodelay(true);
                return tcp;
            }
            Err(e) => {
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// The end of an HTTP head (`\r\n\r\n`) in `buf`: the index just past it.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// The value of header `name` (case-insensitive) in an HTTP head.
pub fn header<'a>(head: &'a [u8], name: &str) -> Option<&'a [u8]> {
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        let (k, v) = line.split_at(colon);
        if k.eq_ignore_ascii_case(name.as_bytes()) {
            Some(v[1..].trim_ascii())
        } else {
            None
        }
    })
}

/// The echo loop of both fastwebsockets servers: every whole message is written back; PINGs
/// and CLOSE are answered by the crate itself (auto-PONG, auto-close).
pub async fn fastws_echo<S>(mut ws: FragmentCollector<S>) -> Result<(), WebSocketError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

/// The longest request head [`server_handshake`] reads.
const MAX_HEAD: usize = 16 * 1024;

/// A minimal server handshake by hand: reads the request head, checks that it is a WebSocket
/// upgrade (`GET`, `Upgrade: websocket`, version 13, a key of 16 bytes in base64) and answers 101
/// with the accept hash and no extension, or 400 and an error. Returns the bytes read after the
/// head.
pub async fn server_handshake(tcp: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if buf.len() > MAX_HEAD {
            return Err(io::Error::new(ErrorKind::InvalidData, "head too long"));
        }
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        if let Some(end) = head_end(&buf) {
            break end;
        }
    };
    let Some(key) = upgrade_key(&buf[..end]) else {
        let _ = tcp
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await;
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            "not a WebSocket upgrade",
        ));
    };
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    );
    tcp.write_all(response.as_bytes()).await?;
    Ok(buf.split_off(end))
}

/// The `Sec-WebSocket-Key` of a request head, if the head asks for a WebSocket upgrade.
fn upgrade_key(head: &[u8]) -> Option<&[u8]> {
    let upgrade = header(head, "upgrade")?;
    let key = header(head, "sec-websocket-key")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(key).ok()?;
    let ok = head.starts_with(b"GET ")
        && upgrade.eq_ignore_ascii_case(b"websocket")
        && header(head, "sec-websocket-version") == Some(b"13")
        && decoded.len() == 16;
    ok.then_some(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_example_key() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn finds_headers() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\nsec-websocket-key:  abc \r\n\r\n";
        assert_eq!(head_end(head), Some(head.len()));
        assert_eq!(header(head, "Sec-WebSocket-Key"), Some(&b"abc"[..]));
        assert_eq!(header(head, "Origin"), None);
    }

    #[test]
    fn checks_the_upgrade() {
        let good = b"GET / HTTP/1.1\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert_eq!(upgrade_key(good), Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..]));
        let short_key = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                          Sec-WebSocket-Key: c2hvcnQ=\r\n\r\n";
        assert_eq!(upgrade_key(short_key), None);
        let post = b"POST / HTTP/1.1\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                     Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert_eq!(upgrade_key(post), None);
        let no_version = b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\
                           Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
        assert_eq!(upgrade_key(no_version), None);
    }

    #[tokio::test]
    async fn handshakes_and_keeps_what_follows_the_head() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            server_handshake(&mut tcp).await.unwrap()
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\nxyz",
            )
            .await
            .unwrap();
        assert_eq!(server.await.unwrap(), b"xyz");
        let mut response = Vec::new();
        client.read_to_end(&mut response).await.unwrap();
        let response = String::from_utf8(response).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 "), "{response}");
        assert!(response.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    }
}
