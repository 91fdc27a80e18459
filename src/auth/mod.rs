//! Authentication on the proxy path. Security rules:
//! - Credentials are read from `Authorization: Bearer` first, else the session cookie; a
//!   credential longer than 4 KiB is refused before any lookup.
//! - Extraction returns `Option`s and never panics on hostile input.
//! - The gateway's own credential (a `pc1_` bearer token, its cookie) is removed from what is
//!   forwarded unless the route says `forward_credentials = true`; other credentials (an
//!   external JWT, a Basic header) are the upstream's business and pass through.
//! - Identity headers are inserted only after the client's copies were stripped
//!   (`proxy::headers::sanitize_request` runs first).

pub mod browser;
pub mod jwt;
pub mod password;
pub mod ratelimit;

use crate::config::{HeaderNames, Policy};
use crate::session::cache::{CachedSession, Found, Sessions};
use crate::session::token::{MAX_CREDENTIAL_LEN, PREFIX};
use http::header::{self, HeaderMap, HeaderValue};
use jwt::{AssertionSigner, Issuer, JwtIdentity};
use std::sync::Arc;

/// A credential as presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    Bearer(&'a str),
    Cookie(&'a str),
}

impl<'a> Credential<'a> {
    pub fn token(&self) -> &'a str {
        match self {
            Credential::Bearer(t) | Credential::Cookie(t) => t,
        }
    }
}

/// A credential over the size cap: refused without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Oversized;

/// A header value as text (`proxy::framing::header_text`, below every rule that reads one).
pub use crate::proxy::framing::header_text;
use crate::proxy::framing::is_text;

/// The bearer token from `Authorization`, if that is what it holds.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, Oversized> {
    bearer_in(headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes))
}

/// The bearer token in an `Authorization` value (the request's first), if that is what it holds.
pub fn bearer_in(value: Option<&[u8]>) -> Result<Option<&str>, Oversized> {
    let Some(value) = value else {
        return Ok(None);
    };
    if value.len() > MAX_CREDENTIAL_LEN + 7 {
        return Err(Oversized);
    }
    // `<scheme> <token>`: the scheme is what comes before the first space.
    let Some(space) = value.iter().position(|&b| b == b' ') else {
        return Ok(None);
    };
    if !value[..space].eq_ignore_ascii_case(b"bearer") || !is_text(value) {
        return Ok(None);
    }
    let token = value[space + 1..].trim_ascii();
    if token.is_empty() {
        return Ok(None);
    }
    Ok(std::str::from_utf8(token).ok())
}

/// The value of cookie `name` from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Oversized> {
    cookie_in(
        headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes),
        name,
    )
}

/// The value of cookie `name` in these `Cookie` header values.
pub fn cookie_in<'a>(
    values: impl Iterator<Item = &'a [u8]>,
    name: &str,
) -> Result<Option<&'a str>, Oversized> {
    for (k, v) in cookie_pairs(values) {
        if k == name {
            if v.len() > MAX_CREDENTIAL_LEN {
                return Err(Oversized);
            }
            return Ok(Some(v.trim_matches('"')));
        }
    }
    Ok(None)
}

/// The `name=value` pairs of these `Cookie` header values, in order (values as sent; values
/// that are not header text are skipped).
pub fn cookie_pairs<'a>(values: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = (&'a str, &'a str)> {
    values
        .filter_map(header_text)
        .flat_map(|text| text.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// `Authorization: Bearer` first, else the session cookie.
pub fn credential<'a>(
    headers: &'a HeaderMap,
    cookie_name: &str,
) -> Result<Option<Credential<'a>>, Oversized> {
    credential_in(
        headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes),
        headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes),
        cookie_name,
    )
}

/// `credential` from raw values: the (first) `Authorization` value and the `Cookie` values,
/// read only when there is no bearer token.
pub fn credential_in<'a>(
    authorization: Option<&'a [u8]>,
    cookies: impl Iterator<Item = &'a [u8]>,
    cookie_name: &str,
) -> Result<Option<Credential<'a>>, Oversized> {
    if let Some(t) = bearer_in(authorization)? {
        return Ok(Some(Credential::Bearer(t)));
    }
    Ok(cookie_in(cookies, cookie_name)?.map(Credential::Cookie))
}

/// Who a request is, once proven.
pub enum Identity {
    Session(Arc<CachedSession>),
    Jwt(JwtIdentity),
}

/// What the route's policy says about this request.
pub enum Decision {
    /// Forward, with this identity if there is one.
    Allow(Option<Identity>),
    /// No (valid) credential: 401, or the login redirect for browsers.
    Unauthenticated { presented: bool },
    /// Authenticated, but the route needs a role the user lacks: 403.
    Forbidden,
    /// A credential that needs the store, and the store is down: 503 (never 401, which makes
    /// clients throw good tokens away).
    StoreUnavailable,
}

