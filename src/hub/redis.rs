//! The Redis engine: rooms that span every node on one Redis.
//!
//! Each node keeps two connections: one subscriber connection (SUBSCRIBE, one channel per room
//! with local members, all on that connection) and one command connection on which a single
//! forwarder task sends what this node publishes, in publish order, pipelined in batches.
//!
//! Without history a message is delivered to the local members first, then forwarded with a
//! PUBLISH; the envelope names this node and the sending member, so this node skips it when it
//! comes back. With history a Lua script appends it to the room's Redis Stream (XADD, MAXLEN ~)
//! and publishes it with the stream id in one atomic step, so the stream id is the room's order
//! and every node, this one included, delivers from the subscription in that order.
//!
//! When Redis goes away the subscriber reconnects with backoff and subscribes every room that
//! still has local members; the forwarder counts what it could not forward and drops it (pub/sub
//! is at-most-once across an outage), so local delivery goes on and memory stays bounded.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use redis::aio::MultiplexedConnection;
use redis::streams::StreamRangeReply;
use redis::{Client, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::memory::Local;
use super::{BoxFuture, Counters, Engine, Envelope, HubError, Offset, Recovery};
use crate::proto::OpCode;
use crate::Message;

/// Options of the Redis engine.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// Prefix of every channel and key the hub uses: `{prefix}room:NAME` (pub/sub) and
    /// `{prefix}history:NAME` (streams). Nodes share rooms only under the same prefix.
    pub prefix: String,
    /// Keep about this many of each room's last messages in a Redis Stream for recovery
    /// (`XADD MAXLEN ~`); `None` keeps no history.
    pub history: Option<usize>,
    /// Time allowed to connect and for each command.
    pub timeout: Duration,
    /// First wait before reconnecting; doubled up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
    /// Most messages waiting to be forwarded; publishers wait when it is full.
    pub queue: usize,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            prefix: "wsx:".into(),
            history: None,
            timeout: Duration::from_secs(1),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            queue: 8192,
        }
    }
}

/// Appends to the room's stream and publishes with the new id, atomically, so that the
/// publish order of a room is its stream order.
const XADD_PUBLISH: &str = r"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'k', ARGV[2], 'd', ARGV[3])
redis.call('PUBLISH', KEYS[2], ARGV[4] .. id .. '\n' .. ARGV[3])
return id
";

/// Most messages sent in one pipeline.
const BATCH: usize = 256;

/// How often an idle subscriber connection is pinged (to notice a dead Redis).
const PING_EVERY: Duration = Duration::from_secs(5);

/// A message on its way to Redis; `reply` wants its offset (history on).
struct Outgoing {
    envelope: Envelope,
    reply: Option<oneshot::Sender<Result<Offset, HubError>>>,
}

struct Names {
    prefix: String,
    node: u64,
}

impl Names {
    fn channel(&self, room: &str) -> String {
        format!("{}room:{room}", self.prefix)
    }

    fn stream(&self, room: &str) -> String {
        format!("{}history:{room}", self.prefix)
    }

    /// The envelope header up to the offset: `wsx1 NODE MEMBER KIND `.
    fn header(&self, e: &Envelope) -> String {
        let kind = if e.kind == OpCode::Text { 't' } else { 'b' };
        format!("wsx1 {:x} {} {kind} ", self.node, e.member)
    }
}

/// A received envelope.
struct Received<'a> {
    node: u64,
    member: u64,
    kind: OpCode,
    offset: Option<Offset>,
    body: &'a [u8],
}

fn parse_envelope(payload: &[u8]) -> Option<Received<'_>> {
    let newline = payload.iter().position(|&b| b == b'\n')?;
    let (head, body) = payload.split_at(newline);
    let head = std::str::from_utf8(head).ok()?;
    let mut parts = head.split(' ');
    if parts.next()? != "wsx1" {
        return None;
    }
    let node = u64::from_str_radix(parts.next()?, 16).ok()?;
    let member = parts.next()?.parse().ok()?;
    let kind = match parts.next()? {
        "t" => OpCode::Text,
        "b" => OpCode::Binary,
        _ => return None,
    };
    let offset = match parts.next()? {
        "-" => None,
        o => Some(o.parse().ok()?),
    };
    Some(Received {
        node,
        member,
        kind,
        offset,
        body: body.get(1..)?,
    })
}

