//! wsx inside an axum application: the upgrade service on one route, plain HTTP on another.
//!
//! ```sh
//! cargo run --example axum -- 127.0.0.1:3000
//! cargo run --example client -- ws://127.0.0.1:3000/ws hello
//! ```

use axum::routing::get;
use axum::Router;
use wsx::{AcceptOptions, Socket};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    let ws = wsx::upgrade(|socket: Socket, parts: http::request::Parts| async move {
        println!("{} connected (origin {:?})", parts.uri, socket.origin());
        while let Ok(msg) = socket.recv().await {
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    })
    .options(AcceptOptions::default().protocol("echo"));
    let app = Router::new()
        .route("/", get(|| async { "WebSocket echo at /ws" }))
        .route_service("/ws", ws);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await
}
