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

use super::store::{Revocation, Store, StoreError};
use super::token::{self, SessionId, TokenKeys};
use super::{Session, State, User, now, now_ms};
use crate::metrics::{KindLabel, Metrics};
use http::HeaderValue;
use moka::Expiry;
use moka::future::Cache;
use moka::notification::RemovalCause;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
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

/// `Kept::idle` of a session without an idle limit.
const NO_IDLE_LIMIT: u64 = u64::MAX;
/// A session id's length in hex digits.
const ID_HEX: usize = 32;
/// The most decimal digits a `u64` has.
const END_DIGITS: usize = 20;

const EMPTY: HeaderValue = HeaderValue::from_static("");
static NO_USER: [HeaderValue; 4] = [EMPTY, EMPTY, EMPTY, EMPTY];

/// What the cache keeps of a session record: what requests and the session API read of a
/// cached session (the id is kept in `Live`, the user shared in `UserParts`;
/// secret hash, addresses, reissue state and extra attributes are left in the store).
#[derive(Debug)]
pub struct Kept {
    pub state: State,
    pub last_used: u64,
    pub expires: u64,
    /// The idle limit in seconds, `NO_IDLE_LIMIT` for none (eight bytes where an `Option` takes
    /// sixteen; a limit that large never ends a session before `expires` anyway).
    idle: u64,
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
            idle: session.idle_ttl.unwrap_or(NO_IDLE_LIMIT),
            extra,
        }
    }

    /// The session's idle limit (`sessions.idle_ttl` when it was made), if it has one.
    pub fn idle_ttl(&self) -> Option<u64> {
        (self.idle != NO_IDLE_LIMIT).then_some(self.idle)
    }

    pub fn device_uuid(&self) -> Option<&str> {
        self.extra.as_ref()?.device_uuid.as_deref()
    }

    pub fn user_code(&self) -> Option<&str> {
        self.extra.as_ref()?.user_code.as_deref()
    }

    pub fn ends_at(&self) -> u64 {
        super::ends_at(self.expires, self.last_used, self.idle_ttl())
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
    /// The session id, hex (`X-Auth-Session-Id`), kept in the entry itself rather than in a
    /// buffer of its own (issue #5's memory per cached session).
    id: [u8; ID_HEX],
    /// The session's end in decimal digits (`X-Auth-Session-Expires`): the first `end_len`.
    end: [u8; END_DIGITS],
    end_len: u8,
    /// Signed `X-Auth-Jwt` values by (audience, signer), with their expiry; a list is made only
    /// once a route asks for an assertion, so sessions without one pay a pointer.
    #[allow(
        clippy::box_collection,
        reason = "a boxed list costs an entry 8 bytes, a list 24"
    )]
    assertions: std::sync::Mutex<Option<Box<Vec<Assertion>>>>,
    /// With an idle limit: when this instance last recorded a use in the store.
    pub(super) touched: AtomicU64,
    /// The `Sessions::suspect` generation this entry was last read from the store in.
    checked: AtomicU32,
    /// The tag of the first token proven (HMAC) against this entry: a hit presenting the same
    /// tag skips the HMAC, any other tag is checked in full, so a token with its tag altered
    /// is refused on hits too, not only on misses. Set once, so it is never read half-written.
    proven_tag: std::sync::OnceLock<[u8; 16]>,
}

