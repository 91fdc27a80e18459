//! `Sessions`: the token check, the moka cache and the store, in that order, plus revocation.
//!
//! - A token's tag (HMAC) is checked before any store work: forgeries cost no store lookup. A
//!   cache hit compares the tag with the one proven for that entry and checks it in full when
//!   it differs, so an altered tag is refused whether or not the session is cached.
//! - Cache entries are keyed by session id. A live entry lives at most `cache.ttl` and never
//!   past its session's end; an unknown or dead id is cached as absent for `cache.negative_ttl`.
//!   Concurrent misses for one id make one store lookup (moka's `try_get_with`).
//! - The token's secret hash is compared with the stored one in constant time, so a cached
//!   entry is only ever usable with the current token.
//! - Revocation removes the entry locally at once and, with redis, is published so every
//!   instance drops it; after a reconnect an instance forgets its whole cache (messages may
//!   have been lost), so nothing revoked outlives `cache.ttl`.
//! - Store errors are never cached: the caller answers 503, and the next request tries again.
//!
//! The parts: `entry` (what a cached session holds: `CachedSession`, `Kept`), `users` (one shared
//! `UserParts` per user), `counters` (metric handles), `revocation` (revoke, forget, follow
//! other instances, re-check suspect entries). Creating, activating, renewing and reissuing
//! sessions is `session::lifecycle`.

mod counters;
mod entry;
mod revocation;
mod users;

pub use entry::{CachedSession, Kept};
pub use users::UserParts;

use super::backend::Store;
use super::store::StoreError;
use super::token::{self, SessionId, TokenKeys};
use super::{State, now, now_ms};
use crate::metrics::{KindLabel, Metrics};
use counters::Counters;
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use users::Users;

/// Forget counters (see `Sessions::forgets`); session ids are random, so their first byte
/// spreads them evenly.
const FORGET_SLOTS: usize = 256;

/// A cache entry: the session, or `None` for an id the store does not have (negative entry).
type Entry = Option<Arc<CachedSession>>;

/// How long an entry stays: `cache.ttl` but never past its session's end; a negative entry
/// `cache.negative_ttl`.
struct Lifetimes {
    ttl: Duration,
    negative_ttl: Duration,
}

impl Lifetimes {
    fn of(&self, entry: &Entry) -> Duration {
        match entry {
            None => self.negative_ttl,
            Some(live) => {
                // To the millisecond: an entry must leave the cache the moment its session
                // ends (with an idle limit, another instance may have extended it since).
                let left = live
                    .session
                    .ends_at()
                    .saturating_mul(1000)
                    .saturating_sub(now_ms());
                self.ttl.min(Duration::from_millis(left))
            }
        }
    }
}

impl Expiry<SessionId, Entry> for Lifetimes {
    fn expire_after_create(&self, _: &SessionId, value: &Entry, _: Instant) -> Option<Duration> {
        Some(self.of(value))
    }

    fn expire_after_update(
        &self,
        _: &SessionId,
        value: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.of(value))
    }
}

/// Session lifetimes (`[sessions]`).
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub ttl: Duration,
    pub pending_ttl: Duration,
    pub reissue_ttl: Duration,
    pub reissue_grace: Duration,
    pub idle_ttl: Option<Duration>,
}

impl SessionSettings {
    pub fn from_config(c: &crate::config::SessionsConfig) -> SessionSettings {
        SessionSettings {
            ttl: c.ttl,
            pending_ttl: c.pending_ttl,
            reissue_ttl: c.reissue_ttl,
            reissue_grace: c.reissue_grace,
            idle_ttl: c.idle_ttl,
        }
    }
}

pub struct CacheSettings {
    pub max_entries: u64,
    pub ttl: Duration,
    pub negative_ttl: Duration,
}

