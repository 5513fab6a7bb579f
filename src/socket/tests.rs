//! State tests of the socket over TCP on 127.0.0.1, speaking raw frames on the other end.

use std::time::Duration;

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

/// An echo server over TCP on 127.0.0.1; the test speaks raw frames on the other end.
async fn echo_server() -> tokio::net::TcpStream {
    let (ours, _app) = server_with(|socket| {
        tokio::spawn(async move {
            while let Ok(msg) = socket.recv().await {
                if socket.send(msg).await.is_err() {
                    break;
                }
            }
        })
    })
    .await;
    ours
}

#[tokio::test]
async fn messages_before_a_protocol_error_are_echoed_before_the_close() {
    // Autobahn 3.2 / 4.1.3 / 5.15: a valid message, then a bad frame (RSV2), then a PING,
    // all in one write. The echo must come first, then CLOSE 1002, then EOF.
    let mut peer = echo_server().await;
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
    let mut peer = echo_server().await;
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

/// A server socket over a TCP connection on 127.0.0.1, handed to `app`; the test speaks raw
/// frames on the other end.
async fn server_with(
    app: impl FnOnce(Socket) -> tokio::task::JoinHandle<()>,
) -> (tokio::net::TcpStream, tokio::task::JoinHandle<()>) {
    let (ours, socket, connection) = server_with_connection().await;
    tokio::spawn(connection);
    (ours, app(socket))
}

/// A TCP connection on 127.0.0.1: the server's socket with its unspawned connection, and the
/// test's end, which speaks raw frames.
async fn server_with_connection() -> (tokio::net::TcpStream, Socket, Connection) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ours = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (theirs, _) = listener.accept().await.unwrap();
    let (socket, connection) = Socket::with_connection(
        WsStream::from(theirs),
        Role::Server,
        Negotiated::default(),
        SocketConfig::default(),
        "/",
        "",
    );
    (ours, socket, connection)
}

/// Tasks alive on the current runtime.
fn tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test]
async fn run_with_serves_the_socket_and_its_application_in_one_task() {
    let (mut peer, socket, connection) = server_with_connection().await;
    let before = tasks();
    let served = tokio::spawn(connection.run_with(async move {
        let mut echoed = 0;
        while let Ok(msg) = socket.recv().await {
            if socket.send(msg).await.is_err() {
                break;
            }
            echoed += 1;
        }
        echoed
    }));
    for text in [&b"one"[..], b"two", b"three"] {
        peer.write_all(&client_frame(0x81, text)).await.unwrap();
        assert_eq!(read_small_frame(&mut peer).await, (0x1, text.to_vec()));
    }
    // The connection's I/O and the echo loop are one task.
    assert_eq!(tasks(), before + 1);
    peer.write_all(&client_frame(0x88, &[0x03, 0xe8]))
        .await
        .unwrap();
    assert_eq!(read_small_frame(&mut peer).await, (0x8, vec![0x03, 0xe8]));
    drop(peer);
    // It ends once both have: with what the application returned.
    let echoed = tokio::time::timeout(Duration::from_secs(5), served)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, 3);
}

#[tokio::test]
async fn a_spawned_connection_is_a_task_of_its_own() {
    // The other side of the test above: `from_stream` spawns the I/O, so an application task
    // makes two.
    let before = tasks();
    let (mut peer, _app) = server_with(|socket| {
        tokio::spawn(async move {
            while let Ok(msg) = socket.recv().await {
                let _ = socket.send(msg).await;
            }
        })
    })
    .await;
    peer.write_all(&client_frame(0x81, b"hi")).await.unwrap();
    assert_eq!(read_small_frame(&mut peer).await, (0x1, b"hi".to_vec()));
    assert_eq!(tasks(), before + 2);
}

