//! The upgrade service on an axum route, and a Handler behind it.

mod common;

use axum::Router;
use common::LIMIT;
use wsx::{CloseCode, ConnectOptions, Handler, Message, Socket};

#[tokio::test]
async fn axum_route_service_upgrades() {
    tokio::time::timeout(LIMIT, async {
        let echo = wsx::upgrade(|socket: Socket, parts: http::request::Parts| async move {
            let path = parts.uri.path().to_owned();
            while let Ok(m) = socket.recv().await {
                let reply = format!("{path}:{}", m.as_text().unwrap_or_default());
                if socket.send(reply).await.is_err() {
                    break;
                }
            }
        });
        let handler = Handler::new(|m: Message| async move {
            Ok::<_, std::convert::Infallible>(Message::text(
                m.as_text().unwrap_or_default().to_uppercase(),
            ))
        });
        let app = Router::new()
            .route_service("/ws", echo)
            .route_service("/upper", handler.upgrade())
            .route("/plain", axum::routing::get(|| async { "plain http" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let socket = Socket::open(&format!("ws://{addr}/ws"), ConnectOptions::default())
            .await
            .unwrap();
        socket.send("hi").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("/ws:hi"));
        // Compression was negotiated through axum too.
        assert!(
            socket.extensions().contains("permessage-deflate"),
            "{}",
            socket.extensions()
        );
        socket.close(CloseCode::NORMAL, "").await;

        let socket = Socket::open(&format!("ws://{addr}/upper"), ConnectOptions::default())
            .await
            .unwrap();
        socket.send("shout").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("SHOUT"));
        assert_eq!(handler.stats().snapshot().response, 1);

        // A plain GET to the WebSocket route is refused with a clear status.
        let err = Socket::open(&format!("ws://{addr}/plain"), ConnectOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("200"), "{err}");
    })
    .await
    .unwrap();
}

/// A bare hyper HTTP/1 server (with upgrades) whose upgrade service echoes; returns its address.
async fn hyper_echo_server() -> std::net::SocketAddr {
    let echo = wsx::upgrade(|socket: Socket, _parts: http::request::Parts| async move {
        while let Ok(m) = socket.recv().await {
            if socket.send(m).await.is_err() {
                break;
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let echo = echo.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let mut echo = echo.clone();
                    tower::Service::call(&mut echo, req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// A bare hyper HTTP/1 server hands over its `TokioIo<TcpStream>`: the socket runs on plain TCP
/// again, and a frame the client sent right behind its request (so hyper read it along with the
/// request head) is not lost.
#[tokio::test]
async fn hyper_http1_upgrade_keeps_bytes_read_past_the_request() {
    use tokio::io::AsyncWriteExt;
    tokio::time::timeout(LIMIT, async {
        let addr = hyper_echo_server().await;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut bytes = common::upgrade_request("/ws", "").into_bytes();
        bytes.extend(common::client_frame(
            wsx::OpCode::Text,
            true,
            b"sent before the 101",
        ));
        tcp.write_all(&bytes).await.unwrap();
        let head = common::read_head(&mut tcp).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let (fin, opcode, payload) = common::read_frame(&mut tcp).await.unwrap();
        assert!(fin);
        assert_eq!(opcode, 1);
        assert_eq!(payload, b"sent before the 101");
    })
    .await
    .unwrap();
}

/// An upgrade request with a body, through hyper and the upgrade service: 400, and the body is
/// never read as frames.
#[tokio::test]
async fn smuggling_upgrade_with_a_body_through_hyper_is_400() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(LIMIT, async {
        let addr = hyper_echo_server().await;
        let frame = common::client_frame(wsx::OpCode::Text, true, b"smuggled");
        for extra in [
            format!("Content-Length: {}\r\n", frame.len()),
            "Transfer-Encoding: chunked\r\n".to_owned(),
        ] {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut bytes = common::upgrade_request("/ws", &extra).into_bytes();
            bytes.extend_from_slice(&frame);
            tcp.write_all(&bytes).await.unwrap();
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                tcp.read_to_end(&mut answer),
            )
            .await;
            let answer = String::from_utf8_lossy(&answer);
            assert!(answer.starts_with("HTTP/1.1 400"), "{extra}: {answer}");
            assert!(!answer.contains("smuggled"), "{extra}: {answer}");
        }
    })
    .await
    .unwrap();
}
