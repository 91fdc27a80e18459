//! The fast path's phases 1–5 for one request head (route, frame, sanitize, authorize, inject:
//! the `phase` core's decisions, given the values `request::inspect` read off the raw lines),
//! ending either in a `Plan` (the upstream head is written and the request will be forwarded,
//! or the policy refused it and the plan says with which error) or in a `Handover` (the
//! request and the rest of its connection go to hyper, whose pipeline answers it: the
//! gateway's own endpoints, bad paths, unknown routes, bodies over the limit).

use super::request::{self, Handover};
use crate::auth;
use crate::error::GatewayError;
use crate::gateway::{ConnInfo, Worker};
use crate::metrics::MethodClass;
use crate::phase::authorize::{Ask, authorize};
use crate::phase::log::Trace;
use crate::phase::request_id::{RequestId, request_id};
use crate::phase::route::To;
use crate::phase::{self, frame, inject};
use crate::proxy::framing;

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

    // 1. route (the gateway's own endpoints, and refusals, are hyper's to answer)
    let routed = phase::route::route(shared, seen.path, seen.host).map_err(|_| Handover::NotRouted)?;
    let (index, path) = match routed.to {
        To::Route(index) => (index, routed.path),
        To::Endpoint(_) => return Err(Handover::Endpoint),
        To::Nowhere => return Err(Handover::NotRouted),
    };
    let route = &shared.routes.routes[index];

    // 2. frame (Transfer-Encoding and unusual expectations were handed over by `inspect`)
    let body = seen.content_length.unwrap_or(0);
    if frame::over_limit(route, body) {
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

    // 3. sanitize: `inspect` gave every line its fate; `request::write_head` applies them.

    // 4. authorize
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
    let ask = Ask {
        policy: &route.config.policy,
        credential: auth::credential_in(seen.authorization, seen.cookies(req), shared.cookie_on(conn)),
        safe,
        navigation: plan.navigation,
        path: seen.path,
        query: seen.query,
    };
    let cross_site = || {
        crate::auth::browser::cross_site_in(req.headers.iter().map(|h| (h.name, h.value)), Some(seen.host))
    };
    // Refusals are answered by the fast path, with what `pipeline` answers them.
    let identity = match authorize(shared, ask, cross_site).await {
        Ok(identity) => identity,
        Err(refusal) => {
            plan.refuse = Some(refusal);
            return Ok(plan);
        }
    };

    // 5. inject
    let add = inject::Plan::new(
        shared,
        conn,
        route,
        identity.as_ref(),
        &path,
        plan.request_id.as_bytes(),
    );
    request::write_head(out, req, &seen, &add);
    if shared.access_log
        && let Some(auth::Identity::Session(live)) = &identity
    {
        plan.trace.session = Some(live.id().to_string());
    }
    Ok(plan)
}
