//! The callback style of the seed's `ws.Socket`: `on_open`, `on_message`, `on_close` and
//! `on_error`, delivered in order by a task of their own, on top of the same receive path as
//! [`Socket::recv`] (so the driver knows nothing of callbacks).
//!
//! The task ends, and drops the callbacks (and whatever sockets they hold, which would
//! otherwise keep the connection alive through a reference cycle), once the socket is closed
//! and every callback that is set has had its last event. A callback set after that starts a
//! new task.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Poll, Waker};

use super::{poll_recv_locked, Inner, Shared, Socket};
use crate::message::Message;
use crate::proto::{CloseEvent, ErrorEvent};

type OpenFn = Arc<dyn Fn() + Send + Sync>;
type MessageFn = Arc<dyn Fn(Message) + Send + Sync>;
type CloseFn = Arc<dyn Fn(CloseEvent) + Send + Sync>;
type ErrorFn = Arc<dyn Fn(ErrorEvent) + Send + Sync>;

#[derive(Default)]
pub(super) struct Callbacks {
    open: Option<OpenFn>,
    message: Option<MessageFn>,
    close: Option<CloseFn>,
    error: Option<ErrorFn>,
    /// A dispatch task is running.
    running: bool,
    open_fired: bool,
    error_fired: bool,
    close_fired: bool,
}

impl Callbacks {
    /// Whether any callback is set.
    pub(super) fn any(&self) -> bool {
        self.open.is_some()
            || self.message.is_some()
            || self.close.is_some()
            || self.error.is_some()
    }
}

/// Wakes the dispatch task (the socket opened, or closed, or messages came).
pub(super) fn wake(sh: &mut Shared) {
    sh.callback_wakers.wake_all();
}

enum Dispatch {
    Open(OpenFn),
    Message(MessageFn, Message),
    Error(ErrorFn, ErrorEvent),
    Close(CloseFn, CloseEvent),
    Done(Callbacks),
}

/// The next event for a callback, or `Done` with the callbacks taken out once nothing more
/// will come.
fn next(inner: &Inner, sh: &mut Shared, waker: &Waker) -> Poll<Dispatch> {
    let cbs = &mut sh.callbacks;
    if sh.proto.was_opened() && !cbs.open_fired {
        if let Some(f) = cbs.open.clone() {
            cbs.open_fired = true;
            return Poll::Ready(Dispatch::Open(f));
        }
    }
    if let Some(f) = sh.callbacks.message.clone() {
        let cx = std::task::Context::from_waker(waker);
        if let Poll::Ready(Ok(msg)) = poll_recv_locked(inner, sh, &cx) {
            return Poll::Ready(Dispatch::Message(f, msg));
        }
    }
    let Some(closed) = sh.proto.close_event().cloned() else {
        sh.callback_wakers.register(waker);
        return Poll::Pending;
    };
    let error = sh.proto.error().cloned();
    let cbs = &mut sh.callbacks;
    if let (Some(e), Some(f), false) = (&error, &cbs.error, cbs.error_fired) {
        cbs.error_fired = true;
        return Poll::Ready(Dispatch::Error(f.clone(), e.clone()));
    }
    if let (Some(f), false) = (&cbs.close, cbs.close_fired) {
        cbs.close_fired = true;
        return Poll::Ready(Dispatch::Close(f.clone(), closed));
    }
    // Closed, and the close callback (when set) has run after every queued message: nothing
    // more will come. Unset callbacks count as done, so a socket with only `on_message` is
    // freed too.
    let fired = Callbacks {
        open_fired: cbs.open_fired,
        error_fired: cbs.error_fired || error.is_none(),
        close_fired: true,
        ..Callbacks::default()
    };
    let taken = std::mem::replace(cbs, fired);
    Poll::Ready(Dispatch::Done(taken))
}

/// Delivers events to the callbacks, in order, until the socket is closed.
async fn dispatch(inner: Arc<Inner>) {
    loop {
        let next = poll_fn(|cx| {
            let mut sh = inner.lock();
            next(&inner, &mut sh, cx.waker())
        })
        .await;
        match next {
            Dispatch::Open(f) => f(),
            Dispatch::Message(f, m) => f(m),
            Dispatch::Error(f, e) => f(e),
            Dispatch::Close(f, c) => f(c),
            // Dropped here, outside the lock: they may hold the last handles of sockets.
            Dispatch::Done(callbacks) => {
                drop(callbacks);
                return;
            }
        }
    }
}

impl Socket {
    fn set_callback(&self, set: impl FnOnce(&mut Callbacks)) {
        let mut sh = self.inner.lock();
        set(&mut sh.callbacks);
        sh.callback_wakers.wake_all();
        if !sh.callbacks.running {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                sh.callbacks.running = true;
                handle.spawn(dispatch(self.inner.clone()));
            }
        }
    }

    /// Calls `f` when the socket opens (also if it opened a moment before `f` was set).
    pub fn on_open(&self, f: impl Fn() + Send + Sync + 'static) {
        self.set_callback(|c| c.open = Some(Arc::new(f)));
    }

    /// Calls `f` with each message, in order, starting with those already queued. Once set,
    /// messages no longer reach [`Socket::recv`].
    pub fn on_message(&self, f: impl Fn(Message) + Send + Sync + 'static) {
        self.set_callback(|c| c.message = Some(Arc::new(f)));
    }

    /// Calls `f` once when the socket is closed, after the queued messages were delivered.
    pub fn on_close(&self, f: impl Fn(CloseEvent) + Send + Sync + 'static) {
        self.set_callback(|c| c.close = Some(Arc::new(f)));
    }

    /// Calls `f` once if the connection fails (before the close event).
    pub fn on_error(&self, f: impl Fn(ErrorEvent) + Send + Sync + 'static) {
        self.set_callback(|c| c.error = Some(Arc::new(f)));
    }
}
