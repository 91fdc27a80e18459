//! The fast path's response side: the upstream's response head, read with httparse, becomes
//! the client's. Framing is settled strictly (RFC 9112 §6.3) and a response whose end is
//! ambiguous is a 502, never forwarded; hop-by-hop headers and those named in `Connection` are
//! dropped as `proxy::headers::sanitize_response` drops them; the gateway adds `X-Request-Id`
//! and, when the upstream sent none, `Date` (as hyper's server does on the general path).

use crate::phase::sanitize::is_hop_by_hop;
use crate::proxy::framing::ResponseFraming;
pub use crate::proxy::framing::{BadResponse, Framing};

/// Response headers the fast path reads; more is a 502 (hyper's client allows 100).
pub const MAX_HEADERS: usize = 100;

/// A final response head, written for the client.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub framing: Framing,
    /// The upstream connection may carry another request once this body has been read.
    pub reusable: bool,
    /// The client's connection closes after this response.
    pub close: bool,
    /// Bytes of the upstream's buffer this head took.
    pub len: usize,
    /// When it was read.
    pub at: std::time::Instant,
}

pub enum Parsed {
    /// More bytes are needed.
    Partial,
    /// A 1xx interim response of this many bytes: dropped (the fast path never sends
    /// `Expect`, and hints are optional), the final response follows.
    Interim(usize),
    Final(Head),
}

/// What the client's response head carries besides the upstream's headers.
pub struct Extra<'a> {
    pub request_id: &'a [u8],
    /// The request was HEAD: no body, whatever the headers say.
    pub head_request: bool,
    /// Close the client's connection after this response (it asked, or shutdown began).
    pub close: bool,
    /// About now (for `Date`).
    pub now: std::time::Instant,
}

