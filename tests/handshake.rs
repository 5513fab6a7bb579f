//! Server handshake answers over real sockets: bad requests get clear HTTP errors, never a hang.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx::AcceptOptions;

async fn answer(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut out))
        .await
        .expect("the server must answer and close")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn request(extra: &str, version: &str) -> Vec<u8> {
    format!(
        "GET /x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{version}{extra}\r\n"
    )
    .into_bytes()
}

#[tokio::test]
async fn bad_requests_get_http_errors() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        // Wrong version: 426 with the version we speak.
        let r = answer(addr, &request("", "Sec-WebSocket-Version: 8\r\n")).await;
        assert!(r.starts_with("HTTP/1.1 426"), "{r}");
        assert!(r.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{r}");
        // Missing key: 400.
        let r = answer(addr, b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        // Not an upgrade at all: 400 (or 426), with a body saying why.
        let r = answer(addr, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 4"), "{r}");
        // Garbage: 400.
        let r = answer(addr, b"\x16\x03\x01 not http\r\n\r\n").await;
        assert!(r.starts_with("HTTP/1.1 400"), "{r}");
        // Headers over the 16 KiB limit: 431.
        let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
        let r = answer(addr, &request(&big, "Sec-WebSocket-Version: 13\r\n")).await;
        assert!(r.starts_with("HTTP/1.1 431"), "{r}");
        // The server still works for a good client.
        let mut tcp = raw_client(addr).await;
        tcp.write_all(&client_frame(wsx::OpCode::Text, true, b"ok")).await.unwrap();
        assert_eq!(read_frame(&mut tcp).await.unwrap().2, b"ok");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn silent_client_is_dropped_after_the_handshake_timeout() {
    tokio::time::timeout(LIMIT, async {
        let options = AcceptOptions {
            handshake_timeout: Duration::from_millis(300),
            ..AcceptOptions::default()
        };
        let addr = echo_server(options).await;
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n")
            .await
            .unwrap(); // never finishes
        let started = std::time::Instant::now();
        assert!(
            sees_eof(&mut tcp).await,
            "the server must drop the connection"
        );
        assert!(started.elapsed() < Duration::from_secs(4));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn origin_check_refuses_with_403() {
    tokio::time::timeout(LIMIT, async {
        let options = AcceptOptions::default().origin_check(|o| o == Some("https://good.test"));
        let addr = echo_server(options).await;
        let r = answer(
            addr,
            &request(
                "Origin: https://evil.test\r\n",
                "Sec-WebSocket-Version: 13\r\n",
            ),
        )
        .await;
        assert!(r.starts_with("HTTP/1.1 403"), "{r}");
        let opts = wsx::ConnectOptions::default().origin("https://good.test");
        let socket = wsx::Socket::open(&format!("ws://{addr}/"), opts)
            .await
            .unwrap();
        assert_eq!(socket.ready_state(), wsx::ReadyState::Open);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn seed_connect_returns_a_handshaken_stream() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        let mut stream = wsx::connect(&format!("ws://{addr}/"), "http://origin.test")
            .await
            .unwrap();
        let codec = wsx::MessageCodec::new().max_size(1 << 20);
        codec
            .write_to(&wsx::Message::text("over the raw stream"), &mut stream)
            .await
            .unwrap();
        let reply = codec.read_from(&mut stream).await.unwrap();
        assert_eq!(reply.message.as_text(), Some("over the raw stream"));
        assert!(!reply.masked, "server frames are not masked");
    })
    .await
    .unwrap();
}
