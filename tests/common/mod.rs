//! Helpers shared by the integration tests: servers on 127.0.0.1:0 and raw frame tools.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsx::proto::{write_frame, FrameHeader, OpCode};
use wsx::{AcceptOptions, Socket};

/// Every test is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Starts an echo server (same type back) with `options`; returns its address.
pub async fn echo_server(options: AcceptOptions) -> SocketAddr {
    serve(options, |socket| async move {
        while let Ok(msg) = socket.recv().await {
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    })
    .await
}

/// Starts a server that runs `f` for each accepted socket.
pub async fn serve<F, Fut>(options: AcceptOptions, f: F) -> SocketAddr
where
    F: Fn(Socket) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let options = options.clone();
            let f = f.clone();
            tokio::spawn(async move {
                if let Ok((socket, _)) = wsx::accept(tcp, &options).await {
                    f(socket).await;
                }
            });
        }
    });
    addr
}

/// A masked client frame.
pub fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut h = FrameHeader::new(opcode, payload.len() as u64, Some([0x11, 0x22, 0x33, 0x44]));
    h.fin = fin;
    let mut out = BytesMut::new();
    write_frame(h, payload, &mut out);
    out.to_vec()
}

/// A client's upgrade request for `path`, with the RFC 6455 example key and `extra` header lines
/// (each ending in CRLF) before the blank line.
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Opens a TCP connection and completes a client handshake by hand (no compression).
pub async fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(upgrade_request("/raw", "").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    tcp
}

/// Reads an HTTP head byte by byte (so no frame byte is consumed).
pub async fn read_head<S: AsyncRead + Unpin>(tcp: &mut S) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if tcp.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Reads one unmasked server frame: (fin, opcode, payload). `None` at EOF.
pub async fn read_frame<S: AsyncRead + Unpin>(tcp: &mut S) -> Option<(bool, u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    tcp.read_exact(&mut h).await.ok()?;
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            tcp.read_exact(&mut b).await.ok()?;
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            tcp.read_exact(&mut b).await.ok()?;
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((h[0] & 0x80 != 0, h[0] & 0x0f, payload))
}

