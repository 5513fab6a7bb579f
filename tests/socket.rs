//! Socket behaviour (SPEC §2) over real loopback connections.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use wsx::{AcceptOptions, CloseCode, ConnectOptions, Error, Message, OpCode, ReadyState, Socket};

fn url(addr: std::net::SocketAddr, path: &str) -> String {
    format!("ws://{addr}{path}")
}

#[tokio::test]
async fn echo_text_and_binary_with_states() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        let socket = Socket::connect(
            &url(addr, "/echo?x=1"),
            ConnectOptions::default().origin("http://o.test"),
        );
        assert_eq!(socket.ready_state(), ReadyState::Connecting);
        assert!(matches!(
            socket.send("too early").await,
            Err(Error::NotOpen(ReadyState::Connecting))
        ));
        socket.send("never").await.unwrap_err();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Mutex::new(Some(tx));
        socket.on_open(move || {
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
        });
        rx.await.unwrap();
        assert_eq!(socket.ready_state(), ReadyState::Open);
        assert_eq!(socket.url(), url(addr, "/echo?x=1"));
        assert_eq!(socket.origin(), "http://o.test");
        socket.send("héllo").await.unwrap();
        socket
            .send(Bytes::from_static(&[0, 1, 2, 255]))
            .await
            .unwrap();
        let m = socket.recv().await.unwrap();
        assert_eq!((m.kind(), m.as_text()), (OpCode::Text, Some("héllo")));
        let m = socket.recv().await.unwrap();
        assert_eq!(
            (m.kind(), &m.body()[..]),
            (OpCode::Binary, &[0u8, 1, 2, 255][..])
        );
        socket.close(CloseCode::NORMAL, "");
        assert_eq!(socket.ready_state(), ReadyState::Closing);
        let ev = socket.closed().await;
        assert_eq!((ev.code, ev.clean), (CloseCode::NORMAL.as_u16(), true));
        assert_eq!(socket.ready_state(), ReadyState::Closed);
        assert!(matches!(socket.send("late").await, Err(Error::NotOpen(_))));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn thousand_messages_in_order() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        let socket = Socket::open(&url(addr, "/"), ConnectOptions::default())
            .await
            .unwrap();
        for i in 0..1000 {
            socket.send(format!("m{i}")).await.unwrap();
        }
        for i in 0..1000 {
            assert_eq!(
                socket.recv().await.unwrap().as_text(),
                Some(format!("m{i}").as_str())
            );
        }
        socket.close(CloseCode::NORMAL, "").await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_connections_two_hundred_messages_byte_exact() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let addr = echo_server(AcceptOptions::default()).await;
        let mut tasks = Vec::new();
        for c in 0..50u32 {
            tasks.push(tokio::spawn(async move {
                let socket = Socket::open(&url(addr, "/"), ConnectOptions::default())
                    .await
                    .unwrap();
                let (reader, writer) = socket.split();
                let send = tokio::spawn(async move {
                    for i in 0..200u32 {
                        let len = ((c * 7919 + i * 104729) % 5000) as usize;
                        let body: Vec<u8> = (0..len).map(|k| (k as u32 ^ c ^ i) as u8).collect();
                        writer.send(body).await.unwrap();
                    }
                    writer
                });
                let mut reader = reader;
                for i in 0..200u32 {
                    let len = ((c * 7919 + i * 104729) % 5000) as usize;
                    let body: Vec<u8> = (0..len).map(|k| (k as u32 ^ c ^ i) as u8).collect();
                    let m = reader.next().await.unwrap().unwrap();
                    assert_eq!(&m.body()[..], &body[..], "conn {c} msg {i}");
                }
                let writer = send.await.unwrap();
                writer.close(CloseCode::NORMAL, "").await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_keep_each_ones_order() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        let socket = Socket::open(&url(addr, "/"), ConnectOptions::default())
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for t in 0..4 {
            let s = socket.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..250 {
                    s.send(format!("{t}:{i}")).await.unwrap();
                }
            }));
        }
        let mut next = [0usize; 4];
        for _ in 0..1000 {
            let m = socket.recv().await.unwrap();
            let (t, i) = m.as_text().unwrap().split_once(':').unwrap();
            let t: usize = t.parse().unwrap();
            assert_eq!(i.parse::<usize>().unwrap(), next[t]);
            next[t] += 1;
        }
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .unwrap();
}

