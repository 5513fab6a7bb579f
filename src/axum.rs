//! The axum extractor (feature `axum`): take the upgrade in a handler, next to axum's own
//! extractors, the way axum's `WebSocketUpgrade` is used.
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

use crate::proto::handshake::{self, HandshakeError};
use crate::socket::Socket;
use crate::upgrade::{not_upgradable, AcceptOptions, HttpUpgrade};

/// The WebSocket upgrade of a request, as an axum extractor. Answer it with
/// [`WebSocketUpgrade::on_upgrade`]; what it returns is the handler's response (101, or the
/// refusal).
///
/// Extraction fails with a [`WebSocketUpgradeRejection`] (the request is not a valid upgrade)
/// whose response is the same as [`crate::upgrade()`] and [`crate::accept()`] give: 405 for a
/// method other than GET, 426 with `Sec-WebSocket-Version: 13` for a missing or other version,
/// 426 when the connection cannot be upgraded, 400 for the rest.
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
    type Rejection = WebSocketUpgradeRejection;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let request = HttpUpgrade::from_parts(parts).map_err(WebSocketUpgradeRejection::Invalid)?;
        if !request.upgradable() {
            return Err(WebSocketUpgradeRejection::NotUpgradable);
        }
        Ok(WebSocketUpgrade {
            request,
            options: AcceptOptions::default(),
        })
    }
}

/// Why a request could not be taken as a WebSocket upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebSocketUpgradeRejection {
    /// The request is not a valid upgrade; the error says what was wrong.
    #[error(transparent)]
    Invalid(HandshakeError),
    /// The request is valid but the HTTP server cannot hand this connection over.
    #[error("this connection cannot be upgraded to a WebSocket")]
    NotUpgradable,
}

impl IntoResponse for WebSocketUpgradeRejection {
    fn into_response(self) -> Response {
        match self {
            WebSocketUpgradeRejection::Invalid(e) => handshake::error_response(&e),
            WebSocketUpgradeRejection::NotUpgradable => not_upgradable(),
        }
        .map(axum_core::body::Body::from)
    }
}
