//! The fast path's phase 6, forward: the request exchanged with one of the route's targets
//! (`exchange`: a pooled raw connection or a new one, as in `proxy::upstream`; the request head
//! and body written to it; the response head read and rewritten), the body relayed back by its
//! framing, and the connection pooled again when its response ended cleanly. Failures are
//! answered here with the general path's error responses.
//!
//! - An upstream may answer before the request body is all sent (a 413 to a large upload, or
//!   an echo answering as it reads): the answer is relayed while the body keeps going to the
//!   upstream for as long as it takes it, and the client's connection closes after it.
//! - Until the response head, the route's `timeout` applies (504); failures before it are 502s.

use super::chunked::{self, Chunked};
use super::conn::{Buffers, Step};
use super::exchange::{Failure, exchange, send_body};
use super::plan::Plan;
use super::response::{self, Framing};
use crate::error::GatewayError;
use crate::gateway::{GatewayState, Worker};
use crate::proxy::stream::Stream;
use crate::watch::ConnWatch;
use http_body_util::BodyExt;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The status logged when the client went away before its request was answered (nginx's).
const CLIENT_GONE: u16 = 499;

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
    // The target being tried, known even when the timeout drops the exchange.
    let mut target = None;
    let exchanged = tokio::time::timeout_at(
        crate::phase::forward::deadline(route),
        exchange(io, b, worker, plan, watch, sending, &mut target),
    )
    .await;
    let head_at = match &exchanged {
        Ok(Ok((_, head))) => head.at,
        _ => Instant::now(),
    };
    route.upstream_duration.observe((head_at - sending).as_secs_f64());
    let answered = |status, step| Answered {
        status,
        target,
        step,
        head_at,
    };
    let (up, head) = match exchanged {
        Ok(Ok(done)) => done,
        Ok(Err(Failure::ClientGone)) => return answered(CLIENT_GONE, Step::Close),
        Ok(Err(failure)) => {
            if let Failure::Bad(why) = failure {
                let label = target.map_or("-", |t| route.upstreams.target(t).label.as_str());
                tracing::warn!(upstream = %label, error = why, "upstream response refused");
            }
            let step = answer_error(
                io,
                b,
                &worker.shared,
                plan,
                GatewayError::UpstreamUnavailable,
                head_at,
            )
            .await;
            return answered(502, step);
        }
        Err(_) => {
            let step = answer_error(
                io,
                b,
                &worker.shared,
                plan,
                GatewayError::UpstreamTimeout,
                head_at,
            )
            .await;
            return answered(504, step);
        }
    };
    let (status, step) = match target {
        Some(t) => relay(io, b, up, &head, worker, plan, t).await,
        None => (502, Step::Close),
    };
    answered(status, step)
}

/// Answers a request the route's policy refused.
pub(super) async fn refuse<IO>(
    io: &mut IO,
    b: &mut Buffers,
    shared: &GatewayState,
    plan: &Plan,
    error: GatewayError,
) -> Answered
where
    IO: AsyncWrite + Unpin,
{
    let head_at = Instant::now();
    let status = error.status().as_u16();
    let step = answer_error(io, b, shared, plan, error, head_at).await;
    Answered {
        status,
        target: None,
        step,
        head_at,
    }
}

