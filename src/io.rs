//! `ActivityIo`: a socket wrapper that counts reads and writes, so a connection's idle timer can
//! tell "nothing happened since the last tick" without a clock read per I/O, says whether a
//! write is waiting for the client to read, and fails every read and write once the supervisor
//! has broken the connection off (`ConnWatch::abort`).

use crate::watch::ConnWatch;
use pin_project_lite::pin_project;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project! {
    pub struct ActivityIo<T> {
        #[pin]
        inner: T,
        watch: Arc<ConnWatch>,
    }
}

impl<T> ActivityIo<T> {
    pub fn new(inner: T, watch: Arc<ConnWatch>) -> Self {
        ActivityIo { inner, watch }
    }
}

fn broken_off() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client read nothing for idle_timeout",
    )
}

/// Records whether a write is waiting for room; a waiting one can be woken to fail.
fn note_write<T>(watch: &ConnWatch, cx: &Context<'_>, res: &Poll<io::Result<T>>) {
    let blocked = res.is_pending();
    if blocked {
        watch.write_waker.register(cx.waker());
    }
    if watch.write_blocked.load(Ordering::Relaxed) != blocked {
        watch.write_blocked.store(blocked, Ordering::Relaxed);
    }
}

/// One writer (the connection's task) bumps the counter: a plain load and store suffice.
fn bump(counter: &AtomicU64) {
    counter.store(counter.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

impl<T: AsyncRead> AsyncRead for ActivityIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.watch.aborted() {
            return Poll::Ready(Err(broken_off()));
        }
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if buf.filled().len() != before {
            bump(&this.watch.activity);
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for ActivityIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.watch.aborted() {
            return Poll::Ready(Err(broken_off()));
        }
        let res = this.inner.poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            bump(&this.watch.activity);
        }
        note_write(this.watch, cx, &res);
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.watch.aborted() {
            return Poll::Ready(Err(broken_off()));
        }
        let res = this.inner.poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            bump(&this.watch.activity);
        }
        note_write(this.watch, cx, &res);
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        if this.watch.aborted() {
            return Poll::Ready(Err(broken_off()));
        }
        let res = this.inner.poll_flush(cx);
        note_write(this.watch, cx, &res);
        res
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
