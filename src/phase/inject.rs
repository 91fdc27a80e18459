//! Phase 5, inject: what the gateway adds to an allowed request and removes from it, as a plan
//! both transports apply — the fast path as bytes (`h1::request::write_head`), hyper's path to
//! a `HeaderMap` (`proxy::headers::apply`), forward auth to its answer (`Injection` alone).

use crate::auth::{self, Identity};
use crate::config::HeaderNames;
use crate::gateway::{ConnInfo, GatewayState, Route};
use crate::session::cache::CachedSession;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;

/// What phase 5 adds to and removes from a request on its way to the upstream.
pub struct Plan<'a> {
    /// The path sent upstream (normalized; without the route's prefix with `strip_prefix`).
    pub path: Cow<'a, str>,
    pub identity: Injection<'a>,
    /// The session cookie's name when the route removes the gateway's own credentials (its
    /// `pc1_` bearer tokens and this cookie); `None` when it forwards them.
    pub strip_credentials: Option<&'a str>,
    /// For `X-Forwarded-For` (appended to a trusted proxy's chain).
    pub peer_ip: &'a HeaderValue,
    /// `X-Forwarded-Proto`, unless a trusted proxy sent one.
    pub proto: &'static str,
    pub request_id: &'a [u8],
    /// `Host` as the client sent it; else each target's own.
    pub preserve_host: bool,
}

impl<'a> Plan<'a> {
    /// The plan for a request to `route` allowed as `identity`; `path`: the normalized path.
    pub fn new(
        shared: &'a GatewayState,
        conn: &'a ConnInfo,
        route: &'a Route,
        identity: Option<&'a Identity>,
        path: &'a str,
        request_id: &'a [u8],
    ) -> Plan<'a> {
        Plan {
            path: super::route::upstream_path(route, path),
            identity: Injection::new(shared, Some(route), identity),
            strip_credentials: (!route.config.forward_credentials).then(|| shared.cookie_on(conn)),
            peer_ip: &conn.peer_ip,
            proto: if conn.tls { "https" } else { "http" },
            request_id,
            preserve_host: route.config.preserve_host,
        }
    }
}

/// The identity headers of an allowed request, and its `X-Auth-Jwt` assertion when the
/// gateway signs them. A session's values are borrowed from its cache entry; a JWT's are made
/// here. A JWT identity has no user id or session: those headers are absent.
pub struct Injection<'a> {
    session: Option<(&'a HeaderNames, &'a CachedSession)>,
    jwt: Option<[(&'a HeaderName, Option<HeaderValue>); 6]>,
    assertion: Option<(&'a HeaderName, HeaderValue)>,
}

impl<'a> Injection<'a> {
    /// `route`: the route asked for (the assertion's audience; none, no assertion).
    pub fn new(
        shared: &'a GatewayState,
        route: Option<&Route>,
        identity: Option<&'a Identity>,
    ) -> Injection<'a> {
        let names = &shared.header_names;
        let assertion = match (identity, &shared.assertion, route) {
            (Some(identity), Some(signer), Some(route)) => {
                auth::assertion(signer, identity, &route.config.name).map(|v| (&names.jwt, v))
            }
            _ => None,
        };
        Injection {
            session: match identity {
                Some(Identity::Session(live)) => Some((names, live)),
                _ => None,
            },
            jwt: match identity {
                Some(jwt @ Identity::Jwt(_)) => Some(auth::identity_headers(names, jwt)),
                _ => None,
            },
            assertion,
        }
    }

    /// Nothing to add (a public route's anonymous request).
    pub fn none() -> Injection<'a> {
        Injection {
            session: None,
            jwt: None,
            assertion: None,
        }
    }

    /// One given header to add, in the assertion's place (the transports' tests and benches).
    pub fn one(name: &'a HeaderName, value: HeaderValue) -> Injection<'a> {
        Injection {
            assertion: Some((name, value)),
            ..Injection::none()
        }
    }

    /// Each header to add, in one order: the identity's, then `X-Auth-Jwt`.
    pub fn for_each(&self, mut line: impl FnMut(&HeaderName, &[u8])) {
        if let Some((names, live)) = self.session {
            // `all()` lists the names in `header_bytes`' order (then `X-Auth-Jwt`, left by zip).
            for (slot, (name, value)) in names.all().into_iter().zip(live.header_bytes()).enumerate() {
                if !absent(slot, value) {
                    line(name, value);
                }
            }
        }
        for (name, value) in self.jwt.iter().flatten() {
            if let Some(value) = value {
                line(name, value.as_bytes());
            }
        }
        if let Some((name, value)) = &self.assertion {
            line(name, value.as_bytes());
        }
    }

    /// Inserts the headers into `headers` (the client's copies were removed in phase 3).
    pub fn insert_into(&self, headers: &mut HeaderMap) {
        if let Some((names, live)) = self.session {
            for (slot, (name, value)) in names.all().into_iter().zip(live.header_values()).enumerate() {
                if !absent(slot, value.as_bytes()) {
                    headers.insert(name.clone(), value);
                }
            }
        }
        for (name, value) in self.jwt.iter().flatten() {
            if let Some(value) = value {
                headers.insert((*name).clone(), value.clone());
            }
        }
        if let Some((name, value)) = &self.assertion {
            headers.insert((*name).clone(), value.clone());
        }
    }
}

/// Whether a session's identity header is left out: `X-Auth-User-Id` (slot 1) of a user a
/// provider signed in, who has no numeric id (SPEC §4a: absent, not empty).
fn absent(slot: usize, value: &[u8]) -> bool {
    slot == 1 && value.is_empty()
}

/// The lines of a trusted proxy's `X-Forwarded-For` that the gateway extends (both paths):
/// those that are text and not empty; any other line is dropped.
pub fn forwarded_for_chain<'a>(values: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = &'a str> {
    values
        .filter_map(crate::auth::header_text)
        .filter(|v| !v.trim().is_empty())
}
