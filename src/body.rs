//! Body types of the forwarding path, without boxing: what the gateway answers with
//! (`ProxyBody`: an upstream's streamed body or a small full body of its own) and what it
//! sends upstream (`UpstreamBody`: the client's streamed body, cut off past the route's limit).

use crate::proxy::upstream::Lease;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::task::{Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        /// An upstream's body; its connection returns to the pool when the body has ended.
        Upstream { #[pin] inner: Incoming, lease: Option<Lease> },
        Full { #[pin] inner: Full<Bytes> },
    }
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

    /// An upstream's body; `lease` goes back to the pool at its end (at once if it is empty).
    pub fn upstream(inner: Incoming, lease: Option<Lease>) -> Self {
        let lease = match lease {
            Some(l) if inner.is_end_stream() => {
                l.release();
                None
            }
            other => other,
        };
        ProxyBody::Upstream { inner, lease }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.project() {
            ProxyBodyProj::Upstream { mut inner, lease } => {
                let polled = inner.as_mut().poll_frame(cx);
                let ended = match &polled {
                    Poll::Ready(None) => true,
                    Poll::Ready(Some(Ok(_))) => inner.is_end_stream(),
                    _ => false,
                };
                if ended && let Some(l) = lease.take() {
                    l.release();
                }
                polled
            }
            ProxyBodyProj::Full { inner } => inner.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
            ProxyBody::Full { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
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
    /// The client's body on its way upstream; fails with `BodyTooLarge` past `remaining` bytes.
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
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > *this.remaining {
                        return Poll::Ready(Some(Err(Box::new(BodyTooLarge))));
                    }
                    *this.remaining -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
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
