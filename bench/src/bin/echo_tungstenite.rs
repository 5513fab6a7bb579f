//! Echo server on tokio-tungstenite: read a message, send it back (`SinkExt::send`, which
//! flushes every message: one write per echo).
//!
//! `--batch` instead feeds every message already readable before one flush (what
//! `StreamExt::forward` in tokio-tungstenite's own echo example amounts to), so pipelined
//! messages go out in one write, as wsx's driver does: the best a tungstenite user gets.
#![forbid(unsafe_code)]

use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

fn is_data(msg: &Message) -> bool {
    matches!(msg, Message::Text(_) | Message::Binary(_))
}

async fn echo(tcp: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(msg)) = ws.next().await {
        if is_data(&msg) && ws.send(msg).await.is_err() {
            break;
        }
    }
}

async fn echo_batched(tcp: TcpStream) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    'conn: while let Some(Ok(msg)) = ws.next().await {
        let mut next = Some(msg);
        while let Some(msg) = next.take() {
            if is_data(&msg) && ws.feed(msg).await.is_err() {
                break 'conn;
            }
            // Whatever is already decoded or readable goes into the same flush.
            if let Some(Some(Ok(more))) = ws.next().now_or_never() {
                next = Some(more);
            }
        }
        if ws.flush().await.is_err() {
            break;
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut batch = false;
    let mut rest = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--batch" {
            batch = true;
        } else {
            rest.push(arg);
        }
    }
    let args = wsx_bench::ServerArgs::parse_from("echo-tungstenite [--batch]", false, rest);
    let listener = wsx_bench::listen(&args.listen).await?;
    loop {
        let tcp = wsx_bench::accept(&listener).await;
        if batch {
            tokio::spawn(echo_batched(tcp));
        } else {
            tokio::spawn(echo(tcp));
        }
    }
}
