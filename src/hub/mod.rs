//! A broadcast hub: rooms by name whose members may sit on many server nodes.
//!
//! A [`Hub`] has one engine. The in-memory engine ([`Hub::memory`]) serves one process; the
//! Redis engine (`Hub::redis`, feature `redis`) joins every node pointed at the same Redis, so a
//! message published on one node reaches the members of the room on all of them.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), wsx::hub::HubError> {
//! use wsx::hub::{Hub, HubConfig};
//!
//! let hub = Hub::memory(HubConfig::default());
//! let member = hub.member();
//! member.join("lobby").await?;
//! // member.attach(&socket) once the WebSocket is open; then
//! member.publish("lobby", "hello").await?;
//! # Ok(())
//! # }
//! ```
//!
//! Each message is framed once per node ([`PreparedMessage`](crate::PreparedMessage)) and the
//! same bytes are queued on every local member. A member that stops reading gets a queue bounded
//! in bytes and a grace period per message, then is closed with 1013 (try again later): the hub
//! never buffers without bound. A member never receives its own messages.

mod memory;
#[cfg(feature = "redis")]
mod redis;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::message::Message;
use crate::proto::OpCode;
use crate::socket::Socket;

use memory::Local;
#[cfg(feature = "redis")]
pub use redis::RedisOptions;

/// The longest room name, in bytes.
pub const MAX_ROOM_LEN: usize = 64;

/// The errors of the hub.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// A room name that is empty, too long or has a byte outside `A-Z a-z 0-9 - _ . :`.
    #[error("invalid room name: {0}")]
    RoomName(&'static str),
    /// Only TEXT and BINARY messages are broadcast.
    #[error("cannot broadcast a {0:?} message: only TEXT and BINARY")]
    NotBroadcastable(OpCode),
    /// A history offset that is not `MILLISECONDS-SEQUENCE`.
    #[error("invalid offset `{0}`: expected MILLISECONDS-SEQUENCE, as delivered")]
    Offset(String),
    /// History recovery asked of a hub that keeps no history.
    #[error("this hub keeps no room history")]
    NoHistory,
    /// The member was dropped (it fell too far behind) or has not joined the room.
    #[error("the member is not in room `{0}`")]
    NotMember(String),
    /// The engine could not do it (Redis unreachable, a failed command, ...).
    #[error("hub engine: {0}")]
    Engine(String),
}

/// Checks a room name: 1 to [`MAX_ROOM_LEN`] bytes of `A-Z a-z 0-9 - _ . :`.
///
/// The set keeps names safe in URL paths, log lines and Redis key names alike.
pub fn validate_room(name: &str) -> Result<(), HubError> {
    if name.is_empty() {
        return Err(HubError::RoomName("empty"));
    }
    if name.len() > MAX_ROOM_LEN {
        return Err(HubError::RoomName("longer than 64 bytes"));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':');
    if !name.bytes().all(allowed) {
        return Err(HubError::RoomName(
            "only A-Z a-z 0-9 - _ . : are allowed in a room name",
        ));
    }
    Ok(())
}

/// A position in a room's history (a Redis Stream id): the offset a delivered message carries,
/// written `MILLISECONDS-SEQUENCE`. Offsets of one room grow in the order messages were
/// published.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset {
    ms: u64,
    seq: u64,
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for Offset {
    type Err = HubError;

    fn from_str(s: &str) -> Result<Self, HubError> {
        let bad = || HubError::Offset(s.chars().take(48).collect());
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(bad());
        }
        Ok(Offset {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

/// What [`Member::recover`] found in a room's history.
#[derive(Debug)]
pub enum Recovery {
    /// Every message published after the given offset, oldest first, with its offset; each
    /// message is as a member receives it live (its payload starts with `OFFSET\n`).
    Recovered(Vec<(Offset, Message)>),
    /// The history no longer reaches back to the given offset (or never held it): messages
    /// may have been missed and the client should reload its state.
    Gap,
}

/// Limits of the local fan-out.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// How long a message may wait for a member whose write buffer is full before that member
    /// is closed with 1013.
    pub send_grace: Duration,
    /// Most bytes queued for one member beyond its socket's write buffer (each message
    /// counted as its frame plus a small overhead); a member over it is closed with 1013.
    pub max_queued_bytes: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            send_grace: Duration::from_secs(2),
            max_queued_bytes: 1 << 20,
        }
    }
}

/// Counters of a hub, from [`Hub::stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Messages published on this node.
    pub published: u64,
    /// Messages handed to the engine for the other nodes.
    pub forwarded: u64,
    /// Messages the engine could not forward (its backend was down): only local members got
    /// them.
    pub unforwarded: u64,
    /// Messages received from the engine.
    pub received: u64,
    /// Members closed with 1013 for falling behind.
    pub dropped_members: u64,
    /// Times the engine reconnected after losing its backend.
    pub reconnects: u64,
    /// Whether the engine is connected to its backend (always true in memory).
    pub connected: bool,
}

