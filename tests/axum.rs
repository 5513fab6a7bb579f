//! The upgrade service on an axum route, and a Handler behind it.

mod common;

use axum::Router;
use common::LIMIT;
use wsx::{ConnectOptions, Handler, Message, Socket};

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
        socket.close(1000, "").await.unwrap();

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
