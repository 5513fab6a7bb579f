//! Arbitrary bytes into a server `Protocol` through the path the socket driver ships
//! (`receive_data` / `poll_event` / `take_output` + `on_write` / `handle_timeout` /
//! `receive_eof`), with application calls (send, ping, close, taking messages) and clock
//! jumps between the pieces. Whatever comes in: the receive queue stays within its limits,
//! events come in order (messages, then at most one error, then one close, last), and what the
//! server writes is well-formed server frames that a client `Protocol` accepts, with at most
//! one CLOSE and nothing after it.
#![no_main]
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use wsx::proto::deflate::{DeflateConfig, Inflater};
use wsx::proto::{
    CloseCode, Compression, Config, Decoder, Event, Incoming, Limits, MaskPolicy, OpCode, Protocol,
    ReadyState, Role,
};

#[path = "common.rs"]
mod common;

/// Writes everything `p` queued, as a transport that takes it all would.
fn drain(p: &mut Protocol, dst: &mut BytesMut, now: Instant) {
    let mut out = p.take_output();
    while !out.is_empty() {
        let chunk = out.first_chunk().to_vec();
        assert!(!chunk.is_empty(), "output not empty but its first chunk is");
        dst.extend_from_slice(&chunk);
        out.advance(chunk.len());
    }
    p.on_write(0, true, now);
}

/// Takes the events waiting, checking their order.
fn take_events(p: &mut Protocol, now: Instant, ended: &mut bool, errors: &mut u32) {
    while let Some(event) = p.poll_event(now) {
        assert!(!*ended, "an event after the close: {event:?}");
        match event {
            Event::Message(_) => {}
            Event::Error(_) => *errors += 1,
            Event::Closed(_) => *ended = true,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (cfg, seed, input) = (data[0], data[1], &data[2..]);
    let config = Config {
        limits: Limits {
            max_frame_size: [125, 1024, 65536, 1 << 20][usize::from(cfg & 3)],
            max_message_size: [125, 4096, 65536, 1 << 20][usize::from((cfg >> 2) & 3)],
            max_fragments: [1, 8, 64, 1024][usize::from((cfg >> 4) & 3)],
        },
        ping_interval: Some(Duration::from_secs(5)),
        recv_queue_limit: 4,
        recv_buffer_limit: 64 * 1024,
        ..Config::default()
    };
    let mut now = Instant::now();
    let mut server = Protocol::new(Role::Server, config.clone());
    let mut client = Protocol::new(Role::Client, Config::default());
    let mut client_params = None;
    if cfg & 0x40 != 0 {
        // Negotiate as the two ends would; compression is on only if both agree.
        let deflate = DeflateConfig::default();
        let offer = deflate.client_offer();
        if let Some((server_params, answer)) = deflate.server_negotiate([offer.as_str()]) {
            if let Ok(Some(params)) = deflate.client_accept([answer.as_str()]) {
                server.enable_deflate(server_params, &deflate);
                client.enable_deflate(params, &deflate);
                client_params = Some(params);
            }
        }
    }
    server.open(now);
    client.open(now);

    let mut rng = common::Rng::new(&[seed]);
    let mut wire = BytesMut::new();
    let mut out = BytesMut::new();
    let (mut ended, mut errors) = (false, 0u32);
    for piece in common::chunks(input, &[seed], 1 + usize::from(seed & 0x7f)) {
        wire.extend_from_slice(piece);
        if server.wants_read() {
            server.receive_data(&mut wire, now);
        }
        assert!(server.queued_messages() <= config.recv_queue_limit);
        // Between pieces, sometimes act as the application (or the clock) would.
        let r = rng.next();
        let result = match r % 16 {
            0 => server.send(
                OpCode::Text,
                Bytes::from_static("héllo".as_bytes()),
                Compression::Auto,
            ),
            1 => server.send(
                OpCode::Binary,
                Bytes::from(vec![0x5a; 5000]),
                Compression::Auto,
            ),
            2 => server.ping(Bytes::from_static(b"p")),
            3 => {
                server.close(CloseCode::NORMAL, "bye", now);
                Ok(())
            }
            4..=7 => {
                take_events(&mut server, now, &mut ended, &mut errors);
                Ok(())
            }
            8 => {
                now += Duration::from_millis(r >> 54);
                server.handle_timeout(now);
                Ok(())
            }
            _ => Ok(()),
        };
        if result.is_err() {
            assert!(!server.can_send());
        }
        drain(&mut server, &mut out, now);
        if server.wants_shutdown() {
            server.write_shutdown();
        }
    }
    server.receive_eof(now);
    drain(&mut server, &mut out, now);
    take_events(&mut server, now, &mut ended, &mut errors);
    assert_eq!(
        server.state(),
        ReadyState::Closed,
        "EOF with everything written"
    );
    assert!(ended, "the close event came");
    assert_eq!(
        errors,
        u32::from(server.error().is_some()),
        "one error event per error"
    );

    let copy = out.clone();
    // Every byte the server wrote is a well-formed, unmasked frame.
    let mut decoder = Decoder::new(MaskPolicy::Forbid, Limits::default());
    decoder.set_inflater(client_params.map(|p| Inflater::new(p, Role::Client)));
    let mut closes = 0;
    loop {
        match decoder.decode(&mut out) {
            Ok(Some(item)) => {
                assert_eq!(closes, 0, "a frame after the CLOSE: {item:?}");
                if let Incoming::Close { .. } = item {
                    closes += 1;
                }
            }
            Ok(None) => break,
            Err(err) => panic!(
                "server output does not parse: {err}: {:?}",
                &copy[..copy.len().min(64)]
            ),
        }
    }
    assert!(out.is_empty(), "server output ends in a partial frame");
    assert!(decoder.is_idle());

    // A client Protocol reads the same bytes without failing.
    let mut wire = copy;
    client.poll_event(now);
    client.receive_data(&mut wire, now);
    assert!(
        client.error().is_none(),
        "client fails on server output: {:?}",
        client.error()
    );
});
