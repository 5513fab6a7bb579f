//! `OwnedSocket` over TCP on 127.0.0.1: a raw client on the other end checks the wire, and an
//! owned client talks to the library's server.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{client_frame, read_close_code, read_frame, sees_eof, upgrade_request, LIMIT};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use wsx::proto::OpCode;
use wsx::server::{accept_request_owned, read_request};
use wsx::{AcceptOptions, CloseCode, ConnectOptions, Error, Message, OwnedSocket, SocketConfig};

/// Serves each connection with `f` on an owned socket; returns the address.
async fn serve_owned<F, Fut>(options: AcceptOptions, f: F) -> SocketAddr
where
    F: Fn(OwnedSocket) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (options, f) = (options.clone(), f.clone());
            tokio::spawn(async move {
                let mut stream = wsx::WsStream::from(tcp);
                let Ok((req, leftover)) =
                    read_request(&mut stream, &options.handshake_limits).await
                else {
                    return;
                };
                if let Ok(socket) = accept_request_owned(stream, &req, leftover, &options).await {
                    f(socket).await;
                }
            });
        }
    });
    addr
}

/// An echo on an owned socket that reports how `recv` ended.
async fn echo_server(
    options: AcceptOptions,
) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Error>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = serve_owned(options, move |mut socket| {
        let tx = tx.clone();
        async move {
            loop {
                match socket.recv().await {
                    Ok(msg) => {
                        let _ = socket.send(msg).await;
                    }
                    Err(e) => {
                        let _ = tx.send(e);
                        break;
                    }
                }
            }
        }
    })
    .await;
    (addr, rx)
}

async fn raw_client(addr: SocketAddr) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(upgrade_request("/", "").as_bytes())
        .await
        .unwrap();
    let head = common::read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