/// The engine: the queue to the forwarder and what the subscriber reports.
pub(crate) struct RedisEngine {
    client: Client,
    names: Arc<Names>,
    history: bool,
    timeout: Duration,
    outgoing: mpsc::Sender<Outgoing>,
    synced: watch::Receiver<u64>,
    counters: Arc<Counters>,
    tasks: [AbortHandle; 2],
}

impl Drop for RedisEngine {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RedisEngine {
    pub(crate) async fn start(
        url: &str,
        options: RedisOptions,
        local: Arc<Local>,
        counters: Arc<Counters>,
    ) -> Result<Self, HubError> {
        let client = Client::open(url).map_err(|e| HubError::Engine(e.to_string()))?;
        let first = tokio::time::timeout(options.timeout, client.get_async_pubsub())
            .await
            .map_err(|_| HubError::Engine(format!("cannot connect to {url}: timed out")))?
            .map_err(|e| HubError::Engine(format!("cannot connect to {url}: {e}")))?;
        info!(%url, "hub connected to Redis");
        let names = Arc::new(Names {
            prefix: options.prefix.clone(),
            node: rand::random(),
        });
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let (synced_tx, synced) = watch::channel(0);
        let subscriber = Subscriber {
            client: client.clone(),
            names: names.clone(),
            history: options.history.is_some(),
            options: options.clone(),
            local,
            counters: counters.clone(),
            synced: synced_tx,
        };
        let forwarder = Forwarder {
            client: client.clone(),
            names: names.clone(),
            history: options.history,
            options: options.clone(),
            counters: counters.clone(),
        };
        counters.connected.store(true, Ordering::Relaxed);
        let tasks = [
            tokio::spawn(subscriber.run(first)).abort_handle(),
            tokio::spawn(forwarder.run(rx)).abort_handle(),
        ];
        Ok(RedisEngine {
            client,
            names,
            history: options.history.is_some(),
            timeout: options.timeout,
            outgoing: tx,
            synced,
            counters,
            tasks,
        })
    }
}

impl Engine for RedisEngine {
    fn orders_rooms(&self) -> bool {
        self.history
    }

    fn forward(&self, envelope: Envelope) -> BoxFuture<'_, Result<Option<Offset>, HubError>> {
        Box::pin(async move {
            let down = || HubError::Engine("the forwarder stopped".into());
            if !self.history {
                let out = Outgoing {
                    envelope,
                    reply: None,
                };
                self.outgoing.send(out).await.map_err(|_| down())?;
                return Ok(None);
            }
            let (tx, rx) = oneshot::channel();
            let out = Outgoing {
                envelope,
                reply: Some(tx),
            };
            self.outgoing.send(out).await.map_err(|_| down())?;
            rx.await.map_err(|_| down())?.map(Some)
        })
    }

    fn synced(&self, generation: u64) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let mut synced = self.synced.clone();
            let wait = async {
                while self.counters.connected.load(Ordering::Relaxed) {
                    if *synced.borrow_and_update() >= generation {
                        return;
                    }
                    if synced.changed().await.is_err() {
                        return;
                    }
                }
            };
            let _ = tokio::time::timeout(self.timeout, wait).await;
        })
    }

    fn history<'a>(
        &'a self,
        room: &'a str,
        since: Offset,
    ) -> BoxFuture<'a, Result<Recovery, HubError>> {
        Box::pin(async move {
            if !self.history {
                return Err(HubError::NoHistory);
            }
            let engine = |e: redis::RedisError| HubError::Engine(e.to_string());
            let timed_out = || HubError::Engine("history read timed out".into());
            let read = async {
                let mut conn = self
                    .client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(engine)?;
                // Starting at `since` itself: if it is still there, nothing was trimmed after it.
                redis::cmd("XRANGE")
                    .arg(self.names.stream(room))
                    .arg(since.to_string())
                    .arg("+")
                    .query_async::<StreamRangeReply>(&mut conn)
                    .await
                    .map_err(engine)
            };
            let reply = tokio::time::timeout(self.timeout, read)
                .await
                .map_err(|_| timed_out())??;
            let mut entries = reply.ids.into_iter();
            match entries.next() {
                Some(first) if first.id.parse::<Offset>().ok() == Some(since) => {}
                _ => return Ok(Recovery::Gap),
            }
            let mut out = Vec::new();
            for entry in entries {
                let offset: Offset = entry.id.parse()?;
                let field = |name: &str| match entry.map.get(name) {
                    Some(Value::BulkString(b)) => Some(Bytes::copy_from_slice(b)),
                    _ => None,
                };
                let kind = match field("k").as_deref() {
                    Some(b"t") => OpCode::Text,
                    _ => OpCode::Binary,
                };
                let body = field("d").unwrap_or_default();
                let body = super::tagged(Some(offset), &body);
                out.push((offset, Message::with_kind(kind, body)));
            }
            Ok(Recovery::Recovered(out))
        })
    }
}

