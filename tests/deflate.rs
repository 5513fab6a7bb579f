//! permessage-deflate between our client and our server, over real sockets, in every parameter
//! combination; and a compressed message that inflates past the limit.

mod common;

use bytes::BytesMut;
use common::*;
use tokio::io::AsyncWriteExt;
use wsx::proto::{write_frame, FrameHeader, OpCode, RSV1};
use wsx::{AcceptOptions, CloseCode, ConnectOptions, DeflateConfig, Socket};

fn configs() -> Vec<DeflateConfig> {
    let mut out = Vec::new();
    for server_nct in [false, true] {
        for client_nct in [false, true] {
            for (smwb, cmwb) in [
                (None, None),
                (Some(9), Some(9)),
                (Some(12), None),
                (None, Some(10)),
                (Some(8), Some(8)),
            ] {
                out.push(DeflateConfig {
                    server_no_context_takeover: server_nct,
                    client_no_context_takeover: client_nct,
                    server_max_window_bits: smwb,
                    client_max_window_bits: cmwb,
                    ..DeflateConfig::default()
                });
            }
        }
    }
    out
}

/// Deterministic message bodies: compressible text and random bytes, many sizes.
fn bodies(seed: u64) -> Vec<Vec<u8>> {
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..24)
        .map(|i| {
            let len = (next() % [10, 200, 5_000, 70_000][i % 4]) as usize;
            if i % 3 == 0 {
                (0..len).map(|_| next() as u8).collect()
            } else {
                let words: [&[u8]; 4] =
                    [b"{\"id\":1,", b"\"msg\":\"hello\",", b"\"ok\":true}", b" "];
                let mut v = Vec::with_capacity(len);
                while v.len() < len {
                    v.extend_from_slice(words[(next() % 4) as usize]);
                }
                v.truncate(len);
                v
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_server_interop_in_every_combination() {
    tokio::time::timeout(std::time::Duration::from_secs(120), async {
        let server_configs = configs();
        let client_configs = configs();
        for (si, server) in server_configs.iter().enumerate().step_by(3) {
            let addr = echo_server(AcceptOptions {
                deflate: Some(server.clone()),
                ..AcceptOptions::default()
            })
            .await;
            for (ci, client) in client_configs.iter().enumerate() {
                let opts = ConnectOptions {
                    deflate: Some(client.clone()),
                    ..ConnectOptions::default()
                };
                let socket = Socket::open(&format!("ws://{addr}/"), opts).await.unwrap();
                assert!(
                    socket.extensions().starts_with("permessage-deflate"),
                    "server {si} client {ci}: {:?}",
                    socket.extensions()
                );
                let sent = bodies((si * 100 + ci) as u64);
                for body in &sent {
                    socket.send(body.clone()).await.unwrap();
                }
                let mut compressed = 0;
                for body in &sent {
                    let m = socket.recv().await.unwrap();
                    assert_eq!(&m.body()[..], &body[..], "server {si} client {ci}");
                    compressed += usize::from(m.compress());
                }
                assert!(
                    compressed > 0,
                    "server {si} client {ci}: nothing came back compressed"
                );
                socket.close(CloseCode::NORMAL, "").await;
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn no_compression_when_either_side_declines() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default().no_deflate()).await;
        let socket = Socket::open(&format!("ws://{addr}/"), ConnectOptions::default())
            .await
            .unwrap();
        assert_eq!(socket.extensions(), "");
        socket.send("x".repeat(1000)).await.unwrap();
        assert!(!socket.recv().await.unwrap().compress());
        let addr = echo_server(AcceptOptions::default()).await;
        let socket = Socket::open(
            &format!("ws://{addr}/"),
            ConnectOptions::default().no_deflate(),
        )
        .await
        .unwrap();
        assert_eq!(socket.extensions(), "");
        socket.send("y".repeat(1000)).await.unwrap();
        assert!(!socket.recv().await.unwrap().compress());
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn per_message_opt_out_and_threshold() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        let socket = Socket::open(&format!("ws://{addr}/"), ConnectOptions::default())
            .await
            .unwrap();
        // Below the threshold: sent and echoed uncompressed.
        socket.send("tiny").await.unwrap();
        assert!(!socket.recv().await.unwrap().compress());
        // Large and compressible: compressed both ways.
        socket.send("z".repeat(10_000)).await.unwrap();
        assert!(socket.recv().await.unwrap().compress());
        // Opted out on send: the server's echo is still compressed by the server's choice,
        // but our frame was not (checked through a raw server below).
        socket
            .send(wsx::Message::text("q".repeat(10_000)).with_compress(false))
            .await
            .unwrap();
        assert_eq!(socket.recv().await.unwrap().len(), 10_000);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn compressed_bomb_is_stopped_with_1009() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default().max_payload(1 << 20)).await;
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = common::upgrade_request("/", "Sec-WebSocket-Extensions: permessage-deflate\r\n");
        tcp.write_all(req.as_bytes()).await.unwrap();
        let head = read_head(&mut tcp).await;
        assert!(
            head.to_ascii_lowercase().contains("permessage-deflate"),
            "{head}"
        );
        // 16 MiB of zeros compress to a few dozen KiB.
        let mut deflated = BytesMut::new();
        wsx::proto::deflate::compress_message(&vec![0u8; 16 << 20], 1, &mut deflated).unwrap();
        assert!(deflated.len() < 200_000);
        let mut h = FrameHeader::new(OpCode::Binary, deflated.len() as u64, Some([1, 2, 3, 4]));
        h.rsv = RSV1;
        let mut frame = BytesMut::new();
        write_frame(h, &deflated, &mut frame);
        tcp.write_all(&frame).await.unwrap();
        assert_eq!(read_close_code(&mut tcp).await, Some(1009));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn memory_per_connection_with_and_without_compression() {
    tokio::time::timeout(LIMIT, async {
        let addr = echo_server(AcceptOptions::default()).await;
        let plain = Socket::open(
            &format!("ws://{addr}/"),
            ConnectOptions::default().no_deflate(),
        )
        .await
        .unwrap();
        let deflate = Socket::open(&format!("ws://{addr}/"), ConnectOptions::default())
            .await
            .unwrap();
        let low = Socket::open(
            &format!("ws://{addr}/"),
            ConnectOptions {
                deflate: Some(DeflateConfig::low_memory()),
                ..ConnectOptions::default()
            },
        )
        .await
        .unwrap();
        // Negotiated but unused: no compression state yet.
        assert_eq!(deflate.memory_usage(), 0);
        for s in [&plain, &deflate, &low] {
            s.send("m".repeat(4096)).await.unwrap();
            s.recv().await.unwrap();
        }
        let (p, d, l) = (
            plain.memory_usage(),
            deflate.memory_usage(),
            low.memory_usage(),
        );
        println!("memory per connection: plain {p} B, deflate {d} B, low_memory {l} B");
        assert_eq!(p, 0);
        assert!(
            d > 100_000,
            "context takeover keeps compressor and decompressor: {d}"
        );
        assert!(l > 0, "used: {l}");
        // Without context takeover nothing needs keeping: after low_memory's 100 ms quiet
        // period the connection gives its compressor and decompressor back.
        let start = std::time::Instant::now();
        while low.memory_usage() > 256 && start.elapsed() < std::time::Duration::from_secs(5) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // (What stays is at most the small read buffer a connection keeps for its next read.)
        let left = low.memory_usage();
        assert!(
            left <= 256,
            "released after the quiet period: {left} (was {l})"
        );
        // Still usable: the next message makes new streams.
        low.send("m".repeat(4096)).await.unwrap();
        assert_eq!(
            low.recv().await.unwrap().as_text(),
            Some("m".repeat(4096).as_str())
        );
    })
    .await
    .unwrap();
}
