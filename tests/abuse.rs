//! One test per attack: each asserts what happens to the attacking connection and that a
//! well-behaved client is still served meanwhile.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wsx::{AcceptOptions, CloseCode, ConnectOptions, OpCode, Socket};

/// A good client does one echo round trip.
async fn good_client_works(addr: std::net::SocketAddr) {
    let socket = Socket::open(&format!("ws://{addr}/"), ConnectOptions::default())
        .await
        .unwrap();
    socket.send("still there?").await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), socket.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.as_text(), Some("still there?"));
    socket.close(CloseCode::NORMAL, "").await;
}

/// Sends `bytes` in writes of `chunk` bytes and returns the status line of the answer.
async fn status_of(addr: std::net::SocketAddr, bytes: &[u8], chunk: usize) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    for part in bytes.chunks(chunk.max(1)) {
        if tcp.write_all(part).await.is_err() {
            break;
        }
    }
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut tcp))
        .await
        .unwrap_or_default();
    head.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn slowloris_handshake_is_dropped() {
    tokio::time::timeout(LIMIT, async {
        let options = AcceptOptions {
            handshake_timeout: Duration::from_millis(500),
            ..AcceptOptions::default()
        };
        let addr = echo_server(options).await;
        let mut slow = Vec::new();
        for _ in 0..20 {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ")
                .await
                .unwrap();
            slow.push(tcp);
        }
        good_client_works(addr).await;
        for tcp in &mut slow {
            let _ = tcp.write_all(b"a").await;
            assert!(sees_eof(tcp).await, "a slow handshake must be dropped");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn header_floods_get_431() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
        assert!(
            status_of(addr, common::upgrade_request("/", &many).as_bytes(), 4096)
                .await
                .starts_with("HTTP/1.1 431")
        );
        let huge = format!("X-Big: {}\r\n", "b".repeat(64 * 1024));
        assert!(
            status_of(addr, common::upgrade_request("/", &huge).as_bytes(), 4096)
                .await
                .starts_with("HTTP/1.1 431")
        );
        good_client_works(addr).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn dribbled_handshake_is_parsed_in_linear_time() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        // 15 KiB of headers, one byte per write: a parser that rescans from the start each time
        // would do ~100 million steps.
        let filler: String = (0..50)
            .map(|i| format!("X-F{i}: {}\r\n", "f".repeat(280)))
            .collect();
        let req = common::upgrade_request("/", &filler);
        assert!(req.len() < 16 * 1024);
        let started = Instant::now();
        let status = status_of(addr, req.as_bytes(), 1).await;
        assert!(status.starts_with("HTTP/1.1 101"), "{status}");
        assert!(started.elapsed() < Duration::from_secs(10));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pathological_protocol_and_extension_headers_are_cheap() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default().protocol("chat")).await;
        let commas = ",".repeat(14_000);
        let protos = format!("Sec-WebSocket-Protocol: {commas}x\r\n");
        let exts = format!(
            "Sec-WebSocket-Extensions: permessage-deflate;{}\r\n",
            ";".repeat(14_000)
        );
        for extra in [protos, exts] {
            let started = Instant::now();
            let status =
                status_of(addr, common::upgrade_request("/", &extra).as_bytes(), 8192).await;
            assert!(status.starts_with("HTTP/1.1 "), "{status}");
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        good_client_works(addr).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn endless_continuations_and_tiny_fragment_floods_are_cut_off() {
    tokio::time::timeout(LIMIT, async {
        let mut options = AcceptOptions::default().no_deflate();
        options.socket.max_fragments = 1000;
        let addr = echo_server(options).await;
        let mut tcp = raw_client(addr).await;
        let mut flood = client_frame(OpCode::Binary, false, b"x");
        let empty = client_frame(OpCode::Continue, false, b"");
        for _ in 0..5000 {
            flood.extend_from_slice(&empty);
        }
        let _ = tcp.write_all(&flood).await;
        assert_eq!(read_close_code(&mut tcp).await, Some(1009));
        good_client_works(addr).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn huge_length_headers_are_refused_before_allocating() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default().no_deflate()).await;
        // 2^63: the top bit may not be set.
        let mut tcp = raw_client(addr).await;
        tcp.write_all(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4])
            .await
            .unwrap();
        assert_eq!(read_close_code(&mut tcp).await, Some(1002));
        // 2^62: valid encoding, far over the limit.
        let mut tcp = raw_client(addr).await;
        tcp.write_all(&[0x82, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4])
            .await
            .unwrap();
        assert_eq!(read_close_code(&mut tcp).await, Some(1009));
        good_client_works(addr).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn invalid_utf8_at_every_position_is_1007() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default().no_deflate()).await;
        let text = "héllo wörld, κόσμε".as_bytes().to_vec();
        for pos in 0..text.len() {
            let mut bad = text.clone();
            bad[pos] = 0xff;
            let mut tcp = raw_client(addr).await;
            // Half in the first fragment, half in the second.
            let (a, b) = bad.split_at(bad.len() / 2);
            let mut wire = client_frame(OpCode::Text, false, a);
            wire.extend(client_frame(OpCode::Continue, true, b));
            tcp.write_all(&wire).await.unwrap();
            assert_eq!(read_close_code(&mut tcp).await, Some(1007), "0xff at {pos}");
        }
        good_client_works(addr).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn ping_flood_from_a_peer_that_never_reads_stays_bounded() {
    tokio::time::timeout(LIMIT, async {
        let peak = Arc::new(AtomicUsize::new(0));
        let p = peak.clone();
        let mut options = AcceptOptions::default().no_deflate();
        options.socket.write_buffer_limit = 64 * 1024;
        let addr = serve(options, move |socket| {
            let p = p.clone();
            async move {
                let watched = socket.clone();
                tokio::spawn(async move {
                    while watched.ready_state() != wsx::ReadyState::Closed {
                        p.fetch_max(watched.memory_usage(), Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                });
                while let Ok(m) = socket.recv().await {
                    let _ = socket.send(m).await;
                }
            }
        })
        .await;
        let mut tcp = raw_client(addr).await;
        let ping = client_frame(OpCode::Ping, true, &[7u8; 125]);
        let burst: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 2000)
            .collect();
        // Write pings for a while without ever reading a PONG.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            match tokio::time::timeout(Duration::from_millis(200), tcp.write_all(&burst)).await {
                Ok(Ok(())) => {}
                _ => break, // the server stopped reading: TCP pushes back
            }
        }
        let peak = peak.load(Ordering::Relaxed);
        assert!(peak < 1 << 20, "the server queued {peak} bytes of PONGs");
        good_client_works(addr).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn close_flood_is_answered_once() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default().no_deflate()).await;
        let mut tcp = raw_client(addr).await;
        let close = client_frame(OpCode::Close, true, &1000u16.to_be_bytes());
        let flood: Vec<u8> = close
            .iter()
            .copied()
            .cycle()
            .take(close.len() * 500)
            .collect();
        let _ = tcp.write_all(&flood).await;
        assert_eq!(read_close_code(&mut tcp).await, Some(1000));
        // Exactly one CLOSE comes back, then the server ends TCP.
        assert!(read_frame(&mut tcp).await.is_none());
        good_client_works(addr).await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn many_idle_connections_do_not_block_others() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let addr = echo_server(AcceptOptions::default()).await;
        let mut idle = Vec::new();
        for _ in 0..300 {
            idle.push(
                Socket::open(&format!("ws://{addr}/"), ConnectOptions::default())
                    .await
                    .unwrap(),
            );
        }
        good_client_works(addr).await;
        for s in &idle {
            assert_eq!(s.ready_state(), wsx::ReadyState::Open);
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_reader_that_never_reads_is_dropped_by_the_write_timeout() {
    tokio::time::timeout(LIMIT, async {
        let mut options = AcceptOptions::default().no_deflate();
        options.socket.write_timeout = Some(Duration::from_millis(500));
        options.socket.write_buffer_limit = 256 * 1024;
        let addr = serve(options, |socket| async move {
            while let Ok(m) = socket.recv().await {
                if m.as_text() == Some("flood me") {
                    // Push data at a client that reads nothing.
                    let chunk = bytes::Bytes::from(vec![1u8; 64 * 1024]);
                    while socket.send(chunk.clone()).await.is_ok() {}
                } else if socket.send(m).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let mut tcp = raw_client(addr).await; // asks for data, then never reads
        tcp.write_all(&client_frame(OpCode::Text, true, b"flood me"))
            .await
            .unwrap();
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The server gave up on it: the connection is reset or closed.
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0;
        loop {
            match tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => total += n,
                Err(_) => panic!("the server kept the stalled connection open"),
            }
        }
        assert!(total < 64 << 20, "read {total} bytes");
        assert!(started.elapsed() < Duration::from_secs(15));
        good_client_works(addr).await;
    })
    .await
    .unwrap();
}