/// Applies `policy` to the presented credential. With a `local` user (single-user mode), a
/// request without a valid credential is that user.
pub async fn decide(
    sessions: &Sessions,
    issuers: &[Issuer],
    local: Option<&Arc<CachedSession>>,
    policy: &Policy,
    presented: Result<Option<Credential<'_>>, Oversized>,
) -> Decision {
    let identity = match presented {
        Err(Oversized) => Err(true),
        Ok(None) => Err(false),
        Ok(Some(Credential::Bearer(t))) if *policy == Policy::Jwt && !t.starts_with(PREFIX) => {
            jwt::verify_external(issuers, t).map(Identity::Jwt).ok_or(true)
        }
        Ok(Some(c)) => match sessions.authenticate(c.token()).await {
            Ok(Found::Active(live)) => Ok(Identity::Session(live)),
            Ok(Found::Pending(_) | Found::Nothing) => Err(true),
            Err(e) => {
                tracing::warn!(error = %e, "session lookup failed");
                return match (policy, local) {
                    // Single-user mode needs no store to know who the request is.
                    (_, Some(local)) => Decision::Allow(Some(Identity::Session(local.clone()))),
                    (Policy::Public, None) => Decision::Allow(None),
                    _ => Decision::StoreUnavailable,
                };
            }
        },
    };
    let identity = match (identity, local) {
        (Err(_), Some(local)) => Ok(Identity::Session(local.clone())),
        (identity, _) => identity,
    };
    match (policy, identity) {
        (Policy::Public, identity) => Decision::Allow(identity.ok()),
        (_, Err(presented)) => Decision::Unauthenticated { presented },
        (Policy::Authenticated | Policy::Jwt, Ok(identity)) => Decision::Allow(Some(identity)),
        (Policy::Roles(needed), Ok(identity)) => {
            let roles = match &identity {
                Identity::Session(live) => live.user().map(|u| u.roles.as_slice()).unwrap_or_default(),
                Identity::Jwt(j) => j.roles.as_slice(),
            };
            if roles.iter().any(|r| needed.contains(r)) {
                Decision::Allow(Some(identity))
            } else {
                Decision::Forbidden
            }
        }
    }
}

/// Whether a browser would attach this identity to any request by itself, so that another
/// site's page could borrow it: one proven by a cookie, or single-user mode's local user
/// (whoever reaches the gateway is that user).
pub fn ambient(by_cookie: bool, identity: Option<&Identity>, local: Option<&Arc<CachedSession>>) -> bool {
    match identity {
        None => false,
        Some(Identity::Session(live)) => by_cookie || local.is_some_and(|l| Arc::ptr_eq(l, live)),
        Some(Identity::Jwt(_)) => by_cookie,
    }
}

/// Inserts the identity headers (the client's copies were stripped already). A JWT identity
/// has no user id or session, so those headers are absent.
pub fn inject_identity(headers: &mut HeaderMap, names: &HeaderNames, identity: &Identity) {
    for (name, value) in identity_headers(names, identity) {
        if let Some(value) = value {
            headers.insert(name.clone(), value);
        }
    }
}

