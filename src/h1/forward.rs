//! The fast path's phase 6, forward: a pooled raw connection to one of the route's targets (or
//! a new one; a target that refuses is skipped for its cooldown and one other is tried, as in
//! `proxy::upstream`), the request head and body written to it, the response head read and
//! rewritten (`response`), the body relayed by its framing, and the connection pooled again
//! when its response ended cleanly. A pooled connection found closed before any answer is
//! replaced once, for idempotent requests without a body; nothing else is ever sent twice.
//! Until the response head, the route's `timeout` applies (504); failures before it are 502s.

use super::chunked::Chunked;
use super::plan::Plan;
use super::response::{self, Extra, Framing, Parsed};
use super::{Buffers, Step, read_client};
use crate::error::GatewayError;
use crate::gateway::Worker;
use crate::proxy::stream::Stream;
use crate::proxy::upstream::Upstreams;
use crate::watch::ConnWatch;
use http_body_util::BodyExt;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A body at most this large, when it is all here, goes out in the same write as the head.
const INLINE_BODY: u64 = 16 * 1024;
/// The largest response head read from an upstream.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Why an exchange failed.
enum Failure {
    /// Nothing came back on a pooled connection: it may have been closed while idle.
    Stale,
    Upstream,
    Bad(&'static str),
    /// The client went away while its body was being sent.
    ClientGone,
}

/// How a forwarded request was answered.
pub(super) struct Answered {
    pub status: u16,
    pub target: Option<usize>,
    pub step: Step,
    /// When the response head was ready (the end of `request_duration`).
    pub head_at: Instant,
}

/// Forwards the planned request and answers the client.
pub(super) async fn forward<IO>(
    io: &mut IO,
    b: &mut Buffers,
    worker: &Worker,
    plan: &Plan,
    watch: &ConnWatch,
) -> Answered
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let route = &worker.shared.routes.routes[plan.route];
    let sending = Instant::now();
    let exchanged = tokio::time::timeout(
        route.config.timeout,
        exchange(io, b, worker, plan, watch, sending),
    )
    .await;
    let head_at = match &exchanged {
        Ok(Ok((_, head, _))) => head.at,
        _ => Instant::now(),
    };
    route.upstream_duration.observe((head_at - sending).as_secs_f64());
    let (up, head, target) = match exchanged {
        Ok(Ok(done)) => done,
        Ok(Err((Failure::ClientGone, target))) => {
            return Answered {
                status: 400,
                target,
                step: Step::Close,
                head_at,
            };
        }
        Ok(Err((failure, target))) => {
            let error = match failure {
                Failure::Bad(why) => {
                    let label = target.map_or("-", |t| route.upstreams.target(t).label.as_str());
                    tracing::warn!(upstream = %label, error = why, "upstream response refused");
                    GatewayError::UpstreamUnavailable
                }
                _ => GatewayError::UpstreamUnavailable,
            };
            return answer_error(io, b, plan, error, target).await;
        }
        Err(_) => return answer_error(io, b, plan, GatewayError::UpstreamTimeout, None).await,
    };
    let step = relay(io, b, up, &head, worker, plan, target).await;
    Answered {
        status: head.status,
        target: Some(target),
        step,
        head_at,
    }
}

/// Connects, sends the request, and reads the response head into `b.out` (for the client).
async fn exchange<IO>(
    io: &mut IO,
    b: &mut Buffers,
    worker: &Worker,
    plan: &Plan,
    watch: &ConnWatch,
    now: Instant,
) -> Result<(Stream, response::Head, usize), (Failure, Option<usize>)>
where
    IO: AsyncRead + Unpin,
{
    let upstreams = &worker.shared.routes.routes[plan.route].upstreams;
    let head_len = b.out.len();
    let (mut up, mut pooled, target) = connect(worker, plan.route, upstreams, now).await?;
    loop {
        b.out.truncate(head_len);
        super::request::finish_head(&mut b.out, upstreams.target(target).host_header());
        match send(io, b, &mut up, plan, watch).await {
            Ok(head) => return Ok((up, head, target)),
            Err(Failure::Stale) if pooled && plan.retry_safe => {
                up = match Box::pin(upstreams.dial(target)).await {
                    Ok(fresh) => fresh,
                    Err(why) => {
                        upstreams.connect_failed(target, &why);
                        return Err((Failure::Upstream, Some(target)));
                    }
                };
                pooled = false;
            }
            Err(failure) => return Err((failure, Some(target))),
        }
    }
}

