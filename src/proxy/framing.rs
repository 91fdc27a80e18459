//! The protocol rules both HTTP/1.1 paths apply (SPEC §1.9–1.11), each written once over raw
//! header values: the fast path (`h1`) reads them from httparse's lines, the general path from
//! hyper's `HeaderMap`. What they decide:
//! - **Host**: an HTTP/1.1 request carries exactly one, and it is a valid authority (else 400).
//! - **Expect**: `100-continue` is the gateway's to answer, after authorization; any other
//!   expectation is 417; `Expect` itself is never forwarded.
//! - **Upgrade**: tunnelled only for a protocol the route lists in `upgrades`; any other
//!   `Upgrade` (h2c above all) is removed and the request served as an ordinary one.
//! - **Transfer-Encoding** on requests: `chunked` alone (else 501).
//! - **Response framing** (RFC 9112 §6.3): one `Content-Length` at most reaches the client,
//!   `Transfer-Encoding` wins over `Content-Length`, and anything ambiguous is a 502.

/// A header value as text, by `HeaderValue::to_str`'s rule: visible ASCII, spaces and tabs only.
pub fn header_text(value: &[u8]) -> Option<&str> {
    if is_text(value) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Visible ASCII, spaces and tabs only; without early exit, so it runs as vector code.
pub fn is_text(value: &[u8]) -> bool {
    value
        .iter()
        .fold(true, |ok, &b| ok & ((32..127).contains(&b) | (b == b'\t')))
}

/// RFC 9110 `tchar`: the bytes of a token.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The comma-separated items of header values, trimmed, empty ones skipped; a value that is
/// not text yields one item that matches nothing (`"\0"`).
fn items<'a>(values: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = &'a str> {
    values
        .flat_map(|v| header_text(v).unwrap_or("\0").split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Bytes of a host name (RFC 3986 reg-name: unreserved, sub-delims, `%`).
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            );
        b += 1;
    }
    table
};

/// Whether `value` is a `Host` the gateway routes by (RFC 3986 `host [":" port]`, no userinfo):
/// a bracketed IP literal or a name of unreserved, sub-delim and %-encoded bytes, and a port
/// that fits 16 bits. Checked byte by byte: it runs on every request.
pub fn valid_host(value: &[u8]) -> Option<&str> {
    let (host, port) = match value.first()? {
        b'[' => {
            let close = value.iter().position(|&b| b == b']')?;
            let literal = &value[1..close];
            if literal.is_empty() || !literal.iter().all(|b| b.is_ascii_hexdigit() || b":.".contains(b)) {
                return None;
            }
            match &value[close + 1..] {
                [] => (&value[..=close], None),
                [b':', port @ ..] => (&value[..=close], Some(port)),
                _ => return None,
            }
        }
        _ => {
            let (host, port) = match value.iter().rposition(|&b| b == b':') {
                Some(c) => (&value[..c], Some(&value[c + 1..])),
                None => (value, None),
            };
            if !host.iter().all(|&b| REG_NAME[b as usize]) {
                return None;
            }
            (host, port)
        }
    };
    if host.is_empty() {
        return None;
    }
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || content_length(port).is_none_or(|p| p > 65535))
    {
        return None;
    }
    // Only ASCII got this far.
    std::str::from_utf8(value).ok()
}

/// The one valid `Host` of a request with these `Host` values, or why it has none.
pub fn single_host<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Result<&'a str, &'static str> {
    let first = values.next().ok_or("an HTTP/1.1 request needs a Host header")?;
    if values.next().is_some() {
        return Err("a request may carry one Host header only");
    }
    valid_host(first).ok_or("the Host header is not a valid host name and port")
}

/// What a request's `Expect` asks of the gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expectation {
    None,
    /// `100-continue`: answered by the gateway once the request is authorized.
    Continue,
    /// Anything else: 417.
    Unsupported,
}