/// The identity headers of `identity`, by name; `None` for those it has no value for.
pub fn identity_headers<'n>(
    names: &'n HeaderNames,
    identity: &Identity,
) -> [(&'n http::HeaderName, Option<HeaderValue>); 6] {
    match identity {
        Identity::Session(live) => {
            let [user, id, uuid, roles, sid, expires] = live.header_values();
            [
                (&names.user, Some(user)),
                (&names.user_id, Some(id)),
                (&names.user_uuid, Some(uuid)),
                (&names.roles, Some(roles)),
                (&names.session_id, Some(sid)),
                (&names.session_expires, Some(expires)),
            ]
        }
        Identity::Jwt(j) => {
            let text = |value: &str| HeaderValue::from_str(value).ok();
            [
                (&names.user, text(j.name.as_deref().unwrap_or(&j.subject))),
                (&names.user_id, None),
                (&names.user_uuid, text(&j.subject)),
                (&names.roles, text(&j.roles.join(","))),
                (&names.session_id, None),
                (&names.session_expires, text(&j.expires.to_string())),
            ]
        }
    }
}

/// The `X-Auth-Jwt` value for this identity on the route named `aud`; session identities
/// reuse an assertion made by this signer for this audience while it has more than half its
/// lifetime left (keyed by name, not index: a reload may renumber routes).
pub fn assertion(signer: &AssertionSigner, identity: &Identity, aud: &str) -> Option<HeaderValue> {
    let now = crate::session::now();
    match identity {
        Identity::Session(live) => {
            let user = live.user()?;
            live.assertion(aud, signer.id, now, signer.ttl.as_secs() / 2, || {
                signer.sign(aud, user, live.id(), now)
            })
        }
        Identity::Jwt(j) => {
            let user = crate::session::User {
                id: 0,
                username: j.name.clone().unwrap_or_else(|| j.subject.clone()),
                uuid: j.subject.clone(),
                roles: j.roles.clone(),
                provider: None,
            };
            signer.sign(aud, &user, "", now).map(|(_, v)| v)
        }
    }
}

/// Whether an `Authorization` line carries the gateway's own token: scheme `Bearer` (any case,
/// then spaces or tabs) and a `pc1_` token. Every such line is removed before forwarding,
/// wherever it stands among the request's `Authorization` lines (both paths).
pub fn is_own_authorization(value: &[u8]) -> bool {
    let value = value.trim_ascii();
    let Some(sep) = value.iter().position(|&b| b == b' ' || b == b'\t') else {
        return false;
    };
    value[..sep].eq_ignore_ascii_case(b"bearer") && value[sep..].trim_ascii().starts_with(PREFIX.as_bytes())
}

/// Removes the gateway's own credentials: every `Authorization` line with a `pc1_` bearer
/// token, and the session cookie.
pub fn remove_credentials(headers: &mut HeaderMap, cookie_name: &str) {
    let lines = headers.get_all(header::AUTHORIZATION);
    if lines.iter().any(|v| is_own_authorization(v.as_bytes())) {
        let kept: Vec<HeaderValue> = lines
            .iter()
            .filter(|v| !is_own_authorization(v.as_bytes()))
            .cloned()
            .collect();
        headers.remove(header::AUTHORIZATION);
        for v in kept {
            headers.append(header::AUTHORIZATION, v);
        }
    }
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let kept = cookies_without(
        headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes),
        cookie_name,
    );
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept)
    {
        headers.insert(header::COOKIE, v);
    }
}

/// The cookies of these `Cookie` values but `name`, as one `Cookie` value (empty if none).
pub fn cookies_without<'a>(values: impl Iterator<Item = &'a [u8]>, name: &str) -> String {
    let mut kept = String::new();
    let pairs = values
        .filter_map(header_text)
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(k, _)| k != name));
    for pair in pairs {
        if !kept.is_empty() {
            kept.push_str("; ");
        }
        kept.push_str(pair);
    }
    kept
}

/// A browser navigation: GET or HEAD whose (first) `Accept` asks for HTML. These get the login
/// redirect, not a 401.
pub fn is_browser_navigation(method: &str, accept: Option<&[u8]>) -> bool {
    matches!(method, "GET" | "HEAD")
        && accept
            .and_then(header_text)
            .is_some_and(|a| a.contains("text/html"))
}

/// Percent-encodes a path-and-query for use as the `rd` parameter.
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn bearer_first_then_cookie() {
        let h = map(&[("authorization", "Bearer abc"), ("cookie", "a=1; sid=xyz")]);
        assert_eq!(credential(&h, "sid"), Ok(Some(Credential::Bearer("abc"))));
        let h = map(&[("authorization", "Basic Zm9v"), ("cookie", "a=1; sid=xyz")]);
        assert_eq!(credential(&h, "sid"), Ok(Some(Credential::Cookie("xyz"))));
        let h = map(&[("cookie", "sidx=1")]);
        assert_eq!(credential(&h, "sid"), Ok(None));
        let big = format!("Bearer {}", "a".repeat(5000));
        assert_eq!(
            credential(&map(&[("authorization", &big)]), "sid"),
            Err(Oversized)
        );
        let big = format!("sid={}", "a".repeat(5000));
        assert_eq!(credential(&map(&[("cookie", &big)]), "sid"), Err(Oversized));
    }

    #[test]
    fn only_our_credentials_are_removed() {
        let mut h = map(&[
            ("authorization", "Bearer pc1_abc"),
            ("cookie", "a=1; sid=xyz; b=2"),
        ]);
        remove_credentials(&mut h, "sid");
        assert!(h.get("authorization").is_none());
        assert_eq!(h.get("cookie").unwrap(), "a=1; b=2");
        let mut h = map(&[
            ("authorization", "Bearer eyJhbGciOi.jwt.sig"),
            ("cookie", "sid=xyz"),
        ]);
        remove_credentials(&mut h, "sid");
        assert!(
            h.get("authorization").is_some(),
            "an external JWT is the upstream's business"
        );
        assert!(h.get("cookie").is_none());
    }

    #[test]
    fn rd_encoding() {
        assert_eq!(encode_component("/a b?x=1&y=/"), "/a%20b%3Fx%3D1%26y%3D/");
    }
}
