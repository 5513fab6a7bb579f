//! The connection's timers. The socket layer asks for the earliest deadline before every wait,
//! once or twice per message, while deadlines change far less often (a close, a stalled write,
//! a message left in progress, a keepalive period): [`Deadlines::set`] returns the earliest,
//! for the caller to keep at hand, so it is taken when a deadline changes, not when asked for.

use std::time::Instant;

/// One of the connection's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Deadline {
    /// The close handshake: our CLOSE unanswered, or the peer's EOF awaited after it.
    Close,
    /// The input ended while the application still had messages to take.
    End,
    /// Output the peer does not read ([`super::Config::write_timeout`]).
    Write,
    /// A message in progress ([`super::Config::message_timeout`]).
    Message,
    /// Keepalive: a PING to send, or the answer to one overdue.
    Keepalive,
    /// Compression state unused for its idle period.
    DeflateIdle,
}

/// How many kinds of [`Deadline`] there are.
const KINDS: usize = 6;

/// Every timer's deadline.
#[derive(Clone, Debug, Default)]
pub(crate) struct Deadlines {
    at: [Option<Instant>; KINDS],
}

impl Deadlines {
    /// When `timer` is due, if it is armed.
    pub(crate) fn get(&self, timer: Deadline) -> Option<Instant> {
        self.at[timer as usize]
    }

    /// Whether `timer` is armed and due at `now`.
    pub(crate) fn is_due(&self, timer: Deadline, now: Instant) -> bool {
        self.get(timer).is_some_and(|t| t <= now)
    }

    /// Arms `timer` for `at`, or disarms it (`None`); returns the earliest deadline now.
    #[must_use = "the earliest deadline is what the connection waits for"]
    pub(crate) fn set(&mut self, timer: Deadline, at: Option<Instant>) -> Option<Instant> {
        self.at[timer as usize] = at;
        self.at.iter().flatten().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn set_returns_the_earliest_armed_deadline_as_timers_change() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut d = Deadlines::default();
        assert_eq!(d.set(Deadline::Keepalive, Some(at(30))), Some(at(30)));
        assert_eq!(d.set(Deadline::Close, Some(at(10))), Some(at(10)));
        assert_eq!(d.set(Deadline::Write, Some(at(20))), Some(at(10)));
        assert_eq!(d.set(Deadline::Close, None), Some(at(20)));
        assert_eq!(d.set(Deadline::Write, Some(at(40))), Some(at(30)));
        assert_eq!(d.set(Deadline::Keepalive, None), Some(at(40)));
        assert_eq!(d.set(Deadline::Write, None), None);
        assert_eq!(d.set(Deadline::DeflateIdle, Some(at(5))), Some(at(5)));
        assert!(d.is_due(Deadline::DeflateIdle, at(5)));
        assert!(!d.is_due(Deadline::DeflateIdle, at(4)));
        assert!(!d.is_due(Deadline::Message, at(100)));
        assert_eq!(d.get(Deadline::DeflateIdle), Some(at(5)));
    }
}