#[tokio::test]
async fn owned_socket_echoes_answers_pings_and_reassembles_fragments() {
    let (addr, _) = echo_server(AcceptOptions::default().no_deflate()).await;
    let mut tcp = raw_client(addr).await;
    tokio::time::timeout(LIMIT, async {
        tcp.write_all(&client_frame(OpCode::Text, true, b"hello"))
            .await
            .unwrap();
        assert_eq!(
            read_frame(&mut tcp).await,
            Some((true, 1, b"hello".to_vec()))
        );
        let mut wire = client_frame(OpCode::Binary, false, b"ab");
        wire.extend(client_frame(OpCode::Ping, true, b"p"));
        wire.extend(client_frame(OpCode::Continue, true, b"cd"));
        tcp.write_all(&wire).await.unwrap();
        // The PING is answered as it comes, before the message it interrupted is whole.
        assert_eq!(read_frame(&mut tcp).await, Some((true, 0xa, b"p".to_vec())));
        assert_eq!(
            read_frame(&mut tcp).await,
            Some((true, 2, b"abcd".to_vec()))
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn owned_socket_answers_every_message_that_arrives_in_one_read() {
    // Messages that arrive together are all delivered: the ones behind the first must not
    // wait in the read buffer for bytes that never come.
    let (addr, _) = echo_server(AcceptOptions::default().no_deflate()).await;
    let mut tcp = raw_client(addr).await;
    tokio::time::timeout(LIMIT, async {
        let mut wire = Vec::new();
        for text in ["one", "two", "three"] {
            wire.extend(client_frame(OpCode::Text, true, text.as_bytes()));
        }
        tcp.write_all(&wire).await.unwrap();
        for text in ["one", "two", "three"] {
            assert_eq!(
                read_frame(&mut tcp).await,
                Some((true, 1, text.as_bytes().to_vec()))
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn owned_socket_feed_goes_out_before_recv_waits_and_answers_a_run_together() {
    // An echo that feeds its answers: `recv` must write them before it waits for more input
    // (else the client waits forever), for one message and for several from one read.
    let addr = serve_owned(
        AcceptOptions::default().no_deflate(),
        |mut socket| async move {
            while let Ok(msg) = socket.recv().await {
                if socket.feed(msg).await.is_err() {
                    break;
                }
            }
        },
    )
    .await;
    let mut tcp = raw_client(addr).await;
    tokio::time::timeout(LIMIT, async {
        tcp.write_all(&client_frame(OpCode::Text, true, b"alone"))
            .await
            .unwrap();
        assert_eq!(
            read_frame(&mut tcp).await,
            Some((true, 1, b"alone".to_vec()))
        );
        let mut wire = Vec::new();
        for i in 0..16u8 {
            wire.extend(client_frame(OpCode::Binary, true, &[i; 3]));
        }
        tcp.write_all(&wire).await.unwrap();
        for i in 0..16u8 {
            assert_eq!(read_frame(&mut tcp).await, Some((true, 2, vec![i; 3])));
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn owned_socket_echoes_the_peers_close_and_ends_the_connection() {
    let (addr, mut ended) = echo_server(AcceptOptions::default().no_deflate()).await;
    let mut tcp = raw_client(addr).await;
    tokio::time::timeout(LIMIT, async {
        let mut body = 4000u16.to_be_bytes().to_vec();
        body.extend_from_slice(b"bye now");
        tcp.write_all(&client_frame(OpCode::Close, true, &body))
            .await
            .unwrap();
        // The reply carries the peer's code and reason; then the server ends TCP.
        assert_eq!(read_frame(&mut tcp).await, Some((true, 8, body)));
        assert!(sees_eof(&mut tcp).await);
        tcp.shutdown().await.unwrap();
        match ended.recv().await.unwrap() {
            Error::Closed { code, reason } => {
                assert_eq!((code, reason.as_str()), (4000, "bye now"))
            }
            other => panic!("recv ended with {other:?}"),
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn owned_socket_fails_an_oversized_message_with_1009_without_a_reset() {
    // The client keeps writing past the limit and reads only afterwards: it still gets the
    // CLOSE 1009 (the server half-closes and drains instead of closing with unread input).
    let mut options = AcceptOptions::default().no_deflate();
    options.socket.max_payload = 1 << 20;
    let (addr, mut ended) = echo_server(options).await;
    let mut tcp = raw_client(addr).await;
    tokio::time::timeout(LIMIT, async {
        let chunk = vec![b'x'; 4096];
        tcp.write_all(&client_frame(OpCode::Binary, false, &chunk))
            .await
            .unwrap();
        for _ in 0..400 {
            if tcp
                .write_all(&client_frame(OpCode::Continue, false, &chunk))
                .await
                .is_err()
            {
                break;
            }
        }
        assert_eq!(read_close_code(&mut tcp).await, Some(1009));
        tcp.shutdown().await.unwrap();
        match ended.recv().await.unwrap() {
            Error::Closed { code, .. } => assert_eq!(code, 1009),
            other => panic!("recv ended with {other:?}"),
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn owned_socket_close_runs_the_handshake_and_reports_it() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = serve_owned(AcceptOptions::default().no_deflate(), move |mut socket| {
        let tx = tx.clone();
        async move {
            let ev = socket.close(CloseCode::new(4001).unwrap(), "done").await;
            let _ = tx.send((ev, socket.ready_state()));
        }
    })
    .await;
    let mut tcp = raw_client(addr).await;
    tokio::time::timeout(LIMIT, async {
        let (_, op, body) = read_frame(&mut tcp).await.unwrap();
        assert_eq!((op, &body[..2]), (8, &4001u16.to_be_bytes()[..]));
        assert_eq!(&body[2..], b"done");
        tcp.write_all(&client_frame(OpCode::Close, true, &body))
            .await
            .unwrap();
        assert!(sees_eof(&mut tcp).await);
        tcp.shutdown().await.unwrap();
        let (ev, state) = rx.recv().await.unwrap();
        assert!(ev.clean, "{ev:?}");
        assert_eq!(ev.code, 4001);
        assert_eq!(state, wsx::ReadyState::Closed);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_close_handle_closes_an_owned_socket_waiting_in_recv() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = serve_owned(AcceptOptions::default().no_deflate(), move |mut socket| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(socket.close_handle());
            while socket.recv().await.is_ok() {}
        }
    })
    .await;
    let mut tcp = raw_client(addr).await;
    tokio::time::timeout(LIMIT, async {
        let handle = rx.recv().await.unwrap();
        handle.close(CloseCode::GOING_AWAY, "shutting down");
        assert_eq!(read_close_code(&mut tcp).await, Some(1001));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn owned_socket_keepalive_fails_a_silent_peer() {
    // A peer that never answers the keepalive PING loses the connection (1006).
    let mut options = AcceptOptions::default().no_deflate();
    options.socket.ping_interval = Some(Duration::from_millis(50));
    options.socket.ping_timeout = Duration::from_millis(50);
    let (addr, mut ended) = echo_server(options).await;
    let mut tcp = raw_client(addr).await;
    tokio::time::timeout(LIMIT, async {
        let (_, op, _) = read_frame(&mut tcp).await.unwrap();
        assert_eq!(op, 9, "a keepalive PING");
        match ended.recv().await.unwrap() {
            Error::Closed { code, .. } => assert_eq!(code, 1006),
            other => panic!("recv ended with {other:?}"),
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn owned_socket_send_waits_while_the_peer_does_not_read() {
    // With the peer reading nothing, sends fill the transport and then the write buffer;
    // the next send waits instead of growing memory.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = serve_owned(AcceptOptions::default().no_deflate(), move |mut socket| {
        let tx = tx.clone();
        async move {
            let body = bytes::Bytes::from(vec![0u8; 64 * 1024]);
            let mut sent = 0usize;
            loop {
                match tokio::time::timeout(Duration::from_secs(1), socket.send(body.clone())).await
                {
                    Ok(Ok(())) => sent += 1,
                    Ok(Err(e)) => panic!("send failed: {e}"),
                    Err(_) => break,
                }
                assert!(sent < 10_000, "sends never waited");
            }
            let _ = tx.send(sent);
        }
    })
    .await;
    let _tcp = raw_client(addr).await;
    let sent = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    // The kernel's buffers take some, the write buffer (1 MiB by default) a few more.
    assert!(sent >= 16, "only {sent} messages went before a send waited");
}

#[tokio::test]
async fn owned_socket_send_to_a_peer_that_reads_nothing_ends_at_the_write_timeout() {
    // A send waiting for a peer that reads nothing must not wait forever: the write-stall
    // timer runs while it waits and drops the connection (the send then fails).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut options = AcceptOptions::default().no_deflate();
    options.socket.write_timeout = Some(Duration::from_millis(300));
    let addr = serve_owned(options, move |mut socket| {
        let tx = tx.clone();
        async move {
            let body = bytes::Bytes::from(vec![0u8; 64 * 1024]);
            let result = loop {
                if let Err(e) = socket.send(body.clone()).await {
                    break e;
                }
            };
            let _ = tx.send((result, socket.ready_state()));
        }
    })
    .await;
    let _tcp = raw_client(addr).await;
    let (err, state) = tokio::time::timeout(LIMIT, rx.recv())
        .await
        .expect("a send waited past the write timeout")
        .unwrap();
    assert!(matches!(err, Error::NotOpen(_)), "{err:?}");
    assert_eq!(state, wsx::ReadyState::Closed);
}

#[tokio::test]
async fn an_owned_client_talks_to_a_socket_server() {
    let addr = common::echo_server(AcceptOptions::default()).await;
    let options = ConnectOptions {
        socket: SocketConfig::default(),
        ..ConnectOptions::default()
    };
    tokio::time::timeout(LIMIT, async {
        let mut client = OwnedSocket::open(&format!("ws://{addr}/"), options)
            .await
            .unwrap();
        // Compression was offered and accepted by default (when built in).
        assert_eq!(
            client.extensions().contains("permessage-deflate"),
            cfg!(feature = "deflate")
        );
        for i in 0..100u32 {
            let text = format!("message {i} ").repeat(i as usize % 7 + 1);
            client.send(text.as_str()).await.unwrap();
            let got = client.recv().await.unwrap();
            assert_eq!(got.kind(), OpCode::Text);
            assert_eq!(got.as_text().unwrap(), text);
        }
        client.send(Message::binary(vec![1, 2, 3])).await.unwrap();
        assert_eq!(&client.recv().await.unwrap().body()[..], &[1, 2, 3]);
        let ev = client.close(CloseCode::NORMAL, "").await;
        assert!(ev.clean, "{ev:?}");
        assert_eq!(ev.code, 1000);
    })
    .await
    .unwrap();
}
