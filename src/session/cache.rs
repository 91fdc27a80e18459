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

use super::store::{Store, StoreError};
use super::token::{self, SessionId, TokenKeys};
use super::{Session, State, User, now, now_ms};
use crate::metrics::{KindLabel, Metrics};
use bytes::Bytes;
use http::HeaderValue;
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// An `X-Auth-Jwt` a session keeps for reuse.
#[derive(Debug)]
struct Assertion {
    aud: Box<str>,
    signer: u64,
    exp: u64,
    value: HeaderValue,
}

/// Forget counters (see `Sessions::forgets`); session ids are random, so their first byte
/// spreads them evenly.
const FORGET_SLOTS: usize = 256;

/// A user and its identity header values (user, id, uuid, roles), made once and shared by
/// every cached session of that user.
#[derive(Debug)]
pub struct UserParts {
    pub user: User,
    values: [HeaderValue; 4],
}

/// The users of cached sessions, by username: sessions share one `UserParts` per user instead
/// of each holding copies (issue #5's memory per cached session).
#[derive(Default)]
pub(super) struct Users(std::sync::Mutex<std::collections::HashMap<String, Arc<UserParts>>>);

impl Users {
    fn intern(&self, user: User) -> Arc<UserParts> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(parts) = map.get(&user.username)
            && parts.user == user
        {
            return parts.clone();
        }
        let value = |s: &str| HeaderValue::from_str(s).unwrap_or(EMPTY);
        let parts = Arc::new(UserParts {
            values: [
                value(&user.username),
                value(&user.id.to_string()),
                value(&user.uuid),
                value(&user.roles.join(",")),
            ],
            user,
        });
        map.insert(parts.user.username.clone(), parts.clone());
        parts
    }
}

const EMPTY: HeaderValue = HeaderValue::from_static("");
static NO_USER: [HeaderValue; 4] = [EMPTY, EMPTY, EMPTY, EMPTY];

/// What the cache keeps of a session record: what requests and the session API read of a
/// cached session (the id is kept in `Live`'s header values, the user shared in `UserParts`;
/// secret hash, addresses, reissue state and extra attributes are left in the store).
#[derive(Debug)]
pub struct Kept {
    pub state: State,
    pub last_used: u64,
    pub expires: u64,
    pub idle_ttl: Option<u64>,
    /// Device and user code: most sessions have neither, so they cost one pointer.
    extra: Option<Box<Extra>>,
}

#[derive(Debug)]
struct Extra {
    device_uuid: Option<String>,
    user_code: Option<String>,
}

impl Kept {
    fn of(session: Session) -> Kept {
        let extra = (session.device_uuid.is_some() || session.user_code.is_some()).then(|| {
            Box::new(Extra {
                device_uuid: session.device_uuid,
                user_code: session.user_code,
            })
        });
        Kept {
            state: session.state,
            last_used: session.last_used,
            expires: session.expires,
            idle_ttl: session.idle_ttl,
            extra,
        }
    }

    pub fn device_uuid(&self) -> Option<&str> {
        self.extra.as_ref()?.device_uuid.as_deref()
    }

    pub fn user_code(&self) -> Option<&str> {
        self.extra.as_ref()?.user_code.as_deref()
    }

    pub fn ends_at(&self) -> u64 {
        super::ends_at(self.expires, self.last_used, self.idle_ttl)
    }

    pub fn is_live(&self, now: u64) -> bool {
        now < self.ends_at()
    }
}

