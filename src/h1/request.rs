//! The fast path's request side: one pass over the head httparse parsed decides whether the
//! fast path may forward this request (else the connection goes to hyper, see `Handover`) and
//! notes what the rest of the request needs; `write_head` then writes the head the upstream
//! receives. The decisions are the phases' (`phase::sanitize::fate` for every line,
//! `phase::inject::Plan` for what is added), applied to raw header lines: the gateway's own
//! headers are written after the client's, so nothing the client sent can stand in for them.

use crate::phase::inject::{Plan, forwarded_for_chain};
use crate::phase::sanitize::{Fate, fate, is_forwarding_header, nominates};
use crate::proxy::framing::{self, Expectation, content_length};
use http::HeaderName;

/// Headers per request the fast path reads; more goes to hyper (which allows 100).
pub const MAX_HEADERS: usize = 64;
/// `Connection` options naming other headers; more goes to hyper.
const MAX_NOMINATED: usize = 8;

/// Why a request (and the rest of its connection) is left to hyper and the general pipeline.
/// Each is rare or answered with an error there. (Refusals by a route's policy are not handed
/// over: the fast path answers them itself, as the pipeline does.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handover {
    /// httparse refused the head (hyper answers 400, or 431 for `HeadTooLarge`).
    Malformed,
    TooManyHeaders,
    HeadTooLarge,
    /// HTTP/1.0 (its keep-alive rules differ) or an h2c preface.
    NotHttp11,
    /// Absolute-form, authority-form or `*` targets, or bytes outside the usual URI set.
    Target,
    /// No `Host`, more than one, or one that is not a host name and port (400).
    Host,
    /// `Transfer-Encoding`, several or malformed `Content-Length`s, or a body over the limit.
    Framing,
    /// An upgrade to a protocol the route tunnels: the general path tunnels it.
    Upgrade,
    /// An expectation other than one `100-continue` (417).
    Expect,
    /// `CONNECT` (405).
    Connect,
    /// Many `Connection` options, or unreadable ones.
    Connection,
    /// The gateway's own endpoints (session API, JWKS).
    Endpoint,
    /// 400 for the path or 404 for the route: the general path answers.
    NotRouted,
}

impl Handover {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Handover::Malformed => "malformed",
            Handover::TooManyHeaders => "too_many_headers",
            Handover::HeadTooLarge => "head_too_large",
            Handover::NotHttp11 => "not_http11",
            Handover::Target => "target",
            Handover::Host => "host",
            Handover::Framing => "framing",
            Handover::Upgrade => "upgrade",
            Handover::Expect => "expect",
            Handover::Connect => "connect",
            Handover::Connection => "connection",
            Handover::Endpoint => "endpoint",
            Handover::NotRouted => "not_routed",
        }
    }
}

/// A request the fast path may forward, as far as its head alone tells.
pub struct Inspected<'b> {
    pub method: &'b str,
    /// The raw path (before `?`) and query.
    pub path: &'b str,
    pub query: Option<&'b str>,
    pub host: &'b str,
    pub content_length: Option<u64>,
    /// `Connection: close`: answer, then close.
    pub close: bool,
    pub authorization: Option<&'b [u8]>,
    pub has_cookie: bool,
    /// A trusted proxy's `X-Request-Id` (checked for sanity by the caller).
    pub request_id: Option<&'b [u8]>,
    /// The first `Accept` (browser navigations get the login redirect).
    pub accept: Option<&'b [u8]>,
    /// An `Upgrade` was offered: the route decides whether it is tunnelled (else dropped).
    pub upgrade: bool,
    /// `Expect: 100-continue`: the gateway answers it once the request is authorized.
    pub expect_continue: bool,
    /// A trusted proxy's `X-Forwarded-Proto` / `-Host`, kept as they are.
    trusted_proto: bool,
    trusted_host: bool,
    /// Each line's fate (`Drop` also for the lines `Connection` names).
    fates: [Fate; MAX_HEADERS],
}

impl Inspected<'_> {
    /// The values of the request's `Cookie` headers (`req`: the head this inspected).
    pub fn cookies<'r>(&'r self, req: &'r httparse::Request<'_, '_>) -> impl Iterator<Item = &'r [u8]> + 'r {
        req.headers
            .iter()
            .zip(self.fates.iter())
            .filter(|(_, fate)| **fate == Fate::Cookie)
            .map(|(h, _)| h.value)
    }
}

