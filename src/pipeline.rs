//! hyper's transport: HTTP/2, and every HTTP/1.1 request the fast path (`h1`) hands over.
//! It reads heads from hyper's `Request`, runs the phases (`phase`: the request's life, each
//! decision written once) and applies what they decide to hyper's `HeaderMap`; it sends with
//! hyper's client (`proxy::upstream`) and tunnels the upgrades a route allows.

use crate::auth;
use crate::body::ProxyBody;
use crate::error::GatewayError;
use crate::gateway::{ConnInfo, Worker};
use crate::metrics::MethodClass;
use crate::phase::authorize::{Ask, authorize};
use crate::phase::log::{Done, Trace, finish};
use crate::phase::request_id::request_id;
use crate::phase::route::To;
use crate::phase::{self, forward, frame, inject};
use crate::proxy::framing;
use crate::proxy::headers::{self, X_REQUEST_ID};
use crate::proxy::request_body::UpstreamBody;
use crate::proxy::upstream;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Version, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::time::Instant;

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
    let mut resp = if crate::grpc::owns(&req) {
        // The gateway's own gRPC services (SessionService, health, reflection).
        trace.api = true;
        if worker.shared.access_log {
            trace.path = Some(req.uri().path().to_string());
        }
        // Boxed: rare next to proxied requests, and large.
        Box::pin(crate::grpc::serve(worker.shared.clone(), conn, req)).await
    } else {
        match proxy(
            worker,
            req,
            conn,
            trusted,
            navigation,
            &request_id_value,
            &mut trace,
        )
        .await
        {
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

async fn proxy(
    worker: &Worker,
    req: Request<Incoming>,
    conn: &ConnInfo,
    trusted: bool,
    navigation: bool,
    request_id: &HeaderValue,
    trace: &mut Trace,
) -> Result<Response<ProxyBody>, GatewayError> {
    let (mut parts, body) = req.into_parts();
    let shared = &worker.shared;
    let head_request = parts.method == http::Method::HEAD;

    // 2 (first: what no route may see, SPEC §1.10), then 1: route.
    frame::check_head(&parts)?;
    let host_value = match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(header::HOST).cloned(),
    };
    let authority = host_value.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("");
    let routed = phase::route::route(shared, parts.uri.path(), authority)?;
    if shared.access_log {
        trace.path = Some(routed.path.to_string());
    }
    let (index, path) = match routed.to {
        To::Route(index) => (index, routed.path),
        To::Endpoint(api_path) => {
            trace.api = true;
            let req = Request::from_parts(parts, body);
            return Ok(Box::pin(crate::api::answer(shared, conn, &api_path, req)).await);
        }
        To::Nowhere => return Err(GatewayError::NoRoute),
    };
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
    if declared.is_some_and(|n| frame::over_limit(route, n)) {
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

    // 4. authorize
    let credential = auth::credential(&parts.headers, shared.cookie_on(conn));
    let ask = Ask {
        policy: &route.config.policy,
        credential,
        safe: parts.method.is_safe(),
        navigation,
        path: parts.uri.path(),
        query: parts.uri.query(),
    };
    let cross_site = || {
        crate::auth::browser::cross_site(&parts.headers, host_value.as_ref().and_then(|v| v.to_str().ok()))
    };
    let identity = authorize(shared, ask, cross_site).await?;
    if shared.access_log
        && let Some(auth::Identity::Session(live)) = &identity
    {
        trace.session = Some(live.id().to_string());
    }

    // 5. inject
    let plan = inject::Plan::new(
        shared,
        conn,
        route,
        identity.as_ref(),
        &path,
        request_id.as_bytes(),
    );
    headers::apply(&mut parts.headers, &plan, trusted, host_value);
    if let Some(proto) = &upgrade {
        parts.headers.insert(header::UPGRADE, proto.clone());
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    let pq = forwarded_path(&plan.path, parts.uri.query())?;
    parts.uri = http::Uri::from(pq);
    // 6. forward
    let (upstream_body, progress) = UpstreamBody::new(body, route.config.max_body);
    let req = Request::from_parts(parts, upstream_body);
    let sending = Instant::now();
    let sent = Box::pin(upstream::send(
        &worker.pool,
        index,
        &route.upstreams,
        forward::deadline(route),
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

/// The origin-form target sent upstream: the plan's path and the query as the client sent it.
fn forwarded_path(path: &str, query: Option<&str>) -> Result<PathAndQuery, GatewayError> {
    match query {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")),
        None => PathAndQuery::try_from(path),
    }
    .map_err(|_| GatewayError::BadPath("the path cannot be forwarded"))
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
