//! Memory per cached session (issue #5's "≤ 300 bytes per cached session"): fills a memory
//! store with N sessions, measures the process's RSS, then authenticates every token once so
//! each session enters the moka cache, and measures again. The difference over N is what one
//! cached session costs (the `Live` record, its header values, moka's entry). Prints one line.
//!
//!   cargo run --release --example cache_memory            # N = 1 000 000
//!   SESSIONS=200000 cargo run --release --example cache_memory
//!
//! `benches/e2e.sh` runs it and reports the figure against the target.

use portcullis::metrics::Metrics;
use portcullis::session::User;
use portcullis::session::backend::Store;
use portcullis::session::cache::{CacheSettings, Found, SessionSettings, Sessions};
use portcullis::session::memory::MemoryStore;
use portcullis::session::token::TokenKeys;
use std::time::Duration;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let n: usize = std::env::var("SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return eprintln!("no runtime: {e}"),
    };
    // moka's own share, measured first (freed memory is reused, not returned): the same keys,
    // a value of one pointer, per-entry expiry as ours.
    let floor = rt.block_on(moka_floor(n));
    let sessions = Sessions::new(
        Store::Memory(MemoryStore::new()),
        TokenKeys::new(&[b"memory-bench-key-0123456789abcdef0123".as_slice()]),
        CacheSettings {
            max_entries: n as u64 + 1,
            ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(5),
        },
        SessionSettings {
            ttl: Duration::from_secs(86400),
            pending_ttl: Duration::from_secs(600),
            reissue_ttl: Duration::from_secs(86400),
            reissue_grace: Duration::from_secs(3),
            idle_ttl: None,
        },
        &Metrics::new(),
    );
    // A few users, as in a real deployment (sessions share nothing with each other today).
    let users: Vec<User> = (0..100)
        .map(|i| User {
            id: i,
            username: format!("user{i}"),
            uuid: format!("00000000-0000-4000-8000-{i:012}"),
            roles: vec!["user".into()],
            provider: None,
        })
        .collect();
    let tokens: Vec<String> = rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            match sessions
                .create_active(&users[i % users.len()], None, Default::default())
                .await
            {
                Ok(issued) => out.push(issued.token),
                Err(e) => panic!("cannot create a session: {e}"),
            }
        }
        out
    });
    let before = rss_bytes();
    let active = rt.block_on(async {
        let mut active = 0usize;
        for t in &tokens {
            if let Ok(Found::Active(_)) = sessions.authenticate(t).await {
                active += 1;
            }
        }
        active
    });
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(200)).await });
    let after = rss_bytes();
    // Every authenticated token was a miss that entered the cache (capacity > n).
    let per_session = after.saturating_sub(before) / active.max(1) as u64;
    println!(
        "{n} sessions cached: RSS {} MiB -> {} MiB, {per_session} bytes per cached session \
         (of which moka's entry with a pointer-sized value: {floor} bytes)",
        before >> 20,
        after >> 20,
    );
}

struct Ttl;

impl moka::Expiry<[u8; 16], Option<std::sync::Arc<u64>>> for Ttl {
    fn expire_after_create(
        &self,
        _: &[u8; 16],
        _: &Option<std::sync::Arc<u64>>,
        _: std::time::Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
}

async fn moka_floor(n: usize) -> u64 {
    let cache: moka::future::Cache<[u8; 16], Option<std::sync::Arc<u64>>> = moka::future::Cache::builder()
        .max_capacity(n as u64 + 1)
        .expire_after(Ttl)
        .build();
    let before = rss_bytes();
    for i in 0..n {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&(i as u64).to_le_bytes());
        cache.insert(key, Some(std::sync::Arc::new(i as u64))).await;
    }
    cache.run_pending_tasks().await;
    rss_bytes().saturating_sub(before) / n.max(1) as u64
}
