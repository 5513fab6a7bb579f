//! A JSON request/response service with `wsx::Handler`, served both by axum and by the bare
//! `accept`, and a client that calls it.
//!
//! Requests look like `{"op":"add","a":1,"b":2}` and get `{"result":3}`.
//!
//! ```sh
//! cargo run --example json_service
//! ```

use axum::Router;
use serde_json::{json, Value};
use wsx::{AcceptOptions, CloseCode, ConnectOptions, Handler, Message, Socket};

async fn calculate(req: Message) -> Result<Message, String> {
    let v: Value = serde_json::from_slice(req.body()).map_err(|e| format!("bad JSON: {e}"))?;
    let (a, b) = (
        v["a"].as_f64().unwrap_or(0.0),
        v["b"].as_f64().unwrap_or(0.0),
    );
    let result = match v["op"].as_str() {
        Some("add") => a + b,
        Some("sub") => a - b,
        Some("mul") => a * b,
        Some("div") if b != 0.0 => a / b,
        other => return Err(format!("unsupported op {other:?}")),
    };
    Ok(Message::text(json!({ "result": result }).to_string()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let handler = Handler::new(calculate).concurrency(4);

    // 1. Behind axum.
    let app = Router::new().route_service("/rpc", handler.upgrade());
    let axum_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let axum_addr = axum_listener.local_addr()?;
    tokio::spawn(async move { axum::serve(axum_listener, app).await });

    // 2. On a bare TCP listener.
    let bare_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_addr = bare_listener.local_addr()?;
    let bare_handler = handler.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = bare_listener.accept().await {
            let handler = bare_handler.clone();
            tokio::spawn(async move {
                if let Ok((socket, _)) = wsx::accept(tcp, &AcceptOptions::default()).await {
                    handler.serve(&socket).await;
                }
            });
        }
    });

    // The client calls both.
    for url in [
        format!("ws://{axum_addr}/rpc"),
        format!("ws://{bare_addr}/"),
    ] {
        let socket = Socket::open(&url, ConnectOptions::default()).await?;
        for req in [
            json!({"op": "add", "a": 1, "b": 2}),
            json!({"op": "mul", "a": 6, "b": 7}),
        ] {
            socket.send(req.to_string()).await?;
            let reply = socket.recv().await?;
            println!("{url}: {req} -> {}", reply.as_text().unwrap_or_default());
        }
        socket.close(CloseCode::NORMAL, "").await;
    }
    let stats = handler.stats().snapshot();
    println!("stats: {stats:?}");
    Ok(())
}
