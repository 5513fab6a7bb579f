//! A WebSocket echo server: every TEXT/BINARY message goes back with the same type.
//!
//! `cargo run --release --example echo_server -- [--owned] [ADDR]` (default `127.0.0.1:9001`).
//! Each connection is a [`wsx::Socket`], or with `--owned` an [`wsx::OwnedSocket`] served from
//! its own task. This is the server that `scripts/autobahn.sh` tests, both ways, with the
//! Autobahn TestSuite's fuzzingclient.

use wsx::server::{accept_request_owned, read_request};
use wsx::{AcceptOptions, OpCode, OwnedSocket, WsStream};

/// Echoes on a shared socket until the connection ends.
async fn echo(tcp: tokio::net::TcpStream, options: &AcceptOptions) {
    let Ok((socket, _)) = wsx::accept(tcp, options).await else {
        return;
    };
    while let Ok(msg) = socket.recv().await {
        if matches!(msg.kind(), OpCode::Text | OpCode::Binary) && socket.send(msg).await.is_err() {
            break;
        }
    }
    // The connection is closing: wait for the close handshake to finish.
    socket.closed().await;
}

/// Echoes on an owned socket until the connection ends.
async fn echo_owned(tcp: tokio::net::TcpStream, options: &AcceptOptions) {
    let mut stream = WsStream::from(tcp);
    let Ok((req, leftover)) = read_request(&mut stream, &options.handshake_limits).await else {
        return;
    };
    let Ok(mut socket): Result<OwnedSocket, _> =
        accept_request_owned(stream, &req, leftover, options).await
    else {
        return;
    };
    while let Ok(msg) = socket.recv().await {
        if matches!(msg.kind(), OpCode::Text | OpCode::Binary) {
            // A send that fails finds the socket closing; receiving runs the close to its end.
            let _ = socket.send(msg).await;
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut owned = false;
    let mut addr = "127.0.0.1:9001".to_owned();
    for arg in std::env::args().skip(1) {
        if arg == "--owned" {
            owned = true;
        } else {
            addr = arg;
        }
    }
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    // At least 16 MiB messages (Autobahn 9.x); the default is 64 MiB. permessage-deflate is on
    // by default.
    let options = std::sync::Arc::new(AcceptOptions::default().max_payload(64 << 20));
    loop {
        let (tcp, _peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                eprintln!("accept: {e}");
                continue;
            }
        };
        let options = options.clone();
        tokio::spawn(async move {
            if owned {
                echo_owned(tcp, &options).await;
            } else {
                echo(tcp, &options).await;
            }
        });
    }
}