/// A session as the proxy path uses it: what is kept of the record, its secret hash in bytes,
/// its user (shared), and the session's own header values made once when it entered the cache.
#[derive(Debug)]
pub struct Live {
    pub session: Kept,
    secret_hash: [u8; 32],
    user: Option<Arc<UserParts>>,
    /// The session id then the session's end, one buffer: the two header values are slices of
    /// it (one allocation per cached session instead of four).
    values: Bytes,
    /// Where the id ends in `values`.
    id_len: u16,
    /// Signed `X-Auth-Jwt` values by (audience, signer), with their expiry.
    assertions: std::sync::Mutex<Vec<Assertion>>,
    /// With an idle limit: when this instance last recorded a use in the store.
    pub(super) touched: AtomicU64,
    /// The tag of the first token proven (HMAC) against this entry: a hit presenting the same
    /// tag skips the HMAC, any other tag is checked in full, so a token with its tag altered
    /// is refused on hits too, not only on misses. Set once, so it is never read half-written.
    proven_tag: std::sync::OnceLock<[u8; 16]>,
}

impl Live {
    fn new(mut session: Session, users: &Users) -> Option<Live> {
        let secret_hash = parse_hash(&session.secret_hash)?;
        let user = session.user.take().map(|u| users.intern(u));
        let id = std::mem::take(&mut session.id);
        let id_len = u16::try_from(id.len()).ok()?;
        let session = Kept::of(session);
        let end = session.ends_at().to_string();
        // Exact capacity: the buffer is kept for the entry's whole life.
        let mut values = Vec::with_capacity(id.len() + end.len());
        values.extend_from_slice(id.as_bytes());
        values.extend_from_slice(end.as_bytes());
        Some(Live {
            touched: AtomicU64::new(session.last_used),
            session,
            secret_hash,
            user,
            values: Bytes::from(values),
            id_len,
            assertions: std::sync::Mutex::new(Vec::new()),
            proven_tag: std::sync::OnceLock::new(),
        })
    }

    /// Whether `tag` is the tag already proven for this entry.
    fn is_proven(&self, tag: &[u8; 16]) -> bool {
        self.proven_tag
            .get()
            .is_some_and(|proven| token::same_bytes(proven, tag))
    }

    /// Records a tag whose HMAC was checked, if none was yet (one (id, secret) has one tag per
    /// key, so a second genuine tag is practically impossible; it would only cost its HMAC).
    fn prove(&self, tag: &[u8; 16]) {
        let _ = self.proven_tag.set(*tag);
    }

    /// The session id (hex).
    pub fn id(&self) -> &str {
        std::str::from_utf8(&self.values[..self.id_len as usize]).unwrap_or_default()
    }

    /// user, user id, user uuid, roles, session id, session end — in that order.
    pub fn header_values(&self) -> [HeaderValue; 6] {
        let [u, i, d, r] = self.user.as_ref().map_or(&NO_USER, |p| &p.values);
        let value = |b: Bytes| HeaderValue::from_maybe_shared(b).unwrap_or(EMPTY);
        let (id, end) = (..self.id_len as usize, self.id_len as usize..);
        [
            u.clone(),
            i.clone(),
            d.clone(),
            r.clone(),
            value(self.values.slice(id)),
            value(self.values.slice(end)),
        ]
    }

    /// `header_values`, borrowed: no reference counts touched.
    pub fn header_bytes(&self) -> [&[u8]; 6] {
        let [u, i, d, r] = self.user.as_ref().map_or(&NO_USER, |p| &p.values);
        let id_len = self.id_len as usize;
        [
            u.as_bytes(),
            i.as_bytes(),
            d.as_bytes(),
            r.as_bytes(),
            &self.values[..id_len],
            &self.values[id_len..],
        ]
    }

    /// Live and logged in (the user is kept apart from `session`, see `Users`).
    pub fn is_active(&self, now: u64) -> bool {
        self.session.state == State::Active && self.user.is_some() && self.session.is_live(now)
    }

    /// SHA-256 of the token's secret, hex, as the store keeps it.
    pub fn secret_hash_hex(&self) -> String {
        token::hex(&self.secret_hash)
    }

