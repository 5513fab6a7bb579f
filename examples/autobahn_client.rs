//! The client side of the Autobahn TestSuite (run against `wstest -m fuzzingserver`).
//!
//! `cargo run --release --example autobahn_client -- [BASE_URL] [AGENT]` (defaults
//! `ws://127.0.0.1:9001` and `wsx`): reads the case count, runs every case (echoing each
//! TEXT/BINARY message back until the server closes), then asks the server to write its report.

use wsx::{ConnectOptions, OpCode, Socket};

/// Echoes every message until the connection ends.
async fn echo(socket: &Socket) {
    while let Ok(msg) = socket.recv().await {
        if matches!(msg.kind(), OpCode::Text | OpCode::Binary) && socket.send(msg).await.is_err() {
            break;
        }
    }
    socket.closed().await;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001".to_owned());
    let agent = args.next().unwrap_or_else(|| "wsx".to_owned());

    let socket = Socket::open(&format!("{base}/getCaseCount"), ConnectOptions::default()).await?;
    let count: usize = match socket.recv().await?.as_text() {
        Some(text) => text.trim().parse()?,
        None => return Err("getCaseCount: expected a text message".into()),
    };
    socket.closed().await;
    println!("{count} cases");

    for case in 1..=count {
        let url = format!("{base}/runCase?case={case}&agent={agent}");
        match Socket::open(&url, ConnectOptions::default()).await {
            Ok(socket) => echo(&socket).await,
            Err(e) => eprintln!("case {case}: {e}"),
        }
        if case % 50 == 0 || case == count {
            println!("ran {case}/{count}");
        }
    }

    let url = format!("{base}/updateReports?agent={agent}");
    let socket = Socket::open(&url, ConnectOptions::default()).await?;
    socket.closed().await;
    println!("reports updated");
    Ok(())
}
