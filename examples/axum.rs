//! wsx inside an axum application: the `WebSocketUpgrade` extractor in a handler beside axum's
//! `State` and `Path`, the upgrade service on another route, plain HTTP on a third.
//!
//! ```sh
//! cargo run --example axum --features axum -- 127.0.0.1:3000
//! cargo run --example client -- ws://127.0.0.1:3000/rooms/lobby hello
//! cargo run --example client -- ws://127.0.0.1:3000/echo hello
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use wsx::axum::WebSocketUpgrade;
use wsx::{AcceptOptions, Socket};

#[derive(Clone, Default)]
struct App {
    visitors: Arc<AtomicU64>,
}

/// `/rooms/{name}`: greets the visitor with the room's name and its number, then echoes.
async fn room(State(app): State<App>, Path(name): Path<String>, ws: WebSocketUpgrade) -> Response {
    let n = app.visitors.fetch_add(1, Ordering::Relaxed) + 1;
    ws.protocols(["chat"]).on_upgrade(move |socket| async move {
        if socket
            .send(format!("room {name}, visitor {n}"))
            .await
            .is_err()
        {
            return;
        }
        while let Ok(msg) = socket.recv().await {
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    // The plain tower::Service, for routes that need no extractor.
    let echo = wsx::upgrade(|socket: Socket, parts: http::request::Parts| async move {
        println!("{} connected (origin {:?})", parts.uri, socket.origin());
        while let Ok(msg) = socket.recv().await {
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    })
    .options(AcceptOptions::default().protocol("echo"));
    let app = Router::new()
        .route(
            "/",
            get(|| async { "WebSocket rooms at /rooms/{name}, echo at /echo" }),
        )
        .route("/rooms/{name}", get(room))
        .route_service("/echo", echo)
        .with_state(App::default());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
