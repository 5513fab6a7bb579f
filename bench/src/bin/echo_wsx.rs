//! Echo server on the wsx library: `wsx::accept`, then `Socket::recv` / `Socket::send` until the
//! connection ends. `--deflate` accepts permessage-deflate (wsx's default settings); without it
//! the server never negotiates compression, like the peers it is compared with.
//! `--deflate-low-memory` accepts it with `DeflateConfig::low_memory()` instead.
#![forbid(unsafe_code)]

use std::sync::Arc;

use wsx::{AcceptOptions, DeflateConfig, OpCode};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut low_memory = false;
    let mut rest = Vec::new();
    for arg in std::env::args().skip(1) {
        if arg == "--deflate-low-memory" {
            low_memory = true;
        } else {
            rest.push(arg);
        }
    }
    let args = wsx_bench::ServerArgs::parse_from("echo-wsx [--deflate-low-memory]", true, rest);
    let mut options = AcceptOptions::default();
    if low_memory {
        options.deflate = Some(DeflateConfig::low_memory());
    } else if !args.deflate {
        options = options.no_deflate();
    }
    let options = Arc::new(options);
    let listener = wsx_bench::listen(&args.listen).await?;
    loop {
        let tcp = wsx_bench::accept(&listener).await;
        let options = options.clone();
        tokio::spawn(async move {
            // The request is dropped at once (`_`, not `_request`, which would keep its header
            // map alive for the whole connection: ~0.9 KiB).
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
            socket.closed().await;
        });
    }
}
