//! One request's life through the gateway, phase by phase, in order:
//!
//! 1. **route**     — normalize the path (400 on traversal tricks), match host then prefix (404)
//! 2. **frame**     — refuse bodies over the route's limit (413); upgrades noted
//! 3. **sanitize**  — drop hop-by-hop, spoofed identity and untrusted forwarding headers
//! 4. **authorize** — apply the route's policy (only `public` exists yet: no credential needed)
//! 5. **inject**    — add X-Forwarded-*, X-Request-Id (identity headers come with sessions)
//! 6. **forward**   — send upstream (pool, round robin, cooldown, retry, 502/504), stream back,
//!    tunnel upgrades
//! 7. **log**       — one access-log line: method, route, path (never the query), status,
//!    upstream, latency, request id
//!
//! Every error on the way is a `GatewayError`, turned into a JSON response in one place.

use crate::body::{ProxyBody, UpstreamBody};
use crate::error::GatewayError;
use crate::gateway::{ConnInfo, Route, Worker};
use crate::proxy::headers::{self, X_REQUEST_ID};
use crate::route;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::borrow::Cow;
use std::time::Instant;

/// What the access log says about a request, filled in as the phases learn it.
#[derive(Default)]
struct Trace {
    route: Option<String>,
    path: Option<String>,
    upstream: Option<String>,
}

/// Handles one request; never fails (errors become responses).
pub async fn handle(worker: &Worker, req: Request<Incoming>, conn: &ConnInfo) -> Response<ProxyBody> {
    let started = Instant::now();
    let trusted = worker.shared.is_trusted(conn.peer.ip());
    let request_id = request_id(&req, trusted);
    let method = req.method().clone();
    let mut trace = Trace::default();
    let mut resp = match proxy(worker, req, conn, trusted, &request_id, &mut trace).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    resp.headers_mut().insert(X_REQUEST_ID, request_id.clone());
    if worker.shared.access_log {
        tracing::info!(
            target: "portcullis::access",
            method = %method,
            route = trace.route.as_deref().unwrap_or("-"),
            path = trace.path.as_deref().unwrap_or("-"),
            status = resp.status().as_u16(),
            upstream = trace.upstream.as_deref().unwrap_or("-"),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            request_id = request_id.to_str().unwrap_or("-"),
            peer = %conn.peer,
        );
    }
    resp
}

async fn proxy(
    worker: &Worker,
    mut req: Request<Incoming>,
    conn: &ConnInfo,
    trusted: bool,
    request_id: &HeaderValue,
    trace: &mut Trace,
) -> Result<Response<ProxyBody>, GatewayError> {
    // 1. route
    let path = route::normalize_path(req.uri().path()).map_err(|e| GatewayError::BadPath(e.message()))?;
    trace.path = Some(path.to_string());
    let host_value = request_host(&req);
    let host = host_value
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(route::host_of)
        .unwrap_or_default();
    let routes = &worker.shared.routes;
    let index = routes.table.find(&host, &path).ok_or(GatewayError::NoRoute)?;
    let route = &routes.routes[index];
    trace.route = Some(route.config.name.clone());

    // 2. frame
    // (hyper already settled TE + CL: Content-Length is dropped, the body is read as chunked and
    // the connection closed after the answer, so nothing is forwarded ambiguously.)
    let h = req.headers();
    let declared = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > route.config.max_body) {
        return Err(GatewayError::BodyTooLarge);
    }
    let upgrade = if req.version() == Version::HTTP_11 {
        headers::upgrade_request(h)
    } else {
        None
    };
    let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));

    // 3. sanitize
    headers::sanitize_request(req.headers_mut(), &worker.shared.identity_headers, trusted);

    // 4. authorize: `public` is the only policy so far.

    // 5. inject
    let proto = if conn.tls { "https" } else { "http" };
    headers::add_forwarding(
        req.headers_mut(),
        conn.peer.ip(),
        trusted,
        proto,
        host_value.as_ref(),
        request_id,
    );
    match (&host_value, route.config.preserve_host) {
        (Some(v), true) => {
            req.headers_mut().insert(header::HOST, v.clone());
        }
        _ => {
            req.headers_mut().remove(header::HOST);
        }
    }
    if let Some(proto) = &upgrade {
        req.headers_mut().insert(header::UPGRADE, proto.clone());
        req.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    *req.uri_mut() = forwarded_uri(route, &path, req.uri().query())?;

    // 6. forward
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(parts, UpstreamBody::new(body, route.config.max_body));
    let client = &worker.clients[index];
    let sent = crate::proxy::upstream::send(client, &route.upstreams, route.config.timeout, req).await;
    trace.upstream = Some(route.upstreams.target(sent.target).label.clone());
    let mut resp = sent.result?;
    let switching = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switching {
        match client_upgrade {
            Some(client_side) => tunnel(client_side, hyper::upgrade::on(&mut resp)),
            None => return Err(GatewayError::UpstreamUnavailable),
        }
    }
    headers::sanitize_response(resp.headers_mut(), switching);
    Ok(resp.map(ProxyBody::upstream))
}

/// The client's view of the host: the URI authority (HTTP/2, absolute-form) or `Host`.
fn request_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => req.headers().get(header::HOST).cloned(),
    }
}

/// The origin-form URI sent upstream: the normalized path (minus the prefix with
/// `strip_prefix`) and the query as the client sent it.
fn forwarded_uri(route: &Route, path: &str, query: Option<&str>) -> Result<http::Uri, GatewayError> {
    let path: Cow<str> = if route.config.strip_prefix {
        let rest = path
            .strip_prefix(route.config.path_prefix.trim_end_matches('/'))
            .unwrap_or(path);
        if rest.starts_with('/') {
            Cow::Borrowed(rest)
        } else {
            Cow::Owned(format!("/{rest}"))
        }
    } else {
        Cow::Borrowed(path)
    };
    let pq = match query {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
        None => PathAndQuery::try_from(path.as_ref()),
    }
    .map_err(|_| GatewayError::BadPath("the path cannot be forwarded"))?;
    Ok(http::Uri::from(pq))
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

/// A trusted proxy's `X-Request-Id` if it is sane, else a fresh random one.
fn request_id(req: &Request<Incoming>, trusted: bool) -> HeaderValue {
    if trusted
        && let Some(v) = req.headers().get(&X_REQUEST_ID)
        && !v.is_empty()
        && v.len() <= 128
        && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    {
        return v.clone();
    }
    let id = format!("{:032x}", rand::random::<u128>());
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("-"))
}
