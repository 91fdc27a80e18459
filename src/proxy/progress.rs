//! One exchange's progress on the general path, shared by its request body (`UpstreamBody`)
//! and its response body (`ProxyBody`), for two rules both paths apply:
//! - **A request body is never sent on after the answer ended.** An upstream that answered
//!   without reading the whole body (an early 401, a 0.CL origin) would read the rest as its
//!   next request; and a connection still sending cannot serve anyone else. So the body is
//!   abandoned and the connection not pooled (the fast path stops sending and closes).
//! - **An exchange in which nothing moves for the route's `timeout`** — no request body from
//!   the client, no response from the upstream — **is broken off** (nginx's
//!   `client_body_timeout` and `proxy_read_timeout` in one).

use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

const SENDING: u8 = 0;
const SENT: u8 = 1;
const ABANDONED: u8 = 2;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Milliseconds on a monotonic clock (since the first call in this process).
pub fn now_ms() -> u64 {
    start().elapsed().as_millis() as u64
}

pub struct Progress {
    state: AtomicU8,
    moved_ms: AtomicU64,
}

impl Progress {
    /// An exchange starting now; `body`: the request has a body still to send.
    pub fn new(body: bool) -> Progress {
        Progress {
            state: AtomicU8::new(if body { SENDING } else { SENT }),
            moved_ms: AtomicU64::new(now_ms()),
        }
    }

    /// Something moved (a piece of either body).
    pub fn moved(&self) {
        self.moved_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// The request body has all been read from the client and handed on.
    pub fn sent(&self) {
        let _ = self
            .state
            .compare_exchange(SENDING, SENT, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The answer has ended: `true` if the request body had all been sent (the connection may
    /// be reused); otherwise the rest of it is abandoned.
    pub fn answer_ended(&self) -> bool {
        match self
            .state
            .compare_exchange(SENDING, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => false,
            Err(state) => state == SENT,
        }
    }

    pub fn abandoned(&self) -> bool {
        self.state.load(Ordering::Acquire) == ABANDONED
    }
}

/// Breaks off an exchange in which nothing moved for `limit`.
pub struct Stall {
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stall {
    pub fn new(limit: Duration) -> Stall {
        Stall { limit, timer: None }
    }

    /// `Ready` once nothing has moved for `limit`; else waits (to be polled again on wake).
    pub fn poll(&mut self, cx: &mut Context<'_>, progress: &Progress) -> Poll<()> {
        loop {
            let moved = progress.moved_ms.load(Ordering::Relaxed);
            let deadline = start() + Duration::from_millis(moved) + self.limit;
            if Instant::now() >= deadline {
                return Poll::Ready(());
            }
            let deadline = tokio::time::Instant::from_std(deadline);
            match &mut self.timer {
                Some(t) if t.deadline() == deadline => {}
                Some(t) => t.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            let Some(timer) = &mut self.timer else {
                return Poll::Pending;
            };
            match timer.as_mut().poll(cx) {
                // The deadline passed: look again (something may have moved meanwhile).
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_not_all_sent_when_the_answer_ends_is_abandoned() {
        let p = Progress::new(true);
        assert!(!p.answer_ended() && p.abandoned());
        p.sent();
        assert!(p.abandoned(), "abandoned stays abandoned");
        let p = Progress::new(true);
        p.sent();
        assert!(p.answer_ended() && !p.abandoned());
        assert!(Progress::new(false).answer_ended());
    }
}

/// Why a forwarded exchange was broken off.
#[derive(Debug)]
pub enum Broken {
    /// Nothing moved, either way, for the route's `timeout`.
    Stalled,
    /// The answer ended before the request body was all sent: the rest is not sent on.
    Abandoned,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Broken::Stalled => "nothing moved either way within the route's timeout",
            Broken::Abandoned => "the answer ended before the request body was all sent",
        })
    }
}

impl std::error::Error for Broken {}
