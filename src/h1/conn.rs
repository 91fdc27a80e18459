//! One fast-path connection's state shared by its phases: the buffers all its requests reuse,
//! reading what the client sent, and what follows a request (`Step`). Below both `h1` (the
//! request loop) and `h1::forward` (the upstream exchange), so neither imports the other's.

use crate::watch::ConnWatch;
use tokio::io::AsyncRead;

/// One connection's buffers, reused by all its requests.
pub(super) struct Buffers {
    /// Bytes from the client; `input[start..]` is not consumed yet.
    pub(super) input: Vec<u8>,
    pub(super) start: usize,
    /// Body bytes of the current request not consumed yet.
    pub(super) body_left: u64,
    /// The head being written: the upstream's request head, then the client's response.
    pub(super) out: Vec<u8>,
    /// Bytes from the upstream.
    pub(super) upstream: Vec<u8>,
}

impl Buffers {
    pub(super) fn pending(&self) -> &[u8] {
        &self.input[self.start..]
    }

    /// Room to read into: consumed bytes are dropped, and at least 4 KiB is free.
    pub(super) fn make_room(&mut self) {
        if self.start == self.input.len() {
            self.input.clear();
            self.start = 0;
        } else if self.start > 0 && self.input.capacity() - self.input.len() < 4096 {
            self.input.drain(..self.start);
            self.start = 0;
        }
        self.input.reserve(4096);
    }
}

/// What to do after a request.
pub(super) enum Step {
    Next,
    Close,
}

/// Reads what the client sent into `buf`'s spare room; `Ok(0)` at EOF. With `watch`, gives up
/// (as an error) when the connection is asked to close.
pub(super) async fn read_client<IO>(
    io: &mut IO,
    buf: &mut Vec<u8>,
    watch: Option<&ConnWatch>,
) -> std::io::Result<usize>
where
    IO: AsyncRead + Unpin,
{
    std::future::poll_fn(|cx| {
        if let Some(w) = watch
            && w.should_close(cx.waker())
        {
            return std::task::Poll::Ready(Err(std::io::ErrorKind::ConnectionAborted.into()));
        }
        tokio_util::io::poll_read_buf(std::pin::Pin::new(&mut *io), cx, buf)
    })
    .await
}