/// Owns the subscriber connection: subscribes the rooms with local members, delivers what
/// arrives, reconnects with backoff.
struct Subscriber {
    client: Client,
    names: Arc<Names>,
    history: bool,
    options: RedisOptions,
    local: Arc<Local>,
    counters: Arc<Counters>,
    synced: watch::Sender<u64>,
}

impl Subscriber {
    async fn run(self, first: redis::aio::PubSub) {
        let mut changes = self.local.changes();
        let mut pubsub = Some(first);
        let mut backoff = self.options.min_backoff;
        loop {
            if let Some(conn) = pubsub.take() {
                backoff = self.options.min_backoff;
                self.counters.connected.store(true, Ordering::Relaxed);
                let reason = self.serve(conn, &mut changes).await;
                self.counters.connected.store(false, Ordering::Relaxed);
                // Wake joins waiting for a subscription that will only come after reconnecting.
                self.synced.send_modify(|_| {});
                warn!(reason, "hub lost its Redis connection; reconnecting");
            }
            tokio::time::sleep(jitter(backoff)).await;
            backoff = (backoff * 2).min(self.options.max_backoff);
            match tokio::time::timeout(self.options.timeout, self.client.get_async_pubsub()).await {
                Ok(Ok(conn)) => {
                    Counters::add(&self.counters.reconnects, 1);
                    info!("hub reconnected to Redis; resubscribing its rooms");
                    pubsub = Some(conn);
                }
                Ok(Err(e)) => debug!(error = %e, "hub cannot reach Redis yet"),
                Err(_) => debug!("hub cannot reach Redis yet: timed out"),
            }
        }
    }

    /// Runs one connection until it fails; returns why.
    async fn serve(
        &self,
        conn: redis::aio::PubSub,
        changes: &mut watch::Receiver<u64>,
    ) -> &'static str {
        let (mut sink, mut stream) = conn.split();
        let mut subscribed: HashSet<Arc<str>> = HashSet::new();
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        let timeout = self.options.timeout;
        loop {
            changes.borrow_and_update();
            let (generation, rooms) = self.local.rooms();
            let wanted: HashSet<Arc<str>> = rooms.into_iter().collect();
            for room in wanted.difference(&subscribed) {
                let channel = self.names.channel(room);
                match tokio::time::timeout(timeout, sink.subscribe(&channel)).await {
                    Ok(Ok(())) => {}
                    _ => return "SUBSCRIBE failed",
                }
            }
            for room in subscribed.difference(&wanted) {
                let channel = self.names.channel(room);
                match tokio::time::timeout(timeout, sink.unsubscribe(&channel)).await {
                    Ok(Ok(())) => {}
                    _ => return "UNSUBSCRIBE failed",
                }
            }
            subscribed = wanted;
            self.synced.send_replace(generation);
            tokio::select! {
                changed = changes.changed() => {
                    if changed.is_err() {
                        return "the hub is gone";
                    }
                }
                msg = stream.next() => match msg {
                    Some(msg) => self.deliver(msg.get_channel_name(), msg.get_payload_bytes()),
                    None => return "connection closed",
                },
                _ = ping.tick() => {
                    match tokio::time::timeout(timeout, sink.ping::<Value>()).await {
                        Ok(Ok(_)) => {}
                        _ => return "PING unanswered",
                    }
                }
            }
        }
    }

    fn deliver(&self, channel: &str, payload: &[u8]) {
        let Some(room) = channel
            .strip_prefix(self.names.prefix.as_str())
            .and_then(|c| c.strip_prefix("room:"))
        else {
            return;
        };
        let Some(env) = parse_envelope(payload) else {
            debug!(channel, "ignored a message that is not a hub envelope");
            return;
        };
        Counters::add(&self.counters.received, 1);
        let skip = if env.node == self.names.node {
            if !self.history {
                // Delivered locally when it was published.
                return;
            }
            Some(env.member)
        } else {
            None
        };
        let body = Bytes::copy_from_slice(env.body);
        self.local.deliver(room, skip, env.offset, env.kind, &body);
    }
}

/// Sends what this node publishes, in order, over one command connection.
struct Forwarder {
    client: Client,
    names: Arc<Names>,
    history: Option<usize>,
    options: RedisOptions,
    counters: Arc<Counters>,
}