/// What authenticating a presented token found.
pub enum Found {
    /// An active session; its token is the current one.
    Active(Arc<CachedSession>),
    /// A live pending session (store protocol: waiting for a browser login).
    Pending(Arc<CachedSession>),
    /// Not minted here, unknown, revoked, ended, or not the current token.
    Nothing,
}

pub struct Sessions {
    pub store: Store,
    pub(super) keys: TokenKeys,
    pub(super) settings: SessionSettings,
    cache: Cache<SessionId, Entry>,
    changes: tokio::sync::broadcast::Sender<Arc<str>>,
    pub(super) counters: Counters,
    /// Bumped by `forget` (in the slot of the session id's first byte) and `forget_all` (the
    /// last slot): a store read that overlapped a forget of its session may have loaded what
    /// was just revoked or rotated, and moka would keep it, so such a read is dropped again.
    /// Slots keep unrelated forgets (every create, touch and remote change) from doing that
    /// to every concurrent miss.
    forgets: Box<[AtomicU64; FORGET_SLOTS + 1]>,
    /// Bumped when the revocation channel was interrupted (a message may have been lost):
    /// entries read from the store before are checked against it again on their next use
    /// (`revalidate`).
    suspect: AtomicU32,
    /// Status sockets waiting on `changes` now (the API caps them; kept here so a reload,
    /// which rebuilds the API, does not reset the count).
    pub watchers: Arc<std::sync::atomic::AtomicUsize>,
    users: Users,
    /// Whom the `[[oidc]]` providers admit now (`Admission`): set at start and by each reload,
    /// so removing a provider or narrowing its `allowed_roles` shuts its people's sessions out.
    admitted: arc_swap::ArcSwap<Admission>,
}

/// Per provider name, its `allowed_roles` (`None`: everyone it signs in).
pub type Admission = std::collections::HashMap<String, Option<Vec<String>>>;

impl Sessions {
    pub fn new(
        store: Store,
        keys: TokenKeys,
        cache: CacheSettings,
        settings: SessionSettings,
        metrics: &Metrics,
    ) -> Sessions {
        let (changes, _) = tokio::sync::broadcast::channel(1024);
        let evictions = metrics
            .cache
            .get_or_create(&KindLabel { kind: "eviction" })
            .clone();
        Sessions {
            counters: Counters::new(metrics, store.kind()),
            store,
            keys,
            settings,
            cache: Cache::builder()
                .max_capacity(cache.max_entries)
                .expire_after(Lifetimes {
                    ttl: cache.ttl,
                    negative_ttl: cache.negative_ttl,
                })
                .eviction_listener(move |_, _, cause| {
                    if cause == RemovalCause::Size {
                        evictions.inc();
                    }
                })
                .build(),
            changes,
            forgets: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            suspect: AtomicU32::new(0),
            watchers: Arc::default(),
            users: Users::default(),
            admitted: arc_swap::ArcSwap::default(),
        }
    }

    /// The providers and their `allowed_roles` as the configuration now says.
    pub fn admit(&self, admission: Admission) {
        self.admitted.store(Arc::new(admission));
    }

