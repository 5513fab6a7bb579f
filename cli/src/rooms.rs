//! The rooms of `wsx serve`: `/chat` and `/room/NAME`, on a [`Hub`] that is in memory or, with
//! `--hub redis://...`, shared by every node on that Redis.
//!
//! A member joins its room before the 101 goes out, so once a client is open it hears every
//! message published after. With `--history N` every delivered message starts with its offset
//! and a newline, and `?since=OFFSET` first replays what was missed: the server sends
//! `#recovered COUNT` and the COUNT messages, or `#gap` when the history no longer reaches back
//! that far, then live messages.

use anyhow::Context as _;
use tracing::{debug, info};
use wsx::hub::{Hub, HubConfig, HubError, Member, Offset, Recovery};
use wsx::{Message, Socket};

use crate::serve::ServeArgs;

/// The hub `wsx serve` was asked for.
pub async fn hub(args: &ServeArgs) -> anyhow::Result<Hub> {
    // The library's defaults are the chat's: a member whose write buffer stays full for 2 s is
    // dropped with 1013.
    let config = HubConfig::default();
    let Some(url) = &args.hub else {
        anyhow::ensure!(
            args.history.is_none(),
            "--history needs --hub redis://...: the in-memory hub keeps no history"
        );
        return Ok(Hub::memory(config));
    };
    redis_hub(url, args.history, config).await
}

#[cfg(feature = "redis")]
async fn redis_hub(url: &str, history: Option<usize>, config: HubConfig) -> anyhow::Result<Hub> {
    let options = wsx::hub::RedisOptions {
        history,
        ..Default::default()
    };
    Hub::redis(url, options, config)
        .await
        .context("cannot start the Redis hub")
}

#[cfg(not(feature = "redis"))]
async fn redis_hub(_: &str, _: Option<usize>, _: HubConfig) -> anyhow::Result<Hub> {
    anyhow::bail!("this wsx was built without the `redis` feature")
}

/// A room a request asks for, and the offset it recovers from.
pub struct RoomRequest {
    room: String,
    since: Option<Offset>,
}

/// The room of a request path (`/chat`, `/room/NAME`), `None` for other paths, or why it is
/// refused (a bad name, a bad or unsupported `since`).
pub fn route(uri: &http::Uri, hub: &Hub) -> Result<Option<RoomRequest>, HubError> {
    let room = match uri.path() {
        "/chat" => "chat",
        path => match path.strip_prefix("/room/") {
            Some(name) => name,
            None => return Ok(None),
        },
    };
    wsx::hub::validate_room(room)?;
    let since = uri
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|pair| pair.strip_prefix("since="))
        .map(str::parse::<Offset>)
        .transpose()?;
    if since.is_some() && !hub.has_history() {
        return Err(HubError::NoHistory);
    }
    Ok(Some(RoomRequest {
        room: room.to_owned(),
        since,
    }))
}

/// A member in its room (and what it recovered), waiting for its socket.
pub struct Joined {
    member: Member,
    room: String,
    recovery: Option<Recovery>,
}

/// Joins the room (and reads the history) before the upgrade is answered.
pub async fn join(hub: &Hub, request: RoomRequest) -> Result<Joined, HubError> {
    let member = hub.member();
    member.join(&request.room).await?;
    let recovery = match request.since {
        Some(since) => Some(member.recover(&request.room, since).await?),
        None => None,
    };
    Ok(Joined {
        member,
        room: request.room,
        recovery,
    })
}

/// Sends what was recovered, then relays each message of `socket` to the room until it closes.
pub async fn run(joined: Joined, socket: &Socket) {
    let Joined {
        member,
        room,
        recovery,
    } = joined;
    match recovery {
        Some(Recovery::Recovered(list)) => {
            let _ = socket.send(format!("#recovered {}", list.len())).await;
            for (_, msg) in list {
                let _ = socket.send(msg).await;
            }
        }
        Some(Recovery::Gap) => {
            info!(%room, "history no longer reaches back to the offset asked");
            let _ = socket.send("#gap").await;
        }
        None => {}
    }
    member.attach(socket);
    while let Ok(msg) = socket.recv().await {
        if !msg.is_text() && !msg.is_binary() {
            continue;
        }
        if let Err(e) = member
            .publish(&room, Message::with_kind(msg.kind(), msg.into_body()))
            .await
        {
            debug!(%room, error = %e, "publish failed");
        }
    }
}
