//! # wsx
//!
//! WebSocket for Rust (RFC 6455, with RFC 7692 permessage-deflate): the `ws` module of the fibjs
//! runtime, done in Rust. A sans-I/O protocol core ([`proto`]) under a tokio layer.
//!
//! ## One way to do each thing
//!
//! | to | use |
//! |---|---|
//! | connect and wait until open | [`Socket::open(url, ConnectOptions)`](Socket::open) |
//! | connect in the background (the browser's `new WebSocket(url)`) | [`Socket::connect(url, ConnectOptions)`](Socket::connect) |
//! | get a handshaken byte stream (the seed's `ws.connect`) | [`connect(url, origin)`](connect()) |
//! | accept in hyper or any tower stack | [`upgrade(accept)`](upgrade()), a `tower::Service` |
//! | accept in an axum handler, next to its extractors | `wsx::axum::WebSocketUpgrade` (feature `axum`) |
//! | accept on a raw TCP or TLS stream | [`accept(stream, &AcceptOptions)`](accept()) |
//! | send (waiting while the write buffer is full) | [`Socket::send`] |
//! | send without ever waiting | [`Socket::try_send`] |
//! | send one frame to many sockets | [`PreparedMessage`] with [`Socket::send_prepared`] / [`Socket::try_send_prepared`] |
//! | broadcast to rooms, across processes | [`hub::Hub`] (in memory, or on Redis with feature `redis`) |
//! | ping | [`Socket::ping`] |
//! | close (and, if you like, wait for the end) | [`Socket::close(CloseCode, reason)`](Socket::close) |
//! | receive | [`Socket::recv`], the `Stream` half of [`Socket::split`], or callbacks ([`Socket::on_message`], ...) |
//! | use a connection from one task only, with no shared state (the cheapest per message) | [`OwnedSocket`]: [`OwnedSocket::open`], [`server::accept_request_owned`], [`OwnedSocket::new`] |
//! | read or write one message on any byte stream | [`MessageCodec`] |
//! | build your own handshake or connection loop | [`proto`] (sans-I/O), [`client`], [`server`] |
//!
//! ## Where each seed item lives
//!
//! | seed item | here | file |
//! |---|---|---|
//! | `ws.Message` | [`Message`] (the value); `readFrom`, `sendTo`, `masked`, `maxSize`: [`MessageCodec`] | `src/message.rs` |
//! | `ws.Handler` | [`Handler`] | `src/handler.rs` |
//! | `ws.Socket` | [`Socket`] | `src/socket/mod.rs` (its driver, callbacks and halves beside it) |
//! | `ws.connect(url, origin)` | [`connect()`]; sockets: [`Socket::open`], [`Socket::connect`] | `src/connect.rs` |
//! | `ws.upgrade(accept)` | [`upgrade()`] (a `tower::Service` for hyper/axum), [`accept`] | `src/upgrade.rs` |
//! | `CONTINUE` … `PONG` | [`OpCode`], [`constants`] | `src/proto/opcode.rs`, `src/constants.rs` |
//! | `CONNECTING` … `CLOSED` | [`ReadyState`], [`constants`] | `src/proto/state.rs`, `src/constants.rs` |
//!
//! ## Example: an echo server and a client
//!
//! ```
//! use wsx::{AcceptOptions, CloseCode, ConnectOptions, Socket};
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
//! let closed = socket.close(CloseCode::NORMAL, "done").await;
//! assert!(closed.clean);
//! assert_eq!(socket.ready_state(), wsx::ReadyState::Closed);
//! # Ok(())
//! # }
//! ```
//!
//! With axum, either take the upgrade as an extractor (feature `axum`) or route the service:
//! `Router::new().route_service("/ws", wsx::upgrade(|socket, _parts| async move { ... }))`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod axum;
mod connect;
pub mod constants;
mod cookies;
mod error;
#[cfg(feature = "http2")]
mod h2;
mod handler;
mod http_io;
pub mod hub;
mod message;
pub mod proto;
mod proxy;
mod redirect;
mod socket;
#[cfg(feature = "rustls")]
#[cfg_attr(docsrs, doc(cfg(feature = "rustls")))]
pub mod tls;
mod transport;
mod upgrade;

pub use connect::{connect, ConnectOptions};
#[cfg(feature = "cookies")]
#[cfg_attr(docsrs, doc(cfg(feature = "cookies")))]
pub use cookies::CookieJar;
pub use error::{Error, Result};
pub use handler::{BoxError, Handler, HandlerServe, HandlerStats, StatsSnapshot};
pub use message::{DecodedMessage, Message, MessageCodec};
pub use proto::deflate::DeflateConfig;
pub use proto::handshake::HandshakeLimits;
pub use proto::{CloseCode, OpCode, ReadyState, Role};
pub use proxy::{Proxy, ProxyError};
pub use redirect::RedirectError;
pub use socket::{
    CloseEvent, CloseHandle, Closing, Connection, ErrorEvent, Negotiated, OwnedSocket,
    PreparedMessage, RunWith, Socket, SocketConfig, SocketReader, SocketWriter, WeakSocket,
};
pub use transport::{AnyIo, Transport, WsStream};
pub use upgrade::{accept, AcceptOptions, OriginCheck};
#[cfg(feature = "hyper")]
#[cfg_attr(docsrs, doc(cfg(feature = "hyper")))]
pub use upgrade::{upgrade, Upgrade, UpgradeRejection};

/// The client handshake on its own, for programs that frame bytes themselves (a load generator,
/// a proxy): connect, handshake, and get the stream with what was negotiated. Everyone else
/// uses [`Socket::open`] or [`Socket::connect`].
pub mod client {
    pub use crate::connect::{handshake, Connected};
}

/// The server handshake in two steps, for servers that answer plain HTTP and WebSocket upgrades
/// on one port: read the request head, look at it, then finish the upgrade (or answer it
/// yourself). Everyone else uses [`upgrade`](crate::upgrade()) or [`accept`](crate::accept()).
pub mod server {
    pub use crate::upgrade::{
        accept_request, accept_request_owned, accept_request_with_connection, read_request,
    };
}
