//! Session tokens. Security rules:
//! - A token is `pc1_` + base64url(session id 16 B ‖ secret 32 B ‖ tag 16 B): 256 secret bits
//!   from the OS CSPRNG, and a tag = HMAC-SHA256(key, "pc1" ‖ id ‖ secret) truncated to 128 bits.
//! - `verify` checks length, prefix, encoding and tag (constant time, every configured key, so a
//!   previous key keeps working during rotation) before anything else: a token this gateway did
//!   not mint never causes a store lookup.
//! - The store keeps SHA-256(secret), never the token; the session id is not a secret (it is
//!   logged and injected) and cannot be turned into a token without the secret.
//! - Extraction never panics and never allocates for hostile input beyond the fixed-size parse.
//! - Reissue tokens (SPEC §2.3) have the same shape with `pcr_` and their own tag domain, so one
//!   purpose can never be presented as the other. The pair a reissue hands out is derived from the
//!   used reissue secret (HMAC with the first key), so a racing second presenter within the
//!   grace window receives the same pair without the store ever holding a token.
//! - A pending session's id is derived from its user code (HMAC), so the login page finds the
//!   session from the code alone and the id reveals nothing about the code.

use aws_lc_rs::{constant_time, digest, hmac, rand as lc_rand};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

pub const PREFIX: &str = "pc1_";
pub const REISSUE_PREFIX: &str = "pcr_";
const RAW_LEN: usize = 16 + 32 + 16;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Presented on every request (`Authorization: Bearer`, the cookie).
    Auth,
    /// Presented once to `POST /sessions/reissue`.
    Reissue,
}

impl Purpose {
    fn prefix(self) -> &'static str {
        match self {
            Purpose::Auth => PREFIX,
            Purpose::Reissue => REISSUE_PREFIX,
        }
    }

    fn domain(self) -> &'static [u8] {
        match self {
            Purpose::Auth => b"pc1",
            Purpose::Reissue => b"pcr",
        }
    }
}
/// Length of every token this gateway mints.
pub const TOKEN_LEN: usize = PREFIX.len() + 86;
/// The most credential bytes ever looked at (SPEC §1.4).
pub const MAX_CREDENTIAL_LEN: usize = 4096;

/// A session id: 16 random bytes, shown as 32 hex digits.
pub type SessionId = [u8; 16];

pub fn id_hex(id: &SessionId) -> String {
    hex(id)
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Parses 32 hex digits into a session id.
pub fn parse_id(text: &str) -> Option<SessionId> {
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// What a verified token yields: the session id and the hash the store must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub id: SessionId,
    pub secret_hash: [u8; 32],
}

/// A freshly minted token and what the store keeps of it.
pub struct Minted {
    pub token: String,
    pub id: SessionId,
    pub secret_hash: [u8; 32],
}

/// The tagging keys: the first tags new tokens, all are accepted.
#[derive(Clone)]
pub struct TokenKeys {
    keys: Vec<hmac::Key>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenKeys({} keys)", self.keys.len())
    }
}

/// Fills `buf` from the OS CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), TokenError> {
    lc_rand::fill(buf).map_err(|_| TokenError::Random)
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the system random number generator failed")]
    Random,
    #[error("no token key is configured")]
    NoKey,
}

