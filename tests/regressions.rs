//! One test per defect that was fixed, named after it; each failed before its fix.

mod common;

use std::time::Duration;

use common::{client_frame, raw_client, read_frame, serve, LIMIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsx::{AcceptOptions, CloseCode, ConnectOptions, OpCode, Socket, WeakSocket};

/// Failing a connection (1009 here) while the client is still sending must not lose our CLOSE:
/// the server half-closes after it and drains the client's input until EOF, so the kernel never
/// answers the client with a reset.
#[tokio::test]
async fn failing_a_connection_does_not_lose_our_close_frame() {
    tokio::time::timeout(LIMIT, async {
        let options = AcceptOptions::default().max_payload(1 << 20);
        let addr = serve(options, |socket| async move {
            while socket.recv().await.is_ok() {}
        })
        .await;
        let mut tcp = raw_client(addr).await;
        // 32 MiB in 4 KiB fragments of one message (more than the kernel buffers hold): over the
        // limit after 1 MiB. Written in full before reading anything, as a client busy
        // uploading would.
        let chunk = vec![0x5au8; 4096];
        let mut wire = client_frame(OpCode::Binary, false, &chunk);
        for _ in 1..8191 {
            wire.extend(client_frame(OpCode::Continue, false, &chunk));
        }
        wire.extend(client_frame(OpCode::Continue, true, &chunk));
        tcp.write_all(&wire)
            .await
            .expect("the server read everything: no reset while writing");
        let (_, op, payload) = read_frame(&mut tcp)
            .await
            .expect("a CLOSE frame, not a reset");
        assert_eq!(op, 8);
        assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
        // Then a clean EOF (the server's half-close), not ECONNRESET.
        let mut rest = [0u8; 64];
        let n = tcp.read(&mut rest).await.expect("EOF, not a reset");
        assert_eq!(n, 0);
    })
    .await
    .expect("bounded");
}

/// The same after a completed close handshake on the server: the client's bytes sent after its
/// CLOSE do not make the server reset the connection before the client read the answer.
#[tokio::test]
async fn server_close_handshake_half_closes_instead_of_resetting() {
    tokio::time::timeout(LIMIT, async {
        let addr = serve(AcceptOptions::default(), |socket| async move {
            while socket.recv().await.is_ok() {}
        })
        .await;
        let mut tcp = raw_client(addr).await;
        let mut wire = client_frame(OpCode::Close, true, b"\x03\xe8");
        // Junk after the CLOSE (a misbehaving client), more than the kernel buffers hold: left
        // unread, it would make the server's kernel reset the connection.
        wire.extend(vec![0u8; 32 << 20]);
        tcp.write_all(&wire)
            .await
            .expect("the server drained its input: no reset while writing");
        let (_, op, payload) = read_frame(&mut tcp).await.expect("the CLOSE answer");
        assert_eq!((op, &payload[..]), (8, &b"\x03\xe8"[..]));
        let mut rest = [0u8; 64];
        assert_eq!(tcp.read(&mut rest).await.expect("EOF, not a reset"), 0);
    })
    .await
    .expect("bounded");
}

/// The server's answer to a peer's CLOSE echoes its code and its reason, as fibjs does.
#[tokio::test]
async fn close_reply_echoes_the_peers_code_and_reason() {
    tokio::time::timeout(LIMIT, async {
        let addr = common::echo_server(AcceptOptions::default()).await;
        let mut tcp = raw_client(addr).await;
        tcp.write_all(&client_frame(OpCode::Close, true, b"\x0f\xa0see you"))
            .await
            .unwrap();
        let (_, op, payload) = read_frame(&mut tcp).await.unwrap();
        assert_eq!((op, &payload[..]), (8, &b"\x0f\xa0see you"[..]));
    })
    .await
    .expect("bounded");
}

/// Waits until every weak handle is dead (the sockets were freed), or gives up after 5 s.
async fn all_freed(weak: &std::sync::Mutex<Vec<WeakSocket>>) -> usize {
    for _ in 0..100 {
        let alive = weak
            .lock()
            .unwrap()
            .iter()
            .filter(|w| w.upgrade().is_some())
            .count();
        if alive == 0 {
            return 0;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    weak.lock()
        .unwrap()
        .iter()
        .filter(|w| w.upgrade().is_some())
        .count()
}

/// A socket with callbacks but no `on_close` (here only `on_message`, whose closure holds the
/// socket itself) is freed once it closes: client and server side, also when the client closes
/// inside `on_open`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_with_callbacks_but_no_on_close_is_freed() {
    tokio::time::timeout(LIMIT, async {
        let server_sockets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let registry = server_sockets.clone();
        let addr = serve(AcceptOptions::default(), move |socket| {
            let registry = registry.clone();
            async move {
                registry.lock().unwrap().push(socket.downgrade());
                let echo = socket.clone();
                socket.on_message(move |msg| {
                    let _ = echo.try_send(msg);
                });
            }
        })
        .await;
        let url = format!("ws://{addr}/");
        let client_sockets = std::sync::Mutex::new(Vec::new());
        const N: usize = 20;
        for i in 0..N {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let socket = if i % 2 == 0 {
                // Closed by the client after one echo.
                let socket = Socket::open(&url, ConnectOptions::default()).await.unwrap();
                let me = socket.clone();
                socket.on_message(move |_| {
                    me.close(CloseCode::NORMAL, "");
                    let _ = tx.send(());
                });
                socket.send("ping").await.unwrap();
                socket
            } else {
                // Closed inside `on_open`.
                let socket = Socket::connect(&url, ConnectOptions::default());
                let me = socket.clone();
                socket.on_open(move || {
                    me.close(CloseCode::NORMAL, "");
                    let _ = tx.send(());
                });
                let me = socket.clone();
                socket.on_message(move |_| drop(me.clone()));
                socket
            };
            rx.recv().await.unwrap();
            socket.closed().await;
            client_sockets.lock().unwrap().push(socket.downgrade());
            drop(socket);
        }
        assert_eq!(server_sockets.lock().unwrap().len(), N);
        assert_eq!(
            all_freed(&client_sockets).await,
            0,
            "client sockets left alive"
        );
        assert_eq!(
            all_freed(&server_sockets).await,
            0,
            "server sockets left alive"
        );
    })
    .await
    .expect("bounded");
}
