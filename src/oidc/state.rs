//! A sign-in in progress, between `/start` and `/callback`: a cookie holding the provider, the
//! `state` sent to it, where to go after (`rd`) or which device to sign in (`code`), the
//! redirect URI used and when it expires, sealed with the token keys (HMAC-SHA256) so it
//! cannot be made or changed elsewhere. The cookie's name carries the start of `state`, so
//! sign-ins in two tabs do not overwrite each other's. No secret is in it: the PKCE verifier
//! and the nonce are derived from `state` with the token keys (`derived`), so they are known
//! to this gateway (any instance sharing its keys) and nobody else.

use crate::session::token::TokenKeys;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// How long a sign-in may take at the provider.
pub const LIFETIME: u64 = 600;
const SEAL: &[u8] = b"portcullis oidc sign-in\0";
/// The most of a sealed value this reads (a few hundred bytes in practice).
const MAX_SEALED: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
pub struct Started {
    #[serde(rename = "p")]
    pub provider: String,
    #[serde(rename = "s")]
    pub state: String,
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub rd: Option<String>,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(rename = "u")]
    pub redirect_uri: String,
    #[serde(rename = "e")]
    pub expires: u64,
    /// Which token key sealed it (not in the cookie): the PKCE verifier and the nonce are
    /// derived with that key, so a sign-in started before a key rotation finishes after it
    /// and on instances that list the keys in another order.
    #[serde(skip)]
    pub key: usize,
}

/// 32 random bytes, base64url: the `state` of one sign-in.
pub fn new_state() -> Option<String> {
    let mut bytes = [0u8; 32];
    crate::session::token::random_bytes(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// The cookie's name for this `state`: `<session cookie>-oidc-<8 characters of state>`.
pub fn cookie_name(session_cookie: &str, state: &str) -> Option<String> {
    let short = state.get(..8)?;
    short
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        .then(|| format!("{session_cookie}-oidc-{short}"))
}

pub fn seal(keys: &TokenKeys, started: &Started) -> Option<String> {
    let json = serde_json::to_vec(started).ok()?;
    let mac = keys.seal(SEAL, &json).ok()?;
    Some(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&json),
        URL_SAFE_NO_PAD.encode(mac)
    ))
}

/// The sign-in in a cookie's value, if this gateway sealed it and it has not expired.
pub fn open(keys: &TokenKeys, value: &str, now: u64) -> Option<Started> {
    if value.len() > MAX_SEALED {
        return None;
    }
    let (json, mac) = value.split_once('.')?;
    let json = URL_SAFE_NO_PAD.decode(json).ok()?;
    let mac: [u8; 32] = URL_SAFE_NO_PAD.decode(mac).ok()?.try_into().ok()?;
    let key = keys.sealed_by(SEAL, &json, &mac)?;
    let mut started: Started = serde_json::from_slice(&json).ok()?;
    started.key = key;
    (started.expires > now).then_some(started)
}

/// A value only this gateway can compute from `state`, with token key `key` (0 when a
/// sign-in starts; `Started::key` when it finishes): `what` is `b"pkce"` (the PKCE code
/// verifier, 43 characters as RFC 7636 wants) or `b"nonce"`.
pub fn derived(keys: &TokenKeys, key: usize, what: &[u8], state: &str) -> Option<String> {
    let mut domain = b"portcullis oidc ".to_vec();
    domain.extend_from_slice(what);
    domain.push(0);
    keys.seal_with(key, &domain, state.as_bytes())
        .map(|mac| URL_SAFE_NO_PAD.encode(mac))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started(expires: u64) -> Started {
        Started {
            provider: "corp".into(),
            state: "abcdefgh-rest".into(),
            rd: Some("/app".into()),
            code: None,
            redirect_uri: "https://gw.example/auth/oidc/corp/callback".into(),
            expires,
            key: 0,
        }
    }

    #[test]
    fn a_sealed_sign_in_opens_only_unchanged_and_in_time() {
        let keys = TokenKeys::new(&[b"0123456789abcdef0123456789abcdef".to_vec()]);
        let other = TokenKeys::new(&[b"another secret of thirty-two bytes!".to_vec()]);
        let sealed = seal(&keys, &started(100)).unwrap();
        assert_eq!(open(&keys, &sealed, 99).unwrap().rd.as_deref(), Some("/app"));
        assert!(open(&keys, &sealed, 100).is_none(), "expired");
        assert!(open(&other, &sealed, 99).is_none(), "another gateway's keys");
        // After a rotation (a new first key), the old key still opens it, and says so.
        let rotated = TokenKeys::new(&[
            b"another secret of thirty-two bytes!".to_vec(),
            b"0123456789abcdef0123456789abcdef".to_vec(),
        ]);
        assert_eq!(open(&rotated, &sealed, 99).unwrap().key, 1);
        assert_eq!(
            derived(&rotated, 1, b"pkce", "s"),
            derived(&keys, 0, b"pkce", "s")
        );
        let (json, mac) = sealed.split_once('.').unwrap();
        let mut changed = URL_SAFE_NO_PAD.decode(json).unwrap();
        changed[10] ^= 1;
        let forged = format!("{}.{mac}", URL_SAFE_NO_PAD.encode(&changed));
        assert!(open(&keys, &forged, 99).is_none(), "changed");
        for junk in ["", ".", "a.b", "%%%.%%%", &"x".repeat(5000)] {
            assert!(open(&keys, junk, 0).is_none());
        }
    }

    #[test]
    fn derived_values_are_per_state_and_fit_pkce() {
        let keys = TokenKeys::new(&[b"0123456789abcdef0123456789abcdef".to_vec()]);
        let v = derived(&keys, 0, b"pkce", "s1").unwrap();
        assert_eq!(v.len(), 43);
        assert_ne!(v, derived(&keys, 0, b"pkce", "s2").unwrap());
        assert_ne!(v, derived(&keys, 0, b"nonce", "s1").unwrap());
        assert_eq!(cookie_name("pc", "abcdefghij").unwrap(), "pc-oidc-abcdefgh");
        assert!(cookie_name("pc", "ab;d=fghij").is_none());
        assert!(cookie_name("pc", "short").is_none());
    }
}
