//! A WebSocket echo server: every TEXT/BINARY message goes back with the same type.
//!
//! `cargo run --release --example echo_server -- [ADDR]` (default `127.0.0.1:9001`). This is the
//! server that `scripts/autobahn.sh` tests with the Autobahn TestSuite's fuzzingclient.

use wsx::{AcceptOptions, OpCode};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
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
            let Ok((socket, _)) = wsx::accept(tcp, &options).await else {
                return;
            };
            while let Ok(msg) = socket.recv().await {
                if matches!(msg.kind(), OpCode::Text | OpCode::Binary)
                    && socket.send(msg).await.is_err()
                {
                    break;
                }
            }
            // The connection is closing: wait for the close handshake to finish.
            socket.closed().await;
        });
    }
}