    /// Single-user mode's identity: the local user, in a session that is never stored.
    pub fn local(user: &User) -> Option<Arc<Live>> {
        let now = now();
        Live::new(
            Session {
                id: "0".repeat(32),
                secret_hash: "0".repeat(64),
                state: State::Active,
                user: Some(user.clone()),
                created: now,
                last_used: now,
                expires: now.saturating_add(10 * 365 * 86400),
                ..Session::default()
            },
            &Users::default(),
        )
        .map(Arc::new)
    }

    /// The cached assertion for audience `aud` by signer `signer` if it has more than
    /// `min_left` seconds left, else a new one from `sign` (kept for next time).
    pub fn assertion(
        &self,
        aud: &str,
        signer: u64,
        now: u64,
        min_left: u64,
        sign: impl FnOnce() -> Option<(u64, HeaderValue)>,
    ) -> Option<HeaderValue> {
        let mut cached = self.assertions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = cached.iter().find(|a| a.signer == signer && &*a.aud == aud)
            && a.exp.saturating_sub(now) > min_left
        {
            return Some(a.value.clone());
        }
        let (exp, value) = sign()?;
        cached.retain(|a| a.signer == signer && &*a.aud != aud);
        cached.push(Assertion {
            aud: aud.into(),
            signer,
            exp,
            value: value.clone(),
        });
        Some(value)
    }

    pub fn user(&self) -> Option<&User> {
        self.user.as_deref().map(|p| &p.user)
    }
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let a = token::parse_id(hex.get(..32)?)?;
    let b = token::parse_id(hex.get(32..)?)?;
    let mut out = [0u8; 32];
    out[..16].copy_from_slice(&a);
    out[16..].copy_from_slice(&b);
    Some(out)
}

type Entry = Option<Arc<Live>>;

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
    Active(Arc<Live>),
    /// A live pending session (store protocol: waiting for a browser login).
    Pending(Arc<Live>),
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
    /// Status sockets waiting on `changes` now (the API caps them; kept here so a reload,
    /// which rebuilds the API, does not reset the count).
    pub watchers: Arc<std::sync::atomic::AtomicUsize>,
    users: Users,
}

/// The session metrics' handles, made once (see `metrics.rs`).
pub(super) struct Counters {
    hit: Counter,
    negative_hit: Counter,
    miss: Counter,
    lookups: Counter,
    lookup_duration: Histogram,
    pub(super) created: Counter,
    pub(super) activated: Counter,
    pub(super) renewed: Counter,
    pub(super) reissued: Counter,
    pub(super) destroyed: Counter,
    pub(super) reused: Counter,
    published: Counter,
    received: Counter,
}

