//! Upstream selection and sending: round robin over a route's targets, a target that refuses
//! connections skipped for the route's cooldown, one retry on another target after a connect
//! failure of a body-less idempotent request, and the timeout that makes a 504. Each worker has
//! its own pooled keep-alive client per route, so connections never cross worker threads.

use crate::body::{BodyTooLarge, UpstreamBody};
use crate::config::RouteConfig;
use crate::error::GatewayError;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

/// One upstream target of a route.
pub struct Target {
    pub scheme: Scheme,
    pub authority: Authority,
    /// `scheme://authority`, for logs.
    pub label: String,
    down_until_ms: AtomicU64,
}

/// A route's targets and their shared state (shared by all workers).
pub struct Upstreams {
    targets: Vec<Target>,
    next: AtomicUsize,
    cooldown: Duration,
}

fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

impl Upstreams {
    pub fn new(route: &RouteConfig) -> Upstreams {
        let targets = route
            .upstreams
            .iter()
            .filter_map(|uri| {
                let scheme = uri.scheme()?.clone();
                let authority = uri.authority()?.clone();
                Some(Target {
                    label: format!("{scheme}://{authority}"),
                    scheme,
                    authority,
                    down_until_ms: AtomicU64::new(0),
                })
            })
            .collect();
        Upstreams {
            targets,
            next: AtomicUsize::new(0),
            cooldown: route.cooldown,
        }
    }

    pub fn target(&self, i: usize) -> &Target {
        &self.targets[i % self.targets.len()]
    }

    /// The next target in round-robin order that is not cooling down and is not `avoid`; if
    /// every other target is cooling down, the plain round-robin pick (trying beats refusing).
    pub fn pick(&self, avoid: Option<usize>) -> usize {
        let n = self.targets.len();
        if n == 1 {
            return 0;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| Some(i) != avoid && self.targets[i].down_until_ms.load(Ordering::Relaxed) <= now)
            .unwrap_or_else(|| {
                let i = start % n;
                if Some(i) == avoid { (i + 1) % n } else { i }
            })
    }

    pub fn mark_down(&self, i: usize) {
        let until = now_ms() + self.cooldown.as_millis() as u64;
        self.target(i).down_until_ms.store(until, Ordering::Relaxed);
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

/// A pooled client for one route on one worker.
pub fn client(route: &RouteConfig) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(route.connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*route.upstream_tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(https)
}

/// What a forward attempt ended with, and on which target.
pub struct Sent {
    pub result: Result<Response<Incoming>, GatewayError>,
    pub target: usize,
}

fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Sends the request (its URI already holds only the path and query to forward) to one of
/// the route's targets.
pub async fn send(
    client: &UpstreamClient,
    upstreams: &Upstreams,
    timeout: Duration,
    mut req: Request<UpstreamBody>,
) -> Sent {
    let first = upstreams.pick(None);
    // Keep what a retry needs only when a retry is possible.
    let retry =
        (upstreams.len() > 1 && idempotent(req.method()) && http_body::Body::is_end_stream(req.body()))
            .then(|| (req.method().clone(), req.uri().clone(), req.headers().clone()));
    *req.version_mut() = Version::HTTP_11;
    let result = attempt(client, upstreams, first, timeout, req).await;
    match result {
        Err(Failure::Connect) => {
            upstreams.mark_down(first);
            if let Some((method, uri, headers)) = retry {
                let second = upstreams.pick(Some(first));
                let mut again = Request::new(UpstreamBody::empty());
                *again.method_mut() = method;
                *again.uri_mut() = uri;
                *again.headers_mut() = headers;
                let result = attempt(client, upstreams, second, timeout, again).await;
                if matches!(result, Err(Failure::Connect)) {
                    upstreams.mark_down(second);
                }
                return Sent {
                    result: result.map_err(Failure::into_error),
                    target: second,
                };
            }
            Sent {
                result: Err(GatewayError::UpstreamUnavailable),
                target: first,
            }
        }
        other => Sent {
            result: other.map_err(Failure::into_error),
            target: first,
        },
    }
}

enum Failure {
    Connect,
    Other(GatewayError),
}

impl Failure {
    fn into_error(self) -> GatewayError {
        match self {
            Failure::Connect => GatewayError::UpstreamUnavailable,
            Failure::Other(e) => e,
        }
    }
}

async fn attempt(
    client: &UpstreamClient,
    upstreams: &Upstreams,
    i: usize,
    timeout: Duration,
    mut req: Request<UpstreamBody>,
) -> Result<Response<Incoming>, Failure> {
    let target = upstreams.target(i);
    let pq = req
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(target.scheme.clone());
    parts.authority = Some(target.authority.clone());
    parts.path_and_query = Some(pq);
    *req.uri_mut() = Uri::from_parts(parts).map_err(|_| Failure::Other(GatewayError::UpstreamUnavailable))?;
    match tokio::time::timeout(timeout, client.request(req)).await {
        Err(_) => Err(Failure::Other(GatewayError::UpstreamTimeout)),
        Ok(Ok(resp)) => Ok(resp),
        Ok(Err(e)) if e.is_connect() => {
            tracing::warn!(upstream = %target.label, error = %error_chain(&e), "upstream connect failed");
            Err(Failure::Connect)
        }
        Ok(Err(e)) => {
            if caused_by_body_limit(&e) {
                return Err(Failure::Other(GatewayError::BodyTooLarge));
            }
            tracing::warn!(upstream = %target.label, error = %error_chain(&e), "upstream request failed");
            Err(Failure::Other(GatewayError::UpstreamUnavailable))
        }
    }
}

fn caused_by_body_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<BodyTooLarge>() {
            return true;
        }
        cur = err.source();
    }
    false
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        out.push_str(": ");
        out.push_str(&err.to_string());
        cur = err.source();
    }
    out
}
