//! [`Connection`]: a socket's I/O as a future that the caller runs, and [`Connection::run_with`],
//! which runs it in one task with the application's code for that socket.
//!
//! A server that spawns the I/O and then runs its handler in another task pays, for every
//! message, a wake-up of the second task through the runtime's scheduler (on a multi-thread
//! runtime, often the unparking of another worker too). Run together, the I/O hands a message
//! to the handler within the same poll: each side gets a waker of its own that, while the task
//! is being polled, only marks that side for another turn.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use pin_project_lite::pin_project;

use super::driver::Driver;

/// The I/O of one socket: reads into the protocol core, writes what it queued, and sleeps
/// until its next deadline; it ends once the connection is closed. [`crate::Socket::from_stream`]
/// spawns it; [`crate::Socket::with_connection`] hands it to the caller, who polls it (or
/// runs it with the socket's handler by [`Connection::run_with`]). Until it is polled, the
/// socket neither reads nor writes.
#[must_use = "a socket does no I/O unless its connection is polled"]
pub struct Connection {
    driver: Driver,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

impl Connection {
    pub(super) fn new(driver: Driver) -> Connection {
        Connection { driver }
    }

    /// Runs this connection and `app` (the code that uses its socket) in the caller's task.
    /// The future ends once both have: the connection is closed and `app` returned, with what
    /// `app` returned.
    ///
    /// Everything `app` waits on (receiving, backpressure, the close) is completed by this
    /// connection, so it must not be waited on outside this future. While `app` runs without
    /// yielding, the connection is not served either (no PING is answered, no timer runs),
    /// as with any code that shares a task.
    ///
    /// ```no_run
    /// # async fn serve(stream: wsx::WsStream) {
    /// use wsx::{Negotiated, Role, Socket, SocketConfig};
    ///
    /// let (socket, connection) = Socket::with_connection(
    ///     stream, Role::Server, Negotiated::default(), SocketConfig::default(), "/echo", "");
    /// // One task for the connection's I/O and its echo loop.
    /// connection
    ///     .run_with(async move {
    ///         while let Ok(msg) = socket.recv().await {
    ///             if socket.send(msg).await.is_err() {
    ///                 break;
    ///             }
    ///         }
    ///     })
    ///     .await;
    /// # }
    /// ```
    pub fn run_with<F: Future>(self, app: F) -> RunWith<F> {
        let task = Arc::new(TaskWake {
            polling: AtomicBool::new(false),
            outer: AtomicWaker::new(),
            driver_due: AtomicBool::new(true),
        });
        let app_wake = Arc::new(AppWake {
            due: AtomicBool::new(true),
            task: task.clone(),
        });
        RunWith {
            driver: Some(self.driver),
            app: App::Running { future: app },
            driver_waker: Waker::from(task.clone()),
            app_waker: Waker::from(app_wake.clone()),
            task,
            app_wake,
        }
    }
}

impl Future for Connection {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.driver).poll(cx)
    }
}

/// The task's side of the two wakers: the waker of the task itself, whether it is being polled
/// right now, and the connection's mark (the connection's waker is this).
struct TaskWake {
    polling: AtomicBool,
    outer: AtomicWaker,
    driver_due: AtomicBool,
}

impl TaskWake {
    fn wake_task(&self) {
        // A wake while the task is being polled is seen by its loop (see `RunWith::poll`).
        if !self.polling.load(Ordering::SeqCst) {
            self.outer.wake();
        }
    }
}

impl Wake for TaskWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.driver_due.store(true, Ordering::SeqCst);
        self.wake_task();
    }
}

/// The application's waker.
struct AppWake {
    due: AtomicBool,
    task: Arc<TaskWake>,
}

impl Wake for AppWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.due.store(true, Ordering::SeqCst);
        self.task.wake_task();
    }
}

/// How many turns one poll of [`RunWith`] takes before it lets other tasks run.
const MAX_TURNS: usize = 32;

pin_project! {
    /// A connection and its application in one task ([`Connection::run_with`]).
    #[must_use = "futures do nothing unless polled"]
    pub struct RunWith<F: Future> {
        driver: Option<Driver>,
        #[pin]
        app: App<F>,
        driver_waker: Waker,
        app_waker: Waker,
        task: Arc<TaskWake>,
        app_wake: Arc<AppWake>,
    }
}

pin_project! {
    /// The application's future, then (once it ended, and was dropped with whatever it held)
    /// its output until the connection ends too.
    #[project = AppProj]
    enum App<F: Future> {
        Running { #[pin] future: F },
        Done { output: Option<F::Output> },
    }
}

impl<F: Future> std::fmt::Debug for RunWith<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunWith")
            .field("connection_done", &self.driver.is_none())
            .field("app_done", &matches!(self.app, App::Done { .. }))
            .finish()
    }
}

impl<F: Future> Future for RunWith<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let mut this = self.project();
        let (task, app_wake) = (&**this.task, &**this.app_wake);
        task.outer.register(cx.waker());
        task.polling.store(true, Ordering::SeqCst);
        // A side woken during its own poll asked to yield (it yielded, or spent the runtime's
        // budget): it gets its next turn through the scheduler, not in this loop.
        let mut yielded = false;
        let mut turns = 0;
        loop {
            if this.driver.is_some() && task.driver_due.swap(false, Ordering::SeqCst) {
                let mut dcx = Context::from_waker(this.driver_waker);
                if let Some(driver) = this.driver.as_mut() {
                    if Pin::new(driver).poll(&mut dcx).is_ready() {
                        *this.driver = None;
                    } else if task.driver_due.load(Ordering::SeqCst) {
                        yielded = true;
                    }
                }
            }
            let running = matches!(*this.app, App::Running { .. });
            if running && app_wake.due.swap(false, Ordering::SeqCst) {
                let mut acx = Context::from_waker(this.app_waker);
                if let AppProj::Running { future } = this.app.as_mut().project() {
                    match future.poll(&mut acx) {
                        Poll::Ready(out) => this.app.set(App::Done { output: Some(out) }),
                        Poll::Pending => yielded |= app_wake.due.load(Ordering::SeqCst),
                    }
                }
            }
            if this.driver.is_none() {
                if let AppProj::Done { output } = this.app.as_mut().project() {
                    task.polling.store(false, Ordering::SeqCst);
                    // (`None` only if polled again after it ended: nothing more will come.)
                    return output.take().map_or(Poll::Pending, Poll::Ready);
                }
            }
            turns += 1;
            if yielded || turns >= MAX_TURNS {
                task.polling.store(false, Ordering::SeqCst);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Only a side still running counts: the waker of one that ended may still be
            // registered somewhere (a socket it used), and its mark would never be cleared.
            let (driver_live, app_live) = (
                this.driver.is_some(),
                matches!(*this.app, App::Running { .. }),
            );
            let due = || {
                (driver_live && task.driver_due.load(Ordering::SeqCst))
                    || (app_live && app_wake.due.load(Ordering::SeqCst))
            };
            if due() {
                continue;
            }
            // Wakes from other threads until here saw `polling` and left the task asleep:
            // look once more after clearing it.
            task.polling.store(false, Ordering::SeqCst);
            if !due() {
                return Poll::Pending;
            }
            task.polling.store(true, Ordering::SeqCst);
        }
    }
}
