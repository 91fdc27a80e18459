//! A request's id (`X-Request-Id`): a trusted proxy's if it is sane, else a fresh one.

use http::HeaderValue;

/// A request's id: a trusted proxy's `X-Request-Id` if it is sane, else a fresh one of 32 hex
/// digits, a random per-thread prefix and a counter (unique, cheap, and not a secret). Kept
/// inline: no allocation per request.
pub(crate) struct RequestId {
    bytes: [u8; 128],
    len: u8,
}

impl RequestId {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Visible ASCII by construction.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }

    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(self.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static("-"))
    }
}

pub(crate) fn request_id(theirs: Option<&[u8]>, trusted: bool) -> RequestId {
    let mut id = RequestId {
        bytes: [0; 128],
        len: 32,
    };
    if trusted
        && let Some(v) = theirs
        && !v.is_empty()
        && v.len() <= 128
        && v.iter().all(|b| b.is_ascii_graphic())
    {
        id.bytes[..v.len()].copy_from_slice(v);
        id.len = v.len() as u8;
        return id;
    }
    thread_local! {
        static NEXT: std::cell::Cell<(u64, u64)> = std::cell::Cell::new((rand::random(), 0));
    }
    let (prefix, counter) = NEXT.with(|n| {
        let (prefix, counter) = n.get();
        n.set((prefix, counter.wrapping_add(1)));
        (prefix, counter)
    });
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, word) in [prefix, counter].into_iter().enumerate() {
        for j in 0..16 {
            id.bytes[i * 16 + j] = HEX[((word >> (60 - 4 * j)) & 15) as usize];
        }
    }
    id
}
