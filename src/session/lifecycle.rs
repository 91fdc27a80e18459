//! How sessions begin, change and end, on top of the cache (`cache.rs`) and the store:
//! active sessions with a reissue token (SessionService, sign-in, admin mint), pending sessions
//! found by their user code (store protocol), activation from the login page, rotation (renew,
//! cookie refresh), single-use reissue with reuse detection, and idle touches.
//!
//! Every change to an existing session is a compare-and-set (`Store::swap`) retried on
//! conflict, so two concurrent changes (two reissues, two logins for one code, a touch and a
//! reissue) never overwrite one another: exactly one wins and the other sees its result.

use super::cache::{CachedSession, CreateError, Meta, Sessions};
use super::store::StoreError;
use super::token::{self, Minted, Parsed, Purpose, SessionId, TokenError};
use super::{Session, State, UsedReissue, User, now, now_ms};
use std::sync::atomic::Ordering;
use std::time::Duration;

/// How often a compare-and-set is retried before giving up (each retry means another writer
/// won; more than a few in a row means something is wrong).
const ATTEMPTS: usize = 8;

/// Letters for user codes: no vowels (no words), no look-alikes.
const CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// An active session as handed to a client: both tokens and the record.
#[derive(Debug)]
pub struct Issued {
    pub token: String,
    pub reissue_token: String,
    pub session: Session,
}

/// What presenting a reissue token did.
#[derive(Debug)]
pub enum Reissued {
    Issued(Box<Issued>),
    /// Not ours, malformed, or its session no longer exists.
    Invalid,
    /// Past `reissue_ttl`; the session itself is untouched.
    Expired,
    /// Used before and outside the grace window: the session was destroyed.
    Reused,
}

impl From<TokenError> for CreateError {
    fn from(e: TokenError) -> CreateError {
        CreateError::Token(e.to_string())
    }
}

impl From<StoreError> for CreateError {
    fn from(e: StoreError) -> CreateError {
        CreateError::Store(e)
    }
}

/// Every attempt lost its compare-and-set: not a store failure (a retry may well work).
fn conflict() -> CreateError {
    CreateError::Conflict
}

/// Upper-cases and drops separators, so `bcdf-ghjk`, `BCDF GHJK` and `BCDFGHJK` are one code.
pub fn normalize_code(code: &str) -> Option<String> {
    let letters: String = code
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (letters.len() == 8 && letters.bytes().all(|b| CODE_ALPHABET.contains(&b))).then_some(letters)
}

/// `BCDFGHJK` → `BCDF-GHJK`, as shown to people.
pub fn display_code(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => code.to_string(),
    }
}

fn random_code() -> Result<String, TokenError> {
    let mut bytes = [0u8; 8];
    token::random_bytes(&mut bytes)?;
    // 256 is not a multiple of 20: the first 240 values map evenly, the rest are redrawn.
    let mut out = String::with_capacity(8);
    let mut pool = bytes.to_vec();
    while out.len() < 8 {
        let Some(b) = pool.pop() else {
            let mut more = [0u8; 8];
            token::random_bytes(&mut more)?;
            pool.extend_from_slice(&more);
            continue;
        };
        if b < 240 {
            out.push(CODE_ALPHABET[(b % 20) as usize] as char);
        }
    }
    Ok(out)
}

fn bump(old: &Session, mut new: Session) -> Session {
    new.version = old.version.wrapping_add(1);
    new
}

impl Sessions {
    /// `Store::swap` against version `expected`. A write that landed but was not confirmed
    /// by the replicas changed what the store serves: every cache drops the session before
    /// the caller hears the error (a rotated token must not keep working elsewhere).
    async fn swap(&self, new: &Session, expected: u64) -> Result<bool, StoreError> {
        match self.store.swap(new, Some(expected)).await {
            Err(e @ StoreError::NotReplicated(_)) => {
                self.changed(&new.id).await;
                Err(e)
            }
            other => other,
        }
    }

    fn idle_secs(&self) -> Option<u64> {
        self.settings.idle_ttl.map(|d| d.as_secs().max(1))
    }