/// Inspects a parsed request head from a peer (`trusted`: a configured trusted proxy).
pub fn inspect<'b>(
    req: &httparse::Request<'_, 'b>,
    identity: &[HeaderName],
    trusted: bool,
) -> Result<Inspected<'b>, Handover> {
    if req.version != Some(1) {
        return Err(Handover::NotHttp11);
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(Handover::Malformed);
    };
    // CONNECT is refused (405) by the general path.
    if method == "CONNECT" {
        return Err(Handover::Connect);
    }
    if !target.starts_with('/') || !target.bytes().all(plain_uri_byte) {
        return Err(Handover::Target);
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let mut out = Inspected {
        method,
        path,
        query,
        host: "",
        content_length: None,
        close: false,
        authorization: None,
        has_cookie: false,
        request_id: None,
        accept: None,
        upgrade: false,
        expect_continue: false,
        trusted_proto: false,
        trusted_host: false,
        fates: [Fate::Keep; MAX_HEADERS],
    };
    let (mut hosts, mut host, mut expects) = (0, &b""[..], 0);
    let mut nominated: [&str; MAX_NOMINATED] = [""; MAX_NOMINATED];
    let mut n_nominated = 0;
    for (i, h) in req.headers.iter().enumerate() {
        let line = fate(h.name, identity, trusted);
        match line {
            Fate::Host => {
                hosts += 1;
                host = h.value;
            }
            Fate::ContentLength => {
                if out.content_length.is_some() {
                    return Err(Handover::Framing);
                }
                out.content_length = Some(content_length(h.value).ok_or(Handover::Framing)?);
            }
            Fate::TransferEncoding => return Err(Handover::Framing),
            Fate::Upgrade => out.upgrade = true,
            Fate::Expect => expects += 1,
            Fate::Connection => {
                let text = crate::auth::header_text(h.value).ok_or(Handover::Connection)?;
                for token in text.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        out.close = true;
                    } else if is_read_here(token, trusted) {
                        // The general path strips it before reading credentials and checks.
                        return Err(Handover::Connection);
                    } else if nominates(token) {
                        *nominated.get_mut(n_nominated).ok_or(Handover::Connection)? = token;
                        n_nominated += 1;
                    }
                }
            }
            Fate::Authorization => {
                out.authorization.get_or_insert(h.value);
            }
            Fate::Cookie => out.has_cookie = true,
            Fate::Accept => {
                out.accept.get_or_insert(h.value);
            }
            Fate::RequestId => {
                out.request_id.get_or_insert(h.value);
            }
            Fate::ForwardedProto => out.trusted_proto = true,
            Fate::ForwardedHost => out.trusted_host = true,
            Fate::Keep | Fate::Drop | Fate::ForwardedFor => {}
        }
        *out.fates.get_mut(i).ok_or(Handover::TooManyHeaders)? = line;
    }
    // `framing::single_host`'s rule, from the count and the one value.
    if hosts != 1 {
        return Err(Handover::Host);
    }
    out.host = framing::valid_host(host).ok_or(Handover::Host)?;
    if expects > 0 {
        let values = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("expect"));
        match framing::expectation(values.map(|h| h.value)) {
            Expectation::Continue => out.expect_continue = true,
            _ => return Err(Handover::Expect),
        }
    }
    if n_nominated > 0 {
        let named = &nominated[..n_nominated];
        for (h, fate) in req.headers.iter().zip(out.fates.iter_mut()) {
            if !fate.removed() && named.iter().any(|t| t.eq_ignore_ascii_case(h.name)) {
                *fate = Fate::Drop;
            }
        }
    }
    Ok(out)
}

/// Headers `inspect` reads for its decisions (credentials, cross-site and browser checks, and
/// a trusted proxy's forwarding facts; an untrusted peer's are dropped whatever it says). A
/// `Connection` option naming one hands the request over: the general path removes nominated
/// headers before it reads any, and so must decide this one.
fn is_read_here(name: &str, trusted: bool) -> bool {
    ["authorization", "cookie", "accept", "origin", "sec-fetch-site"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h))
        || (trusted && is_forwarding_header(name))
}

