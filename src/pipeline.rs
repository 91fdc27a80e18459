//! One request's life through the gateway, phase by phase, in order:
//!
//! 1. **route**     — normalize the path (400 on traversal tricks); the gateway's own endpoints
//!    (`api`), else match host then prefix (404)
//! 2. **frame**     — refuse bodies over the route's limit (413); upgrades noted
//! 3. **sanitize**  — drop hop-by-hop, spoofed identity and untrusted forwarding headers
//! 4. **authorize** — read the credential (bearer, else cookie), check it (tag, cache, store)
//!    and apply the route's policy: 401 / login redirect, 403, or 503 when the store is down
//! 5. **inject**    — identity headers, the gateway's own credential removed, X-Forwarded-*,
//!    X-Request-Id
//! 6. **forward**   — send upstream (pool, round robin, cooldown, retry, 502/504), stream back,
//!    tunnel upgrades
//! 7. **log**       — one access-log line: method, route, path (never the query), status,
//!    upstream, latency, request id
//!
//! Every error on the way is a `GatewayError`, turned into a JSON response in one place.

use crate::access_log;
use crate::auth::{self, Decision};
use crate::body::ProxyBody;
use crate::error::GatewayError;
use crate::gateway::{ConnInfo, Route, Shared, Worker};
use crate::metrics::{MethodClass, RequestLabels};
use crate::proxy::framing;
use crate::proxy::headers::{self, X_REQUEST_ID};
use crate::proxy::request_body::UpstreamBody;
use crate::proxy::upstream;
use crate::route;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::borrow::Cow;
use std::time::{Duration, Instant};

/// What the access log says about a request, filled in as the phases learn it.
#[derive(Default)]
pub(crate) struct Trace {
    pub route: Option<usize>,
    /// Answered by the gateway's own endpoints.
    pub api: bool,
    pub target: Option<usize>,
    pub path: Option<String>,
    /// The session id (not the token) of an authenticated request.
    pub session: Option<String>,
}

/// Handles one request; never fails (errors become responses).
pub async fn handle(worker: &Worker, req: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
    let started = Instant::now();
    let trusted = worker.shared.is_trusted(conn.peer.ip());
    let request_id = request_id(
        req.headers().get(&X_REQUEST_ID).map(HeaderValue::as_bytes),
        trusted,
    );
    let request_id_value = request_id.header_value();
    let method = req.method().clone();
    let http1 = req.version() < Version::HTTP_2;
    let navigation = auth::is_browser_navigation(
        method.as_str(),
        req.headers().get(header::ACCEPT).map(HeaderValue::as_bytes),
    );
    let mut trace = Trace::default();
    let mut resp = match proxy(worker, req, conn, trusted, &request_id_value, &mut trace).await {
        Ok(resp) => resp,
        Err(e) => {
            let close = http1 && e.closes_connection();
            let mut resp = worker.shared.answer(e, navigation);
            if close {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp
        }
    };
    resp.headers_mut().insert(X_REQUEST_ID, request_id_value);
    let elapsed = started.elapsed();
    let done = Done {
        method: method.as_str(),
        class: MethodClass::of(&method),
        status: resp.status().as_u16(),
        request_id: &request_id,
    };
    finish(worker, &trace, &done, elapsed, conn);
    resp
}

/// How a request ended, for its metrics and its access-log line.
pub(crate) struct Done<'a> {
    pub method: &'a str,
    pub class: MethodClass,
    pub status: u16,
    pub request_id: &'a RequestId,
}

