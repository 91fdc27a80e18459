//! Upstream connections and sending. Each worker keeps its own pool of idle HTTP/1.1
//! connections per (route, target), used only by that worker's thread: a request takes an idle
//! connection (or dials one), and the connection goes back to the pool when the response body
//! has been read to its end — no per-request task, no cross-thread locking (the mutexes are
//! never contended). Targets are picked round robin; one that refuses connections is skipped
//! for the route's cooldown, and a request whose connection could not be opened is retried once
//! on another target (nothing was sent, so this is safe for every method). A request that was
//! written and then failed is never retried.

use crate::config::RouteConfig;
use crate::error::GatewayError;
use crate::proxy::lease::{HyperPool, Lease};
use crate::proxy::request_body::{BodyTooLarge, UpstreamBody};
use crate::proxy::stream::Stream;
use http::uri::{Authority, Scheme};
use http::{Request, Response, Version};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// One upstream target of a route.
pub struct Target {
    pub scheme: Scheme,
    pub authority: Authority,
    /// `scheme://authority`, for logs.
    pub label: String,
    /// The `Host` header for this target, when the route does not preserve the client's.
    host_header: Option<http::HeaderValue>,
    /// The target's authority as a `Host` value, for a request that came without one.
    authority_header: http::HeaderValue,
    down_until_ms: AtomicU64,
    connect_errors: prometheus_client::metrics::counter::Counter,
}

impl Target {
    /// The `Host` header for this target, when the route does not preserve the client's.
    pub fn host_header(&self) -> Option<&[u8]> {
        self.host_header.as_ref().map(http::HeaderValue::as_bytes)
    }
}

/// A route's targets and their shared state (shared by all workers).
pub struct Upstreams {
    targets: Vec<Target>,
    next: AtomicUsize,
    cooldown: Duration,
    connect_timeout: Duration,
    tls: tokio_rustls::TlsConnector,
}

use crate::proxy::progress::now_ms;

impl Upstreams {
    pub fn new(
        route: &RouteConfig,
        route_label: &'static str,
        metrics: &crate::metrics::Metrics,
    ) -> Upstreams {
        let targets = route
            .upstreams
            .iter()
            .filter_map(|uri| {
                let scheme = uri.scheme()?.clone();
                let authority = uri.authority()?.clone();
                let authority_header = http::HeaderValue::from_str(authority.as_str()).ok()?;
                let host_header = (!route.preserve_host).then(|| authority_header.clone());
                let label = format!("{scheme}://{authority}");
                let errors = crate::metrics::TargetLabels {
                    route: route_label,
                    target: crate::metrics::label(&label),
                };
                Some(Target {
                    connect_errors: metrics.upstream_connect_errors.get_or_create(&errors).clone(),
                    label,
                    scheme,
                    authority,
                    host_header,
                    authority_header,
                    down_until_ms: AtomicU64::new(0),
                })
            })
            .collect();
        let mut tls = (*route.upstream_tls).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Upstreams {
            targets,
            next: AtomicUsize::new(0),
            cooldown: route.cooldown,
            connect_timeout: route.connect_timeout,
            tls: tokio_rustls::TlsConnector::from(Arc::new(tls)),
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

    /// The targets one request tries, in order: a `pick`, then, when there is another target,
    /// one more chosen only if asked for (after the first could not be reached and was marked
    /// down, so the choice avoids it). Both paths retry by it.
    pub fn order(&self) -> impl Iterator<Item = usize> + '_ {
        let first = self.pick(None);
        let others = usize::from(self.len() > 1);
        std::iter::once(first).chain((0..others).map(move |_| self.pick(Some(first))))
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

    /// Opens a connection to target `i`: TCP, then TLS for `https://`.
    pub async fn dial(&self, i: usize) -> Result<Stream, String> {
        let target = self.target(i);
        let host = target
            .authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let https = target.scheme == Scheme::HTTPS;
        let port = target
            .authority
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect((host, port)))
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        if !https {
            return Ok(Stream::Tcp(tcp));
        }
        let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| "TLS handshake timed out".to_string())?
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        Ok(Stream::Tls(Box::new(tls)))
    }

    /// Dials target `i` and starts hyper's client connection task on it.
    async fn connect(&self, i: usize) -> Result<SendRequest<UpstreamBody>, String> {
        handshake(TokioIo::new(self.dial(i).await?)).await
    }

    /// Counts a failed dial of target `i` and logs it.
    pub fn connect_failed(&self, i: usize, why: &str) {
        let target = self.target(i);
        tracing::warn!(upstream = %target.label, error = %why, "upstream connect failed");
        target.connect_errors.inc();
    }
}

/// Whether a request may be sent again on a fresh connection when a pooled one turned out
/// closed before any answer (both paths): an idempotent method without a body.
pub fn retry_safe(method: &str, body: bool) -> bool {
    !body && matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
}

async fn handshake<T>(io: T) -> Result<SendRequest<UpstreamBody>, String>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .writev(false)
        .max_buf_size(crate::proxy::framing::MAX_RESPONSE_READ)
        .handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// What sending ended with, and on which target.
