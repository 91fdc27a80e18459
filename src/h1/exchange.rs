//! Forward's upstream half, the exchange: a connection to one of the route's targets (a pooled
//! one, else a new one; a target that refuses is skipped for its cooldown and one other is
//! tried), the request head and body written to it, and the response head read and rewritten
//! (`response`) into the client's buffer. Relaying the body back is `forward`'s.
//!
//! - A pooled connection that closes before any answer is replaced once, for idempotent
//!   requests without a body (the upstream closed it while idle, as the gateway reused it);
//!   nothing else is ever sent twice.
//! - An upstream may answer before the request body is all sent: sending stops at its answer
//!   (`send_body`), and `forward` keeps the body going while it relays that answer.

use super::conn::{Buffers, read_client};
use super::plan::Plan;
use super::response::{self, Extra, Parsed};
use crate::gateway::Worker;
use crate::proxy::framing::MAX_RESPONSE_READ;
use crate::proxy::stream::Stream;
use crate::proxy::upstream::Upstreams;
use crate::watch::ConnWatch;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A body at most this large, when it is all here, goes out in the same write as the head.
const INLINE_BODY: u64 = 16 * 1024;

/// Why an exchange failed.
pub(super) enum Failure {
    /// Nothing came back on a pooled connection: it may have been closed while idle.
    Stale,
    Upstream,
    Bad(&'static str),
    /// The client went away while its body was being sent.
    ClientGone,
    /// Nothing moved, either way, for the route's `timeout` while the body was being sent.
    Stalled,
}

/// Connects, sends the request, and reads the response head into `b.out` (for the client).
pub(super) async fn exchange<IO>(
    io: &mut IO,
    b: &mut Buffers,
    worker: &Worker,
    plan: &Plan,
    watch: &ConnWatch,
    now: Instant,
    target: &mut Option<usize>,
) -> Result<(Stream, response::Head), Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let route = &worker.shared.routes.routes[plan.route];
    let (upstreams, idle) = (&route.upstreams, route.config.timeout);
    let head_len = b.out.len();
    let (mut up, mut pooled) = connect(worker, plan.route, upstreams, now, target).await?;
    let Some(t) = *target else {
        return Err(Failure::Upstream);
    };
    loop {
        b.out.truncate(head_len);
        super::request::finish_head(&mut b.out, upstreams.target(t).host_header());
        match send(io, b, &mut up, plan, watch, idle).await {
            Ok(head) => return Ok((up, head)),
            Err(Failure::Stale) if pooled && plan.retry_safe => {
                up = match Box::pin(upstreams.dial(t)).await {
                    Ok(fresh) => fresh,
                    Err(why) => {
                        upstreams.connect_failed(t, &why);
                        upstreams.mark_down(t);
                        return Err(Failure::Upstream);
                    }
                };
                pooled = false;
            }
            Err(failure) => return Err(failure),
        }
    }
}

/// A connection to a target (which `target` names): a pooled one, else a new one; a target
/// that cannot be dialed cools down and one other is tried. `true` for a pooled connection.
async fn connect(
    worker: &Worker,
    route: usize,
    upstreams: &Upstreams,
    now: Instant,
    target: &mut Option<usize>,
) -> Result<(Stream, bool), Failure> {
    for next in upstreams.order() {
        *target = Some(next);
        if let Some(pooled) = worker.streams.take(route, next, now) {
            return Ok((pooled, true));
        }
        match Box::pin(upstreams.dial(next)).await {
            Ok(fresh) => return Ok((fresh, false)),
            Err(why) => {
                upstreams.connect_failed(next, &why);
                upstreams.mark_down(next);
            }
        }
    }
    Err(Failure::Upstream)
}