    /// A fresh reissue token for `id`, recorded in `session`.
    fn new_reissue(&self, session: &mut Session, id: SessionId, now: u64) -> Result<Minted, TokenError> {
        let reissue = self.keys.mint_random(Purpose::Reissue, id)?;
        session.reissue_hash = Some(token::hex(&reissue.secret_hash));
        session.reissue_expires = now.saturating_add(self.settings.reissue_ttl.as_secs());
        session.previous_reissue = None;
        Ok(reissue)
    }

    /// Creates an active session for `user` lasting `ttl` (default `sessions.ttl`). With a
    /// `device_uuid`, the user's other sessions on that device end (SPEC §2.2).
    pub async fn create_active(
        &self,
        user: &User,
        ttl: Option<Duration>,
        meta: Meta,
    ) -> Result<Issued, CreateError> {
        let auth = self.keys.mint()?;
        let now = now();
        let ttl = ttl.unwrap_or(self.settings.ttl);
        let mut session = Session {
            id: token::id_hex(&auth.id),
            secret_hash: token::hex(&auth.secret_hash),
            state: State::Active,
            user: Some(user.clone()),
            device_uuid: meta.device_uuid,
            created: now,
            created_ms: now_ms(),
            last_used: now,
            expires: now.saturating_add(ttl.as_secs()),
            idle_ttl: self.idle_secs(),
            ip: meta.ip,
            user_agent: meta.user_agent,
            extra: meta.extra,
            ..Session::default()
        };
        let reissue = self.new_reissue(&mut session, auth.id, now)?;
        self.store.put(&session).await?;
        self.counters.created.inc();
        // A negative entry for this id (impossible in practice: ids are random) must not linger.
        self.forget(&session.id).await;
        if let Some(device) = &session.device_uuid {
            // Only sessions made before this one: of two racing logins on one device, the
            // later one ends the earlier, never both each other.
            let mine = (session.created_ms, session.id.as_str());
            for other in self.store.list_user(&user.index_key()).await? {
                if (other.created_ms, other.id.as_str()) < mine
                    && other.device_uuid.as_deref() == Some(device)
                {
                    self.revoke(&other.id).await?;
                }
            }
        }
        Ok(Issued {
            token: auth.token,
            reissue_token: reissue.token,
            session,
        })
    }

    /// Creates a pending session (store protocol): its token, and the record with its code.
    pub async fn create_pending(&self, meta: Meta) -> Result<(String, Session), CreateError> {
        for _ in 0..ATTEMPTS {
            let code = random_code()?;
            let Some(&id) = self.keys.code_ids(&code).first() else {
                return Err(TokenError::NoKey.into());
            };
            let auth = self.keys.mint_for(id)?;
            let now = now();
            let session = Session {
                id: token::id_hex(&id),
                secret_hash: token::hex(&auth.secret_hash),
                state: State::Pending,
                user_code: Some(code),
                created: now,
                last_used: now,
                expires: now.saturating_add(self.settings.pending_ttl.as_secs()),
                ip: meta.ip.clone(),
                user_agent: meta.user_agent.clone(),
                ..Session::default()
            };
            // Codes have ~34 bits: a clash with a live pending session is rare but possible,
            // so the write only succeeds where no session with this id exists.
            if self.store.swap(&session, None).await? {
                self.counters.created.inc();
                self.forget(&session.id).await;
                return Ok((auth.token, session));
            }
        }
        Err(conflict())
    }