/// Phase 7, log: the request's metrics and its access-log line (both paths end here);
/// `elapsed` runs from the request head to the response head.
pub(crate) fn finish(worker: &Worker, trace: &Trace, done: &Done<'_>, elapsed: Duration, conn: &ConnInfo) {
    let shared = &worker.shared;
    let route = trace.route.map(|i| &shared.routes.routes[i]);
    if let Some(route) = route {
        route.request_duration.observe(elapsed.as_secs_f64());
    }
    match route {
        Some(route) if done.status == 200 => route.ok_requests[done.class as usize].inc(),
        _ => {
            let route_label = match route {
                Some(route) => route.label,
                None if trace.api => "api",
                None => "-",
            };
            let labels = RequestLabels {
                route: route_label,
                method: done.class,
                status: done.status,
            };
            shared.metrics.requests.get_or_create(&labels).inc()
        }
    };
    if shared.access_log {
        access_log::record(&access_log::Record {
            method: done.method,
            route: route.map_or("-", |r| r.config.name.as_str()),
            path: trace.path.as_deref().unwrap_or("-"),
            status: done.status,
            upstream: route
                .zip(trace.target)
                .map_or("-", |(r, t)| r.upstreams.target(t).label.as_str()),
            latency: elapsed,
            request_id: done.request_id.as_str(),
            session: trace.session.as_deref().unwrap_or("-"),
            peer: conn.peer,
        });
    }
}