/// The expectation of these `Expect` values: one `100-continue` (hyper's server sends its
/// `100 Continue` for that alone), or nothing.
pub fn expectation<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Expectation {
    match (values.next(), values.next()) {
        (None, _) => Expectation::None,
        (Some(v), None) if v.trim_ascii().eq_ignore_ascii_case(b"100-continue") => Expectation::Continue,
        _ => Expectation::Unsupported,
    }
}

/// Whether a request with these `Connection` and `Upgrade` values is to be tunnelled: it asks
/// for an upgrade (`Connection: upgrade`) to exactly one protocol, and the route lists it.
/// Anything else is served as an ordinary request, its `Upgrade` removed.
pub fn tunnel<'a, 'b>(
    connection: impl Iterator<Item = &'a [u8]>,
    upgrade: impl Iterator<Item = &'b [u8]>,
    allowed: &[impl AsRef<str>],
) -> Option<&'b str> {
    if !items(connection).any(|t| t.eq_ignore_ascii_case("upgrade")) {
        return None;
    }
    let mut offered = items(upgrade);
    let protocol = offered.next()?;
    if offered.next().is_some() {
        return None;
    }
    allowed
        .iter()
        .map(AsRef::as_ref)
        .any(|a| protocol_name(a).eq_ignore_ascii_case(protocol_name(protocol)) && version_ok(a, protocol))
        .then_some(protocol)
}

fn protocol_name(p: &str) -> &str {
    p.split_once('/').map_or(p, |(name, _)| name)
}

/// An allowed `name/version` admits that version only; a bare name admits any.
fn version_ok(allowed: &str, offered: &str) -> bool {
    match allowed.split_once('/') {
        Some(_) => allowed.eq_ignore_ascii_case(offered),
        None => true,
    }
}

/// Whether an upstream's 101 switched to the protocol the request was tunnelled for.
pub fn switched_to(requested: &str, upgrade: Option<&[u8]>) -> bool {
    upgrade
        .and_then(header_text)
        .is_some_and(|u| protocol_name(u.trim()).eq_ignore_ascii_case(protocol_name(requested)))
}

/// Whether a request's `Transfer-Encoding` values are ones the gateway forwards: `chunked`
/// alone (a coding under it would reach the upstream undeclared).
pub fn request_codings_ok<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    let mut it = items(values);
    matches!((it.next(), it.next()), (Some(c), None) if c.eq_ignore_ascii_case("chunked"))
}

/// How a response body ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body: a HEAD request, 1xx, 204 or 304.
    Empty,
    Length(u64),
    Chunked,
    /// Neither length nor chunks: the body ends when the upstream closes.
    UntilClose,
}

/// Why an upstream's response cannot be forwarded (502); for logs, never shown to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadResponse(pub &'static str);

/// A response's framing headers, read one at a time, then settled by RFC 9112 §6.3.
#[derive(Default)]
pub struct ResponseFraming {
    length: Option<u64>,
    lengths: usize,
    bad_length: bool,
    chunked: bool,
    bad_coding: bool,
}

impl ResponseFraming {
    /// A `Content-Length` value; `true` for the first one (the one to keep, for a HEAD or 304).
    pub fn content_length(&mut self, value: &[u8]) -> bool {
        self.lengths += 1;
        match response_length(value) {
            Some(n) if self.length.is_none() => {
                self.length = Some(n);
                true
            }
            Some(n) if self.length == Some(n) => false,
            _ => {
                self.bad_length = true;
                false
            }
        }
    }

    /// A `Transfer-Encoding` value: `chunked` alone, once, in HTTP/1.1.
    pub fn transfer_encoding(&mut self, value: &[u8], http11: bool) {
        let alone = header_text(value).is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        self.bad_coding |= self.chunked || !http11 || !alone;
        self.chunked = true;
    }