    /// The live pending session with this code, if any.
    pub async fn find_pending(&self, code: &str) -> Result<Option<Session>, StoreError> {
        let Some(code) = normalize_code(code) else {
            return Ok(None);
        };
        for id in self.keys.code_ids(&code) {
            if let Some(s) = self.store.get(&token::id_hex(&id)).await?
                && s.state == State::Pending
                && s.user_code.as_deref() == Some(code.as_str())
            {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// Logs the pending session with this code in as `user`: it becomes active for
    /// `sessions.ttl`, keeping its token. `None` when there is no such pending session (unknown
    /// code, expired, or already activated — by this call's twin, for instance).
    pub async fn activate(
        &self,
        code: &str,
        user: &User,
        meta: Meta,
    ) -> Result<Option<Session>, CreateError> {
        for _ in 0..ATTEMPTS {
            let Some(pending) = self.find_pending(code).await? else {
                return Ok(None);
            };
            let Some(id) = token::parse_id(&pending.id) else {
                return Ok(None);
            };
            let now = now();
            let mut active = bump(&pending, pending.clone());
            active.state = State::Active;
            active.user = Some(user.clone());
            active.last_used = now;
            active.expires = now.saturating_add(self.settings.ttl.as_secs());
            active.idle_ttl = self.idle_secs();
            if meta.ip.is_some() {
                active.ip = meta.ip.clone();
            }
            active.extra.extend(meta.extra.clone());
            // The device's token is the one that becomes active; the browser's reissue token
            // would have nowhere to go, so the device gets one by renewing.
            self.new_reissue(&mut active, id, now)?;
            if self.swap(&active, pending.version).await? {
                self.counters.activated.inc();
                self.changed(&active.id).await;
                return Ok(Some(active));
            }
        }
        Err(conflict())
    }

    /// Refuses the pending session with this code (the person pressed Deny): it stays denied
    /// until it would have expired, and its status socket says so. `false` when there is no
    /// such pending session.
    pub async fn deny(&self, code: &str) -> Result<bool, CreateError> {
        for _ in 0..ATTEMPTS {
            let Some(pending) = self.find_pending(code).await? else {
                return Ok(false);
            };
            let mut denied = bump(&pending, pending.clone());
            denied.state = State::Denied;
            match self.swap(&denied, pending.version).await {
                Ok(true) => {
                    self.changed(&denied.id).await;
                    return Ok(true);
                }
                // Denied now (the device hears it); a failover could only bring the request
                // back to pending, to be denied again.
                Err(StoreError::NotReplicated(e)) => {
                    tracing::warn!(error = %e, "a denial is not on a replica yet");
                    return Ok(true);
                }
                Ok(false) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict())
    }

    /// Gives the session a new token and reissue token (same id) and moves its end to
    /// `sessions.ttl` from now; the old token stops working here at once and, with redis,
    /// everywhere. Only the holder of the current token may: `presented` is the session as
    /// the caller's token proved it, and if the stored token has changed since (a concurrent
    /// renew won, or the caller's token is stale), the answer is `None`, as for a session that
    /// is gone or not active.
    pub async fn rotate(&self, presented: &CachedSession) -> Result<Option<Issued>, CreateError> {
        let id = presented.id();
        let presented_hash = presented.secret_hash_hex();
        let Some(key) = token::parse_id(id) else {
            return Ok(None);
        };
        for _ in 0..ATTEMPTS {
            let Some(old) = self.store.get(id).await? else {
                return Ok(None);
            };
            if old.state != State::Active || old.secret_hash != presented_hash {
                return Ok(None);
            }
            let auth = self.keys.mint_for(key)?;
            let now = now();
            let mut new = bump(&old, old.clone());
            new.secret_hash = token::hex(&auth.secret_hash);
            new.expires = now.saturating_add(self.settings.ttl.as_secs());
            new.last_used = now;
            let reissue = self.new_reissue(&mut new, key, now)?;
            if self.swap(&new, old.version).await? {
                self.counters.renewed.inc();
                self.changed(id).await;
                return Ok(Some(Issued {
                    token: auth.token,
                    reissue_token: reissue.token,
                    session: new,
                }));
            }
        }
        Err(conflict())
    }

    /// Trades a reissue token for a new pair (SPEC §2.3). The token works once; presented
    /// again within `reissue_grace` of its use it yields the same pair (a race, not theft);
    /// later, or any older token of the session, destroys the session everywhere.
    pub async fn reissue(&self, presented: &str) -> Result<Reissued, CreateError> {
        let Some(parsed) = Parsed::of(Purpose::Reissue, presented) else {
            return Ok(Reissued::Invalid);
        };
        if !self.keys.genuine(&parsed) {
            return Ok(Reissued::Invalid);
        }
        let key = parsed.id();
        let id = token::id_hex(&key);
        let hash = token::hex(&parsed.secret_hash());
        let secret = parsed.secret();
        for _ in 0..ATTEMPTS {
            let Some(old) = self.store.get(&id).await? else {
                return Ok(Reissued::Invalid);
            };
            if old.state != State::Active {
                return Ok(Reissued::Invalid);
            }
            if old.reissue_hash.as_deref() == Some(hash.as_str()) {
                let (auth, reissue) = self.keys.next_pair(key, &secret)?;
                let now = now();
                if now >= old.reissue_expires {
                    return Ok(Reissued::Expired);
                }
                let mut new = bump(&old, old.clone());
                new.secret_hash = token::hex(&auth.secret_hash);
                new.expires = now.saturating_add(self.settings.ttl.as_secs());
                new.last_used = now;
                new.reissue_hash = Some(token::hex(&reissue.secret_hash));
                new.reissue_expires = now.saturating_add(self.settings.reissue_ttl.as_secs());
                new.previous_reissue = Some(UsedReissue {
                    hash: hash.clone(),
                    used_at_ms: now_ms(),
                });
                if self.swap(&new, old.version).await? {
                    self.counters.reissued.inc();
                    self.changed(&id).await;
                    return Ok(Reissued::Issued(Box::new(Issued {
                        token: auth.token,
                        reissue_token: reissue.token,
                        session: new,
                    })));
                }
                continue;
            }
            let grace = self.settings.reissue_grace.as_millis() as u64;
            let recent = old
                .previous_reissue
                .as_ref()
                .is_some_and(|used| used.hash == hash && now_ms().saturating_sub(used.used_at_ms) < grace);
            // The pair the winner derived — under whichever key was first on its instance, so a
            // race during a rolling key rotation is still a race.
            let pair = self
                .keys
                .next_pairs(key, &secret)?
                .into_iter()
                .find(|(_, r)| old.reissue_hash.as_deref() == Some(token::hex(&r.secret_hash).as_str()));
            if let (true, Some((auth, reissue))) = (recent, pair) {
                return Ok(Reissued::Issued(Box::new(Issued {
                    token: auth.token,
                    reissue_token: reissue.token,
                    session: old,
                })));
            }
            // A genuine reissue token of this session that is not the current one was used
            // before: whoever holds it, the session is no longer safe.
            tracing::warn!(session = %id, "reissue token reused: session destroyed");
            self.counters.reused.inc();
            self.revoke(&id).await?;
            return Ok(Reissued::Reused);
        }
        Err(conflict())
    }

    /// With `sessions.idle_ttl`: records a use in the store at most every quarter of the idle
    /// limit (at least a second) per session and instance. A failed or lost touch only
    /// shortens the session. Uses are recorded to the second, so a session ends between
    /// `idle_ttl - 1s` and `idle_ttl` after its last use.
    pub(super) async fn touch(&self, live: &CachedSession, now: u64) {
        let Some(idle) = live.session.idle_ttl() else {
            return;
        };
        let every = (idle / 4).max(1);
        let last = live.touched.load(Ordering::Relaxed);
        if now.saturating_sub(last) < every
            || live
                .touched
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        for _ in 0..ATTEMPTS {
            let old = match self.store.get(live.id()).await {
                Ok(Some(s)) if s.secret_hash == live.secret_hash_hex() => s,
                Ok(_) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "idle touch failed");
                    return;
                }
            };
            let mut new = bump(&old, old.clone());
            new.last_used = new.last_used.max(now);
            match self.store.touch(&new, old.version).await {
                // The cached copy still has the old end; the next request reads the new one.
                Ok(true) => return self.forget(&new.id).await,
                Err(_) => return,
                Ok(false) => continue,
            }
        }
    }
}
