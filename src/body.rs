//! Body types of the forwarding path, without boxing: what the gateway answers with
//! (`ProxyBody`: an upstream's streamed body or a small full body of its own) and what it
//! sends upstream (`UpstreamBody`: the client's streamed body, cut off past the route's limit).

use crate::proxy::upstream::Lease;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        /// An upstream's body; its connection returns to the pool when the body has ended.
        Upstream { #[pin] inner: Incoming, lease: Option<Lease>, first: Option<Frame<Bytes>>, idle: Box<Idle> },
        Full { #[pin] inner: Full<Bytes> },
    }
}

/// How long an upstream may stay silent while its body is awaited (the route's `timeout`,
/// like nginx's `proxy_read_timeout`); the clock runs only while the gateway waits on it.
pub struct Idle {
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// The upstream went silent in the middle of its body for longer than the route allows.
#[derive(Debug)]
pub struct UpstreamSilent;

impl std::fmt::Display for UpstreamSilent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream sent nothing more of its body within the route's timeout")
    }
}

impl std::error::Error for UpstreamSilent {}

/// What an upstream body's first poll found (before the response head goes to the client).
pub enum Started {
    Body(ProxyBody),
    /// The body is already broken (a malformed first chunk): answer 502 instead.
    Broken(hyper::Error),
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody::Full {
            inner: Full::new(bytes.into()),
        }
    }

    pub fn empty() -> Self {
        ProxyBody::full(Bytes::new())
    }

    /// An upstream's body; `lease` goes back to the pool at its end (at once if it is empty);
    /// `idle`: how long the upstream may go silent. What arrived with the response head is
    /// read now, so a body that is broken from its start is a 502, as on the fast path.
    pub fn upstream(mut inner: Incoming, lease: Option<Lease>, idle: Duration) -> Started {
        let mut first = None;
        if !inner.is_end_stream() {
            let mut cx = Context::from_waker(std::task::Waker::noop());
            match Pin::new(&mut inner).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => first = Some(frame),
                Poll::Ready(Some(Err(e))) => return Started::Broken(e),
                Poll::Ready(None) | Poll::Pending => {}
            }
        }
        let lease = match lease {
            Some(l) if first.is_none() && inner.is_end_stream() => {
                l.release();
                None
            }
            other => other,
        };
        Started::Body(ProxyBody::Upstream {
            inner,
            lease,
            first,
            idle: Box::new(Idle {
                limit: idle,
                timer: None,
            }),
        })
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
                idle,
            } => {
                if let Some(frame) = first.take() {
                    if inner.is_end_stream()
                        && let Some(l) = lease.take()
                    {
                        l.release();
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                let polled = inner.as_mut().poll_frame(cx);
                let ended = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
                    _ => false,
                };
                if ended && let Some(l) = lease.take() {
                    l.release();
                }
                match polled {
                    Poll::Pending => {
                        // Waiting on the upstream: its silence is timed from now.
                        let limit = idle.limit;
                        let timer = idle
                            .timer
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                        match timer.as_mut().poll(cx) {
                            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(UpstreamSilent)))),
                            Poll::Pending => Poll::Pending,
                        }
                    }
                    Poll::Ready(ready) => {
                        idle.timer = None;
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
    /// The client's body on its way upstream; fails with `BodyTooLarge` past `remaining` bytes;
    /// trailers are left out.
    pub struct UpstreamBody {
        #[pin] inner: Option<Incoming>,
        remaining: u64,
    }
}

impl UpstreamBody {
    pub fn new(inner: Incoming, limit: u64) -> Self {
        UpstreamBody {
            inner: Some(inner),
            remaining: limit,
        }
    }

    /// No body at all (used for retries of body-less requests).
    pub fn empty() -> Self {
        UpstreamBody {
            inner: None,
            remaining: 0,
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
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Ready(None);
        };
        match inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data) => {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    *this.remaining -= len;
                    Poll::Ready(Some(Ok(frame)))
                }
                // Request trailers are never forwarded: they would be headers the gateway's
                // rules never saw (identity or framing names among them). They end the body.
                None => Poll::Ready(None),
            },
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(None),
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