/// After one large message, announces another 1 MiB frame and sends 600 bytes of it: 105 at
/// once, then 15 at a time: the server's `socket` must then hold a small read buffer (neither
/// what was announced nor a large step taken because a small buffer filled),
/// and the frame still arrives whole once the rest comes. `io` is an upgraded client stream
/// over any transport (flushed after each write, for TLS).
pub async fn trickle_after_a_large_message<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    socket: impl FnOnce() -> Socket,
) {
    // One large message, echoed: the server has read 1 MiB on this connection.
    let big = vec![b'x'; 1 << 20];
    io.write_all(&client_frame(OpCode::Binary, true, &big))
        .await
        .unwrap();
    let (_, _, echoed) = read_frame(io).await.unwrap();
    assert_eq!(echoed.len(), big.len());
    // Then a header announcing another 1 MiB, and the payload 15 bytes at a time.
    let header = FrameHeader::new(OpCode::Binary, 1 << 20, Some([1, 2, 3, 4]));
    let mut head = BytesMut::new();
    header.encode_to(&mut head);
    io.write_all(&head).await.unwrap();
    io.flush().await.unwrap();
    // The header alone, then a burst larger than a small read buffer holds (the server reads
    // part of it and finds more waiting), then the rest of the 600 bytes trickled.
    tokio::time::sleep(Duration::from_millis(50)).await;
    io.write_all(&[b'y'; 105]).await.unwrap();
    io.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..33 {
        io.write_all(&[b'y'; 15]).await.unwrap();
        io.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let used = socket().memory_usage();
    assert!(
        used <= 16 * 1024,
        "a trickled frame holds {used} bytes for 600 received"
    );
    // The frame still arrives whole when the rest comes at once.
    io.write_all(&vec![b'y'; (1 << 20) - 600]).await.unwrap();
    io.flush().await.unwrap();
    let (_, _, echoed) = read_frame(io).await.unwrap();
    assert_eq!(echoed.len(), 1 << 20);
}

/// Reads frames until a CLOSE and returns its code (None for an empty CLOSE).
pub async fn read_close_code(tcp: &mut TcpStream) -> Option<u16> {
    while let Some((_, op, payload)) = read_frame(tcp).await {
        if op == 8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
    panic!("connection ended without a CLOSE frame");
}

/// Whether the peer closes TCP (EOF) within the limit.
pub async fn sees_eof(tcp: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// A test message of a few sizes (a few bytes up to `large`), numbered `i` from sender `t`: byte 0
/// is `t`, bytes 1-2 are `i`, the rest a pattern of both.
pub fn numbered_body(t: u8, i: u32, large: usize) -> Vec<u8> {
    let len = [4, 900, 70_000, large + usize::from(t) * 1_000][(i % 4) as usize];
    let mut b: Vec<u8> = (0..len)
        .map(|k| (k as u32 ^ i ^ (u32::from(t) * 31)) as u8)
        .collect();
    b[..3].copy_from_slice(&[t, (i >> 8) as u8, i as u8]);
    b
}

/// Sends `per_sender` messages ([`numbered_body`] up to `large` bytes) from one task per sender
/// id in `mine`, each on its own clone of `socket`, while receiving the messages of the senders
/// in `theirs` (the same ids for an echo peer); asserts that every sender's messages arrive whole
/// and in order.
pub async fn send_and_check_order(
    socket: &Socket,
    mine: std::ops::Range<u8>,
    theirs: std::ops::Range<u8>,
    per_sender: u32,
    large: usize,
) {
    let mut tasks = Vec::new();
    for t in mine {
        let s = socket.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_sender {
                s.send(numbered_body(t, i, large)).await.unwrap();
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    let mut next = vec![0u32; usize::from(theirs.end)];
    for _ in 0..per_sender * u32::from(theirs.end - theirs.start) {
        let m = socket.recv().await.unwrap();
        let t = m.body()[0];
        assert!(theirs.contains(&t), "a message from sender {t}");
        let i = next[usize::from(t)];
        assert!(
            m.body()[..] == numbered_body(t, i, large)[..],
            "sender {t} message {i}"
        );
        next[usize::from(t)] += 1;
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A tiny HTTP CONNECT proxy on 127.0.0.1:0: records each request head, connects to the target
/// and relays both ways. Returns its address and the heads it received.
pub async fn connect_proxy() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let head = read_head(&mut tcp).await;
                seen.lock().unwrap().push(head.clone());
                let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
                let Ok(mut upstream) = TcpStream::connect(target).await else {
                    let _ = tcp.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                    return;
                };
                tcp.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
            });
        }
    });
    (addr, heads)
}

/// What a [`fake_peer`] does once a client connected.
#[derive(Clone)]
pub enum FakePeer {
    /// Reads an HTTP head, writes these bytes, closes.
    HttpAnswer(&'static [u8]),
    /// Reads an HTTP head and closes without a word.
    HttpClose,
    /// Accepts and never answers (nor closes, for a minute).
    Hang,
    /// A SOCKS5 server that accepts "no authentication" and answers the CONNECT with this
    /// reply code (RFC 1928 §6: 5 is "connection refused").
    SocksReply(u8),
}

/// A scripted peer on 127.0.0.1:0 (a proxy or server that misbehaves as told).
pub async fn fake_peer(script: FakePeer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                match script {
                    FakePeer::HttpAnswer(bytes) => {
                        read_head(&mut tcp).await;
                        let _ = tcp.write_all(bytes).await;
                    }
                    FakePeer::HttpClose => {
                        read_head(&mut tcp).await;
                    }
                    FakePeer::Hang => {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                    }
                    FakePeer::SocksReply(code) => {
                        let mut greeting = [0u8; 3];
                        tcp.read_exact(&mut greeting).await.unwrap();
                        tcp.write_all(&[5, 0]).await.unwrap();
                        let mut request = [0u8; 64];
                        let _ = tcp.read(&mut request).await;
                        let _ = tcp.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await;
                    }
                }
            });
        }
    });
    addr
}

/// A TLS acceptor with a certificate made here for "localhost", and that certificate (PEM).
#[cfg(feature = "rustls")]
pub fn localhost_acceptor() -> (tokio_rustls::TlsAcceptor, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    let server_config =
        wsx::tls::server_config_from_pem(cert_pem.as_bytes(), key_pem.as_bytes()).unwrap();
    (tokio_rustls::TlsAcceptor::from(server_config), cert_pem)
}

/// Starts a wss:// echo server with a certificate made here for "localhost"; returns its port and
/// a client configuration that trusts that certificate only.
#[cfg(feature = "rustls")]
pub async fn tls_echo_server(
    options: AcceptOptions,
) -> (u16, std::sync::Arc<tokio_rustls::rustls::ClientConfig>) {
    let (acceptor, cert_pem) = localhost_acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        let (socket, _) = wsx::accept(tls, &options).await.unwrap();
        while let Ok(m) = socket.recv().await {
            if socket.send(m).await.is_err() {
                break;
            }
        }
    });
    let client_config = wsx::tls::client_config_with_ca_pem(cert_pem.as_bytes()).unwrap();
    (port, client_config)
}