impl Counters {
    fn new(metrics: &Metrics, store: &'static str) -> Counters {
        let kind = |family: &Family<KindLabel, Counter>, kind: &'static str| {
            family.get_or_create(&KindLabel { kind }).clone()
        };
        let store_label = KindLabel { kind: store };
        Counters {
            hit: kind(&metrics.cache, "hit"),
            negative_hit: kind(&metrics.cache, "negative_hit"),
            miss: kind(&metrics.cache, "miss"),
            lookups: metrics.store_lookups.get_or_create(&store_label).clone(),
            lookup_duration: metrics.store_lookup_duration.get_or_create(&store_label).clone(),
            created: kind(&metrics.sessions, "created"),
            activated: kind(&metrics.sessions, "activated"),
            renewed: kind(&metrics.sessions, "renewed"),
            reissued: kind(&metrics.sessions, "reissued"),
            destroyed: kind(&metrics.sessions, "destroyed"),
            reused: kind(&metrics.sessions, "reused"),
            published: kind(&metrics.revocations, "published"),
            received: kind(&metrics.revocations, "received"),
        }
    }
}

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
            watchers: Arc::default(),
            users: Users::default(),
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
                let loaded = Box::pin(self.cache.try_get_with(id, async {
                    self.counters.lookups.inc();
                    let started = std::time::Instant::now();
                    let id = token::id_hex(&id);
                    let found = self.store.get(&id).await;
                    self.counters
                        .lookup_duration
                        .observe(started.elapsed().as_secs_f64());
                    Ok::<_, StoreError>(found?.and_then(|s| Live::new(s, &self.users)).map(Arc::new))
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
        let Some(live) = entry else {
            return Ok(Found::Nothing);
        };
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
        let now = now();
        Ok(if live.is_active(now) {
            if live.session.idle_ttl.is_some() {
                self.touch(&live, now).await;
            }
            Found::Active(live)
        } else if live.session.state == State::Pending && live.session.is_live(now) {
            Found::Pending(live)
        } else {
            Found::Nothing
        })
    }

    /// Ends a session everywhere: store, this cache, and (redis) every other instance's cache.
    pub async fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        let removed = self.store.delete(id).await?.is_some();
        if removed {
            self.counters.destroyed.inc();
        }
        self.changed(id).await;
        Ok(removed)
    }

    /// Ends every session of a user; returns their ids.
    pub async fn revoke_user(&self, username: &str) -> Result<Vec<String>, StoreError> {
        let ids = self.store.delete_user(username).await?;
        self.counters.destroyed.inc_by(ids.len() as u64);
        for id in &ids {
            self.changed(id).await;
        }
        Ok(ids)
    }

    /// A stored session changed (revoked, rotated, activated): this instance's cache drops it,
    /// its waiters (`/auth/status`) look again, and other instances hear of it.
    pub(super) async fn changed(&self, id: &str) {
        self.forget(id).await;
        let _ = self.changes.send(id.into());
        self.publish(id).await;
    }

    /// Ids of sessions that changed, here or (redis) on another instance; `*` means "any".
    pub fn changes(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.changes.subscribe()
    }

    async fn publish(&self, id: &str) {
        if let Store::Redis(r) = &self.store {
            match r.publish_revocation(id).await {
                Ok(()) => {
                    self.counters.published.inc();
                }
                // Other instances still drop it within cache.ttl.
                Err(e) => tracing::warn!(session = id, error = %e, "could not publish a revocation"),
            }
        }
    }

    /// The forget counters that concern `id`: its slot and forget_all's.
    fn forget_marks(&self, id: &SessionId) -> (u64, u64) {
        (
            self.forgets[usize::from(id[0]) % FORGET_SLOTS].load(Ordering::SeqCst),
            self.forgets[FORGET_SLOTS].load(Ordering::SeqCst),
        )
    }

    /// Drops one session from this instance's cache.
    pub async fn forget(&self, id: &str) {
        if let Some(key) = token::parse_id(id) {
            self.forgets[usize::from(key[0]) % FORGET_SLOTS].fetch_add(1, Ordering::SeqCst);
            self.cache.invalidate(&key).await;
        }
    }

    /// Drops every cached session on this instance.
    pub fn forget_all(&self) {
        self.forgets[FORGET_SLOTS].fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }

    pub fn cached_entries(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Applies revocations arriving from other instances until the channel closes.
    pub async fn follow(&self, mut rx: tokio::sync::mpsc::UnboundedReceiver<Revocation>) {
        while let Some(r) = rx.recv().await {
            match r {
                Revocation::One(id) => {
                    self.counters.received.inc();
                    self.forget(&id).await;
                    let _ = self.changes.send(id.into());
                }
                Revocation::All => {
                    self.forget_all();
                    let _ = self.changes.send("*".into());
                }
            }
        }
    }
}

/// A revocation heard from another instance.
#[derive(Debug)]
pub enum Revocation {
    One(String),
    /// The subscription was interrupted: forget everything.
    All,
}

/// Where a new session comes from (shown when a user lists their sessions).
#[derive(Debug, Default, Clone)]
pub struct Meta {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub device_uuid: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("cannot mint a token: {0}")]
    Token(String),
    #[error(transparent)]
    Store(StoreError),
}
