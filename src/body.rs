//! What the gateway answers with, without boxing (`ProxyBody`): an upstream's streamed body
//! or a small full body of its own. An upstream's body shares its exchange's `Progress`
//! (`proxy::progress`) with the request body (`proxy::request_body::UpstreamBody`): a request
//! body is never sent on once the answer has ended, and an exchange in which nothing moves for
//! the route's `timeout` is broken off. At its end, the body hands its connection's `Lease`
//! (`proxy::lease`) back to the pool. Layering: `proxy::{progress, request_body, lease}` below
//! this module; `error`, `pages` and `proxy::upstream` above it.

use crate::proxy::lease::Lease;
use crate::proxy::progress::{Broken, Progress, Stall};
use crate::proxy::request_body::BoxError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

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
        /// A gRPC answer of the gateway's own services (`grpc`), trailers included; with
        /// `decode_errors_are_callers`, a call ended INTERNAL (tonic's codec's word for a
        /// message it cannot decode) ends INVALID_ARGUMENT instead (`grpc::serve` says when).
        Grpc { #[pin] inner: tonic::body::Body, decode_errors_are_callers: bool },
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

    pub fn grpc(inner: tonic::body::Body, decode_errors_are_callers: bool) -> Self {
        ProxyBody::Grpc {
            inner,
            decode_errors_are_callers,
        }
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
            ProxyBodyProj::Grpc {
                inner,
                decode_errors_are_callers,
            } => {
                let polled = inner.poll_frame(cx).map_err(BoxError::from);
                match polled {
                    Poll::Ready(Some(Ok(frame))) if *decode_errors_are_callers && frame.is_trailers() => {
                        let trailers = frame.into_trailers().unwrap_or_default();
                        let trailers = decode_error_is_callers(trailers);
                        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
                    }
                    other => other,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, first, .. } => first.is_none() && inner.is_end_stream(),
            ProxyBody::Full { inner } => inner.is_end_stream(),
            ProxyBody::Grpc { inner, .. } => inner.is_end_stream(),
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
            ProxyBody::Grpc { inner, .. } => inner.size_hint(),
        }
    }
}

/// Health, reflection and ext_authz run on tonic's own codec, which ends a call whose message
/// it cannot decode with INTERNAL; none of them ends a call INTERNAL for another reason, so for
/// them that status (in a trailers-only head, or in trailers) is the caller's bad input:
/// INVALID_ARGUMENT, as SPEC §2.2 asks.
pub fn decode_error_is_callers(mut fields: http::HeaderMap) -> http::HeaderMap {
    if fields.get("grpc-status").is_some_and(|s| s == "13") {
        fields.insert("grpc-status", http::HeaderValue::from_static("3"));
        fields.insert(
            "grpc-message",
            http::HeaderValue::from_static("the message cannot be decoded"),
        );
    }
    fields
}
