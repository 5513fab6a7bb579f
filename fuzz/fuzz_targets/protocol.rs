//! Arbitrary bytes into a server `Protocol`, with application calls (send, ping, close) between
//! the pieces. Whatever comes in, what the server writes must be well-formed server frames: a
//! client-side decoder parses all of it, there is at most one CLOSE and nothing after it, and a
//! client `Protocol` accepts it too.
#![no_main]
#![forbid(unsafe_code)]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use wsx::proto::codec::Compression;
use wsx::proto::deflate::{DeflateConfig, Inflater};
use wsx::proto::{
    CloseCode, Decoder, Incoming, Limits, MaskPolicy, OpCode, Protocol, ReadyState, Role,
};

#[path = "common.rs"]
mod common;

fn drain(p: &mut Protocol, dst: &mut BytesMut) {
    while !p.output().is_empty() {
        let chunk = p.output().first_chunk().to_vec();
        assert!(!chunk.is_empty(), "output not empty but its first chunk is");
        dst.extend_from_slice(&chunk);
        p.output().advance(chunk.len());
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let (cfg, seed, input) = (data[0], data[1], &data[2..]);
    let limits = Limits {
        max_frame_size: [125, 1024, 65536, 1 << 20][usize::from(cfg & 3)],
        max_message_size: [125, 4096, 65536, 1 << 20][usize::from((cfg >> 2) & 3)],
        max_fragments: [1, 8, 64, 1024][usize::from((cfg >> 4) & 3)],
    };
    let mut server = Protocol::new(Role::Server, limits);
    let mut client = Protocol::new(Role::Client, Limits::default());
    let mut client_params = None;
    if cfg & 0x40 != 0 {
        // Negotiate as the two ends would; compression is on only if both agree.
        let config = DeflateConfig::default();
        let offer = config.client_offer();
        if let Some((server_params, answer)) = config.server_negotiate([offer.as_str()]) {
            if let Ok(Some(params)) = config.client_accept([answer.as_str()]) {
                server.enable_deflate(server_params, &config);
                client.enable_deflate(params, &config);
                client_params = Some(params);
            }
        }
    }

    let mut rng = common::Rng::new(&[seed]);
    let mut wire = BytesMut::new();
    let mut errored = false;
    for piece in common::chunks(input, &[seed], 1 + usize::from(seed & 0x7f)) {
        wire.extend_from_slice(piece);
        loop {
            match server.receive(&mut wire) {
                Ok(Some(Incoming::Message { payload, .. })) => {
                    assert!(payload.len() <= limits.max_message_size);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    errored = true;
                    assert!(server.should_close_transport());
                    assert!(server.close_sent());
                    break;
                }
            }
        }
        // Between pieces, sometimes act as the application would.
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
                server.close(CloseCode::NORMAL, "bye");
                Ok(())
            }
            _ => Ok(()),
        };
        if result.is_err() {
            assert!(server.close_sent() || server.state() != ReadyState::Open);
        }
    }
    let _ = server.receive_eof();
    if errored {
        assert!(server.close_info().is_some_and(|i| !i.clean));
    }

    let mut out = BytesMut::new();
    drain(&mut server, &mut out);
    let copy = out.clone();

    // Every byte the server wrote is a well-formed, unmasked frame.
    let mut decoder = Decoder::new(MaskPolicy::Forbid, Limits::default());
    decoder.set_inflater(client_params.map(|p| Inflater::new(p, Role::Client)));
    let mut closes = 0;
    loop {
        match decoder.decode(&mut out) {
            Ok(Some(item)) => {
                assert_eq!(closes, 0, "a frame after the CLOSE: {item:?}");
                if let Incoming::Close(_) = item {
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
    loop {
        match client.receive(&mut wire) {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(err) => panic!("client fails on server output: {err}"),
        }
    }
});