async fn proxy(
    worker: &Worker,
    req: Request<Incoming>,
    conn: &ConnInfo,
    trusted: bool,
    request_id: &HeaderValue,
    trace: &mut Trace,
) -> Result<Response<ProxyBody>, GatewayError> {
    let (mut parts, body) = req.into_parts();
    let shared = &worker.shared;
    let head_request = parts.method == http::Method::HEAD;

    // 1. route (what no route may see first: SPEC §1.10; then the gateway's own endpoints)
    check_head(&parts)?;
    let path = route::normalize_path(parts.uri.path()).map_err(|e| GatewayError::BadPath(e.message()))?;
    if shared.access_log {
        trace.path = Some(path.to_string());
    }
    if let Some(api_path) = crate::api::owns(shared, &path).map(str::to_string) {
        trace.api = true;
        let req = Request::from_parts(parts, body);
        return Ok(Box::pin(crate::api::answer(shared, conn, &api_path, req)).await);
    }
    let host_value = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    let host = host_value
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(route::host_of)
        .unwrap_or_default();
    let index = shared
        .routes
        .table
        .find(&host, &path)
        .ok_or(GatewayError::NoRoute)?;
    let route = &shared.routes.routes[index];
    trace.route = Some(index);

    // 2. frame
    // (hyper already settled TE + CL: Content-Length is dropped, the body is read as chunked and
    // the connection closed after the answer, so nothing is forwarded ambiguously.)
    // hyper's reading of the length (it took the header), as the body will be read by it.
    let declared = if parts.headers.contains_key(header::CONTENT_LENGTH) {
        http_body::Body::size_hint(&body).exact()
    } else {
        None
    };
    if declared.is_some_and(|n| n > route.config.max_body) {
        return Err(GatewayError::BodyTooLarge);
    }
    if let Some(n) = declared {
        // As the fast path writes it: one value, no leading zeros.
        parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    let upgrade = match parts.version {
        Version::HTTP_11 => framing::tunnel(
            parts
                .headers
                .get_all(header::CONNECTION)
                .iter()
                .map(HeaderValue::as_bytes),
            parts
                .headers
                .get_all(header::UPGRADE)
                .iter()
                .map(HeaderValue::as_bytes),
            &route.config.upgrades,
        )
        .and_then(|p| HeaderValue::from_str(p).ok()),
        _ => None,
    };
    let client_upgrade = upgrade
        .as_ref()
        .and_then(|_| parts.extensions.remove::<hyper::upgrade::OnUpgrade>());

    // 3. sanitize
    headers::sanitize_request(&mut parts.headers, &shared.identity_headers, trusted);

    // 4. authenticate and authorize
    let cookie_name = shared.cookie_on(conn);
    let presented = auth::credential(&parts.headers, cookie_name);
    let by_cookie = matches!(presented, Ok(Some(auth::Credential::Cookie(_))));
    // Sub-futures are boxed: inline, they made this future ~6 KB, copied on every request.
    let decision = Box::pin(auth::decide(
        &shared.sessions,
        &shared.jwt_issuers,
        shared.local_user.as_ref(),
        &route.config.policy,
        presented,
    ));
    let navigation = || {
        let accept = parts.headers.get(header::ACCEPT).map(HeaderValue::as_bytes);
        auth::is_browser_navigation(parts.method.as_str(), accept)
    };
    let identity = allowed(
        shared,
        decision.await,
        navigation,
        parts.uri.path(),
        parts.uri.query(),
    )?;
    // A cookie rides along on cross-site requests (and single-user mode's identity needs
    // nothing at all): unsafe methods from another site are refused.
    if auth::ambient(by_cookie, identity.as_ref(), shared.local_user.as_ref())
        && !parts.method.is_safe()
        && crate::auth::browser::cross_site(&parts.headers, host_value.as_ref().and_then(|v| v.to_str().ok()))
    {
        return Err(GatewayError::CrossSite);
    }

    // 5. inject (room for what is added, so the map grows once at most)
    parts.headers.reserve(12);
    if let Some(identity) = &identity {
        auth::inject_identity(&mut parts.headers, &shared.header_names, identity);
        if let Some(signer) = &shared.assertion
            && let Some(jwt) = auth::assertion(signer, identity, &route.config.name)
        {
            parts.headers.insert(shared.header_names.jwt.clone(), jwt);
        }
        if shared.access_log
            && let auth::Identity::Session(live) = identity
        {
            trace.session = Some(live.id().to_string());
        }
    }
    if !route.config.forward_credentials {
        auth::remove_credentials(&mut parts.headers, cookie_name);
    }
    let proto = if conn.tls { "https" } else { "http" };
    headers::add_forwarding(
        &mut parts.headers,
        &conn.peer_ip,
        trusted,
        proto,
        host_value.as_ref(),
        request_id,
    );
    match (host_value, route.config.preserve_host) {
        (Some(v), true) => {
            parts.headers.insert(header::HOST, v);
        }
        _ => {
            parts.headers.remove(header::HOST);
        }
    }
    if let Some(proto) = &upgrade {
        parts.headers.insert(header::UPGRADE, proto.clone());
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let pq = forwarded_path(route, &path, parts.uri.query())?;
    parts.uri = http::Uri::from(pq);

    // 6. forward
    let (upstream_body, progress) = UpstreamBody::new(body, route.config.max_body);
    let req = Request::from_parts(parts, upstream_body);
    let sending = Instant::now();
    let sent = Box::pin(upstream::send(
        &worker.pool,
        index,
        &route.upstreams,
        route.config.timeout,
        req,
    ))
    .await;
    trace.target = Some(sent.target);
    route.upstream_duration.observe(sending.elapsed().as_secs_f64());
    let (mut resp, lease) = sent.result?;
    let target = route.upstreams.target(sent.target);
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // The upstream connection becomes the tunnel; it never returns to the pool.
        drop(lease);
        let answered = resp.headers().get(header::UPGRADE).map(HeaderValue::as_bytes);
        let switched = upgrade
            .as_ref()
            .is_some_and(|u| framing::switched_to(u.to_str().unwrap_or(""), answered));
        match client_upgrade {
            Some(client_side) if switched => tunnel(client_side, hyper::upgrade::on(&mut resp)),
            _ => {
                tracing::warn!(upstream = %target.label, error = "101 to another protocol than asked, or unasked", "upstream response refused");
                return Err(GatewayError::UpstreamUnavailable);
            }
        }
        headers::sanitize_response(resp.headers_mut(), true);
        return Ok(resp.map(|_| ProxyBody::empty()));
    }
    let http11 = resp.version() == Version::HTTP_11;
    let status = resp.status().as_u16();
    let reusable = match framing::frame_response(resp.headers_mut(), status, http11, head_request) {
        Ok(reusable) => reusable,
        Err(why) => {
            tracing::warn!(upstream = %target.label, error = why.0, "upstream response refused");
            return Err(GatewayError::UpstreamUnavailable);
        }
    };
    headers::sanitize_response(resp.headers_mut(), false);
    let (head, incoming) = resp.into_parts();
    match ProxyBody::upstream(
        incoming,
        reusable.then_some(lease),
        route.config.timeout,
        progress,
    ) {
        Ok(body) => Ok(Response::from_parts(head, body)),
        Err(e) => {
            tracing::warn!(upstream = %target.label, error = %e, "upstream response body refused");
            Err(GatewayError::UpstreamUnavailable)
        }
    }
}

/// What the gateway refuses before routing, on both HTTP/1.1 paths (SPEC §1.10): `CONNECT`
/// (405), an HTTP/1.1 request without exactly one valid `Host` (an HTTP/1.0 one may have none),
/// a transfer coding other than `chunked` (501), an expectation other than one `100-continue`
/// (417; HTTP/1.0's are ignored, RFC 9110 §10.1.1). The fast path hands every such request
/// here. (hyper's server answers a `100-continue` itself when the body is first read: after
/// authorization, as the request goes upstream.)
pub(crate) fn check_head(parts: &http::request::Parts) -> Result<(), GatewayError> {
    if parts.method == http::Method::CONNECT {
        return Err(GatewayError::Connect);
    }
    let values =
        |name: header::HeaderName| parts.headers.get_all(name).into_iter().map(HeaderValue::as_bytes);
    let http10 = matches!(parts.version, Version::HTTP_10 | Version::HTTP_09);
    if parts.version == Version::HTTP_11 || (http10 && parts.headers.contains_key(header::HOST)) {
        framing::single_host(values(header::HOST)).map_err(GatewayError::BadRequest)?;
    }
    // An absolute-form target (or HTTP/2's `:authority`) is the host routed by and forwarded;
    // HTTP/2 without `:authority` goes by `Host`, held to HTTP/1.1's rule, and one with both
    // must name one host (RFC 9113 §8.3.1).
    match parts.uri.authority() {
        Some(authority) => {
            if framing::valid_host(authority.as_str().as_bytes()).is_none() {
                return Err(GatewayError::BadRequest(
                    "the request target's authority is not a valid host name and port",
                ));
            }
            if parts.version >= Version::HTTP_2 && parts.headers.contains_key(header::HOST) {
                let host = framing::single_host(values(header::HOST)).map_err(GatewayError::BadRequest)?;
                if !host.eq_ignore_ascii_case(authority.as_str()) {
                    return Err(GatewayError::BadRequest(
                        "Host and :authority name different hosts",
                    ));
                }
            }
        }
        None if parts.version >= Version::HTTP_2 => {
            framing::single_host(values(header::HOST)).map_err(GatewayError::BadRequest)?;
        }
        None => {}
    }
    if parts.headers.contains_key(header::TRANSFER_ENCODING)
        && !framing::request_codings_ok(values(header::TRANSFER_ENCODING))
    {
        return Err(GatewayError::UnsupportedCoding);
    }
    if !http10 && framing::expectation(values(header::EXPECT)) == framing::Expectation::Unsupported {
        return Err(GatewayError::ExpectationFailed);
    }
    Ok(())
}

/// Phase 4's decision as an answer: the identity an allowed request is forwarded with, or the
/// error a refused one gets. A browser navigation (asked only then) without a valid credential
/// is sent to the login page, which brings it back to `path` and `query`. Both paths use it.
pub fn allowed(
    shared: &Shared,
    decision: Decision,
    navigation: impl FnOnce() -> bool,
    path: &str,
    query: Option<&str>,
) -> Result<Option<auth::Identity>, GatewayError> {
    match decision {
        Decision::Allow(identity) => Ok(identity),
        Decision::Unauthenticated { .. } if navigation() => {
            let target = match query {
                Some(q) => Cow::Owned(format!("{path}?{q}")),
                None => Cow::Borrowed(path),
            };
            Err(GatewayError::LoginRedirect(format!(
                "{}?rd={}",
                shared.api.url("/auth/login"),
                auth::encode_component(&target)
            )))
        }
        Decision::Unauthenticated { presented } => Err(GatewayError::Unauthenticated { presented }),
        Decision::Forbidden => Err(GatewayError::Forbidden),
        Decision::StoreUnavailable => Err(GatewayError::StoreUnavailable),
    }
}

/// The origin-form path sent upstream: the normalized path (minus the prefix with
/// `strip_prefix`) and the query as the client sent it.
fn forwarded_path(route: &Route, path: &str, query: Option<&str>) -> Result<PathAndQuery, GatewayError> {
    let path = upstream_path(route, path);
    match query {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
        None => PathAndQuery::try_from(path.as_ref()),
    }
    .map_err(|_| GatewayError::BadPath("the path cannot be forwarded"))
}

/// The normalized path as the upstream sees it: without the route's prefix with
/// `strip_prefix`; otherwise a prefix matched leniently (`/Admin;x/`, `/admin./` for `/admin`,
/// `route::prefix_match`) is sent as the route spells it, so the origin serves the path the
/// route's policy was decided for (a case-sensitive origin would serve `/admin/Login/x` under
/// `/admin`, not under a public `/admin/login`).
pub(crate) fn upstream_path<'p>(route: &Route, path: &'p str) -> Cow<'p, str> {
    let prefix = route.config.path_prefix.trim_end_matches('/');
    let covered = if prefix.is_empty() {
        Some(0)
    } else {
        route::prefix_match(prefix, path)
    };
    let Some((matched, rest)) = covered.and_then(|at| path.split_at_checked(at)) else {
        return Cow::Borrowed(path);
    };
    if !route.config.strip_prefix {
        return if matched == prefix {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(format!("{prefix}{rest}"))
        };
    }
    if rest.starts_with('/') {
        Cow::Borrowed(rest)
    } else {
        Cow::Owned(format!("/{rest}"))
    }
}