/// Yields the way many executors' `yield_now` do (tokio's defers the wake instead): wakes its
/// own task from inside its poll and returns `Pending` once.
async fn wake_self_once() {
    let mut woke = false;
    poll_fn(|cx| {
        if std::mem::replace(&mut woke, true) {
            return Poll::Ready(());
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

#[tokio::test]
async fn run_with_lets_other_tasks_run_when_the_application_yields() {
    // A side that wakes itself during its own poll (it yields) gets its next turn through the
    // scheduler, so other tasks run in between rather than the loop of `run_with` spinning on
    // it.
    let (_peer, socket, connection) = server_with_connection().await;
    let ticks = Arc::new(AtomicUsize::new(0));
    let counted = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            counted.fetch_add(1, Ordering::Relaxed);
            wake_self_once().await;
        }
    });
    let seen = ticks.clone();
    let run = tokio::spawn(connection.run_with(async move {
        let start = seen.load(Ordering::Relaxed);
        for _ in 0..100 {
            wake_self_once().await;
        }
        let ran = seen.load(Ordering::Relaxed) - start;
        socket.abort();
        ran
    }));
    let ran = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
    ticker.abort();
    assert!(
        ran >= 50,
        "the other task ran {ran} times during 100 yields"
    );
}

#[tokio::test]
async fn run_with_serves_the_connection_after_the_application_returned() {
    // The application is woken by another task, sends, and returns; the connection goes on
    // (PINGs answered, the close handshake) until it is closed.
    let (mut peer, socket, connection) = server_with_connection().await;
    let (go_tx, go_rx) = tokio::sync::oneshot::channel::<&'static str>();
    let sender = socket.clone();
    let run = tokio::spawn(connection.run_with(async move {
        let text = go_rx.await.unwrap();
        sender.send(text).await.unwrap();
    }));
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = go_tx.send("woken");
    });
    assert_eq!(read_small_frame(&mut peer).await, (0x1, b"woken".to_vec()));
    ping_is_answered(
        &mut peer,
        b"still there",
        "no PONG after the application returned",
    )
    .await;
    assert!(!run.is_finished());
    drop(socket);
    // The last handle is gone: the server closes with 1001.
    let (op, body) = read_small_frame(&mut peer).await;
    assert_eq!((op, &body[..2]), (0x8, &[0x03, 0xe9][..]));
    peer.write_all(&client_frame(0x88, &[0x03, 0xe9]))
        .await
        .unwrap();
    drop(peer);
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
}

/// Counts the polls of the future it wraps.
struct CountPolls<F> {
    future: Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: Future> Future for CountPolls<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.future.as_mut().poll(cx)
    }
}

#[tokio::test]
async fn run_with_does_not_spin_once_the_connection_has_ended() {
    // The connection ends first; then the application closes the socket again (which wakes
    // the ended connection's waker) and works on for a while: the task must sleep meanwhile.
    let (mut peer, socket, connection) = server_with_connection().await;
    let polls = Arc::new(AtomicUsize::new(0));
    let app = async move {
        socket.closed().await;
        socket.close(CloseCode::NORMAL, "again");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let run = tokio::spawn(CountPolls {
        future: Box::pin(connection.run_with(app)),
        polls: polls.clone(),
    });
    peer.write_all(&client_frame(0x88, &[0x03, 0xe8]))
        .await
        .unwrap();
    assert_eq!(read_small_frame(&mut peer).await, (0x8, vec![0x03, 0xe8]));
    drop(peer);
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap();
    let polls = polls.load(Ordering::Relaxed);
    assert!(polls < 20, "polled {polls} times");
}

#[tokio::test]
async fn a_connection_dropped_before_the_end_closes_its_socket() {
    // Its task is gone (never run, dropped, or its application panicked): the socket must not
    // stay OPEN for whoever holds it, and the peer sees the transport closed.
    let (mut peer, socket, connection) = server_with_connection().await;
    let run = tokio::spawn(connection.run_with(async {
        panic!("the application failed");
    }));
    assert!(run.await.unwrap_err().is_panic());
    let ev = tokio::time::timeout(Duration::from_secs(5), socket.closed())
        .await
        .unwrap();
    assert_eq!((ev.code, ev.clean), (1006, false));
    assert_eq!(socket.ready_state(), ReadyState::Closed);
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), peer.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
}

