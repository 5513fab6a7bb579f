//! The axum extractor (feature `axum`): take the upgrade in a handler, next to axum's own
//! extractors, the way axum's `WebSocketUpgrade` is used.
//!
//! Over HTTP/2 (feature `http2`; `axum::serve` advertises extended CONNECT) the upgrade is a
//! `CONNECT` request, not a `GET`: route the handler with `any(...)` to take both.
//!
//! ```no_run
//! use axum::extract::{Path, State};
//! use axum::response::Response;
//! use axum::routing::get;
//! use axum::Router;
//! use wsx::axum::WebSocketUpgrade;
//!
//! #[derive(Clone)]
//! struct App {
//!     greeting: &'static str,
//! }
//!
//! async fn room(State(app): State<App>, Path(name): Path<String>, ws: WebSocketUpgrade) -> Response {
//!     ws.protocols(["chat"]).on_upgrade(move |socket| async move {
//!         let _ = socket.send(format!("{} {name}", app.greeting)).await;
//!         while let Ok(msg) = socket.recv().await {
//!             if socket.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn run() {
//! let app = Router::new()
//!     .route("/rooms/{name}", get(room))
//!     .with_state(App { greeting: "welcome to" });
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await.unwrap();
//! axum::serve(listener, app).await.unwrap();
//! # }
//! ```

use std::fmt;
use std::future::Future;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};

use crate::proto::handshake;
use crate::socket::Socket;
use crate::upgrade::{AcceptOptions, HttpUpgrade};
use crate::UpgradeRejection;

/// The WebSocket upgrade of a request, as an axum extractor. Answer it with
/// [`WebSocketUpgrade::on_upgrade`]; what it returns is the handler's response (101, or the
/// refusal).
///
/// Extraction fails with an [`UpgradeRejection`]: the
/// [`HandshakeError`](crate::proto::handshake::HandshakeError) that says why the request is not a
/// valid upgrade (or why the connection cannot be upgraded), answered as [`crate::upgrade()`]
/// and [`crate::accept()`] answer it. Over HTTP/1.1: 405 for a method other than GET, 426 with
/// `Sec-WebSocket-Version: 13` for a missing or other version, 426 when the connection cannot
/// be upgraded, 400 for the rest. Over HTTP/2: 400 for all of these (with
/// `Sec-WebSocket-Version: 13` for a version), as HTTP/2 has no `Upgrade`.
pub struct WebSocketUpgrade {
    request: HttpUpgrade,
    options: AcceptOptions,
}

impl fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("offered_protocols", &self.request.request.protocols)
            .field("options", &self.options)
            .finish()
    }
}

impl WebSocketUpgrade {
    /// The subprotocols this handler speaks: the first one the client offers (in the client's
    /// order) that is in this list is chosen. Replaces the options' list.
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.options.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The accept settings (compression, origin check, socket limits and timeouts).
    pub fn options(mut self, options: AcceptOptions) -> Self {
        self.options = options;
        self
    }

    /// The subprotocols the client offered, in its order.
    pub fn offered_protocols(&self) -> &[String] {
        &self.request.request.protocols
    }

    /// The subprotocol that will be chosen with the current settings, if any.
    pub fn selected_protocol(&self) -> Option<&str> {
        handshake::select_protocol(&self.request.request.protocols, &self.options.protocols)
    }

    /// The request's `Origin`, if it had one.
    pub fn origin(&self) -> Option<&str> {
        self.request.request.origin.as_deref()
    }

    /// Answers the upgrade: the 101 response to return from the handler, after which `callback`
    /// runs on a task of its own with the OPEN socket; or the refusal (an origin the options'
    /// check refuses gets 403).
    pub fn on_upgrade<C, Fut>(self, callback: C) -> Response
    where
        C: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.request
            .answer(&self.options, callback)
            .map(axum_core::body::Body::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = UpgradeRejection;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(WebSocketUpgrade {
            request: HttpUpgrade::from_parts(parts)?,
            options: AcceptOptions::default(),
        })
    }
}

/// A rejected upgrade answers as every other door does, for the HTTP version it came over (see
/// [`UpgradeRejection::response`]).
impl IntoResponse for UpgradeRejection {
    fn into_response(self) -> Response {
        self.response().map(axum_core::body::Body::from)
    }
}