/// Senders on several threads with messages large enough to fill the TCP buffers, so that some
/// writes go straight out from `send`, some are left half-written and some wait for the driver:
/// every sender's messages still arrive whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_large_and_small_senders_stay_byte_exact() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let addr = echo_server(AcceptOptions::default().no_deflate()).await;
        let options = ConnectOptions {
            deflate: None,
            ..ConnectOptions::default()
        };
        let socket = Socket::open(&url(addr, "/"), options).await.unwrap();
        common::send_and_check_order(&socket, 0..4, 0..4, 60, 300_000).await;
        socket.close(CloseCode::NORMAL, "").await;
    })
    .await
    .unwrap();
}

/// The same over an in-memory pipe whose buffer holds only 1 KiB (any transport other than
/// plain TCP goes through the same split, lock-guarded path as TLS): both ends send large and
/// small messages from several tasks while the pipe is nearly always full, and both ends get
/// every message whole and in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nearly_always_full_in_memory_transport_loses_and_reorders_nothing() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let (a, b) = tokio::io::duplex(1024);
        let open = |io, role| {
            Socket::from_stream(
                wsx::WsStream::from_transport(io, bytes::BytesMut::new()),
                role,
                wsx::Negotiated::default(),
                wsx::SocketConfig::default(),
                "ws://pipe/",
                "",
            )
        };
        let client = open(a, wsx::Role::Client);
        let server = open(b, wsx::Role::Server);
        let c = client.clone();
        let client_side =
            tokio::spawn(
                async move { common::send_and_check_order(&c, 0..3, 3..6, 40, 150_000).await },
            );
        common::send_and_check_order(&server, 3..6, 0..3, 40, 150_000).await;
        client_side.await.unwrap();
        client.close(CloseCode::NORMAL, "").await;
        assert!(server.closed().await.clean);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn close_codes_both_ways() {
    tokio::time::timeout(LIMIT, async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let addr = serve(AcceptOptions::default(), move |socket| {
            let tx = tx.clone();
            async move {
                let _ = socket.recv().await;
                let ev = socket.closed().await;
                tx.send((ev.code, ev.reason)).unwrap();
            }
        })
        .await;
        // Codes that may not be sent cannot even be made into a `CloseCode`, so `close` cannot
        // be given one; every code that may be sent (servers need 1001 too) can.
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
            assert_eq!(CloseCode::new(bad), None, "{bad}");
        }
        for good in [1000u16, 1001, 3000, 4999] {
            assert_eq!(
                CloseCode::new(good).map(CloseCode::as_u16),
                Some(good),
                "{good}"
            );
        }
        let socket = Socket::open(&url(addr, "/"), ConnectOptions::default())
            .await
            .unwrap();
        assert_eq!(socket.ready_state(), ReadyState::Open);
        let code = CloseCode::new(4321).unwrap();
        let first = socket.close(code, "bye now").await;
        let again = socket.close(code, "again").await; // a second close is a no-op
        assert_eq!(again, first);
        assert_eq!(rx.recv().await.unwrap(), (4321, "bye now".to_owned()));
        let ev = socket.closed().await;
        assert_eq!(ev.code, 4321);

        // Server-initiated close: the client sees the server's code and reason.
        let addr = serve(AcceptOptions::default(), |socket| async move {
            socket
                .close(CloseCode::new(3001).unwrap(), "server says bye")
                .await;
        })
        .await;
        let socket = Socket::open(&url(addr, "/"), ConnectOptions::default())
            .await
            .unwrap();
        let err = socket.recv().await.unwrap_err();
        assert!(matches!(err, Error::Closed { code: 3001, .. }), "{err}");
        let ev = socket.closed().await;
        assert_eq!(
            (ev.code, ev.reason.as_str(), ev.clean),
            (3001, "server says bye", true)
        );
        // After the peer's close, our close does nothing: how the connection ended stands.
        assert_eq!(socket.close(CloseCode::NORMAL, "").await, ev);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn failed_connect_gives_error_1002_then_close_1006() {
    tokio::time::timeout(LIMIT, async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(Socket::open(&url(addr, "/"), ConnectOptions::default())
            .await
            .is_err());
        let socket = Socket::connect(&url(addr, "/"), ConnectOptions::default());
        let events = Arc::new(Mutex::new(Vec::new()));
        let (e1, e2) = (events.clone(), events.clone());
        socket.on_error(move |e| e1.lock().unwrap().push(format!("error {}", e.code)));
        socket.on_close(move |c| e2.lock().unwrap().push(format!("close {}", c.code)));
        socket.closed().await;
        for _ in 0..100 {
            if events.lock().unwrap().len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            *events.lock().unwrap(),
            vec!["error 1002".to_owned(), "close 1006".to_owned()]
        );
        assert_eq!(socket.ready_state(), ReadyState::Closed);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unknown_scheme_and_non_websocket_path() {
    tokio::time::timeout(LIMIT, async {
        let err = Socket::open("http://127.0.0.1:1/", ConnectOptions::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::UnknownProtocol(ref s) if s == "http"),
            "{err}"
        );
        assert!(err.to_string().contains("unknown protocol"));
        // A plain HTTP server that answers 404.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let _ = read_head(&mut tcp).await;
            let _ = tcp
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
        });
        let err = Socket::open(&url(addr, "/nope"), ConnectOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("404"), "{err}");
        assert_eq!(err.close_code(), CloseCode::PROTOCOL_ERROR);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn ping_is_answered_and_unmasked_frames_are_rejected() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default().no_deflate()).await;
        let mut tcp = raw_client(addr).await;
        tcp.write_all(&client_frame(OpCode::Ping, true, b"are you there"))
            .await
            .unwrap();
        let (fin, op, payload) = read_frame(&mut tcp).await.unwrap();
        assert_eq!((fin, op, &payload[..]), (true, 10, &b"are you there"[..]));
        // An unmasked frame from a client: CLOSE 1002 and the server ends TCP.
        tcp.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
        assert_eq!(read_close_code(&mut tcp).await, Some(1002));
        assert!(sees_eof(&mut tcp).await);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn invalid_close_code_from_peer_becomes_1002() {
    tokio::time::timeout(LIMIT, async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let addr = serve(AcceptOptions::default().no_deflate(), move |socket| {
            let tx = tx.clone();
            async move {
                tx.send(socket.closed().await).unwrap();
            }
        })
        .await;
        let mut tcp = raw_client(addr).await;
        tcp.write_all(&client_frame(OpCode::Close, true, &1005u16.to_be_bytes()))
            .await
            .unwrap();
        assert_eq!(read_close_code(&mut tcp).await, Some(1002));
        assert_eq!(rx.recv().await.unwrap().code, CloseCode::PROTOCOL_ERROR);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn lost_connection_gives_error_then_close_1006() {
    tokio::time::timeout(LIMIT, async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let addr = serve(AcceptOptions::default().no_deflate(), move |socket| {
            let tx = tx.clone();
            async move {
                let err = socket.recv().await.unwrap_err();
                tx.send((err.close_code(), socket.error(), socket.closed().await))
                    .unwrap();
            }
        })
        .await;
        let tcp = raw_client(addr).await;
        drop(tcp);
        let (code, error, closed) = rx.recv().await.unwrap();
        assert_eq!(code, wsx::proto::ABNORMAL);
        assert_eq!(error.unwrap().code, wsx::proto::ABNORMAL);
        assert_eq!((closed.code, closed.clean), (wsx::proto::ABNORMAL, false));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn messages_before_handlers_are_attached_are_not_lost() {
    tokio::time::timeout(LIMIT, async {
        let addr = serve(AcceptOptions::default(), |socket| async move {
            for i in 0..5 {
                socket.send(format!("early {i}")).await.unwrap();
            }
            socket.close(CloseCode::NORMAL, "").await;
        })
        .await;
        let socket = Socket::open(&url(addr, "/"), ConnectOptions::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await; // everything has arrived by now
        let got = Arc::new(Mutex::new(Vec::new()));
        let (g1, g2) = (got.clone(), got.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Mutex::new(Some(tx));
        socket.on_message(move |m| g1.lock().unwrap().push(m.as_text().unwrap().to_owned()));
        socket.on_close(move |c| {
            g2.lock().unwrap().push(format!("close {}", c.code));
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(());
            }
        });
        rx.await.unwrap();
        let got = got.lock().unwrap().clone();
        assert_eq!(
            got,
            vec![
                "early 0",
                "early 1",
                "early 2",
                "early 3",
                "early 4",
                "close 1000"
            ]
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn recv_is_cancel_safe() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        let socket = Socket::open(&url(addr, "/"), ConnectOptions::default())
            .await
            .unwrap();
        let sender = socket.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                sender.send(format!("{i}")).await.unwrap();
                if i % 7 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        let mut expected = 0;
        while expected < 300 {
            tokio::select! {
                m = socket.recv() => {
                    assert_eq!(m.unwrap().as_text().unwrap(), expected.to_string());
                    expected += 1;
                }
                _ = tokio::time::sleep(Duration::from_micros(200)) => {}
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn split_stream_and_sink() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        let socket = Socket::open(&url(addr, "/"), ConnectOptions::default())
            .await
            .unwrap();
        let (mut reader, mut writer) = socket.split();
        writer.send(Message::text("a")).await.unwrap();
        writer.send(Message::binary(vec![1u8, 2])).await.unwrap();
        assert_eq!(reader.next().await.unwrap().unwrap().as_text(), Some("a"));
        assert_eq!(&reader.next().await.unwrap().unwrap().body()[..], &[1, 2]);
        SinkExt::close(&mut writer).await.unwrap();
        assert!(
            reader.next().await.is_none(),
            "a clean close ends the stream"
        );
        assert_eq!(socket.ready_state(), ReadyState::Closed);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn subprotocol_is_negotiated_in_client_order() {
    tokio::time::timeout(LIMIT, async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let options = AcceptOptions::default().protocol("beta").protocol("alpha");
        let addr = serve(options, move |socket| {
            let tx = tx.clone();
            async move {
                tx.send(socket.protocol().to_owned()).unwrap();
            }
        })
        .await;
        let opts = ConnectOptions::default().protocol("alpha").protocol("beta");
        let socket = Socket::open(&url(addr, "/"), opts).await.unwrap();
        assert_eq!(socket.protocol(), "alpha");
        assert_eq!(rx.recv().await.unwrap(), "alpha");
        let socket = Socket::open(&url(addr, "/"), ConnectOptions::default().protocol("gamma"))
            .await
            .unwrap();
        assert_eq!(socket.protocol(), "");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dropping_every_handle_closes_with_1001() {
    tokio::time::timeout(LIMIT, async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let addr = serve(AcceptOptions::default(), move |socket| {
            let tx = tx.clone();
            async move {
                tx.send(socket.closed().await.code).unwrap();
            }
        })
        .await;
        let socket = Socket::open(&url(addr, "/"), ConnectOptions::default())
            .await
            .unwrap();
        drop(socket);
        assert_eq!(rx.recv().await.unwrap(), CloseCode::GOING_AWAY);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn send_waits_when_the_peer_does_not_read() {
    tokio::time::timeout(LIMIT, async {
        // A server that never reads: the client's queue fills and send() must wait.
        let addr = serve(AcceptOptions::default().no_deflate(), |socket| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        })
        .await;
        let mut opts = ConnectOptions::default().no_deflate();
        opts.socket.write_buffer_limit = 64 * 1024;
        opts.socket.recv_queue_limit = 1;
        let socket = Socket::open(&url(addr, "/"), opts).await.unwrap();
        let chunk = Bytes::from(vec![0u8; 64 * 1024]);
        let mut sent = 0usize;
        let blocked = loop {
            match tokio::time::timeout(Duration::from_millis(500), socket.send(chunk.clone())).await
            {
                Ok(r) => {
                    r.unwrap();
                    sent += chunk.len();
                    assert!(sent < 512 << 20, "send never waited");
                }
                Err(_) => break true,
            }
        };
        assert!(blocked);
        assert!(
            socket.memory_usage() < 16 << 20,
            "queued bytes stay bounded"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn try_send_buffered_amount_and_prepared_broadcast() {
    tokio::time::timeout(LIMIT, async {
        // A server that sends one prepared frame to each of its sockets.
        let prepared = wsx::PreparedMessage::new("to everyone").unwrap();
        let frame_ptr = prepared.frame().as_ptr() as usize;
        let p = prepared.clone();
        let addr = serve(AcceptOptions::default(), move |socket| {
            let p = p.clone();
            async move {
                assert_eq!(
                    p.frame().as_ptr() as usize,
                    frame_ptr,
                    "the frame is shared, not copied"
                );
                socket.send_prepared(&p).await.unwrap();
                let _ = socket.recv().await;
            }
        })
        .await;
        for _ in 0..3 {
            let socket = Socket::open(&url(addr, "/"), ConnectOptions::default())
                .await
                .unwrap();
            let m = socket.recv().await.unwrap();
            assert_eq!((m.kind(), m.as_text()), (OpCode::Text, Some("to everyone")));
        }

        // try_send refuses (without queueing) once the buffer is over its limit.
        let addr = serve(AcceptOptions::default().no_deflate(), |socket| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        })
        .await;
        let mut opts = ConnectOptions::default().no_deflate();
        opts.socket.write_buffer_limit = 32 * 1024;
        let socket = Socket::open(&url(addr, "/"), opts).await.unwrap();
        let chunk = Bytes::from(vec![0u8; 16 * 1024]);
        let mut refused = false;
        for _ in 0..10_000 {
            if !socket.try_send(chunk.clone()).unwrap() {
                refused = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(refused, "try_send never reported a full buffer");
        let buffered = socket.buffered_amount();
        assert!(buffered >= 32 * 1024, "{buffered}");
        assert!(!socket.try_send(chunk.clone()).unwrap());
        assert_eq!(
            socket.buffered_amount(),
            buffered,
            "a refused try_send queues nothing"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn messages_that_arrive_with_the_close_are_answered_before_it() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default().no_deflate()).await;
        let mut tcp = raw_client(addr).await;
        let mut wire = Vec::new();
        for text in ["one", "two", "three"] {
            wire.extend(client_frame(OpCode::Text, true, text.as_bytes()));
        }
        wire.extend(client_frame(OpCode::Close, true, &4000u16.to_be_bytes()));
        tcp.write_all(&wire).await.unwrap(); // all in one write
        for text in ["one", "two", "three"] {
            let (_, op, payload) = read_frame(&mut tcp).await.unwrap();
            assert_eq!((op, &payload[..]), (1, text.as_bytes()));
        }
        let (_, op, payload) = read_frame(&mut tcp).await.unwrap();
        assert_eq!((op, &payload[..]), (8, &4000u16.to_be_bytes()[..]));
        assert!(sees_eof(&mut tcp).await);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn ipv6_literal_urls() {
    tokio::time::timeout(LIMIT, async {
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            eprintln!("no IPv6 loopback on this machine; nothing to test");
            return;
        };
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (socket, req) = wsx::accept(tcp, &AcceptOptions::default()).await.unwrap();
            let host = req.headers()["host"].to_str().unwrap().to_owned();
            socket.send(host).await.unwrap();
            let _ = socket.recv().await;
        });
        let url = format!("ws://[::1]:{}/v6?q=1", addr.port());
        let socket = Socket::open(&url, ConnectOptions::default()).await.unwrap();
        let host = socket.recv().await.unwrap();
        assert_eq!(
            host.as_text(),
            Some(format!("[::1]:{}", addr.port()).as_str())
        );
    })
    .await
    .unwrap();
}
