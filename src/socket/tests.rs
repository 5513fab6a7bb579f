//! State tests of the socket over an in-memory pipe, speaking raw frames on the other end.

use std::time::Duration;

use bytes::BytesMut;

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A masked client frame.
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let key = [7, 1, 9, 3];
    let mut out = vec![b0, 0x80 | payload.len() as u8];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// An echo server over one end of a pipe; the test speaks raw frames on the other.
fn echo_server() -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let stream = WsStream::from_transport(theirs, BytesMut::new());
    let socket = Socket::from_stream(
        stream,
        Role::Server,
        Negotiated::default(),
        SocketConfig::default(),
        "/",
        "",
    );
    tokio::spawn(async move {
        while let Ok(msg) = socket.recv().await {
            if socket.send(msg).await.is_err() {
                break;
            }
        }
    });
    ours
}

#[tokio::test]
async fn messages_before_a_protocol_error_are_echoed_before_the_close() {
    // Autobahn 3.2 / 4.1.3 / 5.15: a valid message, then a bad frame (RSV2), then a PING,
    // all in one write. The echo must come first, then CLOSE 1002, then EOF.
    let mut peer = echo_server();
    let mut wire = client_frame(0x81, b"Hello");
    wire.extend(client_frame(0xa1, b"Hello"));
    wire.extend(client_frame(0x89, b""));
    peer.write_all(&wire).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got[..7], b"\x81\x05Hello");
    assert_eq!((got[7], &got[9..11]), (0x88, &[0x03, 0xea][..]));
}

#[tokio::test]
async fn a_protocol_error_with_nothing_pending_fails_at_once() {
    // Autobahn 6.4.x: invalid UTF-8 inside a frame still arriving fails the connection
    // without waiting for the rest of the frame.
    let mut peer = echo_server();
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A header announcing 100 bytes, then 3 of them: "ok" and 0xff.
    let key = [7u8, 1, 9, 3];
    let mut wire = vec![0x81, 0x80 | 100];
    wire.extend_from_slice(&key);
    wire.extend([b'o' ^ key[0], b'k' ^ key[1], 0xff ^ key[2]]);
    peer.write_all(&wire).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got[0], &got[2..4]), (0x88, &[0x03, 0xef][..]));
}
