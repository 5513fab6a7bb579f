//! The local side of a hub (and the whole of the in-memory engine): which members of this node
//! are in which room, and the fan-out to their sockets.
//!
//! A message is framed once and queued on every member's socket without waiting. A member whose
//! write buffer is full gets the message in its own queue (bounded in bytes), drained by a task
//! that waits at most the grace for each message; past the grace, or past the queue bound, the
//! member is closed with 1013. So a slow reader never holds up the room, the node, or the engine, and
//! the memory held per member is bounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;
use tracing::info;

use super::{tagged, Counters, HubConfig, HubError, Offset};
use crate::proto::{CloseCode, OpCode};
use crate::socket::{PreparedMessage, Socket};
use crate::Message;

/// The local members and rooms of one node.
pub(crate) struct Local {
    table: Mutex<Table>,
    config: HubConfig,
    /// Prefix each payload with its offset (the hub keeps history).
    tag_offsets: bool,
    counters: Arc<Counters>,
    /// Bumped whenever the set of rooms with local members changes (the engine follows it).
    changes: watch::Sender<u64>,
}

#[derive(Default)]
struct Table {
    next_member: u64,
    generation: u64,
    rooms: HashMap<Arc<str>, HashSet<u64>>,
    members: HashMap<u64, Slot>,
}

#[derive(Default)]
struct Slot {
    /// `None` until attached: messages wait in `queue`.
    socket: Option<Socket>,
    rooms: HashSet<Arc<str>>,
    /// Messages not yet handed to the socket, oldest first.
    queue: VecDeque<Queued>,
    /// What `queue` holds, as counted against [`HubConfig::max_queued_bytes`].
    queued_bytes: usize,
    /// A drain task owns the queue: new messages go behind it.
    draining: bool,
    /// Per room, the last offset a recovery already sent: live copies up to it are skipped.
    skip: HashMap<Arc<str>, Offset>,
}

struct Queued {
    room: Arc<str>,
    offset: Option<Offset>,
    msg: PreparedMessage,
}

impl Queued {
    fn cost(&self) -> usize {
        self.msg.frame().len().saturating_add(ENTRY_COST)
    }
}

fn lock(m: &Mutex<Table>) -> MutexGuard<'_, Table> {
    // Nothing panics while the table is locked; recover rather than propagate a poison.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What one queued message is counted as beyond its frame (the entry and its handle).
const ENTRY_COST: usize = 64;

const SLOW: &str = "too slow: the room does not wait for you";

impl Local {
    pub(crate) fn new(config: HubConfig, tag_offsets: bool, counters: Arc<Counters>) -> Arc<Self> {
        Arc::new(Local {
            table: Mutex::new(Table::default()),
            config,
            tag_offsets,
            counters,
            changes: watch::channel(0).0,
        })
    }

    pub(crate) fn new_member(&self) -> u64 {
        let mut t = lock(&self.table);
        // Id 0 stands for "no member" (a message the server itself published).
        t.next_member = t.next_member.wrapping_add(1).max(1);
        let id = t.next_member;
        t.members.insert(id, Slot::default());
        id
    }

    /// Adds the member to `room`; returns the generation of the room set that includes it.
    pub(crate) fn join(&self, id: u64, room: &str) -> Result<u64, HubError> {
        let mut t = lock(&self.table);
        let t = &mut *t;
        let Some(slot) = t.members.get_mut(&id) else {
            return Err(HubError::NotMember(room.to_owned()));
        };
        let name: Arc<str> = match t.rooms.get_key_value(room) {
            Some((name, _)) => name.clone(),
            None => {
                // A new room with local members: the engine follows the change.
                t.generation += 1;
                self.changes.send_replace(t.generation);
                room.into()
            }
        };
        slot.rooms.insert(name.clone());
        t.rooms.entry(name).or_default().insert(id);
        Ok(t.generation)
    }

    pub(crate) fn leave(&self, id: u64, room: &str) {
        let mut t = lock(&self.table);
        let t = &mut *t;
        if let Some(slot) = t.members.get_mut(&id) {
            slot.rooms.remove(room);
            slot.skip.remove(room);
        }
        self.unlist(t, id, room);
    }

    /// Removes the member from every room and forgets it.
    pub(crate) fn remove(&self, id: u64) {
        self.remove_locked(&mut lock(&self.table), id);
    }