/// Writes the request (head, then the body as the client sends it) and reads the response
/// head. An answer that arrives while the body is still being sent ends the sending.
async fn send<IO>(
    io: &mut IO,
    b: &mut Buffers,
    up: &mut Stream,
    plan: &Plan,
    watch: &ConnWatch,
    idle: Duration,
) -> Result<response::Head, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    if b.body_left > 0 && b.body_left <= INLINE_BODY && b.pending().len() as u64 >= b.body_left {
        let end = b.start + b.body_left as usize;
        b.out.extend_from_slice(&b.input[b.start..end]);
        b.start = end;
        b.body_left = 0;
    }
    b.upstream.clear();
    // A write that fails at once on a pooled connection means the upstream closed it.
    up.write_all(&b.out).await.map_err(|_| Failure::Stale)?;
    // `Expect: 100-continue` is the gateway's to answer (it is never forwarded): now that the
    // request is authorized and its head is with the upstream, as hyper's server answers it on
    // the general path; a client that sent its body already needs no answer.
    if plan.expect_continue && (b.pending().len() as u64) < b.body_left {
        io.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| Failure::ClientGone)?;
        io.flush().await.map_err(|_| Failure::ClientGone)?;
    }
    loop {
        if b.body_left > 0 {
            send_body(io, b, up, idle).await?;
        }
        if b.body_left == 0 {
            up.flush().await.map_err(|_| Failure::Upstream)?;
        }
        // The response head; after an interim answer that came early, back to the body.
        loop {
            if !b.upstream.is_empty() {
                let extra = Extra {
                    request_id: plan.request_id.as_bytes(),
                    head_request: plan.head_request,
                    // An unsent body would be read as the next request: close after this answer.
                    close: plan.close || b.body_left > 0 || watch.closing(),
                    now: Instant::now(),
                };
                match response::parse(&b.upstream, &mut b.out, &extra).map_err(|e| Failure::Bad(e.0))? {
                    Parsed::Partial => {}
                    Parsed::Interim(len) => {
                        b.upstream.drain(..len);
                        if b.upstream.is_empty() && b.body_left > 0 {
                            break;
                        }
                        continue;
                    }
                    Parsed::Final(mut head) => {
                        head.reusable &= b.body_left == 0;
                        return Ok(head);
                    }
                }
            }
            if b.upstream.len() >= MAX_RESPONSE_READ {
                return Err(Failure::Bad("response head too large"));
            }
            b.upstream.reserve(8192);
            match up.read_buf(&mut b.upstream).await {
                Ok(n) if n > 0 => {}
                Ok(_) if !b.upstream.is_empty() => {
                    return Err(Failure::Bad("closed in the middle of the response head"));
                }
                Err(_) if !b.upstream.is_empty() => return Err(Failure::Upstream),
                _ => return Err(Failure::Stale),
            }
        }
    }
}

/// Sends the rest of the body as the client sends it, until it is all sent or the upstream
/// says something (what it said is then in `b.upstream`). Each write is one `write`, so
/// stopping between two never leaves a piece half sent.
pub(super) async fn send_body<IO>(
    io: &mut IO,
    b: &mut Buffers,
    up: &mut Stream,
    idle: Duration,
) -> Result<(), Failure>
where
    IO: AsyncRead + Unpin,
{
    // Each wait (on the client's next bytes, or on the upstream taking them) is bounded by the
    // route's `timeout`: an exchange in which nothing moves is broken off, as on the general
    // path (`proxy::progress`).
    while b.body_left > 0 {
        b.upstream.reserve(8192);
        if b.pending().is_empty() {
            b.make_room();
            let (mut from_up, _) = tokio::io::split(&mut *up);
            let waited = tokio::time::timeout(idle, async {
                tokio::select! {
                    read = read_client(io, &mut b.input, None) => match read {
                        Ok(n) if n > 0 => Ok(None),
                        _ => Err(Failure::ClientGone),
                    },
                    early = from_up.read_buf(&mut b.upstream) => Ok(Some(early)),
                }
            });
            match waited.await.map_err(|_| Failure::Stalled)?? {
                None => {}
                Some(early) => return answered_early(early),
            }
        }
        let n = (b.pending().len() as u64).min(b.body_left) as usize;
        let chunk = &b.input[b.start..b.start + n];
        let (mut from_up, mut to_up) = tokio::io::split(&mut *up);
        let waited = tokio::time::timeout(idle, async {
            tokio::select! {
                written = to_up.write(chunk) => match written {
                    Ok(sent) if sent > 0 => Ok(sent),
                    // It may have answered, then closed: what it said is still readable.
                    _ => Err(answered_early(Ok(read_now(&mut from_up, &mut b.upstream)))),
                },
                early = from_up.read_buf(&mut b.upstream) => Err(answered_early(early)),
            }
        });
        let sent = match waited.await.map_err(|_| Failure::Stalled)? {
            Ok(sent) => sent,
            Err(answered) => return answered,
        };
        b.start += sent;
        b.body_left -= sent as u64;
    }
    Ok(())
}

/// What can be read from `up` without waiting (0 if nothing, or on error).
fn read_now(up: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> usize {
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match tokio_util::io::poll_read_buf(std::pin::Pin::new(up), &mut cx, buf) {
        std::task::Poll::Ready(Ok(n)) => n,
        _ => 0,
    }
}

/// The upstream said something before the body was all sent: its answer, or it hung up.
fn answered_early(read: std::io::Result<usize>) -> Result<(), Failure> {
    match read {
        Ok(n) if n > 0 => Ok(()),
        _ => Err(Failure::Upstream),
    }
}