    /// Whether a session's user may use it: always for the config's users; for a provider's,
    /// while that provider is configured and its `allowed_roles` admit the user's roles.
    fn admits(&self, live: &CachedSession) -> bool {
        let Some(user) = live.user() else { return true };
        let Some(provider) = &user.provider else {
            return true;
        };
        match self.admitted.load().get(provider) {
            None => false,
            Some(None) => true,
            Some(Some(allowed)) => user.roles.iter().any(|r| allowed.contains(r)),
        }
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// How many store lookups the proxy path has made (tests; also in the metrics).
    pub fn store_lookups(&self) -> u64 {
        self.counters.lookups.get()
    }

    pub fn revocations_published(&self) -> u64 {
        self.counters.published.get()
    }

    pub fn keys(&self) -> &TokenKeys {
        &self.keys
    }

    /// Checks a presented token. A cache hit is proven by the secret's hash alone (256 bits);
    /// before a miss may reach the store, the token's tag must be ours.
    pub async fn authenticate(&self, presented: &str) -> Result<Found, StoreError> {
        let Some(parsed) = token::Parsed::new(presented) else {
            return Ok(Found::Nothing);
        };
        let id = parsed.id();
        // Whether this request has checked the token's tag (HMAC) yet.
        let mut genuine = false;
        let entry = match self.cache.get(&id).await {
            Some(hit) => {
                match hit {
                    Some(_) => self.counters.hit.inc(),
                    None => self.counters.negative_hit.inc(),
                };
                hit
            }
            None => {
                if !self.keys.genuine(&parsed) {
                    return Ok(Found::Nothing);
                }
                genuine = true;
                self.counters.miss.inc();
                // SeqCst pairs "load then read the counters" here with "bump then invalidate"
                // in forget: one of the two always sees the other.
                let forgets = self.forget_marks(&id);
                // Boxed: the miss path's future is large and rare; keep the hit path small.
                let generation = self.suspect.load(Ordering::SeqCst);
                let loaded = Box::pin(self.cache.try_get_with(id, async {
                    self.counters.lookups.inc();
                    let started = std::time::Instant::now();
                    let id = token::id_hex(&id);
                    let found = self.store.get(&id).await;
                    self.counters
                        .lookup_duration
                        .observe(started.elapsed().as_secs_f64());
                    let live = found?.and_then(|s| CachedSession::new(s, &self.users));
                    if let Some(live) = &live {
                        live.checked.store(generation, Ordering::Relaxed);
                    }
                    Ok::<_, StoreError>(live.map(Arc::new))
                }))
                .await
                .map_err(|e| (*e).clone())?;
                if self.forget_marks(&id) != forgets {
                    // This request may still use what it read (it raced the change); the cache
                    // must not keep it.
                    self.cache.invalidate(&id).await;
                }
                loaded
            }
        };
        let Some(mut live) = entry else {
            return Ok(Found::Nothing);
        };
        // The token is proven before anything else happens on its account (a store read).
        if !token::same_bytes(&live.secret_hash, &parsed.secret_hash()) {
            return Ok(Found::Nothing);
        }
        let tag = parsed.tag();
        if !live.is_proven(&tag) {
            if !genuine && !self.keys.genuine(&parsed) {
                return Ok(Found::Nothing);
            }
            live.prove(&tag);
        }
        if live.checked.load(Ordering::Relaxed) < self.suspect.load(Ordering::SeqCst) {
            match Box::pin(self.revalidate(&id, live)).await {
                // The record read again may hold another secret (rotated meanwhile).
                Some(fresh) if token::same_bytes(&fresh.secret_hash, &parsed.secret_hash()) => {
                    fresh.prove(&tag);
                    live = fresh;
                }
                _ => return Ok(Found::Nothing),
            }
        }
        let now = now();
        Ok(if live.is_active(now) && self.admits(&live) {
            if live.session.idle_ttl().is_some() {
                self.touch(&live, now).await;
            }
            Found::Active(live)
        } else if live.session.state == State::Pending && live.session.is_live(now) {
            Found::Pending(live)
        } else {
            Found::Nothing
        })
    }

    pub fn cached_entries(&self) -> u64 {
        self.cache.entry_count()
    }
}

/// Where a new session comes from (shown when a user lists their sessions).
#[derive(Debug, Default, Clone)]
pub struct Meta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub device_uuid: Option<String>,
    /// Attributes the session keeps (`Session::extra`): a provider's `sid` (OIDC sign-in).
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("cannot mint a token: {0}")]
    Token(String),
    #[error(transparent)]
    Store(StoreError),
    /// A compare-and-set kept losing to other writers: the store works, the session would not
    /// hold still (`lifecycle::ATTEMPTS` tries).
    #[error("the session kept changing underneath this update")]
    Conflict,
}
