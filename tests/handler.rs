//! Handler: request/response over WebSocket, with stats.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use wsx::{AcceptOptions, ConnectOptions, Handler, Message, OpCode, Socket};

/// Serves `handler` on raw accepted sockets; returns the address.
async fn serve_handler(handler: Handler, options: AcceptOptions) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let handler = handler.clone();
            let options = options.clone();
            tokio::spawn(async move {
                if let Ok((socket, _)) = wsx::accept(tcp, &options).await {
                    handler.serve(&socket).await;
                }
            });
        }
    });
    addr
}

/// An inner handler that sleeps a pseudo-random time, fails on "fail", and echoes otherwise.
fn sleepy() -> Handler {
    Handler::new(|m: Message| async move {
        let text = m.as_text().unwrap_or_default().to_owned();
        let n: u64 = text.bytes().map(u64::from).sum();
        tokio::time::sleep(Duration::from_millis(n % 7)).await;
        if text.starts_with("fail") {
            return Err(format!("refused {text}"));
        }
        Ok(Message::text(format!("re:{text}")))
    })
}

async fn run_in_order(concurrency: usize) {
    let handler = sleepy().concurrency(concurrency);
    let addr = serve_handler(handler.clone(), AcceptOptions::default()).await;
    let socket = Socket::open(&format!("ws://{addr}/"), ConnectOptions::default())
        .await
        .unwrap();
    for i in 0..100 {
        let text = if i % 10 == 3 {
            format!("fail{i}")
        } else {
            format!("q{i}")
        };
        socket.send(text).await.unwrap();
    }
    for i in 0..100 {
        if i % 10 == 3 {
            continue; // failed requests get no reply
        }
        assert_eq!(
            socket.recv().await.unwrap().as_text(),
            Some(format!("re:q{i}").as_str())
        );
    }
    let stats = handler.stats().snapshot();
    assert_eq!(
        (
            stats.total,
            stats.request,
            stats.response,
            stats.error,
            stats.pending
        ),
        (100, 100, 90, 10, 0)
    );
    handler.stats().reset();
    let stats = handler.stats().snapshot();
    assert_eq!(
        (stats.total, stats.request, stats.response, stats.error),
        (100, 0, 0, 0)
    );
}

#[tokio::test]
async fn replies_in_order_with_concurrency_one() {
    tokio::time::timeout(LIMIT, run_in_order(1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_in_order_with_concurrency_eight() {
    tokio::time::timeout(LIMIT, run_in_order(8)).await.unwrap();
}

#[tokio::test]
async fn errors_go_to_the_hook_and_serving_goes_on() {
    tokio::time::timeout(LIMIT, async {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let handler = sleepy().on_error(move |e| s.lock().unwrap().push(e.to_string()));
        let addr = serve_handler(handler, AcceptOptions::default()).await;
        let socket = Socket::open(&format!("ws://{addr}/"), ConnectOptions::default())
            .await
            .unwrap();
        socket.send("fail-a").await.unwrap();
        socket.send("after").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("re:after"));
        assert_eq!(*seen.lock().unwrap(), vec!["refused fail-a".to_owned()]);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn ping_pong_and_dropped_types() {
    tokio::time::timeout(LIMIT, async {
        let handler = sleepy();
        let addr = serve_handler(handler.clone(), AcceptOptions::default().no_deflate()).await;
        let mut tcp = raw_client(addr).await;
        tcp.write_all(&client_frame(OpCode::Pong, true, b"unsolicited"))
            .await
            .unwrap();
        tcp.write_all(&client_frame(OpCode::Ping, true, b"p1"))
            .await
            .unwrap();
        tcp.write_all(&client_frame(OpCode::Binary, true, b"bin"))
            .await
            .unwrap();
        let (_, op, body) = read_frame(&mut tcp).await.unwrap();
        assert_eq!((op, &body[..]), (10, &b"p1"[..]));
        let (_, op, body) = read_frame(&mut tcp).await.unwrap();
        assert_eq!((op, &body[..]), (1, &b"re:bin"[..]));
        assert_eq!(
            handler.stats().snapshot().request,
            1,
            "the PONG is not a request"
        );
        // Unmasked client frame: 1002.
        tcp.write_all(&[0x82, 0x01, 0x00]).await.unwrap();
        assert_eq!(read_close_code(&mut tcp).await, Some(1002));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn request_over_max_size_closes_with_1009() {
    tokio::time::timeout(LIMIT, async {
        let handler = sleepy().max_size(1000);
        let options = AcceptOptions::default().max_payload(1000);
        let addr = serve_handler(handler, options).await;
        let socket = Socket::open(
            &format!("ws://{addr}/"),
            ConnectOptions::default().no_deflate(),
        )
        .await
        .unwrap();
        socket.send("small").await.unwrap();
        assert_eq!(socket.recv().await.unwrap().as_text(), Some("re:small"));
        socket.send(vec![0u8; 1001]).await.unwrap();
        let ev = socket.closed().await;
        assert_eq!(ev.code, wsx::CloseCode::MESSAGE_TOO_BIG);
    })
    .await
    .unwrap();
}