    fn unlist(&self, t: &mut Table, id: u64, room: &str) {
        if let Some(members) = t.rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                t.rooms.remove(room);
                t.generation += 1;
                self.changes.send_replace(t.generation);
            }
        }
    }

    pub(crate) fn is_member(&self, id: u64, room: &str) -> bool {
        lock(&self.table)
            .members
            .get(&id)
            .is_some_and(|slot| slot.rooms.contains(room))
    }

    pub(crate) fn skip_until(&self, id: u64, room: &str, last: Offset) {
        let mut t = lock(&self.table);
        if let Some(slot) = t.members.get_mut(&id) {
            slot.skip.insert(room.into(), last);
        }
    }

    /// The rooms with local members, and the generation of that set.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn rooms(&self) -> (u64, Vec<Arc<str>>) {
        let t = lock(&self.table);
        (t.generation, t.rooms.keys().cloned().collect())
    }

    /// Follows the generation of the room set.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub(crate) fn attach(self: &Arc<Self>, id: u64, socket: &Socket) {
        let mut t = lock(&self.table);
        let Some(slot) = t.members.get_mut(&id) else {
            drop(t);
            socket.close(CloseCode::TRY_AGAIN_LATER, SLOW);
            return;
        };
        slot.socket = Some(socket.clone());
        let skip = std::mem::take(&mut slot.skip);
        let mut freed = 0;
        slot.queue.retain(|q| match (skip.get(&q.room), q.offset) {
            (Some(last), Some(offset)) if offset <= *last => {
                freed += q.cost();
                false
            }
            _ => true,
        });
        slot.queued_bytes = slot.queued_bytes.saturating_sub(freed);
        if !slot.queue.is_empty() && !slot.draining {
            slot.draining = true;
            tokio::spawn(self.clone().drain(id));
        }
    }

    /// Delivers a message to every local member of `room` but `skip`; frames it only if the
    /// room has a local member, and outside the table's lock (framing copies the payload).
    pub(crate) fn deliver(
        self: &Arc<Self>,
        room: &str,
        skip: Option<u64>,
        offset: Option<Offset>,
        kind: OpCode,
        body: &Bytes,
    ) {
        if !lock(&self.table).rooms.contains_key(room) {
            return;
        }
        let body = if self.tag_offsets {
            tagged(offset, body)
        } else {
            body.clone()
        };
        let Ok(msg) = PreparedMessage::new(Message::with_kind(kind, body)) else {
            return;
        };
        let mut t = lock(&self.table);
        let t = &mut *t;
        let Some((name, members)) = t.rooms.get_key_value(room) else {
            return;
        };
        let mut gone = Vec::new();
        let mut slow = Vec::new();
        for &id in members {
            if Some(id) == skip {
                continue;
            }
            let Some(slot) = t.members.get_mut(&id) else {
                continue;
            };
            if let (Some(socket), false) = (&slot.socket, slot.draining) {
                match socket.try_send_prepared(&msg) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(_) => {
                        gone.push(id);
                        continue;
                    }
                }
            }
            let queued = Queued {
                room: name.clone(),
                offset,
                msg: msg.clone(),
            };
            let bytes = slot.queued_bytes.saturating_add(queued.cost());
            if bytes > self.config.max_queued_bytes {
                slow.push(id);
                continue;
            }
            slot.queued_bytes = bytes;
            slot.queue.push_back(queued);
            if slot.socket.is_some() && !slot.draining {
                slot.draining = true;
                tokio::spawn(self.clone().drain(id));
            }
        }
        for id in gone {
            self.remove_locked(t, id);
        }
        for id in slow {
            self.drop_slow_locked(t, id);
        }
    }

    /// Sends a member's queue in order, waiting at most the grace for each message.
    async fn drain(self: Arc<Self>, id: u64) {
        loop {
            let (socket, item) = {
                let mut t = lock(&self.table);
                let Some(slot) = t.members.get_mut(&id) else {
                    return;
                };
                let (Some(socket), Some(item)) = (slot.socket.clone(), slot.queue.pop_front())
                else {
                    slot.draining = false;
                    return;
                };
                slot.queued_bytes = slot.queued_bytes.saturating_sub(item.cost());
                (socket, item)
            };
            match tokio::time::timeout(self.config.send_grace, socket.send_prepared(&item.msg))
                .await
            {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    self.remove(id);
                    return;
                }
                Err(_) => {
                    let mut t = lock(&self.table);
                    self.drop_slow_locked(&mut t, id);
                    return;
                }
            }
        }
    }

    fn remove_locked(&self, t: &mut Table, id: u64) {
        if let Some(slot) = t.members.remove(&id) {
            for room in &slot.rooms {
                self.unlist(t, id, room);
            }
        }
    }

    /// Closes a member that fell behind with 1013 and forgets it.
    fn drop_slow_locked(&self, t: &mut Table, id: u64) {
        let socket = t.members.get(&id).and_then(|slot| slot.socket.clone());
        self.remove_locked(t, id);
        Counters::add(&self.counters.dropped_members, 1);
        if let Some(socket) = socket {
            socket.close(CloseCode::TRY_AGAIN_LATER, SLOW);
            info!(
                url = socket.url(),
                "hub dropped a member that stopped reading"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Hub, HubConfig};
    use crate::{AcceptOptions, ConnectOptions, Socket};

    /// A server socket on 127.0.0.1 and the client socket connected to it.
    async fn pair() -> (Socket, Socket) {
        let (server, url) = listen().await;
        let client = Socket::open(&url, ConnectOptions::default()).await.unwrap();
        (server.await.unwrap(), client)
    }

    /// Accepts one WebSocket on 127.0.0.1; returns the accepted socket (to come) and the URL.
    async fn listen() -> (tokio::task::JoinHandle<Socket>, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            crate::accept(tcp, &AcceptOptions::default())
                .await
                .unwrap()
                .0
        });
        (accept, format!("ws://{addr}/"))
    }

    async fn recv_text(socket: &Socket) -> String {
        let msg = tokio::time::timeout(Duration::from_secs(5), socket.recv())
            .await
            .unwrap()
            .unwrap();
        msg.as_text().unwrap().to_owned()
    }

    #[tokio::test]
    async fn a_message_reaches_every_other_member_once_and_not_its_sender() {
        let hub = Hub::memory(HubConfig::default());
        let mut clients = Vec::new();
        let mut members = Vec::new();
        for _ in 0..3 {
            let (server, client) = pair().await;
            let member = hub.member();
            member.join("r").await.unwrap();
            member.attach(&server);
            members.push((member, server));
            clients.push(client);
        }
        members[0].0.publish("r", "one").await.unwrap();
        hub.publish("r", "two").await.unwrap();
        assert_eq!(recv_text(&clients[1]).await, "one");
        assert_eq!(recv_text(&clients[2]).await, "one");
        // The sender gets the server's message but never its own.
        assert_eq!(recv_text(&clients[0]).await, "two");
        assert_eq!(recv_text(&clients[1]).await, "two");
        let nothing = tokio::time::timeout(Duration::from_millis(100), clients[0].recv()).await;
        assert!(nothing.is_err(), "the sender got its own message back");
        assert_eq!(hub.stats().published, 2);
    }

    #[tokio::test]
    async fn messages_wait_for_attach_and_a_dropped_member_leaves_its_rooms() {
        let hub = Hub::memory(HubConfig::default());
        let (server, client) = pair().await;
        let member = hub.member();
        member.join("r").await.unwrap();
        hub.publish("r", "early").await.unwrap();
        member.attach(&server);
        assert_eq!(recv_text(&client).await, "early");
        drop(member);
        assert!(hub.shared.local.rooms().1.is_empty());
        hub.publish("r", "late").await.unwrap();
        let nothing = tokio::time::timeout(Duration::from_millis(100), client.recv()).await;
        assert!(nothing.is_err(), "a member that left still got a message");
    }

    #[tokio::test]
    async fn a_member_that_stops_reading_is_dropped_and_the_others_go_on() {
        let hub = Hub::memory(HubConfig {
            send_grace: Duration::from_millis(200),
            max_queued_bytes: 1 << 20,
        });
        // The slow client is a bare handshaken stream that never reads.
        let (slow_server, url) = listen().await;
        let slow_client = crate::client::handshake(&url, &ConnectOptions::default())
            .await
            .unwrap();
        let slow_server = slow_server.await.unwrap();
        let (fast_server, fast_client) = pair().await;
        let slow = hub.member();
        slow.join("r").await.unwrap();
        slow.attach(&slow_server);
        let fast = hub.member();
        fast.join("r").await.unwrap();
        fast.attach(&fast_server);
        // The fast client reads everything.
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while let Ok(Ok(_)) =
                tokio::time::timeout(Duration::from_secs(3), fast_client.recv()).await
            {
                n += 1;
                if n == 400 {
                    break;
                }
            }
            n
        });
        // Incompressible: prepared messages are compressed where permessage-deflate was
        // negotiated, and 64 KiB of one letter would shrink to a few bytes.
        let mut seed = 1u32;
        let big: String = (0..64 << 10)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                char::from(b'!' + (seed >> 16) as u8 % 90)
            })
            .collect();
        for _ in 0..400 {
            hub.publish("r", big.as_str()).await.unwrap();
            tokio::task::yield_now().await;
        }
        assert_eq!(reader.await.unwrap(), 400);
        // Closing (the peer never reads, so the close handshake cannot finish here).
        for _ in 0..50 {
            if hub.stats().dropped_members == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(hub.stats().dropped_members, 1);
        assert_ne!(slow_server.ready_state(), crate::ReadyState::Open);
        assert!(!hub.shared.local.is_member(slow.id(), "r"));
        drop(slow_client);
    }

    #[tokio::test]
    async fn bad_room_names_and_control_messages_are_refused() {
        let hub = Hub::memory(HubConfig::default());
        let member = hub.member();
        let e = member.join("no spaces").await.unwrap_err();
        assert!(e.to_string().contains("invalid room name"), "{e}");
        let e = hub
            .publish("r", crate::Message::ping("x"))
            .await
            .unwrap_err();
        assert!(matches!(e, super::super::HubError::NotBroadcastable(_)));
        let e = member
            .recover("r", "1-0".parse().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(e, super::super::HubError::NotMember(_)));
    }
}