impl TokenKeys {
    /// Keys from secrets (each at least 32 bytes; checked by the config).
    pub fn new<S: AsRef<[u8]>>(secrets: &[S]) -> TokenKeys {
        TokenKeys {
            keys: secrets
                .iter()
                .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.as_ref()))
                .collect(),
        }
    }

    fn tag(key: &hmac::Key, purpose: Purpose, id: &[u8], secret: &[u8]) -> [u8; 16] {
        let mut out = [0u8; 16];
        out.copy_from_slice(&Self::mac(key, purpose.domain(), id, secret)[..16]);
        out
    }

    fn mac(key: &hmac::Key, domain: &[u8], id: &[u8], data: &[u8]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(key);
        ctx.update(domain);
        ctx.update(id);
        ctx.update(data);
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// A MAC of `data` made with the first key, for a use other than tokens (`domain` keeps
    /// the uses apart, and apart from the tokens' own domains).
    pub fn seal(&self, domain: &[u8], data: &[u8]) -> Result<[u8; 32], TokenError> {
        Ok(Self::mac(self.first()?, domain, b"", data))
    }

    /// Which key made `mac` as `seal(domain, data)`, if any does (rotation: not only the
    /// first), in constant time per key.
    pub fn sealed_by(&self, domain: &[u8], data: &[u8], mac: &[u8; 32]) -> Option<usize> {
        self.keys
            .iter()
            .position(|k| same_bytes(&Self::mac(k, domain, b"", data), mac))
    }

    /// `seal` with key `index` (the one `sealed_by` named).
    pub fn seal_with(&self, index: usize, domain: &[u8], data: &[u8]) -> Option<[u8; 32]> {
        Some(Self::mac(self.keys.get(index)?, domain, b"", data))
    }

    fn first(&self) -> Result<&hmac::Key, TokenError> {
        self.keys.first().ok_or(TokenError::NoKey)
    }

    /// A token of `purpose` for `id` with this secret.
    pub fn mint_with(
        &self,
        purpose: Purpose,
        id: SessionId,
        secret: &[u8; 32],
    ) -> Result<Minted, TokenError> {
        let tag = Self::tag(self.first()?, purpose, &id, secret);
        let mut raw = [0u8; RAW_LEN];
        raw[..16].copy_from_slice(&id);
        raw[16..48].copy_from_slice(secret);
        raw[48..].copy_from_slice(&tag);
        let mut token = String::with_capacity(TOKEN_LEN);
        token.push_str(purpose.prefix());
        URL_SAFE_NO_PAD.encode_string(raw, &mut token);
        Ok(Minted {
            token,
            id,
            secret_hash: secret_hash(secret),
        })
    }

    /// A fresh random secret of `purpose` for `id`.
    pub fn mint_random(&self, purpose: Purpose, id: SessionId) -> Result<Minted, TokenError> {
        let mut secret = [0u8; 32];
        random_bytes(&mut secret)?;
        self.mint_with(purpose, id, &secret)
    }

    /// The auth and reissue tokens that follow the reissue token with `used_secret`.
    pub fn next_pair(&self, id: SessionId, used_secret: &[u8; 32]) -> Result<(Minted, Minted), TokenError> {
        self.pair_under(self.first()?, id, used_secret)
    }

    /// The pairs every configured key would derive (an instance whose first key differs
    /// during a rotation derived one of these).
    pub fn next_pairs(
        &self,
        id: SessionId,
        used_secret: &[u8; 32],
    ) -> Result<Vec<(Minted, Minted)>, TokenError> {
        self.keys
            .iter()
            .map(|k| self.pair_under(k, id, used_secret))
            .collect()
    }

    fn pair_under(
        &self,
        key: &hmac::Key,
        id: SessionId,
        used_secret: &[u8; 32],
    ) -> Result<(Minted, Minted), TokenError> {
        let auth = Self::mac(key, b"pc1-next-auth", &id, used_secret);
        let reissue = Self::mac(key, b"pc1-next-reissue", &id, used_secret);
        Ok((
            self.mint_with(Purpose::Auth, id, &auth)?,
            self.mint_with(Purpose::Reissue, id, &reissue)?,
        ))
    }

    /// The session id a pending session with this user code has under each key (the first
    /// is the one new sessions get; the others find sessions made before a key rotation).
    pub fn code_ids(&self, code: &str) -> Vec<SessionId> {
        self.keys
            .iter()
            .map(|k| {
                let mut id = [0u8; 16];
                id.copy_from_slice(&Self::mac(k, b"pc1-code", b"", code.as_bytes())[..16]);
                id
            })
            .collect()
    }

    /// A new token for a new session id.
    pub fn mint(&self) -> Result<Minted, TokenError> {
        let mut id = [0u8; 16];
        random_bytes(&mut id)?;
        self.mint_for(id)
    }

    /// A new token (new secret) for an existing session id: renewing rotates the secret.
    pub fn mint_for(&self, id: SessionId) -> Result<Minted, TokenError> {
        self.mint_random(Purpose::Auth, id)
    }

    /// Checks a presented token completely (shape and tag) without any store lookup.
    pub fn verify(&self, token: &str) -> Option<Verified> {
        let parsed = Parsed::new(token)?;
        self.genuine(&parsed).then(|| parsed.verified())
    }

    /// Whether the tag of a parsed token was made with one of our keys.
    pub fn genuine(&self, parsed: &Parsed) -> bool {
        let (id, secret, tag) = parsed.parts();
        self.keys.iter().any(|k| {
            constant_time::verify_slices_are_equal(&Self::tag(k, parsed.purpose, id, secret), tag).is_ok()
        })
    }
}

/// A token split into its parts, tag not yet checked.
pub struct Parsed {
    purpose: Purpose,
    raw: [u8; RAW_LEN + 2],
}

impl Parsed {
    /// An auth token's shape only: prefix, length, base64url.
    pub fn new(token: &str) -> Option<Parsed> {
        Parsed::of(Purpose::Auth, token)
    }

