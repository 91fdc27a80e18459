//! The HTTP/1.1 fast path: portcullis's own HTTP/1.1 for the request that dominates a gateway's
//! traffic — an HTTP/1.1 request to a route, with no body or a `Content-Length` body. Such a request is read with httparse (hyper's parser), decided by the
//! same phases as `pipeline` (`phase`, via `plan`), and forwarded over a raw pooled upstream connection whose
//! response is relayed back (`forward`), all in the connection's own task. Why it exists:
//! measured on this project's 2-core machines, hyper's server and client on both sides of the
//! gateway cost more CPU per request than nginx spends in all; without them the gateway
//! proxies faster than nginx while it authenticates (docs/performance.md).
//!
//! A request the route's policy refuses (401, login redirect, 403, 503) is answered here with
//! the pipeline's own error responses, as are upstream failures (502, 504).
//!
//! Everything else goes to hyper with the rest of the connection (`Handover`): the bytes read
//! so far are replayed to it (`Prefixed`), so hyper sees the connection exactly as the client
//! sent it, and the general pipeline answers — the session API, upgrades, chunked uploads,
//! `Expect`, HTTP/1.0, heads over the size limit, malformed requests, bad paths (400),
//! unknown routes (404), bodies over the limit (413).

mod chunked;
mod conn;
mod exchange;
mod forward;
mod plan;
pub mod prefixed;
#[cfg(test)]
mod props;
pub mod request;
pub mod response;

use crate::gateway::{ConnInfo, WorkerCell};
use crate::phase::log::{Done, finish};
use crate::watch::{Busy, ConnWatch};
use conn::{Buffers, Step, read_client};
use request::{Handover, MAX_HEADERS};
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// How a connection left the fast path.
pub enum Ended<IO> {
    Closed,
    /// For hyper: the connection and the bytes read from it but not consumed, and whether a
    /// request was served before (then the connection stays HTTP/1.1: an HTTP/2 preface is
    /// only one at the start of a connection).
    Handover(IO, Vec<u8>, bool),
}

/// The limits of `server` that apply to reading heads.
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
}

/// Serves `io` until it closes or a request goes to hyper. One loop in one function: each
/// request runs in this future's own state, not in a new future moved into it (the state
/// holds httparse's header array, kilobytes that would be copied per request).
pub async fn serve<IO>(
    mut io: IO,
    conn: &ConnInfo,
    cell: &WorkerCell,
    watch: &ConnWatch,
    limits: &Limits,
) -> Ended<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    // Allocated as they are first needed: a silent connection holds no buffers.
    let mut b = Buffers {
        input: Vec::new(),
        start: 0,
        body_left: 0,
        out: Vec::new(),
        upstream: Vec::new(),
    };
    // The first request's first byte is due within the header-read timeout, like the rest of
    // its head; between requests the connection may idle (the supervisor's `idle_timeout`).
    let mut first = Some(tokio::time::Instant::now() + limits.header_read_timeout);
    let mut served = false;
    loop {
        // Between requests: wait for the next one, unless asked to close (idle, shutdown).
        if b.pending().is_empty() {
            b.make_room();
            let read = read_client(&mut io, &mut b.input, Some(watch));
            let read = match first.take() {
                Some(until) => tokio::time::timeout_at(until, read).await.unwrap_or(Ok(0)),
                None => read.await,
            };
            match read {
                Ok(n) if n > 0 => {}
                _ => return Ended::Closed,
            }
        }
        let worker = cell.get();
        let busy = Busy::enter(watch);
        let started = Instant::now();
        let mut deadline = None;
        // Pending bytes known not to hold the end of the head: a head sent a byte at a time is
        // parsed again only when an end may have arrived, not once per byte.
        let mut searched: usize = 0;
        let (plan, head_len) = loop {
            let parsed = if searched == 0 || ends_head(&b.pending()[searched.saturating_sub(3)..]) {
                let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut []);
                match req.parse_with_uninit_headers(&b.input[b.start..], &mut headers) {
                    Ok(httparse::Status::Complete(n)) if n > limits.max_header_bytes => {
                        break (Err(Handover::HeadTooLarge), 0);
                    }
                    Ok(httparse::Status::Complete(n)) => {
                        Some((plan::plan(&worker, &req, conn, &mut b.out).await, n))
                    }
                    Ok(httparse::Status::Partial) => None,
                    Err(httparse::Error::TooManyHeaders) => break (Err(Handover::TooManyHeaders), 0),
                    Err(_) => break (Err(Handover::Malformed), 0),
                }
            } else {
                None
            };
            if let Some(done) = parsed {
                break done;
            }
            // A head in pieces: more bytes, within the size limit and the header-read timeout.
            searched = b.pending().len();
            if searched >= limits.max_header_bytes {
                break (Err(Handover::HeadTooLarge), 0);
            }
            let until =
                *deadline.get_or_insert_with(|| tokio::time::Instant::now() + limits.header_read_timeout);
            b.make_room();
            match tokio::time::timeout_at(until, read_client(&mut io, &mut b.input, None)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Ended::Closed,
            }
        };
        let plan = match plan {
            Ok(plan) => plan,
            Err(why) => {
                drop(busy);
                let metrics = &worker.shared.metrics;
                let label = crate::metrics::KindLabel { kind: why.label() };
                metrics.fast_path_handovers.get_or_create(&label).inc();
                let rest = b.input.split_off(b.start);
                return Ended::Handover(io, rest, served);
            }
        };
        b.start += head_len;
        b.body_left = plan.body;
        worker.shared.metrics.fast_path_requests.inc();
        let answered = match &plan.refuse {
            None => forward::forward(&mut io, &mut b, &worker, &plan, watch).await,
            Some(error) => forward::refuse(&mut io, &mut b, &worker.shared, &plan, error.clone()).await,
        };
        drop(busy);
        let mut trace = plan.trace;
        trace.target = answered.target;
        let done = Done {
            method: &plan.method,
            class: plan.class,
            status: answered.status,
            request_id: &plan.request_id,
        };
        finish(&worker, &trace, &done, answered.head_at - started, conn);
        served = true;
        if let Step::Close = answered.step {
            let _ = io.shutdown().await;
            return Ended::Closed;
        }
    }
}

/// Whether `bytes` hold the blank line that ends a head (httparse accepts bare LF endings too).
fn ends_head(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|w| w == b"\n\n") || bytes.windows(3).any(|w| w == b"\n\r\n")
}
