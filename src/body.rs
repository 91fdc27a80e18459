//! Body types of the forwarding path, without boxing: what the gateway answers with
//! (`ProxyBody`: an upstream's streamed body or a small full body of its own) and what it
//! sends upstream (`UpstreamBody`: the client's streamed body, cut off past the route's limit).
//! The two bodies of one exchange share its `Progress` (`proxy::progress`): a request body is
//! never sent on once the answer has ended, and an exchange in which nothing moves for the
//! route's `timeout` is broken off.

use crate::proxy::progress::{Progress, Stall};
use crate::proxy::upstream::Lease;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        /// An upstream's body; its connection returns to the pool when the body has ended
        /// (and the request's has all been sent).
        Upstream {
            #[pin] inner: Incoming,
            lease: Option<Lease>,
            first: Option<Frame<Bytes>>,
            progress: Arc<Progress>,
            stall: Stall,
        },
        Full { #[pin] inner: Full<Bytes> },
    }
}

/// Why a forwarded exchange was broken off.
#[derive(Debug)]
pub enum Broken {
    /// Nothing moved, either way, for the route's `timeout`.
    Stalled,
    /// The answer ended before the request body was all sent: the rest is not sent on.
    Abandoned,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Broken::Stalled => "nothing moved either way within the route's timeout",
            Broken::Abandoned => "the answer ended before the request body was all sent",
        })
    }
}

impl std::error::Error for Broken {}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full {
            inner: Full::new(bytes.into()),
        }
    }

    pub fn empty() -> Self {
        ProxyBody::full(Bytes::new())
    }

    /// An upstream's body; `lease` goes back to the pool at its end (at once if it is empty)
    /// if the request body had all been sent; `timeout`: how long the exchange may stand
    /// still. What arrived with the response head is read now: a body broken from its start
    /// is an `Err`, for a 502, as on the fast path.
    pub fn upstream(
        mut inner: Incoming,
        lease: Option<Lease>,
        timeout: Duration,
        progress: Arc<Progress>,
    ) -> Result<ProxyBody, hyper::Error> {
        let mut first = None;
        let mut ended = inner.is_end_stream();
        if !ended {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match Pin::new(&mut inner).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => first = Some(frame),
                Poll::Ready(Some(Err(e))) => return Err(e),
                Poll::Ready(None) => ended = true,
                Poll::Pending => {}
            }
        }
        let mut lease = lease;
        if first.is_none() && ended {
            end(&mut lease, &progress);
        }
        Ok(ProxyBody::Upstream {
            inner,
            lease,
            first,
            progress,
            stall: Stall::new(timeout),
        })
    }
}

/// The answer ended: its connection goes back to the pool only if the request body had all
/// been sent (else the rest is abandoned, and the connection closes with the lease).
fn end(lease: &mut Option<Lease>, progress: &Progress) {
    if let Some(l) = lease.take()
        && progress.answer_ended()
    {
        l.release();
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ProxyBodyProj::Upstream {
                mut inner,
                lease,
                first,
                progress,
                stall,
            } => {
                if let Some(frame) = first.take() {
                    if inner.is_end_stream() {
                        end(lease, progress);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                let polled = inner.as_mut().poll_frame(cx);
                let ended = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
                    _ => false,
                };
                if ended {
                    end(lease, progress);
                }
                match polled {
                    Poll::Pending => match stall.poll(cx, progress) {
                        Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(Broken::Stalled)))),
                        Poll::Pending => Poll::Pending,
                    },
                    Poll::Ready(ready) => {
                        progress.moved();
                        Poll::Ready(ready.map(|r| r.map_err(BoxError::from)))
                    }
                }
            }
            ProxyBodyProj::Full { inner } => inner.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, first, .. } => first.is_none() && inner.is_end_stream(),
            ProxyBody::Full { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner, first, .. } => {
                let pending = first
                    .as_ref()
                    .and_then(Frame::data_ref)
                    .map_or(0, |d| d.len() as u64);
                let inner = inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + pending);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + pending);
                }
                hint
            }
            ProxyBody::Full { inner } => inner.size_hint(),
        }
    }
}

/// The error an `UpstreamBody` ends with when the client sent more than the route allows.
#[derive(Debug)]
pub struct BodyTooLarge;

impl std::fmt::Display for BodyTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("request body exceeds the route's max_body")
    }
}

impl std::error::Error for BodyTooLarge {}

pin_project! {
    /// The client's body on its way upstream; fails with `BodyTooLarge` past `remaining` bytes,
    /// and with `Broken::Abandoned` once the answer has ended; trailers are left out.
    pub struct UpstreamBody {
        #[pin] inner: Option<Incoming>,
        remaining: u64,
        progress: Option<Arc<Progress>>,
    }
}

impl UpstreamBody {
    /// The client's body, and the exchange's progress (shared with the answer's body).
    pub fn new(inner: Incoming, limit: u64) -> (Self, Arc<Progress>) {
        let progress = Arc::new(Progress::new(!inner.is_end_stream()));
        let body = UpstreamBody {
            inner: Some(inner),
            remaining: limit,
            progress: Some(progress.clone()),
        };
        (body, progress)
    }

    /// No body at all (used for retries of body-less requests).
    pub fn empty() -> Self {
        UpstreamBody {
            inner: None,
            remaining: 0,
            progress: None,
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let Some(mut inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        let progress = this.progress.as_deref();
        // Checked before anything more is read: nothing reaches the upstream after its answer.
        if progress.is_some_and(Progress::abandoned) {
            return Poll::Ready(Some(Err(Box::new(Broken::Abandoned))));
        }
        let sent = || {
            if let Some(p) = progress {
                p.sent();
            }
        };
        match inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data) => {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    *this.remaining -= len;
                    if let Some(p) = progress {
                        p.moved();
                    }
                    // A body of known length ends with its last piece: hyper's client then
                    // stops polling (it never asks for the `None`), and the body is sent.
                    if inner.is_end_stream() {
                        sent();
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                // Request trailers are never forwarded: they would be headers the gateway's
                // rules never saw (identity or framing names among them). They end the body.
                None => {
                    sent();
                    Poll::Ready(None)
                }
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => {
                sent();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}
