//! One cached session (`CachedSession`): what the cache keeps of a stored record (`Kept`), the token's
//! secret hash, the shared user, the session's own header values, and the `X-Auth-Jwt`
//! assertions signed for it.

use super::users::UserParts;
use super::users::{EMPTY, NO_USER, Users};
use crate::session::token;
use crate::session::{Session, State, User, now};
use http::HeaderValue;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

/// An `X-Auth-Jwt` a session keeps for reuse.
#[derive(Debug)]
struct Assertion {
    aud: Box<str>,
    signer: u64,
    exp: u64,
    value: HeaderValue,
}

/// `Kept::idle` of a session without an idle limit.
const NO_IDLE_LIMIT: u64 = u64::MAX;
/// A session id's length in hex digits.
const ID_HEX: usize = 32;
/// The most decimal digits a `u64` has.
const END_DIGITS: usize = 20;

/// What the cache keeps of a session record: what requests and the session API read of a
/// cached session (the id is kept in `CachedSession`, the user shared in `UserParts`;
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
        crate::session::ends_at(self.expires, self.last_used, self.idle_ttl())
    }

    pub fn is_live(&self, now: u64) -> bool {
        now < self.ends_at()
    }
}

/// A session as the proxy path uses it: what is kept of the record, its secret hash in bytes,
/// its user (shared), and the session's own header values made once when it entered the cache.
#[derive(Debug)]
pub struct CachedSession {
    pub session: Kept,
    pub(super) secret_hash: [u8; 32],
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
    pub(in crate::session) touched: AtomicU64,
    /// The `Sessions::suspect` generation this entry was last read from the store in.
    pub(super) checked: AtomicU32,
    /// The tag of the first token proven (HMAC) against this entry: a hit presenting the same
    /// tag skips the HMAC, any other tag is checked in full, so a token with its tag altered
    /// is refused on hits too, not only on misses. Set once, so it is never read half-written.
    proven_tag: std::sync::OnceLock<[u8; 16]>,
}

impl CachedSession {
    pub(super) fn new(mut session: Session, users: &Users) -> Option<CachedSession> {
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
        Some(CachedSession {
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
    pub(super) fn is_proven(&self, tag: &[u8; 16]) -> bool {
        self.proven_tag
            .get()
            .is_some_and(|proven| token::same_bytes(proven, tag))
    }

    /// Records a tag whose HMAC was checked, if none was yet (one (id, secret) has one tag per
    /// key, so a second genuine tag is practically impossible; it would only cost its HMAC).
    pub(super) fn prove(&self, tag: &[u8; 16]) {
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
    pub fn local(user: &User) -> Option<Arc<CachedSession>> {
        let now = now();
        CachedSession::new(
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
                provider: None,
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
            let live = CachedSession::new(record(id, idle), &users).expect("a usable record");
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
        let live = CachedSession::new(record(id, Some(u64::MAX)), &users).expect("a usable record");
        assert_eq!((live.session.idle_ttl(), live.session.ends_at()), (None, 5_000));
        // The largest end there is still fits.
        let mut forever = record(id, None);
        forever.expires = u64::MAX;
        let live = CachedSession::new(forever, &users).expect("a usable record");
        assert_eq!(live.header_bytes()[5], u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn malformed_records_are_not_cached_as_usable() {
        let users = Users::default();
        assert!(CachedSession::new(record("0123456789abcdef", None), &users).is_none());
        assert!(CachedSession::new(record(&"a".repeat(33), None), &users).is_none());
        assert!(CachedSession::new(record(&"g".repeat(32), None), &users).is_none());
        let mut bad_hash = record("0123456789abcdef0123456789abcdef", None);
        bad_hash.secret_hash = "zz".repeat(32);
        assert!(CachedSession::new(bad_hash, &users).is_none());
    }
}
