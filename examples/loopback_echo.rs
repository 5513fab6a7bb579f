//! A first speed figure: one client echoes N messages through a server on loopback, with a
//! window of messages in flight, and prints messages/s and MiB/s.
//!
//! ```sh
//! cargo run --release --example loopback_echo -- 16 200000 64
//! cargo run --release --example loopback_echo -- 65536 20000 8
//! ```

use std::time::Instant;

use bytes::Bytes;
use wsx::{AcceptOptions, CloseCode, ConnectOptions, Socket};

#[tokio::main]
async fn main() -> wsx::Result<()> {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<usize>().unwrap_or(0));
    let size = args.next().filter(|n| *n > 0).unwrap_or(16);
    let count = args.next().filter(|n| *n > 0).unwrap_or(100_000);
    let window = args.next().filter(|n| *n > 0).unwrap_or(1);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let (socket, _) = wsx::accept(tcp, &AcceptOptions::default().no_deflate()).await?;
        while let Ok(msg) = socket.recv().await {
            socket.send(msg).await?;
        }
        Ok::<(), wsx::Error>(())
    });
    let socket = Socket::open(
        &format!("ws://{addr}/"),
        ConnectOptions::default().no_deflate(),
    )
    .await?;
    let payload = Bytes::from(vec![b'x'; size]);
    let start = Instant::now();
    let (mut sent, mut received) = (0usize, 0usize);
    while received < count {
        while sent < count && sent - received < window {
            socket.send(payload.clone()).await?;
            sent += 1;
        }
        let msg = socket.recv().await?;
        assert_eq!(msg.len(), size);
        received += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{count} x {size} B, window {window}: {:.0} messages/s, {:.1} MiB/s",
        count as f64 / secs,
        (count * size) as f64 / secs / (1 << 20) as f64
    );
    socket.close(CloseCode::NORMAL, "").await;
    Ok(())
}
