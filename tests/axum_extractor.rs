//! The axum extractor (`wsx::axum::WebSocketUpgrade`) next to axum's own extractors, and its
//! rejections.

mod common;

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use common::{read_head, upgrade_request, LIMIT};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use wsx::axum::WebSocketUpgrade;
use wsx::{AcceptOptions, CloseCode, ConnectOptions, Socket};

#[derive(Clone)]
struct App {
    greeting: &'static str,
}

async fn room(State(app): State<App>, Path(name): Path<String>, ws: WebSocketUpgrade) -> Response {
    let offered = ws.offered_protocols().join(",");
    let ws = ws.protocols(["chat", "superchat"]);
    let selected = ws.selected_protocol().unwrap_or("-").to_owned();
    ws.on_upgrade(move |socket| async move {
        let hello = format!(
            "{} {name} (offered {offered}, selected {selected})",
            app.greeting
        );
        if socket.send(hello).await.is_err() {
            return;
        }
        while let Ok(msg) = socket.recv().await {
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    })
}

async fn guarded(ws: WebSocketUpgrade) -> Response {
    ws.options(AcceptOptions::default().origin_check(|o| o == Some("https://good.example")))
        .on_upgrade(|socket| async move {
            let _ = socket.send("let in").await;
        })
}

async fn server() -> SocketAddr {
    let app = Router::new()
        .route("/rooms/{name}", get(room))
        .route("/guarded", get(guarded).post(guarded))
        .with_state(App {
            greeting: "welcome to",
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends `request` on a new connection and returns the response head.
async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    read_head(&mut tcp).await
}

#[tokio::test]
async fn extractor_runs_beside_state_and_path_and_selects_the_subprotocol() {
    tokio::time::timeout(LIMIT, async {
        let addr = server().await;
        let options = ConnectOptions::default()
            .protocol("superchat")
            .protocol("chat");
        let socket = Socket::open(&format!("ws://{addr}/rooms/lobby"), options)
            .await
            .unwrap();
        // The client's first choice that the handler speaks.
        assert_eq!(socket.protocol(), "superchat");
        assert!(
            socket.extensions().contains("permessage-deflate"),
            "{}",
            socket.extensions()
        );
        let hello = socket.recv().await.unwrap();
        assert_eq!(
            hello.as_text(),
            Some("welcome to lobby (offered superchat,chat, selected superchat)")
        );
        socket.send("ping me back").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("ping me back"));
        let closed = socket.close(CloseCode::NORMAL, "bye").await;
        assert!(closed.clean, "{closed:?}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn extractor_rejects_what_is_not_an_upgrade_with_the_right_status() {
    tokio::time::timeout(LIMIT, async {
        let addr = server().await;
        // A plain GET: no Upgrade header.
        let head = raw(addr, "GET /rooms/x HTTP/1.1\r\nHost: h\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        // A POST with every upgrade header.
        let post = upgrade_request("/guarded", "").replacen("GET", "POST", 1);
        let head = raw(addr, &post).await;
        assert!(head.starts_with("HTTP/1.1 405"), "{head}");
        assert!(head.to_ascii_lowercase().contains("allow: get"), "{head}");
        // A version other than 13: 426 naming the one we speak.
        let old = upgrade_request("/rooms/x", "")
            .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
        let head = raw(addr, &old).await;
        assert!(head.starts_with("HTTP/1.1 426"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("sec-websocket-version: 13"),
            "{head}"
        );
        // A key that is not 16 bytes of base64.
        let bad_key =
            upgrade_request("/rooms/x", "").replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=");
        let head = raw(addr, &bad_key).await;
        assert!(head.starts_with("HTTP/1.1 400"), "{head}");
        // A valid upgrade still works on the same server.
        let head = raw(addr, &upgrade_request("/rooms/x", "")).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn extractor_applies_the_options_origin_check() {
    tokio::time::timeout(LIMIT, async {
        let addr = server().await;
        let head = raw(
            addr,
            &upgrade_request("/guarded", "Origin: https://evil.example\r\n"),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 403"), "{head}");
        let socket = Socket::open(
            &format!("ws://{addr}/guarded"),
            ConnectOptions::default().origin("https://good.example"),
        )
        .await
        .unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("let in"));
    })
    .await
    .unwrap();
}
