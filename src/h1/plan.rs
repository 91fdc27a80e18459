//! The fast path's phases 1–5 for one request head (route, frame, sanitize, authorize, inject;
//! see `pipeline`): the same decisions, with the same functions where they take raw values,
//! ending either in a `Plan` (the upstream head is written and the request will be forwarded,
//! or the policy refused it and the plan says with which error) or in a `Handover` (the
//! request and the rest of its connection go to hyper, whose pipeline answers it: the
//! gateway's own endpoints, bad paths, unknown routes, bodies over the limit).

use super::request::{self, Additions, Handover};
use crate::auth::{self, Credential};
use crate::error::GatewayError;
use crate::gateway::{ConnInfo, Worker};
use crate::metrics::MethodClass;
use crate::pipeline::{RequestId, Trace, allowed, request_id, upstream_path};
use crate::proxy::framing;
use crate::route;

/// A request the fast path forwards.
pub struct Plan {
    pub route: usize,
    /// Body bytes (its `Content-Length`; 0 without one).
    pub body: u64,
    /// The client asked to close after this response.
    pub close: bool,
    pub head_request: bool,
    /// Safe to send again on a fresh connection if a pooled one turns out closed: an
    /// idempotent method without a body.
    pub retry_safe: bool,
    pub class: MethodClass,
    pub request_id: RequestId,
    /// The method, for the access log only (empty when it is off).
    pub method: String,
    pub trace: Trace,
    /// Not forwarded: answered with this error (401, login redirect, 403, 503).
    pub refuse: Option<GatewayError>,
    /// The client waits for `100 Continue` before its body: sent once the request is
    /// authorized (never for a refused one).
    pub expect_continue: bool,
    /// A browser navigation: errors are answered with HTML pages.
    pub navigation: bool,
}

/// Plans `req`; unless it is refused, the upstream head (but its `Host` and blank line) is in
/// `out`.
pub async fn plan(
    worker: &Worker,
    req: &httparse::Request<'_, '_>,
    conn: &ConnInfo,
    out: &mut Vec<u8>,
) -> Result<Plan, Handover> {
    let shared = &worker.shared;
    let trusted = shared.is_trusted(conn.peer.ip());
    let seen = request::inspect(req, &shared.identity_headers, trusted)?;

    // 1. route (the gateway's own endpoints are hyper's)
    let path = route::normalize_path(seen.path).map_err(|_| Handover::NotRouted)?;
    if crate::api::owns(shared, &path).is_some() {
        return Err(Handover::Endpoint);
    }
    let host = route::host_of(seen.host);
    let index = shared
        .routes
        .table
        .find(&host, &path)
        .ok_or(Handover::NotRouted)?;
    let route = &shared.routes.routes[index];

    // 2. frame (Transfer-Encoding and unusual expectations were handed over by `inspect`)
    let body = seen.content_length.unwrap_or(0);
    if body > route.config.max_body {
        return Err(Handover::Framing);
    }
    // An upgrade the route tunnels is hyper's; any other `Upgrade` is dropped (`write_head`).
    if seen.upgrade {
        let lines = |name: &'static str| {
            req.headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        if framing::tunnel(lines("connection"), lines("upgrade"), &route.config.upgrades).is_some() {
            return Err(Handover::Upgrade);
        }
    }

    // 3. sanitize: `request::write_head` drops what the client may not send.

    // 4. authenticate and authorize
    let cookie_name = shared.cookie_on(conn);
    let presented = auth::credential_in(seen.authorization, seen.cookies(req), cookie_name);
    let by_cookie = matches!(presented, Ok(Some(Credential::Cookie(_))));
    let decision = Box::pin(auth::decide(
        &shared.sessions,
        &shared.jwt_issuers,
        shared.local_user.as_ref(),
        &route.config.policy,
        presented,
    ));
    let safe = matches!(seen.method, "GET" | "HEAD" | "OPTIONS" | "TRACE");
    let mut trace = Trace {
        route: Some(index),
        ..Trace::default()
    };
    if shared.access_log {
        trace.path = Some(path.to_string());
    }
    let mut plan = Plan {
        route: index,
        body,
        close: seen.close,
        head_request: seen.method == "HEAD",
        retry_safe: crate::proxy::upstream::retry_safe(seen.method, body > 0),
        class: if safe {
            MethodClass::read
        } else {
            MethodClass::write
        },
        request_id: request_id(seen.request_id, trusted),
        method: if shared.access_log {
            seen.method.to_string()
        } else {
            String::new()
        },
        trace,
        refuse: None,
        expect_continue: seen.expect_continue && body > 0,
        navigation: auth::is_browser_navigation(seen.method, seen.accept),
    };
    // Refusals are answered here, with what `pipeline` answers them.
    let identity = match allowed(shared, decision.await, || plan.navigation, seen.path, seen.query) {
        Ok(identity) => identity,
        Err(refusal) => {
            plan.refuse = Some(refusal);
            return Ok(plan);
        }
    };
    // A cookie rides along on cross-site requests (and single-user mode's identity needs
    // nothing at all): unsafe methods from another site are refused.
    if auth::ambient(by_cookie, identity.as_ref(), shared.local_user.as_ref())
        && !safe
        && crate::auth::browser::cross_site_in(req.headers.iter().map(|h| (h.name, h.value)), Some(seen.host))
    {
        plan.refuse = Some(GatewayError::CrossSite);
        return Ok(plan);
    }

    // 5. inject
    let names = &shared.header_names;
    // A session's values are borrowed from its cache entry; a JWT's are made here.
    let jwt_values = match &identity {
        Some(jwt @ auth::Identity::Jwt(_)) => Some(auth::identity_headers(names, jwt)),
        _ => None,
    };
    let assertion = match (&identity, &shared.assertion) {
        (Some(identity), Some(signer)) => auth::assertion(signer, identity, &route.config.name),
        _ => None,
    };
    let mut added: [(&http::HeaderName, &[u8]); 7] = [(&names.jwt, b""); 7];
    let mut n = 0;
    if let Some(auth::Identity::Session(live)) = &identity {
        // `all()` lists the names in `header_bytes`' order (then `X-Auth-Jwt`, left by zip).
        for (name, value) in names.all().into_iter().zip(live.header_bytes()) {
            added[n] = (name, value);
            n += 1;
        }
    }
    for (name, value) in jwt_values.iter().flatten() {
        if let Some(value) = value {
            added[n] = (name, value.as_bytes());
            n += 1;
        }
    }
    if let Some(jwt) = &assertion {
        added[n] = (&shared.header_names.jwt, jwt.as_bytes());
        n += 1;
    }
    let forwarded_path = upstream_path(route, &path);
    request::write_head(
        out,
        req,
        &seen,
        &Additions {
            path: &forwarded_path,
            identity: &added[..n],
            strip_credentials: (!route.config.forward_credentials).then_some(cookie_name),
            peer_ip: conn.peer_ip.as_bytes(),
            proto: if conn.tls { "https" } else { "http" },
            request_id: plan.request_id.as_bytes(),
            preserve_host: route.config.preserve_host,
        },
    );
    if shared.access_log
        && let Some(auth::Identity::Session(live)) = &identity
    {
        plan.trace.session = Some(live.id().to_string());
    }
    Ok(plan)
}