/// The live counters behind [`HubStats`], shared by the hub, its fan-out and its engine.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    published: AtomicU64,
    forwarded: AtomicU64,
    unforwarded: AtomicU64,
    received: AtomicU64,
    dropped_members: AtomicU64,
    reconnects: AtomicU64,
    connected: AtomicBool,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HubStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HubStats {
            published: get(&self.published),
            forwarded: get(&self.forwarded),
            unforwarded: get(&self.unforwarded),
            received: get(&self.received),
            dropped_members: get(&self.dropped_members),
            reconnects: get(&self.reconnects),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }
}

/// A message published on this node, as an engine carries it to the others: the room, who sent
/// it (this node's id and the member's, so that no member gets its own message back) and what.
#[derive(Clone, Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // the in-memory engine reads none of it
pub(crate) struct Envelope {
    room: Arc<str>,
    member: u64,
    kind: OpCode,
    body: Bytes,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What carries messages between nodes. The local fan-out is the hub's; an engine forwards what
/// this node publishes and hands what other nodes published to [`memory::Local::deliver`].
pub(crate) trait Engine: Send + Sync {
    /// Whether the engine puts each room in one order and delivers this node's messages back to
    /// it in that order (history on): then the hub does not deliver locally first.
    fn orders_rooms(&self) -> bool;

    /// Forwards a message published on this node. With [`Engine::orders_rooms`], resolves to its
    /// offset once the engine has placed it; otherwise once it is queued (`None`).
    fn forward(&self, envelope: Envelope) -> BoxFuture<'_, Result<Option<Offset>, HubError>>;

    /// Resolves once the engine listens to every room that had local members at `generation`
    /// (at once if its backend is down: it subscribes them when it reconnects).
    fn synced(&self, generation: u64) -> BoxFuture<'_, ()>;

    /// The messages of `room` published after `since`.
    fn history<'a>(
        &'a self,
        room: &'a str,
        since: Offset,
    ) -> BoxFuture<'a, Result<Recovery, HubError>>;
}

/// The in-memory engine: one process, nothing to forward.
struct Memory;

impl Engine for Memory {
    fn orders_rooms(&self) -> bool {
        false
    }

    fn forward(&self, _: Envelope) -> BoxFuture<'_, Result<Option<Offset>, HubError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    fn synced(&self, _: u64) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }

    fn history<'a>(&'a self, _: &'a str, _: Offset) -> BoxFuture<'a, Result<Recovery, HubError>> {
        Box::pin(std::future::ready(Err(HubError::NoHistory)))
    }
}

/// A broadcast hub (cheap to clone: clones share it). See the [module docs](self).
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    local: Arc<Local>,
    engine: Box<dyn Engine>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Hub {
    /// A hub for one process.
    pub fn memory(config: HubConfig) -> Hub {
        let counters = Arc::new(Counters::default());
        counters.connected.store(true, Ordering::Relaxed);
        let local = Local::new(config, false, counters.clone());
        Hub::with_engine(local, Box::new(Memory), counters)
    }

    /// A hub whose rooms span every node on the Redis at `url` (`redis://host:port/db`).
    ///
    /// Fails if the first connection cannot be made; after that the hub reconnects on its own
    /// (with backoff) and keeps serving its local members meanwhile.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn redis(
        url: &str,
        options: RedisOptions,
        config: HubConfig,
    ) -> Result<Hub, HubError> {
        let counters = Arc::new(Counters::default());
        let local = Local::new(config, options.history.is_some(), counters.clone());
        let engine =
            redis::RedisEngine::start(url, options, local.clone(), counters.clone()).await?;
        Ok(Hub::with_engine(local, Box::new(engine), counters))
    }

    fn with_engine(local: Arc<Local>, engine: Box<dyn Engine>, counters: Arc<Counters>) -> Hub {
        Hub {
            shared: Arc::new(Shared {
                local,
                engine,
                counters,
            }),
        }
    }

    /// A new member; it receives nothing until it joins a room, and its messages are queued
    /// (bounded) until [`Member::attach`] gives it a socket.
    pub fn member(&self) -> Member {
        Member {
            id: self.shared.local.new_member(),
            hub: self.clone(),
        }
    }

    /// Whether delivered messages carry their offset (the Redis engine with history): each
    /// delivered payload then starts with `OFFSET\n` (`-\n` for a message that could not be
    /// placed in the history, as during an outage).
    pub fn has_history(&self) -> bool {
        self.shared.engine.orders_rooms()
    }

    /// Publishes `msg` (TEXT or BINARY) to every member of `room` on every node. Returns its
    /// offset when the hub keeps history.
    pub async fn publish(
        &self,
        room: &str,
        msg: impl Into<Message>,
    ) -> Result<Option<Offset>, HubError> {
        self.publish_from(0, room, msg.into()).await
    }

    /// The hub's counters.
    pub fn stats(&self) -> HubStats {
        self.shared.counters.snapshot()
    }

    async fn publish_from(
        &self,
        member: u64,
        room: &str,
        msg: Message,
    ) -> Result<Option<Offset>, HubError> {
        validate_room(room)?;
        let kind = msg.kind();
        if !matches!(kind, OpCode::Text | OpCode::Binary) {
            return Err(HubError::NotBroadcastable(kind));
        }
        let sh = &self.shared;
        Counters::add(&sh.counters.published, 1);
        let envelope = Envelope {
            room: room.into(),
            member,
            kind,
            body: msg.into_body(),
        };
        if sh.engine.orders_rooms() {
            // The engine delivers it here too, in the room's order; if it cannot, the local
            // members still get it (without an offset).
            let body = envelope.body.clone();
            match sh.engine.forward(envelope).await {
                Ok(offset) => Ok(offset),
                Err(_) => {
                    sh.local.deliver(room, Some(member), None, kind, &body);
                    Ok(None)
                }
            }
        } else {
            sh.local
                .deliver(room, Some(member), None, kind, &envelope.body);
            // A failure is counted by the engine: the local members have it already.
            let _ = sh.engine.forward(envelope).await;
            Ok(None)
        }
    }
}