/// A connection to a target: a pooled one, else a new one; a target that cannot be dialed
/// cools down and one other is tried.
async fn connect(
    worker: &Worker,
    route: usize,
    upstreams: &Upstreams,
    now: Instant,
) -> Result<(Stream, bool, usize), (Failure, Option<usize>)> {
    let first = upstreams.pick(None);
    let mut target = first;
    for attempt in 0..2 {
        if let Some(pooled) = worker.streams.take(route, target, now) {
            return Ok((pooled, true, target));
        }
        match Box::pin(upstreams.dial(target)).await {
            Ok(fresh) => return Ok((fresh, false, target)),
            Err(why) => {
                upstreams.connect_failed(target, &why);
                upstreams.mark_down(target);
            }
        }
        if attempt == 1 || upstreams.len() < 2 {
            break;
        }
        target = upstreams.pick(Some(first));
    }
    Err((Failure::Upstream, Some(target)))
}

/// Writes the request (head, then body as the client sends it) and reads the response head.
async fn send<IO>(
    io: &mut IO,
    b: &mut Buffers,
    up: &mut Stream,
    plan: &Plan,
    watch: &ConnWatch,
) -> Result<response::Head, Failure>
where
    IO: AsyncRead + Unpin,
{
    if b.body_left > 0 && b.body_left <= INLINE_BODY && b.pending().len() as u64 >= b.body_left {
        let end = b.start + b.body_left as usize;
        b.out.extend_from_slice(&b.input[b.start..end]);
        b.start = end;
        b.body_left = 0;
    }
    // A write that fails at once on a pooled connection means the upstream closed it.
    up.write_all(&b.out).await.map_err(|_| Failure::Stale)?;
    while b.body_left > 0 {
        if b.pending().is_empty() {
            b.make_room();
            match read_client(io, &mut b.input, None).await {
                Ok(n) if n > 0 => {}
                _ => return Err(Failure::ClientGone),
            }
        }
        let n = (b.pending().len() as u64).min(b.body_left) as usize;
        up.write_all(&b.input[b.start..b.start + n])
            .await
            .map_err(|_| Failure::Upstream)?;
        b.start += n;
        b.body_left -= n as u64;
    }
    up.flush().await.map_err(|_| Failure::Upstream)?;

    b.upstream.clear();
    loop {
        if b.upstream.len() >= MAX_RESPONSE_HEAD {
            return Err(Failure::Bad("response head too large"));
        }
        b.upstream.reserve(8192);
        let n = match up.read_buf(&mut b.upstream).await {
            Ok(n) => n,
            Err(_) if b.upstream.is_empty() => return Err(Failure::Stale),
            Err(_) => return Err(Failure::Upstream),
        };
        if n == 0 {
            return Err(if b.upstream.is_empty() {
                Failure::Stale
            } else {
                Failure::Bad("closed in the middle of the response head")
            });
        }
        let extra = Extra {
            request_id: plan.request_id.as_bytes(),
            head_request: plan.head_request,
            close: plan.close || watch.closing(),
            now: Instant::now(),
        };
        loop {
            match response::parse(&b.upstream, &mut b.out, &extra).map_err(|e| Failure::Bad(e.0))? {
                Parsed::Partial => break,
                Parsed::Interim(len) => {
                    b.upstream.drain(..len);
                }
                Parsed::Final(head) => return Ok(head),
            }
        }
    }
}

