//! The client's body on its way upstream (`UpstreamBody`): cut off past the route's limit
//! (`BodyTooLarge`), and never sent on once the answer has ended (`proxy::progress`). Below
//! `body` and `proxy::lease`, which hold connections that carry it.

use super::progress::{Broken, Progress};
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
