//! Login rate limiting: fixed windows counted per key (a username, a client address). Over the
//! limit, the answer is 429 with `Retry-After` until the window ends. Counters live in a
//! bounded moka cache, so a flood of distinct keys cannot grow memory without bound.

use moka::sync::Cache;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

struct Window {
    started: Instant,
    count: AtomicU32,
}

pub struct RateLimit {
    limit: u32,
    window: Duration,
    counters: Cache<String, Arc<Window>>,
}

impl RateLimit {
    pub fn new(limit: u32, window: Duration) -> RateLimit {
        RateLimit {
            limit,
            window,
            counters: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
        }
    }

    /// Counts one attempt for `key`; `Err(seconds)` when over the limit (retry after that long).
    pub fn hit(&self, key: &str) -> Result<(), u64> {
        let w = self.counters.get_with(key.to_string(), || {
            Arc::new(Window {
                started: Instant::now(),
                count: AtomicU32::new(0),
            })
        });
        let n = w.count.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.limit {
            let left = self.window.saturating_sub(w.started.elapsed());
            return Err(left.as_secs().max(1));
        }
        Ok(())
    }

    /// Whether `key` is over the limit now, without counting.
    pub fn blocked(&self, key: &str) -> Option<u64> {
        let w = self.counters.get(key)?;
        (w.count.load(Ordering::Relaxed) >= self.limit)
            .then(|| self.window.saturating_sub(w.started.elapsed()).as_secs().max(1))
    }
}