    pub fn of(purpose: Purpose, token: &str) -> Option<Parsed> {
        let prefix = purpose.prefix();
        if token.len() != TOKEN_LEN || !token.starts_with(prefix) {
            return None;
        }
        let mut raw = [0u8; RAW_LEN + 2];
        let n = URL_SAFE_NO_PAD
            .decode_slice(&token.as_bytes()[prefix.len()..], &mut raw)
            .ok()?;
        (n == RAW_LEN).then_some(Parsed { purpose, raw })
    }

    pub fn secret(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.parts().1);
        out
    }

    fn parts(&self) -> (&[u8], &[u8], &[u8]) {
        let (id, rest) = self.raw[..RAW_LEN].split_at(16);
        let (secret, tag) = rest.split_at(32);
        (id, secret, tag)
    }

    /// The tag as presented (not checked).
    pub fn tag(&self) -> [u8; 16] {
        let mut tag = [0u8; 16];
        tag.copy_from_slice(self.parts().2);
        tag
    }

    pub fn id(&self) -> SessionId {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.raw[..16]);
        id
    }

    /// SHA-256 of the secret, to compare with the stored one.
    pub fn secret_hash(&self) -> [u8; 32] {
        secret_hash(self.parts().1)
    }

    pub fn verified(&self) -> Verified {
        Verified {
            id: self.id(),
            secret_hash: self.secret_hash(),
        }
    }
}

fn secret_hash(secret: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Constant-time equality of two secret values of one size (secret hashes, tags).
pub fn same_bytes<const N: usize>(a: &[u8; N], b: &[u8; N]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_forgeries_do_not() {
        let keys = TokenKeys::new(&[b"k1-0123456789abcdef0123456789abcdef".as_slice()]);
        let m = keys.mint().unwrap();
        assert_eq!(m.token.len(), TOKEN_LEN);
        assert!(m.token.starts_with("pc1_"));
        let v = keys.verify(&m.token).unwrap();
        assert_eq!(v.id, m.id);
        assert_eq!(v.secret_hash, m.secret_hash);

        // Flip one character of the secret: the tag no longer matches.
        let mut forged = m.token.clone().into_bytes();
        forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
        assert!(keys.verify(std::str::from_utf8(&forged).unwrap()).is_none());
        for junk in [
            "",
            "pc1_",
            "Bearer",
            &"a".repeat(TOKEN_LEN),
            &"pc1_".repeat(40),
            "pc1_!!!!",
        ] {
            assert!(keys.verify(junk).is_none(), "{junk}");
        }
        let other = TokenKeys::new(&[b"k2-0123456789abcdef0123456789abcdef".as_slice()]);
        assert!(other.verify(&m.token).is_none(), "another gateway's token");
    }

    #[test]
    fn rotation_accepts_the_previous_key() {
        let old = TokenKeys::new(&[b"old-0123456789abcdef0123456789abcdef".as_slice()]);
        let token = old.mint().unwrap().token;
        let rotated = TokenKeys::new(&[
            b"new-0123456789abcdef0123456789abcdef".as_slice(),
            b"old-0123456789abcdef0123456789abcdef".as_slice(),
        ]);
        assert!(rotated.verify(&token).is_some());
        let fresh = rotated.mint().unwrap().token;
        assert!(
            old.verify(&fresh).is_none(),
            "new tokens are tagged with the first key"
        );
    }

    #[test]
    fn kinds_do_not_cross_and_next_pairs_are_deterministic() {
        let keys = TokenKeys::new(&[b"k1-0123456789abcdef0123456789abcdef".as_slice()]);
        let r = keys.mint_random(Purpose::Reissue, [7; 16]).unwrap();
        assert!(r.token.starts_with("pcr_"));
        assert!(
            keys.verify(&r.token).is_none(),
            "a reissue token is not an auth token"
        );
        let as_auth = format!("pc1_{}", &r.token[4..]);
        assert!(keys.verify(&as_auth).is_none(), "nor does renaming it make one");
        let parsed = Parsed::of(Purpose::Reissue, &r.token).unwrap();
        assert!(keys.genuine(&parsed));
        let (a1, r1) = keys.next_pair([7; 16], &parsed.secret()).unwrap();
        let (a2, r2) = keys.next_pair([7; 16], &parsed.secret()).unwrap();
        assert_eq!(
            (a1.token.as_str(), r1.token.as_str()),
            (a2.token.as_str(), r2.token.as_str())
        );
        assert_ne!(r1.token, r.token);
        assert!(keys.verify(&a1.token).is_some());
        assert_ne!(keys.code_ids("BCDF-GHJK"), keys.code_ids("BCDF-GHJL"));
    }

    #[test]
    fn ids_round_trip() {
        let id = [0xab; 16];
        assert_eq!(parse_id(&id_hex(&id)), Some(id));
        assert_eq!(parse_id("zz"), None);
        assert_eq!(parse_id(&"g".repeat(32)), None);
    }
}
