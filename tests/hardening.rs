//! Attacks on the handshake and on the read path, one test each (named after the attack): what
//! the attacker gets, and that the connection is refused or closed as it should be.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wsx::proto::{FrameHeader, OpCode};
use wsx::{AcceptOptions, ConnectOptions, Socket, SocketConfig};

/// A masked TEXT frame saying "smuggled" (what a body could spell).
fn smuggled_frame() -> Vec<u8> {
    client_frame(OpCode::Text, true, b"smuggled")
}

/// Sends an upgrade request with `extra` header lines and `body` right behind it; returns the
/// status line and whether the server then closed without sending anything else.
async fn upgrade_with(addr: std::net::SocketAddr, extra: &str, body: &[u8]) -> (String, bool) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut bytes = upgrade_request("/", extra).into_bytes();
    bytes.extend_from_slice(body);
    tcp.write_all(&bytes).await.unwrap();
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut tcp))
        .await
        .unwrap();
    // The error body, then EOF; no frame may follow.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest))
        .await
        .is_ok();
    let echoed = rest.windows(8).any(|w| w == b"smuggled");
    (
        head.lines().next().unwrap_or_default().to_owned(),
        closed && !echoed,
    )
}

#[tokio::test]
async fn smuggling_upgrade_with_content_length_body_is_400_and_closed() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default().no_deflate()).await;
        let body = smuggled_frame();
        let extra = format!("Content-Length: {}\r\n", body.len());
        let (status, closed) = upgrade_with(addr, &extra, &body).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{status}");
        assert!(closed);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn smuggling_upgrade_with_chunked_body_is_400_and_closed() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default().no_deflate()).await;
        let frame = smuggled_frame();
        for extra in [
            "Transfer-Encoding: chunked\r\n".to_owned(),
            format!(
                "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
                frame.len()
            ),
        ] {
            let (status, closed) = upgrade_with(addr, &extra, &frame).await;
            assert!(status.starts_with("HTTP/1.1 400"), "{extra}: {status}");
            assert!(closed, "{extra}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn smuggling_duplicate_content_length_is_400() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default().no_deflate()).await;
        let (status, closed) =
            upgrade_with(addr, "Content-Length: 0\r\nContent-Length: 0\r\n", b"").await;
        assert!(status.starts_with("HTTP/1.1 400"), "{status}");
        assert!(closed);
        // A single `Content-Length: 0` announces no body: still a valid upgrade.
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(upgrade_request("/", "Content-Length: 0\r\n").as_bytes())
            .await
            .unwrap();
        assert!(read_head(&mut tcp).await.starts_with("HTTP/1.1 101"));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn leniency_asterisk_target_is_400() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(upgrade_request("*", "").as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut tcp).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        assert!(sees_eof(&mut tcp).await);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn leniency_tls_client_hello_on_plain_port_gets_400_at_once() {
    tokio::time::timeout(LIMIT, async {
        // The handshake timeout is far away: only refusing at the first byte answers in time.
        let options = AcceptOptions {
            handshake_timeout: Duration::from_secs(60),
            ..AcceptOptions::default()
        };
        let addr = echo_server(options).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        // The start of a TLS 1.2/1.3 ClientHello record.
        tcp.write_all(&[
            0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
        ])
        .await
        .unwrap();
        let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut tcp))
            .await
            .expect("answered before the handshake timeout");
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        assert!(sees_eof(&mut tcp).await);
    })
    .await
    .unwrap();
}

/// A server that reads one request and answers it with `answer` (a function of the key).
async fn fake_server(answer: fn(&str) -> String) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let head = read_head(&mut tcp).await;
            let key = head
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap_or_default()
                .to_owned();
            let accept = wsx::proto::handshake::accept_key(key.as_bytes());
            let _ = tcp.write_all(answer(&accept).as_bytes()).await;
            let _ = tcp.write_all(b"smuggled").await;
            let mut sink = Vec::new();
            let _ = tcp.read_to_end(&mut sink).await;
        }
    });
    addr
}