/// One member of a hub: usually one WebSocket connection. Dropping it leaves every room.
pub struct Member {
    hub: Hub,
    id: u64,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member").field("id", &self.id).finish()
    }
}

impl Member {
    /// This member's id on its node (never 0).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Joins `room`; resolves once the engine listens to it, so that a message published
    /// anywhere after this returns reaches the member.
    pub async fn join(&self, room: &str) -> Result<(), HubError> {
        validate_room(room)?;
        let sh = &self.hub.shared;
        let generation = sh.local.join(self.id, room)?;
        sh.engine.synced(generation).await;
        Ok(())
    }

    /// Leaves `room` (nothing happens if the member is not in it).
    pub fn leave(&self, room: &str) {
        self.hub.shared.local.leave(self.id, room);
    }

    /// Gives the member its socket: messages queued since it joined are sent, then every new
    /// one. A member dropped before this closes the socket with 1013.
    pub fn attach(&self, socket: &Socket) {
        self.hub.shared.local.attach(self.id, socket);
    }

    /// The messages of `room` published after `since`, for a client that reconnects with the
    /// last offset it saw. Call it after [`Member::join`] and before [`Member::attach`]: send
    /// the recovered messages first, then attach; live messages the recovery already covers
    /// are not sent twice.
    pub async fn recover(&self, room: &str, since: Offset) -> Result<Recovery, HubError> {
        validate_room(room)?;
        let sh = &self.hub.shared;
        if !sh.local.is_member(self.id, room) {
            return Err(HubError::NotMember(room.to_owned()));
        }
        let recovery = sh.engine.history(room, since).await?;
        let last = match &recovery {
            Recovery::Recovered(list) => list.last().map_or(since, |(offset, _)| *offset),
            Recovery::Gap => return Ok(recovery),
        };
        sh.local.skip_until(self.id, room, last);
        Ok(recovery)
    }

    /// Publishes `msg` to every other member of `room` on every node (not back to this one).
    pub async fn publish(
        &self,
        room: &str,
        msg: impl Into<Message>,
    ) -> Result<Option<Offset>, HubError> {
        self.hub.publish_from(self.id, room, msg.into()).await
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.hub.shared.local.remove(self.id);
    }
}

/// The payload a member receives when the hub keeps history: `OFFSET\n` (or `-\n`) then the
/// message, so that a client learns the offset to recover from.
pub(crate) fn tagged(offset: Option<Offset>, body: &[u8]) -> Bytes {
    let mut out = match offset {
        Some(offset) => offset.to_string().into_bytes(),
        None => b"-".to_vec(),
    };
    out.reserve(body.len() + 1);
    out.push(b'\n');
    out.extend_from_slice(body);
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_checked() {
        assert!(validate_room("chat").is_ok());
        assert!(validate_room("a-b_c.d:e9").is_ok());
        assert!(validate_room(&"x".repeat(MAX_ROOM_LEN)).is_ok());
        for bad in ["", "a b", "a/b", "é", "a*", "a\0"] {
            assert!(
                matches!(validate_room(bad), Err(HubError::RoomName(_))),
                "{bad:?}"
            );
        }
        let long = "x".repeat(MAX_ROOM_LEN + 1);
        let e = validate_room(&long).unwrap_err();
        assert!(e.to_string().contains("longer than 64"), "{e}");
    }

    #[test]
    fn offsets_parse_print_and_order() {
        let a: Offset = "1700000000000-0".parse().unwrap();
        let b: Offset = "1700000000000-12".parse().unwrap();
        let c: Offset = "1700000000001-0".parse().unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-12");
        for bad in [
            "",
            "1",
            "1-",
            "-1",
            "1-2-3",
            "a-1",
            "1-+2",
            "99999999999999999999-0",
        ] {
            assert!(bad.parse::<Offset>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tagged_payloads_start_with_the_offset() {
        let o: Offset = "5-1".parse().unwrap();
        assert_eq!(&tagged(Some(o), b"hi")[..], b"5-1\nhi");
        assert_eq!(&tagged(None, b"hi")[..], b"-\nhi");
    }
}