impl Forwarder {
    async fn run(self, mut rx: mpsc::Receiver<Outgoing>) {
        let mut conn: Option<MultiplexedConnection> = None;
        let mut backoff = self.options.min_backoff;
        let mut retry_at = Instant::now();
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            if rx.recv_many(&mut batch, BATCH).await == 0 {
                return;
            }
            if conn.is_none() && Instant::now() >= retry_at {
                let connect = self.client.get_multiplexed_async_connection();
                match tokio::time::timeout(self.options.timeout, connect).await {
                    Ok(Ok(c)) => {
                        conn = Some(c);
                        backoff = self.options.min_backoff;
                    }
                    _ => {
                        // Meanwhile messages are counted and dropped, never held.
                        retry_at = Instant::now() + jitter(backoff);
                        backoff = (backoff * 2).min(self.options.max_backoff);
                    }
                }
            }
            let sent = match conn.as_mut() {
                Some(c) => self.send(c, &batch).await,
                None => None,
            };
            match sent {
                Some(offsets) => {
                    Counters::add(&self.counters.forwarded, batch.len() as u64);
                    for (out, offset) in batch.drain(..).zip(offsets) {
                        if let Some(reply) = out.reply {
                            let _ = reply.send(offset.ok_or_else(|| {
                                HubError::Engine("Redis returned no stream id".into())
                            }));
                        }
                    }
                }
                None => {
                    if conn.take().is_some() {
                        retry_at = Instant::now();
                    }
                    Counters::add(&self.counters.unforwarded, batch.len() as u64);
                    for out in batch.drain(..) {
                        if let Some(reply) = out.reply {
                            let _ =
                                reply.send(Err(HubError::Engine("Redis is unreachable".into())));
                        }
                    }
                }
            }
        }
    }

    /// Sends a batch as one pipeline; the offsets (history) or `None`s, or `None` on failure.
    async fn send(
        &self,
        conn: &mut MultiplexedConnection,
        batch: &[Outgoing],
    ) -> Option<Vec<Option<Offset>>> {
        let mut pipe = redis::pipe();
        for out in batch {
            let e = &out.envelope;
            let header = self.names.header(e);
            let channel = self.names.channel(&e.room);
            match self.history {
                Some(max_len) => {
                    let kind = if e.kind == OpCode::Text { "t" } else { "b" };
                    pipe.cmd("EVAL")
                        .arg(XADD_PUBLISH)
                        .arg(2)
                        .arg(self.names.stream(&e.room))
                        .arg(channel)
                        .arg(max_len)
                        .arg(kind)
                        .arg(&e.body[..])
                        .arg(header);
                }
                None => {
                    let mut payload = header.into_bytes();
                    payload.extend_from_slice(b"-\n");
                    payload.extend_from_slice(&e.body);
                    pipe.cmd("PUBLISH").arg(channel).arg(payload).ignore();
                }
            }
        }
        let query = pipe.query_async::<Vec<Value>>(conn);
        let values = match tokio::time::timeout(self.options.timeout, query).await {
            Ok(Ok(values)) => values,
            Ok(Err(e)) => {
                warn!(error = %e, "hub could not forward to Redis");
                return None;
            }
            Err(_) => {
                warn!("hub could not forward to Redis: timed out");
                return None;
            }
        };
        if self.history.is_none() {
            return Some(vec![None; batch.len()]);
        }
        let offsets = values
            .into_iter()
            .map(|v| match v {
                Value::BulkString(b) => std::str::from_utf8(&b).ok()?.parse().ok(),
                _ => None,
            })
            .collect();
        Some(offsets)
    }
}

/// `d` plus up to a quarter more, so that nodes do not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    d + d.mul_f64(rand::random::<f64>() / 4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let names = Names {
            prefix: "p:".into(),
            node: 0xabc,
        };
        let e = Envelope {
            room: "r".into(),
            member: 7,
            kind: OpCode::Text,
            body: Bytes::from_static(b"hi\nthere"),
        };
        let mut wire = names.header(&e).into_bytes();
        wire.extend_from_slice(b"5-1\nhi\nthere");
        let got = parse_envelope(&wire).unwrap();
        assert_eq!((got.node, got.member, got.kind), (0xabc, 7, OpCode::Text));
        assert_eq!(got.offset, Some("5-1".parse().unwrap()));
        assert_eq!(got.body, b"hi\nthere");
        assert!(parse_envelope(b"wsx1 zz 1 t -\nx").is_none());
        assert!(parse_envelope(b"other\nx").is_none());
    }
}
