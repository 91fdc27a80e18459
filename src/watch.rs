//! Connection supervision without per-poll cost. Each worker keeps a registry of its open
//! connections; one supervisor task per worker closes idle ones (no bytes moved and nothing in
//! flight for a whole `idle_timeout`), breaks off those whose client has read nothing of an
//! answer for as long (a write waiting the whole time: nginx's `send_timeout`; such a client
//! would otherwise hold its connection, and the upstream connection feeding it, for ever) and,
//! on shutdown, tells every connection to finish gracefully. A connection learns of it through a flag and a waker: polling it costs one
//! waker registration, not a timer and a cancellation future on every wake-up.

use futures_util::task::AtomicWaker;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the supervisor and a connection share.
pub struct ConnWatch {
    /// Bumped on every read or write that moved bytes (by `io::ActivityIo`).
    pub activity: AtomicU64,
    /// Requests being handled on the connection.
    pub in_flight: AtomicUsize,
    close: AtomicBool,
    waker: AtomicWaker,
    /// A write to the client is waiting for room (set and cleared by `io::ActivityIo`).
    pub write_blocked: AtomicBool,
    /// The connection is broken off: its reads and writes fail from now on.
    aborted: AtomicBool,
    /// The waiting write's task, woken when the connection is broken off.
    pub write_waker: AtomicWaker,
    /// The activity count the supervisor saw last time (only the supervisor touches it).
    seen: AtomicU64,
}

impl ConnWatch {
    fn new() -> ConnWatch {
        ConnWatch {
            activity: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            close: AtomicBool::new(false),
            waker: AtomicWaker::new(),
            write_blocked: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            write_waker: AtomicWaker::new(),
            // Never equal to a real count: a new connection gets a full round before it can be
            // judged idle.
            seen: AtomicU64::new(u64::MAX),
        }
    }

    /// Asks the connection to finish gracefully.
    pub fn close(&self) {
        self.close.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Breaks the connection off: its waiting write (and every read and write after) fails.
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::Release);
        self.write_waker.wake();
        self.close();
    }

    pub fn aborted(&self) -> bool {
        self.aborted.load(Ordering::Acquire)
    }

    /// Whether the connection was asked to close (without registering a waker).
    pub fn closing(&self) -> bool {
        self.close.load(Ordering::Acquire)
    }

    /// Called by the connection on every poll: registers its waker and says whether to close.
    pub fn should_close(&self, waker: &std::task::Waker) -> bool {
        self.waker.register(waker);
        self.close.load(Ordering::Acquire)
    }
}

/// Counts a request as in flight until it is answered or dropped (an HTTP/2 reset, say).
pub struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    pub fn enter(watch: &'a ConnWatch) -> Busy<'a> {
        watch.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(&watch.in_flight)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A worker's open connections.
#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<u64, Arc<ConnWatch>>>,
    next: AtomicU64,
}

/// Removes its connection from the registry when dropped.
pub struct Registered<'a> {
    registry: &'a Registry,
    id: u64,
    pub watch: Arc<ConnWatch>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnWatch>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a connection; if shutdown has begun it is told to close at once.
    pub fn register(&self, cancel: &CancellationToken) -> Registered<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let watch = Arc::new(ConnWatch::new());
        self.lock().insert(id, watch.clone());
        if cancel.is_cancelled() {
            watch.close();
        }
        Registered {
            registry: self,
            id,
            watch,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs until `cancel`: every `idle` closes connections idle since the last round; on
    /// cancel, asks every connection to finish.
    pub async fn supervise(&self, idle: Duration, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    for w in self.lock().values() {
                        w.close();
                    }
                    return;
                }
                _ = ticks.tick() => {
                    for w in self.lock().values() {
                        let now = w.activity.load(Ordering::Relaxed);
                        if now == w.seen.load(Ordering::Relaxed) {
                            if w.write_blocked.load(Ordering::Relaxed) {
                                w.abort();
                            } else if w.in_flight.load(Ordering::Relaxed) == 0 {
                                w.close();
                            }
                        }
                        w.seen.store(now, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}
