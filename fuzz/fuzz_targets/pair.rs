//! Two `Protocol`s, a client and a server, wired to each other in memory (quinn-proto's `Pair`
//! idea): the fuzzer picks what each application does (send a message of some size, kind and
//! compression, ping, close, take events) and how the bytes travel (cut at random points, held
//! back, clock jumps). Neither side ever sees a protocol error from the other, each receives
//! exactly the messages the other sent, in order and intact (unless a timer ended the
//! connection while the fuzzer held bytes back), and once both are told EOF both
//! are closed with one close event each.
#![no_main]
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use wsx::proto::deflate::DeflateConfig;
use wsx::proto::{CloseCode, Compression, Config, Event, OpCode, Protocol, ReadyState, Role};

#[path = "common.rs"]
mod common;

/// One end: its core, the bytes in flight towards it, what it expects to receive.
struct End {
    proto: Protocol,
    inbound: BytesMut,
    expected: VecDeque<(OpCode, Bytes)>,
    closed: bool,
}

impl End {
    fn new(role: Role, config: Config) -> End {
        End {
            proto: Protocol::new(role, config),
            inbound: BytesMut::new(),
            expected: VecDeque::new(),
            closed: false,
        }
    }

    /// Takes the events waiting and checks them. A timer (keepalive, close or message
    /// timeout: 1006 or 1008) may end a connection whose bytes the fuzzer held back; from then
    /// on (`lossy`) messages may be missing, but no protocol error may ever come.
    fn take_events(&mut self, now: Instant, lossy: &mut bool) {
        while let Some(event) = self.proto.poll_event(now) {
            assert!(!self.closed, "an event after the close: {event:?}");
            match event {
                Event::Message(m) => {
                    let sent = self.expected.pop_front();
                    if *lossy {
                        continue;
                    }
                    let (opcode, payload) = sent.expect("a message that was not sent");
                    assert_eq!(m.opcode, opcode);
                    assert_eq!(m.payload, payload, "payload changed in transit");
                }
                Event::Error(e) if e.code == 1006 || e.code == 1008 => *lossy = true,
                Event::Error(e) => panic!("{:?} failed: {e:?}", self.proto.role()),
                Event::Closed(_) => self.closed = true,
            }
        }
    }
}

/// Moves everything `from` queued to the bytes in flight towards `to`.
fn transmit(from: &mut End, to: &mut End, now: Instant) {
    let mut out = from.proto.take_output();
    while !out.is_empty() {
        let chunk = out.first_chunk().to_vec();
        to.inbound.extend_from_slice(&chunk);
        out.advance(chunk.len());
    }
    from.proto.on_write(0, true, now);
    if from.proto.wants_shutdown() {
        from.proto.write_shutdown();
    }
}

/// Delivers up to `n` bytes in flight to `to` (the rest stays in flight).
fn deliver(to: &mut End, n: usize, pending: &mut BytesMut, now: Instant) {
    let n = n.min(to.inbound.len());
    pending.extend_from_slice(&to.inbound.split_to(n));
    if to.proto.wants_read() {
        to.proto.receive_data(pending, now);
    }
}

/// A payload of `len` bytes: text, compressible or not.
fn payload(kind: u64, len: usize, seed: u64) -> (OpCode, Bytes) {
    match kind % 3 {
        0 => (OpCode::Text, Bytes::from("héllo wörld ".repeat(len / 12 + 1))),
        1 => (OpCode::Binary, Bytes::from(vec![0x5a; len])),
        _ => {
            let mut rng = common::Rng::new(&seed.to_le_bytes());
            (OpCode::Binary, (0..len).map(|_| rng.next() as u8).collect())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cfg, input)) = data.split_first() else {
        return;
    };
    let config = Config {
        recv_queue_limit: 1 + usize::from(cfg & 7),
        recv_buffer_limit: 64 * 1024,
        ping_interval: (cfg & 0x20 != 0).then_some(Duration::from_secs(5)),
        message_timeout: (cfg & 0x80 != 0).then_some(Duration::from_secs(30)),
        ..Config::default()
    };
    let mut now = Instant::now();
    let mut ends = [
        End::new(Role::Client, config.clone()),
        End::new(Role::Server, config),
    ];
    let mut pending = [BytesMut::new(), BytesMut::new()];
    if cfg & 0x40 != 0 {
        let deflate = DeflateConfig {
            threshold: usize::from(cfg & 0x18),
            ..DeflateConfig::default()
        };
        let offer = deflate.client_offer();
        if let Some((server_params, answer)) = deflate.server_negotiate([offer.as_str()]) {
            if let Ok(Some(params)) = deflate.client_accept([answer.as_str()]) {
                ends[1].proto.enable_deflate(server_params, &deflate);
                ends[0].proto.enable_deflate(params, &deflate);
            }
        }
    }
    for end in &mut ends {
        end.proto.open(now);
    }
    let mut rng = common::Rng::new(input);
    let mut lossy = false;
    for &b in input {
        let side = usize::from(b & 1);
        let other = 1 - side;
        let r = rng.next();
        match (b >> 1) % 8 {
            0 | 1 => {
                let len = [0, 1, 125, 126, 4000, 65536, 70000][(r % 7) as usize];
                let (opcode, body) = payload(r >> 8, len, r);
                let compression = if (r >> 16) & 1 == 0 {
                    Compression::Auto
                } else {
                    Compression::Never
                };
                if ends[side]
                    .proto
                    .send(opcode, body.clone(), compression)
                    .is_ok()
                {
                    ends[other].expected.push_back((opcode, body));
                }
            }
            2 => {
                let _ = ends[side].proto.ping(Bytes::from_static(b"p"));
            }
            3 => ends[side].proto.close(CloseCode::NORMAL, "bye", now),
            4 => ends[side].take_events(now, &mut lossy),
            5 => {
                now += Duration::from_millis(r >> 52);
                for end in &mut ends {
                    end.proto.handle_timeout(now);
                }
            }
            _ => {
                let (a, z) = ends.split_at_mut(1);
                let (from, to) = if side == 0 {
                    (&mut a[0], &mut z[0])
                } else {
                    (&mut z[0], &mut a[0])
                };
                transmit(from, to, now);
                let cut = 1 + (r % 4096) as usize;
                deliver(to, cut, &mut pending[other], now);
            }
        }
    }
    // Let everything through, then end both transports.
    for _ in 0..64 {
        let (a, z) = ends.split_at_mut(1);
        transmit(&mut a[0], &mut z[0], now);
        transmit(&mut z[0], &mut a[0], now);
        for i in 0..2 {
            deliver(&mut ends[i], usize::MAX, &mut pending[i], now);
            ends[i].take_events(now, &mut lossy);
        }
        if ends.iter().all(|e| e.inbound.is_empty() && !e.proto.has_output()) {
            break;
        }
    }
    for end in &mut ends {
        if end.expected.is_empty() && end.proto.queued_messages() == 0 {
            end.proto.receive_eof(now);
            end.take_events(now, &mut lossy);
            if end.proto.buffered() == 0 {
                assert_eq!(end.proto.state(), ReadyState::Closed);
                assert!(end.closed, "EOF with nothing left gives the close event");
            }
        }
    }
});