/// After a 101, copies bytes both ways between the client and the upstream until either closes.
fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (Ok(client), Ok(upstream)) = tokio::join!(client, upstream) else {
            return;
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
}

/// A request's id: a trusted proxy's `X-Request-Id` if it is sane, else a fresh one of 32 hex
/// digits, a random per-thread prefix and a counter (unique, cheap, and not a secret). Kept
/// inline: no allocation per request.
pub(crate) struct RequestId {
    bytes: [u8; 128],
    len: u8,
}

impl RequestId {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Visible ASCII by construction.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }

    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(self.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
}

pub(crate) fn request_id(theirs: Option<&[u8]>, trusted: bool) -> RequestId {
    let mut id = RequestId {
        bytes: [0; 128],
        len: 32,
    };
    if trusted
        && let Some(v) = theirs
        && !v.is_empty()
        && v.len() <= 128
        && v.iter().all(|b| b.is_ascii_graphic())
    {
        id.bytes[..v.len()].copy_from_slice(v);
        id.len = v.len() as u8;
        return id;
    }
    thread_local! {
        static NEXT: std::cell::Cell<(u64, u64)> = std::cell::Cell::new((rand::random(), 0));
    }
    let (prefix, counter) = NEXT.with(|n| {
        let (prefix, counter) = n.get();
        n.set((prefix, counter.wrapping_add(1)));
        (prefix, counter)
    });
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, word) in [prefix, counter].into_iter().enumerate() {
        for j in 0..16 {
            id.bytes[i * 16 + j] = HEX[((word >> (60 - 4 * j)) & 15) as usize];
        }
    }
    id
}