/// Writes the upstream request head into `out`: the client's lines as their fates say, then
/// what `plan` adds; all but the target's `Host` (if not preserved) and the final blank line,
/// which are `finish_head`'s once a target is picked.
pub fn write_head(out: &mut Vec<u8>, req: &httparse::Request<'_, '_>, seen: &Inspected<'_>, plan: &Plan<'_>) {
    out.clear();
    out.extend_from_slice(seen.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(plan.path.as_bytes());
    if let Some(q) = seen.query {
        out.push(b'?');
        out.extend_from_slice(q.as_bytes());
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (h, fate) in req.headers.iter().zip(seen.fates.iter()) {
        match fate {
            Fate::Keep | Fate::Accept | Fate::ForwardedProto | Fate::ForwardedHost => {
                lower_line(out, h.name.as_bytes(), h.value)
            }
            // As `auth::remove_credentials`: a line with the gateway's own token goes; the
            // cookies are written below without the gateway's.
            Fate::Authorization
                if plan.strip_credentials.is_none() || !crate::auth::is_own_authorization(h.value) =>
            {
                lower_line(out, h.name.as_bytes(), h.value)
            }
            Fate::Cookie if plan.strip_credentials.is_none() => lower_line(out, h.name.as_bytes(), h.value),
            // A trusted proxy's chain: written below, extended with the peer's address. The
            // rest are dropped, or written by the gateway (`Host`, `Content-Length`).
            _ => {}
        }
    }
    if let Some(name) = plan.strip_credentials
        && seen.has_cookie
    {
        let kept = crate::auth::cookies_without(seen.cookies(req), name);
        if !kept.is_empty() {
            line(out, b"cookie", kept.as_bytes());
        }
    }
    plan.identity
        .for_each(|name, value| line(out, name.as_str().as_bytes(), value));
    out.extend_from_slice(b"x-forwarded-for: ");
    let chain = req.headers.iter().zip(seen.fates.iter());
    let chain = chain
        .filter(|(_, fate)| **fate == Fate::ForwardedFor)
        .map(|(h, _)| h.value);
    for entry in forwarded_for_chain(chain) {
        out.extend_from_slice(entry.as_bytes());
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(plan.peer_ip.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !seen.trusted_proto {
        line(out, b"x-forwarded-proto", plan.proto.as_bytes());
    }
    if !seen.trusted_host {
        line(out, b"x-forwarded-host", seen.host.as_bytes());
    }
    line(out, b"x-request-id", plan.request_id);
    if let Some(n) = seen.content_length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if plan.preserve_host {
        line(out, b"host", seen.host.as_bytes());
    }
}

/// Ends a head from `write_head`: the target's `Host` (unless preserved) and the blank line.
pub fn finish_head(out: &mut Vec<u8>, host: Option<&[u8]>) {
    if let Some(host) = host {
        line(out, b"host", host);
    }
    out.extend_from_slice(b"\r\n");
}

/// A client's header line with its name in lower case, as hyper writes every name on the
/// general path (SPEC §1.11: the same bytes upstream whichever path serves a request).
fn lower_line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let at = out.len();
    out.extend_from_slice(name);
    out[at..].make_ascii_lowercase();
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Bytes of an origin-form target the fast path forwards as they are: RFC 3986's unreserved,
/// sub-delims, `:`, `@`, `/`, `?` and `%`. Anything else (quotes, braces, spaces, controls,
/// non-ASCII) goes to hyper, whose URI parser decides.
fn plain_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
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
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'%'
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phase::inject::Injection;

    fn ids() -> Vec<HeaderName> {
        vec![
            HeaderName::from_static("x-auth-user"),
            HeaderName::from_static("x-auth-roles"),
        ]
    }

    fn with_head<R>(raw: &str, f: impl FnOnce(&httparse::Request<'_, '_>) -> R) -> R {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        assert!(matches!(
            req.parse(raw.as_bytes()),
            Ok(httparse::Status::Complete(_))
        ));
        f(&req)
    }

    fn forwarded(raw: &str, trusted: bool, strip: Option<&str>) -> String {
        with_head(raw, |req| {
            let seen = inspect(req, &ids(), trusted).unwrap();
            let user = HeaderName::from_static("x-auth-user");
            let peer_ip = http::HeaderValue::from_static("192.0.2.1");
            let plan = Plan {
                path: seen.path.into(),
                identity: Injection::one(&user, http::HeaderValue::from_static("alice")),
                strip_credentials: strip,
                peer_ip: &peer_ip,
                proto: "https",
                request_id: b"rid",
                preserve_host: true,
            };
            let mut out = Vec::new();
            write_head(&mut out, req, &seen, &plan);
            finish_head(&mut out, None);
            String::from_utf8(out).unwrap()
        })
    }

    fn refused(raw: &str) -> Handover {
        with_head(raw, |req| inspect(req, &ids(), false).err().unwrap())
    }

    #[test]
    fn a_trusted_proxy_naming_its_forwarding_headers_goes_to_hyper() {
        let raw =
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: x_forwarded_proto\r\nX-Forwarded-Proto: http\r\n\r\n";
        assert_eq!(
            with_head(raw, |req| inspect(req, &ids(), true).err()),
            Some(Handover::Connection)
        );
        assert!(with_head(raw, |req| inspect(req, &ids(), false).is_ok()));
    }

    #[test]
    fn client_headers_are_stripped_before_the_gateway_adds_its_own() {
        let out = forwarded(
            "GET /a?b=1 HTTP/1.1\r\nHost: h\r\nConnection: close, X-Custom, X-Forwarded-For\r\nX-Custom: 1\r\n\
             X_Auth_User: eve\r\nX-Forwarded-For: 6.6.6.6\r\nX-Request-Id: mine\r\nKeep-Alive: 5\r\nX-Keep: k\r\n\r\n",
            false,
            None,
        );
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nx-keep: k\r\nx-auth-user: alice\r\nx-forwarded-for: 192.0.2.1\r\n\
             x-forwarded-proto: https\r\nx-forwarded-host: h\r\nx-request-id: rid\r\nhost: h\r\n\r\n"
        );
    }

    #[test]
    fn trusted_proxies_keep_their_forwarding_headers_and_extend_the_chain() {
        let out = forwarded(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 198.51.100.7\r\nX-Forwarded-For: 10.0.0.9\r\n\
             X-Forwarded-Proto: http\r\nX-Request-Id: theirs\r\n\r\n",
            true,
            None,
        );
        assert!(
            out.contains("x-forwarded-for: 198.51.100.7, 10.0.0.9, 192.0.2.1\r\n"),
            "{out}"
        );
        assert!(out.contains("x-forwarded-proto: http\r\n") && !out.contains("x-forwarded-proto: https"));
        assert!(
            !out.contains("theirs"),
            "the request id is the caller's to pick: {out}"
        );
    }

    #[test]
    fn only_the_gateways_own_credentials_are_removed() {
        let raw = "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer pc1_x\r\nCookie: a=1; sid=s\r\nCookie: b=2\r\n\r\n";
        let out = forwarded(raw, false, Some("sid"));
        assert!(!out.contains("pc1_x") && !out.contains("sid="), "{out}");
        assert!(out.contains("cookie: a=1; b=2\r\n"), "{out}");
        let kept = forwarded(raw, false, None);
        assert!(kept.contains("authorization: Bearer pc1_x") && kept.contains("sid=s"));
        let jwt = forwarded(
            "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer eyJ.a.b\r\n\r\n",
            false,
            Some("sid"),
        );
        assert!(jwt.contains("authorization: Bearer eyJ.a.b"), "{jwt}");
    }

    #[test]
    fn content_length_is_rewritten_canonically() {
        let out = forwarded(
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n",
            false,
            None,
        );
        assert!(
            out.contains("content-length: 7\r\n") && !out.contains("007"),
            "{out}"
        );
    }

    #[test]
    fn anything_unusual_goes_to_hyper() {
        let cases = [
            ("GET / HTTP/1.0\r\nHost: h\r\n\r\n", Handover::NotHttp11),
            ("GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n", Handover::Target),
            ("GET /a\"b HTTP/1.1\r\nHost: h\r\n\r\n", Handover::Target),
            ("GET / HTTP/1.1\r\n\r\n", Handover::Host),
            ("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Handover::Host),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
                Handover::Framing,
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                Handover::Framing,
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +1\r\n\r\n",
                Handover::Framing,
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\n",
                Handover::Framing,
            ),
            ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Handover::Host),
            ("GET / HTTP/1.1\r\nHost: u@h\r\n\r\n", Handover::Host),
            (
                "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\n\r\n",
                Handover::Expect,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nConnection: a,b,c,d,e,f,g,h,i\r\n\r\n",
                Handover::Connection,
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nConnection: Authorization\r\n\r\n",
                Handover::Connection,
            ),
            ("CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n", Handover::Connect),
        ];
        for (raw, why) in cases {
            assert_eq!(refused(raw), why, "{raw}");
        }
    }

    #[test]
    fn upgrades_and_expectations_are_noted_and_never_written() {
        let raw = "PUT / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
                   HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nExpect: 100-continue\r\nTransfer_Encoding: chunked\r\n\r\n";
        with_head(raw, |req| {
            let seen = inspect(req, &ids(), false).unwrap();
            assert!(seen.upgrade && seen.expect_continue);
        });
        let out = forwarded(raw, false, None);
        for gone in [
            "Upgrade",
            "HTTP2-Settings",
            "Expect",
            "Connection",
            "Transfer_Encoding",
        ] {
            assert!(!out.contains(gone), "{gone}: {out}");
        }
    }

    #[test]
    fn content_lengths() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b"123"), Some(123));
        assert_eq!(content_length(b"00000000000000000005"), Some(5));
        for bad in [
            &b""[..],
            b"-1",
            b"1 ",
            b"0x10",
            b"18446744073709551616",
            b"99999999999999999999",
        ] {
            assert_eq!(content_length(bad), None);
        }
    }
}