/// Sends the response head and relays the body; pools the upstream connection when it ended
/// cleanly. A body that breaks off after the head went out closes the client's connection
/// (the client sees a short body, as on the general path). Returns the status answered.
async fn relay<IO>(
    io: &mut IO,
    b: &mut Buffers,
    mut up: Stream,
    head: &response::Head,
    worker: &Worker,
    plan: &Plan,
    target: usize,
) -> (u16, Step)
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let idle = worker.shared.routes.routes[plan.route].config.timeout;
    let mut reusable = head.reusable;
    let mut clean = true;
    let mut read_more = false;
    // The request body goes on while the response is relayed, if it was answered early.
    let mut sending = true;
    let first = &b.upstream[head.len..];
    match head.framing {
        Framing::Empty => {
            reusable &= first.is_empty();
            if io.write_all(&b.out).await.is_err() {
                return (head.status, Step::Close);
            }
        }
        Framing::Length(n) => {
            let now = (first.len() as u64).min(n) as usize;
            reusable &= first.len() as u64 <= n;
            b.out.extend_from_slice(&first[..now]);
            if io.write_all(&b.out).await.is_err() {
                return (head.status, Step::Close);
            }
            let mut left = n - now as u64;
            while left > 0 {
                read_more = true;
                let Some(got) = read_upstream(io, b, &mut up, &mut sending, idle).await else {
                    clean = false;
                    break;
                };
                let take = (got as u64).min(left) as usize;
                reusable &= got == take;
                if io.write_all(&b.upstream[..take]).await.is_err() {
                    return (head.status, Step::Close);
                }
                left -= take as u64;
            }
        }
        Framing::Chunked => {
            let mut chunks = Chunked::default();
            let Ok(fed) = chunks.feed(first) else {
                // Nothing went to the client yet: a clean 502.
                let step = answer_error(
                    io,
                    b,
                    &worker.shared,
                    plan,
                    GatewayError::UpstreamUnavailable,
                    head.at,
                )
                .await;
                return (502, step);
            };
            reusable &= fed.used == first.len();
            b.out.extend_from_slice(&first[..fed.relay]);
            if chunks.is_done() {
                b.out.extend_from_slice(chunked::END);
            }
            if io.write_all(&b.out).await.is_err() {
                return (head.status, Step::Close);
            }
            while !chunks.is_done() {
                read_more = true;
                let Some(got) = read_upstream(io, b, &mut up, &mut sending, idle).await else {
                    clean = false;
                    break;
                };
                let Ok(fed) = chunks.feed(&b.upstream[..got]) else {
                    clean = false;
                    break;
                };
                reusable &= fed.used == got;
                if chunks.is_done() {
                    b.upstream.truncate(fed.relay);
                    b.upstream.extend_from_slice(chunked::END);
                }
                let relay = if chunks.is_done() {
                    b.upstream.len()
                } else {
                    fed.relay
                };
                if io.write_all(&b.upstream[..relay]).await.is_err() {
                    return (head.status, Step::Close);
                }
            }
        }
        Framing::UntilClose => {
            // Re-framed as chunks, so the client's connection can stay open.
            chunk_into(&mut b.out, first);
            if io.write_all(&b.out).await.is_err() {
                return (head.status, Step::Close);
            }
            while let Some(got) = read_upstream(io, b, &mut up, &mut sending, idle).await {
                b.out.clear();
                chunk_into(&mut b.out, &b.upstream[..got]);
                if io.write_all(&b.out).await.is_err() {
                    return (head.status, Step::Close);
                }
            }
            if io.write_all(b"0\r\n\r\n").await.is_err() {
                return (head.status, Step::Close);
            }
        }
    }
    if io.flush().await.is_err() {
        return (head.status, Step::Close);
    }
    if !clean {
        let label = &worker.shared.routes.routes[plan.route]
            .upstreams
            .target(target)
            .label;
        tracing::warn!(upstream = %label, "upstream response body broke off");
        return (head.status, Step::Close);
    }
    if reusable {
        let idle_since = if read_more { Instant::now() } else { head.at };
        worker.streams.put(plan.route, target, up, idle_since);
    }
    let step = if head.close || b.body_left > 0 {
        Step::Close
    } else {
        Step::Next
    };
    (head.status, step)
}

/// Appends `data` to `out` as one chunk (nothing for no data: an empty chunk would end the body).
fn chunk_into(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// The next bytes of a response body into `b.upstream` (cleared first): `None` at EOF, on
/// error, or after `idle` without a byte. While the upstream answers before the request body is all sent, the body keeps
/// going to it meanwhile (an upstream may answer as it reads, an echo say); `sending` turns
/// false when the upstream stops taking it.
async fn read_upstream<IO>(
    io: &mut IO,
    b: &mut Buffers,
    up: &mut Stream,
    sending: &mut bool,
    idle: std::time::Duration,
) -> Option<usize>
where
    IO: AsyncRead + Unpin,
{
    b.upstream.clear();
    b.upstream.reserve(16 * 1024);
    while *sending && b.body_left > 0 {
        match send_body(io, b, up, idle).await {
            // Sent all, or the upstream said more: read it below.
            Ok(()) => break,
            Err(_) => *sending = false,
        }
    }
    if !b.upstream.is_empty() {
        return Some(b.upstream.len());
    }
    // The upstream may stay silent for the route's `timeout` between two reads (as on the
    // general path, `body::Idle`); longer, and the body is broken off.
    match tokio::time::timeout(idle, up.read_buf(&mut b.upstream)).await {
        Ok(Ok(0) | Err(_)) | Err(_) => None,
        Ok(Ok(n)) => Some(n),
    }
}

/// Answers with the gateway's error as the general path makes it (`GatewayState::answer`: an HTML
/// page for a browser navigation, else JSON).
async fn answer_error<IO>(
    io: &mut IO,
    b: &mut Buffers,
    shared: &GatewayState,
    plan: &Plan,
    error: GatewayError,
    now: Instant,
) -> Step
where
    IO: AsyncWrite + Unpin,
{
    let resp = shared.answer(error, plan.navigation);
    let status = resp.status();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    // A body that is all here already is read past (as hyper drains one); any other would be
    // read as the next request: the connection closes instead.
    if b.body_left > 0 && b.pending().len() as u64 >= b.body_left {
        b.start += b.body_left as usize;
        b.body_left = 0;
    }
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
    response::date(out, now);
    let close = plan.close || b.body_left > 0;
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !plan.head_request {
        out.extend_from_slice(&body);
    }
    let written = io.write_all(out).await.is_ok() && io.flush().await.is_ok();
    if close || !written {
        Step::Close
    } else {
        Step::Next
    }
}
