//! A small client: connects, sends each argument as a message, prints the replies, closes.
//!
//! ```sh
//! cargo run --example echo_server &
//! cargo run --example client -- ws://127.0.0.1:9001/ hello world
//! ```

use wsx::{CloseCode, ConnectOptions, Socket};

#[tokio::main]
async fn main() -> wsx::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:9001/".to_owned());
    let socket = Socket::open(&url, ConnectOptions::default()).await?;
    println!(
        "connected to {} (extensions: {:?})",
        socket.url(),
        socket.extensions()
    );
    for text in args {
        socket.send(text).await?;
        let reply = socket.recv().await?;
        println!("< {}", reply.as_text().unwrap_or("(binary)"));
    }
    let closed = socket.close(CloseCode::NORMAL, "bye").await;
    println!("closed: {closed:?}");
    Ok(())
}