/// Reads one unmasked server frame's opcode and payload (payloads under 126 bytes).
async fn read_small_frame(peer: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    peer.read_exact(&mut h).await.unwrap();
    let mut payload = vec![0u8; usize::from(h[1] & 0x7f)];
    peer.read_exact(&mut payload).await.unwrap();
    (h[0] & 0x0f, payload)
}

/// Sends a PING with `payload` and asserts that its PONG comes back within 5 s (`why` if not).
async fn ping_is_answered(peer: &mut tokio::net::TcpStream, payload: &[u8], why: &str) {
    peer.write_all(&client_frame(0x89, payload)).await.unwrap();
    let (op, echoed) = tokio::time::timeout(Duration::from_secs(5), read_small_frame(peer))
        .await
        .expect(why);
    assert_eq!((op, &echoed[..]), (0xa, payload));
}

#[tokio::test]
async fn a_ping_is_answered_while_the_application_is_away_from_recv() {
    // The application takes one message and then stays away from `recv`: the connection is
    // still read, and the PING answered, meanwhile (whoever read the message must leave the
    // transport's next readiness to someone who will act on it).
    let (got_tx, got_rx) = tokio::sync::oneshot::channel();
    let (mut peer, app) = server_with(|socket| {
        tokio::spawn(async move {
            let msg = socket.recv().await.unwrap();
            let _ = got_tx.send(msg);
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        })
    })
    .await;
    // Give the application time to wait in `recv` first.
    tokio::time::sleep(Duration::from_millis(50)).await;
    peer.write_all(&client_frame(0x81, b"first")).await.unwrap();
    let msg = got_rx.await.unwrap();
    assert_eq!(msg.as_text(), Some("first"));
    ping_is_answered(
        &mut peer,
        b"are you there",
        "the PING was not answered while the application was away",
    )
    .await;
    app.abort();
}

#[tokio::test]
async fn a_dropped_recv_hands_reading_back_to_the_driver() {
    // A `recv` given up on (a timeout) leaves nobody waiting for messages; the connection is
    // still read, so a PING is answered though nobody calls `recv` any more.
    let (waited_tx, waited_rx) = tokio::sync::oneshot::channel();
    let (mut peer, app) = server_with(|socket| {
        tokio::spawn(async move {
            let r = tokio::time::timeout(Duration::from_millis(50), socket.recv()).await;
            assert!(r.is_err(), "nothing was sent yet");
            let _ = waited_tx.send(());
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        })
    })
    .await;
    waited_rx.await.unwrap();
    ping_is_answered(
        &mut peer,
        b"hello?",
        "the PING was not answered after the recv was dropped",
    )
    .await;
    app.abort();
}

#[tokio::test]
async fn two_handles_waiting_in_recv_both_get_a_message() {
    // Both wait with nothing queued. Whichever gets the first message, the other must still
    // be woken for the second.
    let (results_tx, mut results_rx) = tokio::sync::mpsc::unbounded_channel();
    let (mut peer, app) = server_with(|socket| {
        tokio::spawn(async move {
            let mut waiting = Vec::new();
            for _ in 0..2 {
                let s = socket.clone();
                let tx = results_tx.clone();
                waiting.push(tokio::spawn(async move {
                    let _ = tx.send(s.recv().await.map(|m| m.into_body()));
                }));
                tokio::task::yield_now().await;
            }
            for w in waiting {
                let _ = w.await;
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        })
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    peer.write_all(&client_frame(0x82, b"one")).await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), results_rx.recv())
        .await
        .expect("no receiver got the first message")
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    peer.write_all(&client_frame(0x82, b"two")).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), results_rx.recv())
        .await
        .expect("the other receiver was never woken for the second message")
        .unwrap()
        .unwrap();
    assert_eq!((&first[..], &second[..]), (&b"one"[..], &b"two"[..]));
    app.abort();
}