/// Parses the response head at the start of `buf`; a final one is written into `out`.
pub fn parse(buf: &[u8], out: &mut Vec<u8>, extra: &Extra<'_>) -> Result<Parsed, BadResponse> {
    // Uninitialized: 100 empty headers would be 3 KiB written per response for nothing.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(BadResponse("too many response headers")),
        Err(_) => return Err(BadResponse("malformed response head")),
    };
    let status = resp.code.ok_or(BadResponse("no status"))?;
    if !crate::proxy::framing::fields_fit(resp.headers.iter().map(|h| (h.name.len(), h.value.len()))) {
        return Err(BadResponse("response header fields over 64 KiB"));
    }
    match status {
        0..=99 => return Err(BadResponse("status below 100")),
        101 => return Err(BadResponse("101 without an upgrade request")),
        100..=199 => return Ok(Parsed::Interim(len)),
        _ => {}
    }
    let http11 = resp.version == Some(1);
    let mut rule = ResponseFraming::default();
    let mut upstream_close = !http11;
    let mut has_date = false;
    let mut nominated = false;
    // One pass decides whether each header reaches the client (as `proxy::headers::
    // sanitize_response` and `framing::frame_response` do on hyper's path); the writing pass
    // below reads the decisions back.
    let mut keep = [true; MAX_HEADERS];
    for (h, kept) in resp.headers.iter().zip(keep.iter_mut()) {
        let name = h.name;
        *kept = match name.len() {
            14 if name.eq_ignore_ascii_case("content-length") => {
                rule.content_length(h.value);
                false
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => {
                rule.transfer_encoding(h.value, http11);
                false
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                let text = crate::auth::header_text(h.value).unwrap_or("");
                for token in text.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        upstream_close = true;
                    } else if !token.is_empty()
                        && !token.eq_ignore_ascii_case("keep-alive")
                        && !is_hop_by_hop(token)
                    {
                        nominated = true;
                    }
                }
                false
            }
            4 if name.eq_ignore_ascii_case("date") => {
                has_date = true;
                true
            }
            12 if name.eq_ignore_ascii_case("x-request-id") => false,
            _ if is_hop_by_hop(name) => false,
            _ => true,
        };
    }
    let trustworthy = rule.trustworthy();
    let framing = rule.settle(status, extra.head_request)?;
    // Both Transfer-Encoding and Content-Length: chunked wins, and the connection is not trusted
    // with another message (RFC 9112 §6.3). A body that ends when the upstream closes is
    // re-framed as chunks for the client, whose connection stays open.
    let reusable = trustworthy && !upstream_close && framing != Framing::UntilClose;
    let close = extra.close;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    let reason = resp.reason.filter(|r| !r.is_empty()).or_else(|| {
        http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
    });
    out.extend_from_slice(reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let named = |name: &str| -> bool {
        nominated
            && resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("connection"))
                .filter_map(|h| crate::auth::header_text(h.value))
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(name))
    };
    for (h, kept) in resp.headers.iter().zip(keep.iter()) {
        if *kept && !named(h.name) {
            line(out, h.name.as_bytes(), h.value);
        }
    }
    if let Some(n) = rule.client_length(framing, status) {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if matches!(framing, Framing::Chunked | Framing::UntilClose) {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    line(out, b"x-request-id", extra.request_id);
    if !has_date {
        date(out, extra.now);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Parsed::Final(Head {
        status,
        framing,
        reusable,
        close,
        len,
        at: extra.now,
    }))
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a `Date` line for about `now`. The text is made once a second per thread: the wall
/// clock is read when the second it was made for is over, not per response.
pub(super) fn date(out: &mut Vec<u8>, now: std::time::Instant) {
    struct Cached {
        until: Option<std::time::Instant>,
        text: String,
    }
    thread_local! {
        static CACHE: std::cell::RefCell<Cached> =
            const { std::cell::RefCell::new(Cached { until: None, text: String::new() }) };
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.until.is_none_or(|until| now >= until) {
            let wall = std::time::SystemTime::now();
            let into_second = wall
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let left = std::time::Duration::from_nanos(1_000_000_000 - u64::from(into_second));
            *c = Cached {
                until: Some(now + left),
                text: httpdate::fmt_http_date(wall),
            };
        }
        line(out, b"date", c.text.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str, head_request: bool, close: bool) -> Result<(Head, String), BadResponse> {
        let mut out = Vec::new();
        let extra = Extra {
            request_id: b"rid",
            head_request,
            close,
            now: std::time::Instant::now(),
        };
        match parse(raw.as_bytes(), &mut out, &extra)? {
            Parsed::Final(h) => Ok((h, String::from_utf8(out).unwrap())),
            Parsed::Partial => panic!("partial: {raw}"),
            Parsed::Interim(n) => panic!("interim of {n}: {raw}"),
        }
    }

    #[test]
    fn framing_is_settled_strictly() {
        let ok = |raw: &str| head(raw, false, false).unwrap().0;
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Length(5), true));
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Chunked, true));
        let h = ok("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Chunked, false));
        let h = ok("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(
            (h.framing, h.reusable, h.close),
            (Framing::UntilClose, false, false)
        );
        let h = ok("HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Length(3), true));
        let h = ok("HTTP/1.0 204 No Content\r\nTransfer-Encoding: chunked\r\nContent-Length: x\r\n\r\n");
        assert_eq!(
            (h.framing, h.reusable),
            (Framing::Empty, false),
            "no body: framing unread"
        );
        let h = ok("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n");
        assert_eq!((h.framing, h.reusable), (Framing::Length(1), false));
        let h = ok("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n");
        assert!(
            !h.reusable && !h.close,
            "the upstream's close is not the client's"
        );
        assert_eq!(ok("HTTP/1.1 204 No Content\r\n\r\n").framing, Framing::Empty);
        assert_eq!(ok("HTTP/1.1 304 Not Modified\r\n\r\n").framing, Framing::Empty);
        let bad = [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        ];
        for raw in bad {
            assert!(head(raw, false, false).is_err(), "{raw}");
        }
    }

    #[test]
    fn head_answers_keep_their_length_and_have_no_body() {
        let (h, out) = head("HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", true, false).unwrap();
        assert_eq!(h.framing, Framing::Empty);
        assert!(out.contains("content-length: 42\r\n"), "{out}");
    }

    #[test]
    fn hop_by_hop_and_nominated_headers_go_and_the_gateway_adds_its_own() {
        let (_, out) = head(
            "HTTP/1.1 200 Fine\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\n\
             X-Request-Id: upstreams\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nX-Ok: 1\r\nContent-Length: 2\r\n\r\n",
            false,
            true,
        )
        .unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 200 Fine\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nX-Ok: 1\r\ncontent-length: 2\r\n\
             x-request-id: rid\r\nconnection: close\r\n\r\n"
        );
        let (_, out) = head("HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", false, false).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 404 Not Found\r\n") && out.contains("\r\ndate: "),
            "{out}"
        );
    }

    #[test]
    fn mangled_heads_never_panic() {
        let base = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close, x\r\n\r\n";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut out = Vec::new();
        for _ in 0..5000 {
            let mut head = base.to_vec();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x % head.len() as u64) as usize;
                head[at] = b"0123456789:, \r\n\x00\xffaZ"[(x >> 32) as usize % 19];
            }
            let extra = Extra {
                request_id: b"r",
                head_request: x.is_multiple_of(2),
                close: false,
                now: std::time::Instant::now(),
            };
            if let Ok(Parsed::Final(h)) = parse(&head, &mut out, &extra) {
                assert!(h.len <= head.len());
            }
        }
    }

    #[test]
    fn interim_answers_are_skipped() {
        let raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\n";
        let extra = Extra {
            request_id: b"r",
            head_request: false,
            close: false,
            now: std::time::Instant::now(),
        };
        let mut out = Vec::new();
        let Ok(Parsed::Interim(n)) = parse(raw, &mut out, &extra) else {
            panic!("not interim");
        };
        assert!(matches!(parse(&raw[n..], &mut out, &extra), Ok(Parsed::Partial)));
    }
}