#[tokio::test]
async fn smuggling_101_with_a_body_fails_the_client_handshake() {
    tokio::time::timeout(LIMIT, async {
        let addr = fake_server(|accept| {
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\nContent-Length: 8\r\n\r\n"
            )
        })
        .await;
        let err = Socket::open(&format!("ws://{addr}/"), ConnectOptions::default())
            .await
            .expect_err("a 101 with a body is a failed handshake");
        assert!(err.to_string().contains("Content-Length"), "{err}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn leniency_http_1_0_101_fails_the_client_handshake() {
    tokio::time::timeout(LIMIT, async {
        let addr = fake_server(|accept| {
            format!(
                "HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Accept: {accept}\r\n\r\n"
            )
        })
        .await;
        let err = Socket::open(&format!("ws://{addr}/"), ConnectOptions::default())
            .await
            .expect_err("an HTTP/1.0 101 is a failed handshake");
        assert!(err.to_string().contains("HTTP/1.1"), "{err}");
    })
    .await
    .unwrap();
}

/// An echo server that hands each accepted socket to the test too.
async fn echo_server_keeping(
    options: AcceptOptions,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Socket>>>) {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let sockets = kept.clone();
    let addr = serve(options, move |socket: Socket| {
        sockets.lock().unwrap().push(socket.clone());
        async move {
            while let Ok(msg) = socket.recv().await {
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
        }
    })
    .await;
    (addr, kept)
}

#[tokio::test]
async fn amplification_trickle_after_a_large_message_keeps_the_read_buffer_small() {
    tokio::time::timeout(LIMIT, async {
        let (addr, kept) = echo_server_keeping(AcceptOptions::default().no_deflate()).await;
        let mut tcp = raw_client(addr).await;
        trickle_after_a_large_message(&mut tcp, || kept.lock().unwrap()[0].clone()).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn trickled_message_is_closed_with_1008_at_the_message_timeout() {
    tokio::time::timeout(LIMIT, async {
        let options = AcceptOptions {
            socket: SocketConfig {
                message_timeout: Some(Duration::from_millis(300)),
                ..SocketConfig::default()
            },
            ..AcceptOptions::default()
        };
        let addr = echo_server(options.no_deflate()).await;
        let mut tcp = raw_client(addr).await;
        // A whole message within the timeout is served.
        tcp.write_all(&client_frame(OpCode::Text, true, b"quick"))
            .await
            .unwrap();
        assert_eq!(read_frame(&mut tcp).await.unwrap().2, b"quick");
        let header = FrameHeader::new(OpCode::Binary, 1000, Some([1, 2, 3, 4]));
        let mut head = bytes::BytesMut::new();
        header.encode_to(&mut head);
        tcp.write_all(&head).await.unwrap();
        let trickle = async {
            loop {
                if tcp.write_all(b"z").await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        // Writing goes on until the server closes; read what it sent meanwhile.
        let _ = tokio::time::timeout(Duration::from_secs(3), trickle).await;
        assert_eq!(read_close_code(&mut tcp).await, Some(1008));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn extreme_durations_never_overflow() {
    tokio::time::timeout(LIMIT, async {
        let socket = SocketConfig {
            close_timeout: Duration::MAX,
            ping_interval: Some(Duration::MAX),
            ping_timeout: Duration::MAX,
            write_timeout: Some(Duration::MAX),
            message_timeout: Some(Duration::MAX),
            max_payload: usize::MAX,
            ..SocketConfig::default()
        };
        let options = AcceptOptions {
            handshake_timeout: Duration::MAX,
            socket: socket.clone(),
            ..AcceptOptions::default()
        };
        let addr = echo_server(options).await;
        let client = Socket::open(
            &format!("ws://{addr}/"),
            ConnectOptions {
                socket,
                ..ConnectOptions::default()
            },
        )
        .await
        .unwrap();
        client.send("still works").await.unwrap();
        let reply = client.recv().await.unwrap();
        assert_eq!(reply.as_text(), Some("still works"));
        // The close handshake completes (the close timer saturates, it does not panic).
        client.close(wsx::CloseCode::NORMAL, "").await;
        assert!(client.closed().await.clean);
    })
    .await
    .unwrap();
}