    /// The framing of a response with this status to a request (`head_request`: HEAD).
    pub fn settle(&self, status: u16, head_request: bool) -> Result<Framing, BadResponse> {
        // HEAD, 204 and 304 answers have no body whatever their framing headers say.
        if head_request || status == 204 || status == 304 || status < 200 {
            Ok(Framing::Empty)
        } else if self.bad_coding {
            Err(BadResponse("a transfer coding other than chunked"))
        } else if self.chunked {
            Ok(Framing::Chunked)
        } else if self.bad_length {
            Err(BadResponse("bad or conflicting Content-Length"))
        } else if let Some(n) = self.length {
            Ok(Framing::Length(n))
        } else {
            Ok(Framing::UntilClose)
        }
    }

    /// The one `Content-Length` the client is told, for a response settled as `framing`: its
    /// body's, or (a HEAD or 304 answer) the representation's, when the upstream gave one.
    pub fn client_length(&self, framing: Framing, status: u16) -> Option<u64> {
        match framing {
            Framing::Length(n) => Some(n),
            Framing::Empty if status != 204 => self.length.filter(|_| !self.bad_length),
            _ => None,
        }
    }

    /// Whether the connection can carry another response after this one (both framing
    /// headers, or bad ones, make it untrustworthy).
    pub fn trustworthy(&self) -> bool {
        !(self.chunked && self.lengths > 0 || self.bad_length || self.bad_coding)
    }
}

/// The most header bytes an upstream response may carry (each line counted as `name: value`
/// and its line end), on both paths: the rule is over the parsed fields, so both paths count
/// alike however the bytes arrived. Each reads at most `MAX_RESPONSE_READ` of head.
pub const MAX_RESPONSE_FIELDS: usize = 64 * 1024;
/// The most bytes read of a response head before it is refused.
pub const MAX_RESPONSE_READ: usize = 2 * MAX_RESPONSE_FIELDS;

/// Whether these response header lines fit `MAX_RESPONSE_FIELDS`.
pub fn fields_fit(lines: impl Iterator<Item = (usize, usize)>) -> bool {
    lines.map(|(name, value)| name + value + 4).sum::<usize>() <= MAX_RESPONSE_FIELDS
}

/// Settles an upstream response's framing in its `HeaderMap` (the general path; the fast path
/// feeds `ResponseFraming` from its raw lines): at most one `Content-Length` is left, the
/// canonical one, and none beside chunks. `Ok(false)`: the connection must not be reused.
pub fn frame_response(
    headers: &mut http::HeaderMap,
    status: u16,
    http11: bool,
    head_request: bool,
) -> Result<bool, BadResponse> {
    use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    if !fields_fit(headers.iter().map(|(n, v)| (n.as_str().len(), v.len()))) {
        return Err(BadResponse("response header fields over 64 KiB"));
    }
    let mut f = ResponseFraming::default();
    for v in headers.get_all(CONTENT_LENGTH) {
        f.content_length(v.as_bytes());
    }
    for v in headers.get_all(TRANSFER_ENCODING) {
        f.transfer_encoding(v.as_bytes(), http11);
    }
    let framing = f.settle(status, head_request)?;
    headers.remove(CONTENT_LENGTH);
    if let Some(n) = f.client_length(framing, status) {
        headers.insert(CONTENT_LENGTH, http::HeaderValue::from(n));
    }
    Ok(f.trustworthy() && http11)
}

/// A response's `Content-Length`: one number, or a list of the same number (RFC 9110 §8.6).
fn response_length(value: &[u8]) -> Option<u64> {
    let mut items = value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
    let first = content_length(items.next()?)?;
    items.all(|v| content_length(v) == Some(first)).then_some(first)
}