/// Reads one unmasked server frame: its first byte and its payload (any length under 64 KiB).
#[cfg(feature = "deflate")]
async fn read_frame(peer: &mut tokio::net::TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    peer.read_exact(&mut h).await.unwrap();
    let len = match h[1] & 0x7f {
        126 => usize::from(peer.read_u16().await.unwrap()),
        n => usize::from(n),
    };
    let mut payload = vec![0u8; len];
    peer.read_exact(&mut payload).await.unwrap();
    (h[0], payload)
}

#[cfg(feature = "deflate")]
#[tokio::test]
async fn a_prepared_message_is_compressed_once_for_sockets_without_context_takeover() {
    use crate::proto::deflate::{decompress_message, DeflateConfig, DeflateParams};

    let text = "{\"user\":\"alice\",\"text\":\"hello room\"},".repeat(30);
    let prepared = PreparedMessage::new(text.clone()).unwrap();
    let no_ctx = DeflateParams {
        server_no_context_takeover: true,
        ..DeflateParams::default()
    };
    let small_window = DeflateParams {
        server_max_window_bits: 10,
        ..no_ctx
    };
    let mut frames = Vec::new();
    for params in [no_ctx, no_ctx, DeflateParams::default(), small_window] {
        let (mut peer, socket) = deflate_server(params).await;
        socket.send_prepared(&prepared).await.unwrap();
        frames.push(read_frame(&mut peer).await);
    }
    for (b0, payload) in &frames {
        assert_eq!(*b0, 0x80 | 0x40 | 0x1, "FIN, RSV1, TEXT");
        assert!(payload.len() < text.len() / 4);
        let mut out = bytes::BytesMut::new();
        decompress_message(payload, usize::MAX, &mut out).unwrap();
        assert_eq!(out, text.as_bytes());
    }
    // The two sockets without context takeover got the same bytes, compressed once; the one
    // with a 10-bit window needed its own; the one with context takeover compressed it itself.
    assert_eq!(frames[0], frames[1]);
    assert_eq!(prepared.compressions(), 2);
    let defaults = DeflateConfig::default();
    let settings = (defaults.compressor_window_bits, 1, defaults.mem_level);
    let a = prepared.compressed_frame(settings).unwrap();
    let b = prepared.clone().compressed_frame(settings).unwrap();
    assert_eq!(a.as_ptr(), b.as_ptr(), "shared, not copied");
    assert_eq!(prepared.compressions(), 2);

    // A message that must not be compressed is sent as the plain frame everywhere.
    let plain = PreparedMessage::new(Message::text(text.clone()).with_compress(false)).unwrap();
    let (mut peer, socket) = deflate_server(no_ctx).await;
    socket.send_prepared(&plain).await.unwrap();
    assert_eq!(plain.compressions(), 0);
    let (b0, payload) = read_frame(&mut peer).await;
    assert_eq!((b0, payload), (0x81, text.into_bytes()));
}

/// A server socket with permessage-deflate `params` (default settings) over TCP on 127.0.0.1,
/// and the raw other end.
#[cfg(feature = "deflate")]
async fn deflate_server(
    params: crate::proto::deflate::DeflateParams,
) -> (tokio::net::TcpStream, Socket) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (theirs, _) = listener.accept().await.unwrap();
    let negotiated = Negotiated {
        deflate: Some(params),
        ..Negotiated::default()
    };
    let socket = Socket::from_stream(
        WsStream::from(theirs),
        Role::Server,
        negotiated,
        SocketConfig::default(),
        "/",
        "",
    );
    (peer, socket)
}
