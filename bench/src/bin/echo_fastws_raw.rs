//! Echo server on fastwebsockets over the raw `TcpStream`: the handshake by hand
//! (`wsx_bench::server_handshake`, no hyper), then `WebSocket::after_handshake` and a
//! `FragmentCollector`, each whole message written back (auto-PONG and auto-close on). The
//! leanest way to serve with fastwebsockets, and the cheapest peer in the small-message cells.
#![forbid(unsafe_code)]

use fastwebsockets::{FragmentCollector, Role, WebSocket, WebSocketError};
use tokio::net::TcpStream;

async fn echo(mut tcp: TcpStream) -> Result<(), WebSocketError> {
    let leftover = wsx_bench::server_handshake(&mut tcp).await?;
    if !leftover.is_empty() {
        // A client sends nothing before the 101 (RFC 6455 4.1); this server does not keep it.
        return Ok(());
    }
    let ws = FragmentCollector::new(WebSocket::after_handshake(tcp, Role::Server));
    wsx_bench::fastws_echo(ws).await
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = wsx_bench::ServerArgs::parse("echo-fastws-raw", false);
    let listener = wsx_bench::listen(&args.listen).await?;
    loop {
        let tcp = wsx_bench::accept(&listener).await;
        tokio::spawn(async move {
            // As echo-fastws (and upstream's example): outside tokio's cooperative budget.
            let _ = tokio::task::unconstrained(echo(tcp)).await;
        });
    }
}