/// One `Content-Length` value: digits only (no sign, no list), a number that fits 64 bits
/// (hyper's reading, leading zeros and all).
pub fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value
        .iter()
        .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(v: &str) -> std::iter::Once<&[u8]> {
        std::iter::once(v.as_bytes())
    }

    #[test]
    fn hosts() {
        for ok in [
            "localhost",
            "a.example:8080",
            "[::1]:80",
            "[::1]",
            "127.0.0.1",
            "x-y.z",
            "h:65535",
        ] {
            assert_eq!(valid_host(ok.as_bytes()), Some(ok), "{ok}");
        }
        for bad in [
            "", "a b", "a@b", "a/b", "h:99999", "h:x", "h:", "é", "a\0", "::1", "h:1:2", "[]", "[::1]x",
            "[g]", ":80", "a?b", "a#b", "a\\b", "h:123456",
        ] {
            assert_eq!(valid_host(bad.as_bytes()), None, "{bad:?}");
        }
        assert!(single_host(std::iter::empty()).is_err());
        assert!(single_host([&b"a"[..], b"a"].into_iter()).is_err());
    }

    #[test]
    fn expectations() {
        assert_eq!(expectation(std::iter::empty()), Expectation::None);
        assert_eq!(expectation(one("100-Continue")), Expectation::Continue);
        assert_eq!(
            expectation([&b"100-continue"[..], b"100-continue"].into_iter()),
            Expectation::Unsupported
        );
        for bad in [
            "",
            "foo",
            "100-continue, foo",
            "100-continue, 100-continue",
            "100-continue\u{1}",
        ] {
            assert_eq!(expectation(one(bad)), Expectation::Unsupported, "{bad:?}");
        }
    }

    #[test]
    fn only_listed_protocols_tunnel() {
        let ws = vec!["websocket".to_string()];
        assert_eq!(
            tunnel(one("keep-alive, Upgrade"), one("WebSocket"), &ws),
            Some("WebSocket")
        );
        assert_eq!(tunnel(one("upgrade"), one("h2c"), &ws), None);
        assert_eq!(tunnel(one("upgrade"), one("websocket, h2c"), &ws), None);
        assert_eq!(tunnel(one("keep-alive"), one("websocket"), &ws), None);
        assert_eq!(tunnel(one("upgrade"), one("websocket"), &[] as &[&str]), None);
        let versioned = vec!["foo/2".to_string()];
        assert_eq!(tunnel(one("upgrade"), one("foo/2"), &versioned), Some("foo/2"));
        assert_eq!(tunnel(one("upgrade"), one("foo/3"), &versioned), None);
        assert!(switched_to("websocket", Some(b"WebSocket")));
        assert!(!switched_to("websocket", Some(b"h2c")) && !switched_to("websocket", None));
    }

    #[test]
    fn request_codings() {
        assert!(request_codings_ok(one("chunked")) && request_codings_ok(one(" Chunked ")));
        for bad in ["gzip, chunked", "chunked, chunked", "identity", ""] {
            assert!(!request_codings_ok(one(bad)), "{bad}");
        }
        assert!(!request_codings_ok([&b"chunked"[..], b"chunked"].into_iter()));
    }

    #[test]
    fn response_framing() {
        let settle = |lines: &[(&str, &str)], http11: bool, status: u16| {
            let mut f = ResponseFraming::default();
            for (n, v) in lines {
                match *n {
                    "cl" => {
                        f.content_length(v.as_bytes());
                    }
                    _ => f.transfer_encoding(v.as_bytes(), http11),
                }
            }
            (f.settle(status, false), f.trustworthy())
        };
        assert_eq!(
            settle(&[("cl", "5, 5"), ("cl", "5")], true, 200),
            (Ok(Framing::Length(5)), true)
        );
        assert_eq!(
            settle(&[("te", "chunked"), ("cl", "5")], true, 200),
            (Ok(Framing::Chunked), false)
        );
        assert!(settle(&[("cl", "5"), ("cl", "6")], true, 200).0.is_err());
        assert!(settle(&[("te", "gzip, chunked")], true, 200).0.is_err());
        assert!(settle(&[("te", "chunked")], false, 200).0.is_err());
        assert_eq!(settle(&[("te", "gzip")], true, 204).0, Ok(Framing::Empty));
        assert_eq!(settle(&[], true, 200).0, Ok(Framing::UntilClose));
    }
}
