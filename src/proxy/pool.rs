//! One worker's idle upstream connections, by route index then target index. Used only by that
//! worker's thread (the mutexes are never contended): a request takes the newest idle
//! connection that still looks usable, and puts it back when its response has been read.
//! The general path pools hyper's `SendRequest` handles, the fast path raw streams.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Idle connections kept per (route, target) per worker.
const MAX_IDLE: usize = 512;
/// An idle connection older than this is closed rather than reused.
const IDLE_TTL: Duration = Duration::from_secs(90);

/// A pooled connection: can it carry another request?
pub trait Reusable {
    fn is_reusable(&mut self) -> bool;
}

impl<B: 'static> Reusable for hyper::client::conn::http1::SendRequest<B> {
    fn is_reusable(&mut self) -> bool {
        !self.is_closed()
    }
}

impl Reusable for crate::proxy::stream::Stream {
    fn is_reusable(&mut self) -> bool {
        self.looks_alive()
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
}

pub struct Pool<C> {
    idle: Vec<Vec<Mutex<Vec<Idle<C>>>>>,
}

impl<C: Reusable> Pool<C> {
    /// A pool for routes with these numbers of targets.
    pub fn new(target_counts: impl IntoIterator<Item = usize>) -> Pool<C> {
        Pool {
            idle: target_counts
                .into_iter()
                .map(|n| (0..n).map(|_| Mutex::new(Vec::new())).collect())
                .collect(),
        }
    }

    /// The newest usable idle connection; `now` is about now (a clock read the caller made).
    pub fn take(&self, route: usize, target: usize, now: Instant) -> Option<C> {
        let mut idle = self.idle.get(route)?.get(target)?.lock().ok()?;
        while let Some(mut c) = idle.pop() {
            if now.saturating_duration_since(c.since) < IDLE_TTL && c.conn.is_reusable() {
                return Some(c.conn);
            }
        }
        None
    }

    /// Keeps `conn` for the next request (the caller knows it can carry one), idle since `now`.
    pub fn put(&self, route: usize, target: usize, conn: C, now: Instant) {
        if let Some(Ok(mut idle)) = self.idle.get(route).and_then(|r| r.get(target)).map(|m| m.lock())
            && idle.len() < MAX_IDLE
        {
            idle.push(Idle { conn, since: now });
        }
    }
}
