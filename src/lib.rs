//! # wsx
//!
//! WebSocket for Rust (RFC 6455, with RFC 7692 permessage-deflate): the `ws` module of the fibjs
//! runtime, done in Rust. A sans-I/O protocol core ([`proto`]) under a tokio layer.
//!
//! | seed item | here | file |
//! |---|---|---|
//! | `ws.Message` | [`Message`] | `src/message.rs` |
//! | `ws.Handler` | [`Handler`] | `src/handler.rs` |
//! | `ws.Socket` | [`Socket`] | `src/socket/mod.rs` (its driver, callbacks and halves beside it) |
//! | `ws.connect(url, origin)` | [`connect()`], [`connect_with`], [`Socket::open`] | `src/connect.rs` |
//! | `ws.upgrade(accept)` | [`upgrade()`] (a `tower::Service` for hyper/axum), [`accept`] | `src/upgrade.rs` |
//! | `CONTINUE` … `PONG` | [`OpCode`], [`constants`] | `src/proto/opcode.rs`, `src/constants.rs` |
//! | `CONNECTING` … `CLOSED` | [`ReadyState`], [`constants`] | `src/proto/state.rs`, `src/constants.rs` |
//!
//! ## Example: an echo server and a client
//!
//! ```
//! use wsx::{AcceptOptions, ConnectOptions, Socket};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> wsx::Result<()> {
//! // Server: accept on a TCP listener and echo every message back.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! tokio::spawn(async move {
//!     while let Ok((tcp, _)) = listener.accept().await {
//!         tokio::spawn(async move {
//!             let Ok((socket, _)) = wsx::accept(tcp, &AcceptOptions::default()).await else {
//!                 return;
//!             };
//!             while let Ok(msg) = socket.recv().await {
//!                 if socket.send(msg).await.is_err() {
//!                     break;
//!                 }
//!             }
//!         });
//!     }
//! });
//!
//! // Client: connect, send, read the echo, close.
//! let socket = Socket::open(&format!("ws://{addr}/echo"), ConnectOptions::default()).await?;
//! socket.send("hello").await?;
//! let reply = socket.recv().await?;
//! assert_eq!(reply.as_text(), Some("hello"));
//! socket.close(1000, "done").await?;
//! assert_eq!(socket.ready_state(), wsx::ReadyState::Closed);
//! # Ok(())
//! # }
//! ```
//!
//! The same socket also works with callbacks ([`Socket::on_message`], [`Socket::on_close`], ...)
//! and as a `Stream`/`Sink` pair ([`Socket::split`]). With axum, route the upgrade service:
//! `Router::new().route_service("/ws", wsx::upgrade(|socket, _parts| async move { ... }))`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod connect;
pub mod constants;
pub mod error;
pub mod handler;
mod http_io;
pub mod message;
pub mod proto;
pub mod socket;
pub mod tls;
pub mod transport;
pub mod upgrade;

pub use connect::{connect, connect_with, ConnectOptions, Connected};
pub use error::{Error, Result};
pub use handler::{Handler, HandlerStats, StatsSnapshot};
pub use message::Message;
pub use proto::deflate::DeflateConfig;
pub use proto::{CloseCode, OpCode, ReadyState, Role};
pub use socket::{
    CloseEvent, ErrorEvent, PreparedMessage, Socket, SocketConfig, SocketReader, SocketWriter,
    WeakSocket,
};
pub use transport::WsStream;
pub use upgrade::{accept, upgrade, AcceptOptions, Upgrade};