/// Sends the response head and relays the body; pools the upstream connection when it ended
/// cleanly. A body that breaks off after the head went out closes the client's connection
/// (the client sees a short body, as on the general path).
async fn relay<IO>(
    io: &mut IO,
    b: &mut Buffers,
    mut up: Stream,
    head: &response::Head,
    worker: &Worker,
    plan: &Plan,
    target: usize,
) -> Step
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let mut reusable = head.reusable;
    let mut clean = true;
    let first = &b.upstream[head.len..];
    match head.framing {
        Framing::Empty => {
            reusable &= first.is_empty();
            if io.write_all(&b.out).await.is_err() {
                return Step::Close;
            }
        }
        Framing::Length(n) => {
            let now = (first.len() as u64).min(n) as usize;
            reusable &= first.len() as u64 <= n;
            b.out.extend_from_slice(&first[..now]);
            if io.write_all(&b.out).await.is_err() {
                return Step::Close;
            }
            let mut left = n - now as u64;
            while left > 0 {
                let Some(got) = read_upstream(&mut up, &mut b.upstream).await else {
                    clean = false;
                    break;
                };
                let take = (got as u64).min(left) as usize;
                reusable &= got == take;
                if io.write_all(&b.upstream[..take]).await.is_err() {
                    return Step::Close;
                }
                left -= take as u64;
            }
        }
        Framing::Chunked => {
            let mut chunks = Chunked::default();
            let Ok(used) = chunks.feed(first) else {
                // Nothing went to the client yet: a clean 502.
                let answered =
                    answer_error(io, b, plan, GatewayError::UpstreamUnavailable, Some(target)).await;
                return answered.step;
            };
            reusable &= used == first.len();
            b.out.extend_from_slice(&first[..used]);
            if io.write_all(&b.out).await.is_err() {
                return Step::Close;
            }
            while !chunks.is_done() {
                let Some(got) = read_upstream(&mut up, &mut b.upstream).await else {
                    clean = false;
                    break;
                };
                let Ok(used) = chunks.feed(&b.upstream[..got]) else {
                    clean = false;
                    break;
                };
                reusable &= used == got;
                if io.write_all(&b.upstream[..used]).await.is_err() {
                    return Step::Close;
                }
            }
        }
        Framing::UntilClose => {
            b.out.extend_from_slice(first);
            if io.write_all(&b.out).await.is_err() {
                return Step::Close;
            }
            while let Some(got) = read_upstream(&mut up, &mut b.upstream).await {
                if io.write_all(&b.upstream[..got]).await.is_err() {
                    return Step::Close;
                }
            }
        }
    }
    if io.flush().await.is_err() {
        return Step::Close;
    }
    if !clean {
        let label = &worker.shared.routes.routes[plan.route]
            .upstreams
            .target(target)
            .label;
        tracing::warn!(upstream = %label, "upstream response body broke off");
        return Step::Close;
    }
    if reusable {
        worker.streams.put(plan.route, target, up, head.at);
    }
    if head.close { Step::Close } else { Step::Next }
}

/// The next bytes of a response body into `buf` (cleared first): `None` at EOF or on error.
async fn read_upstream(up: &mut Stream, buf: &mut Vec<u8>) -> Option<usize> {
    buf.clear();
    buf.reserve(16 * 1024);
    match up.read_buf(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

/// Answers with the gateway's JSON error (as `GatewayError::into_response` makes it).
async fn answer_error<IO>(
    io: &mut IO,
    b: &mut Buffers,
    plan: &Plan,
    error: GatewayError,
    target: Option<usize>,
) -> Answered
where
    IO: AsyncWrite + Unpin,
{
    let head_at = Instant::now();
    let resp = error.into_response();
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let out = &mut b.out;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\nx-request-id: ");
    out.extend_from_slice(plan.request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
    response::date(out, head_at);
    // The rest of an unsent body would be read as the next request: close instead.
    let close = plan.close || b.body_left > 0;
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !plan.head_request {
        out.extend_from_slice(&body);
    }
    let written = io.write_all(out).await.is_ok() && io.flush().await.is_ok();
    Answered {
        status: status.as_u16(),
        target,
        step: if close || !written {
            Step::Close
        } else {
            Step::Next
        },
        head_at,
    }
}