impl Live {
    fn new(mut session: Session, users: &Users) -> Option<Live> {
        let secret_hash = parse_hash(&session.secret_hash)?;
        let user = session.user.take().map(|u| users.intern(u));
        // Session ids are 32 hex digits (a token carries 16 bytes); a record holding anything
        // else is not usable, like one with a malformed hash.
        let id: [u8; ID_HEX] = session.id.as_bytes().try_into().ok()?;
        if !id.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let session = Kept::of(session);
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(session.ends_at()).as_bytes();
        let mut end = [0u8; END_DIGITS];
        end[..digits.len()].copy_from_slice(digits);
        Some(Live {
            touched: AtomicU64::new(session.last_used),
            checked: AtomicU32::new(0),
            session,
            secret_hash,
            user,
            id,
            end,
            end_len: digits.len() as u8,
            assertions: std::sync::Mutex::new(None),
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
        std::str::from_utf8(&self.id).unwrap_or_default()
    }

    /// user, user id, user uuid, roles, session id, session end — in that order.
    pub fn header_values(&self) -> [HeaderValue; 6] {
        let [u, i, d, r] = self.user.as_ref().map_or(&NO_USER, |p| &p.values);
        // Made per call (the general path only; the fast path borrows `header_bytes`).
        let value = |b: &[u8]| HeaderValue::from_bytes(b).unwrap_or(EMPTY);
        [
            u.clone(),
            i.clone(),
            d.clone(),
            r.clone(),
            value(&self.id),
            value(self.end_digits()),
        ]
    }

    /// `header_values`, borrowed: no reference counts touched.
    pub fn header_bytes(&self) -> [&[u8]; 6] {
        let [u, i, d, r] = self.user.as_ref().map_or(&NO_USER, |p| &p.values);
        [
            u.as_bytes(),
            i.as_bytes(),
            d.as_bytes(),
            r.as_bytes(),
            &self.id,
            self.end_digits(),
        ]
    }

    fn end_digits(&self) -> &[u8] {
        &self.end[..usize::from(self.end_len)]
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
        if let Some(a) = cached
            .iter()
            .flat_map(|list| list.iter())
            .find(|a| a.signer == signer && &*a.aud == aud)
            && a.exp.saturating_sub(now) > min_left
        {
            return Some(a.value.clone());
        }
        let (exp, value) = sign()?;
        // The list is made once there is something to keep in it.
        let cached = cached.get_or_insert_with(Box::default);
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
    /// Bumped when the revocation channel was interrupted (a message may have been lost):
    /// entries read from the store before are checked against it again on their next use
    /// (`revalidate`).
    suspect: AtomicU32,
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
            suspect: AtomicU32::new(0),
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
                let generation = self.suspect.load(Ordering::SeqCst);
                let loaded = Box::pin(self.cache.try_get_with(id, async {
                    self.counters.lookups.inc();
                    let started = std::time::Instant::now();
                    let id = token::id_hex(&id);
                    let found = self.store.get(&id).await;
                    self.counters
                        .lookup_duration
                        .observe(started.elapsed().as_secs_f64());
                    let live = found?.and_then(|s| Live::new(s, &self.users));
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
        Ok(if live.is_active(now) {
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

    /// Reads a suspect entry again (see `suspect`): what the store says now replaces it. A
    /// store that cannot answer leaves it as it was — it was valid when read, and refusing
    /// every session of a master that is failing over would be worse than a revocation lost
    /// in the interruption arriving late (bounded by `cache.ttl`, SPEC §3).
    async fn revalidate(&self, id: &SessionId, cached: Arc<Live>) -> Option<Arc<Live>> {
        let generation = self.suspect.load(Ordering::SeqCst);
        let forgets = self.forget_marks(id);
        let found = match self.store.get(&token::id_hex(id)).await {
            Ok(found) => found,
            Err(e) => {
                // Kept, and not asked about again each request while the store is away: a
                // revocation missed meanwhile is bounded by `cache.ttl`, like any missed one.
                tracing::debug!(error = %e, "cannot check a cached session again; it is kept");
                cached.checked.store(generation, Ordering::Relaxed);
                return Some(cached);
            }
        };
        let fresh = found.and_then(|s| Live::new(s, &self.users)).map(Arc::new);
        match &fresh {
            Some(live) => {
                live.checked.store(generation, Ordering::Relaxed);
                self.cache.insert(*id, Some(live.clone())).await;
            }
            None => self.cache.invalidate(id).await,
        }
        if self.forget_marks(id) != forgets {
            self.cache.invalidate(id).await;
        }
        fresh
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
                    // Every cached session is checked against the store on its next use.
                    self.suspect.fetch_add(1, Ordering::SeqCst);
                    let _ = self.changes.send("*".into());
                }
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, idle_ttl: Option<u64>) -> Session {
        Session {
            id: id.into(),
            secret_hash: "ab".repeat(32),
            state: State::Active,
            user: Some(User {
                id: 7,
                username: "ada".into(),
                uuid: "00000000-0000-4000-8000-000000000007".into(),
                roles: vec!["admin".into(), "user".into()],
            }),
            last_used: 1_000,
            expires: 5_000,
            idle_ttl,
            ..Session::default()
        }
    }

    #[test]
    fn kept_entry_gives_the_record_back() {
        let users = Users::default();
        let id = "0123456789abcdef0123456789abcdef";
        for (idle, end) in [
            (None, 5_000),
            (Some(60), 1_060),
            (Some(0), 1_000),
            (Some(u64::MAX - 1), 5_000),
        ] {
            let live = Live::new(record(id, idle), &users).expect("a usable record");
            assert_eq!(live.session.idle_ttl(), idle);
            assert_eq!(live.session.ends_at(), end);
            assert_eq!(live.id(), id);
            let end = end.to_string();
            let want: [&[u8]; 6] = [
                b"ada",
                b"7",
                b"00000000-0000-4000-8000-000000000007",
                b"admin,user",
                id.as_bytes(),
                end.as_bytes(),
            ];
            assert_eq!(live.header_bytes(), want);
            let values = live.header_values();
            assert_eq!(values.map(|v| v.as_bytes().to_vec()), want.map(<[u8]>::to_vec));
        }
        // An idle limit too large to ever end a session reads as none; the end is the same.
        let live = Live::new(record(id, Some(u64::MAX)), &users).expect("a usable record");
        assert_eq!((live.session.idle_ttl(), live.session.ends_at()), (None, 5_000));
        // The largest end there is still fits.
        let mut forever = record(id, None);
        forever.expires = u64::MAX;
        let live = Live::new(forever, &users).expect("a usable record");
        assert_eq!(live.header_bytes()[5], u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn malformed_records_are_not_cached_as_usable() {
        let users = Users::default();
        assert!(Live::new(record("0123456789abcdef", None), &users).is_none());
        assert!(Live::new(record(&"a".repeat(33), None), &users).is_none());
        assert!(Live::new(record(&"g".repeat(32), None), &users).is_none());
        let mut bad_hash = record("0123456789abcdef0123456789abcdef", None);
        bad_hash.secret_hash = "zz".repeat(32);
        assert!(Live::new(bad_hash, &users).is_none());
    }
}