pub struct Sent {
    pub result: Result<(Response<Incoming>, Lease), GatewayError>,
    pub target: usize,
}

enum Failure {
    /// No connection could be opened; the request was not sent and comes back.
    Connect(Box<Request<UpstreamBody>>),
    Other(GatewayError),
}

/// Sends `req` (origin-form URI, headers final) to one of route `route_index`'s targets.
pub async fn send(
    pool: &Arc<HyperPool>,
    route_index: usize,
    upstreams: &Upstreams,
    deadline: tokio::time::Instant,
    mut req: Request<UpstreamBody>,
) -> Sent {
    *req.version_mut() = Version::HTTP_11;
    // One deadline across retries (`phase::forward`); a target that cannot be reached hands
    // the unsent request back for the next.
    let mut tried = 0;
    for i in upstreams.order() {
        tried = i;
        match tokio::time::timeout_at(deadline, attempt(pool, route_index, upstreams, i, req)).await {
            Err(_) => return timed_out(i),
            Ok(Ok(sent)) => return ok(pool, route_index, i, sent),
            Ok(Err(Failure::Other(e))) => {
                return Sent {
                    result: Err(e),
                    target: i,
                };
            }
            Ok(Err(Failure::Connect(unsent))) => {
                upstreams.mark_down(i);
                req = *unsent;
            }
        }
    }
    Sent {
        result: Err(GatewayError::UpstreamUnavailable),
        target: tried,
    }
}

fn ok(
    pool: &Arc<HyperPool>,
    route: usize,
    target: usize,
    (resp, sender): (Response<Incoming>, SendRequest<UpstreamBody>),
) -> Sent {
    let lease = Lease::new(pool.clone(), route, target, sender);
    Sent {
        result: Ok((resp, lease)),
        target,
    }
}

fn timed_out(target: usize) -> Sent {
    Sent {
        result: Err(GatewayError::UpstreamTimeout),
        target,
    }
}

/// One target: idle connections first (a closed one hands the unsent request back, and the
/// next is tried), then a new connection. A pooled connection that fails before any answer
/// (the upstream closed it while idle, as the gateway reused it) is replaced once by a new
/// one for a `retry_safe` request, as on the fast path; nothing else is sent twice.
async fn attempt(
    pool: &HyperPool,
    route: usize,
    upstreams: &Upstreams,
    i: usize,
    mut req: Request<UpstreamBody>,
) -> Result<(Response<Incoming>, SendRequest<UpstreamBody>), Failure> {
    let target = upstreams.target(i);
    let label = &target.label;
    if let Some(host) = &target.host_header {
        req.headers_mut().insert(http::header::HOST, host.clone());
    } else if !req.headers().contains_key(http::header::HOST) {
        // An HTTP/1.0 client may send none; HTTP/1.1 to the upstream needs one.
        req.headers_mut()
            .insert(http::header::HOST, target.authority_header.clone());
    }
    let safe = retry_safe(req.method().as_str(), !http_body::Body::is_end_stream(req.body()));
    while let Some(mut sender) = pool.take(route, i, Instant::now()) {
        if sender.ready().await.is_err() {
            continue;
        }
        let again = safe.then(|| bodiless_copy(&req));
        match sender.try_send_request(req).await {
            Ok(resp) => return Ok((resp, sender)),
            Err(mut e) => match (e.take_message(), again) {
                (Some(unsent), _) => req = unsent,
                (None, Some(copy)) if closed_before_answer(e.error()) => {
                    req = copy;
                    break;
                }
                (None, _) => return Err(Failure::Other(classify(label, e.error()))),
            },
        }
    }
    // Boxed: dialing (TCP, TLS) is a large future and the rare path.
    let mut sender = match Box::pin(upstreams.connect(i)).await {
        Ok(s) => s,
        Err(why) => {
            upstreams.connect_failed(i, &why);
            return Err(Failure::Connect(Box::new(req)));
        }
    };
    match sender.try_send_request(req).await {
        Ok(resp) => Ok((resp, sender)),
        Err(mut e) => match e.take_message() {
            Some(unsent) => Err(Failure::Connect(Box::new(unsent))),
            None => Err(Failure::Other(classify(label, e.error()))),
        },
    }
}

/// Whether hyper's error says the connection ended before any answer (closed, reset, broken
/// pipe), as the fast path's `Stale`; a malformed or cut answer is not that.
fn closed_before_answer(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        cur = err.source();
    }
    false
}

/// The same request with no body, to send again after a stale connection.
fn bodiless_copy(req: &Request<UpstreamBody>) -> Request<UpstreamBody> {
    let mut copy = Request::new(UpstreamBody::empty());
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    copy
}

/// A failure after the request was (partly) written: the client's body over the limit is 413,
/// anything else 502.
fn classify(label: &str, e: &hyper::Error) -> GatewayError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut chain = String::new();
    while let Some(err) = cur {
        if err.is::<BodyTooLarge>() {
            return GatewayError::BodyTooLarge;
        }
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&err.to_string());
        cur = err.source();
    }
    tracing::warn!(upstream = %label, error = %chain, "upstream request failed");
    GatewayError::UpstreamUnavailable
}
