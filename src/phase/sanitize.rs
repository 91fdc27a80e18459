//! Phase 3, sanitize: the fate of every header a client sends, decided once for both
//! transports (`fate`). The fast path classifies httparse's lines with it as it reads them;
//! hyper's path removes from its `HeaderMap` what it says (`proxy::headers::sanitize_request`).
//! The order is the security rule: everything the client may not send goes first — hop-by-hop
//! headers and every header named in `Connection`, identity headers in any spelling
//! (`X-Auth-User`, `x_auth_user`), forwarding headers from untrusted peers, withheld framing
//! names — and only then does the gateway add its own (phase 5), so a client's
//! `Connection: close, X-Forwarded-For, X-Auth-User` can never remove what the gateway sets.

use http::header::{self, HeaderName};

/// What a client's header line becomes upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Forwarded as sent.
    Keep,
    /// Never forwarded.
    Drop,
    /// Routed and framed by, never forwarded as sent: the gateway writes its own.
    Host,
    ContentLength,
    /// Read by phase 2 (framing, expectations, upgrades), never forwarded as sent.
    TransferEncoding,
    Upgrade,
    Expect,
    /// Its options are read (`close`, and the headers it names, which are dropped too).
    Connection,
    /// Kept, unless it carries the gateway's own token and the route strips credentials.
    Authorization,
    /// Kept, or rewritten without the gateway's cookie when the route strips credentials.
    Cookie,
    /// Kept; its first value tells a browser navigation.
    Accept,
    /// From a trusted proxy: the chain the gateway extends with the peer's address.
    ForwardedFor,
    /// From a trusted proxy: the request's id (if sane); the gateway writes the id it uses.
    RequestId,
    /// From a trusted proxy: kept, and the gateway adds none of its own.
    ForwardedProto,
    ForwardedHost,
}

impl Fate {
    /// Whether the line leaves the client's request before phase 5 writes the gateway's
    /// headers (the read-and-rewritten ones, `Host`, `Content-Length` and a trusted proxy's
    /// forwarding facts, are each transport's to write).
    pub fn removed(self) -> bool {
        matches!(
            self,
            Fate::Drop | Fate::TransferEncoding | Fate::Upgrade | Fate::Expect | Fate::Connection
        )
    }
}

/// The fate of a client's header `name` (any case; `identity`: the configured identity header
/// names; `trusted`: the peer is one of `server.trusted_proxies`). Runs on every header of
/// every request: lengths first.
#[inline]
pub fn fate(name: &str, identity: &[HeaderName], trusted: bool) -> Fate {
    let is = |lower: &str| name.eq_ignore_ascii_case(lower);
    match name.len() {
        4 if is("host") => Fate::Host,
        14 if is("content-length") => Fate::ContentLength,
        17 if is("transfer-encoding") => Fate::TransferEncoding,
        7 if is("upgrade") => Fate::Upgrade,
        6 if is("expect") => Fate::Expect,
        10 if is("connection") => Fate::Connection,
        13 if is("authorization") => Fate::Authorization,
        6 if is("cookie") => Fate::Cookie,
        6 if is("accept") => Fate::Accept,
        _ if is_hop_by_hop(name) || is_withheld_request_header(name) => Fate::Drop,
        _ if identity.iter().any(|id| same_name(name, id.as_str())) => Fate::Drop,
        _ if is_forwarding_header(name) => match () {
            _ if !trusted => Fate::Drop,
            _ if is("x-forwarded-for") => Fate::ForwardedFor,
            _ if is("x-request-id") => Fate::RequestId,
            _ if is("x-forwarded-proto") => Fate::ForwardedProto,
            _ if is("x-forwarded-host") => Fate::ForwardedHost,
            _ => Fate::Keep,
        },
        _ => Fate::Keep,
    }
}

/// Whether a `Connection` option names a header to drop with it: not `close`, not a
/// hop-by-hop header (dropped anyway), and not `Host` or `Content-Length` (the gateway needs
/// them to route and frame).
#[inline]
pub fn nominates(option: &str) -> bool {
    !option.is_empty()
        && !option.eq_ignore_ascii_case("close")
        && !is_hop_by_hop(option)
        && !NOT_NOMINATABLE
            .iter()
            .any(|h| option.eq_ignore_ascii_case(h.as_str()))
}

/// RFC 9110 §7.6.1 hop-by-hop headers, plus the non-standard ones proxies also drop, and
/// HTTP/2's connection-specific `HTTP2-Settings` (RFC 9113 §3.2.1: only for an h2c upgrade).
pub static HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Whether `name` (any case) is one of the hop-by-hop headers.
#[inline]
pub fn is_hop_by_hop(name: &str) -> bool {
    // Most names have a length none of them has: one comparison, not nine.
    matches!(name.len(), 2 | 7 | 10 | 14 | 16 | 17 | 18 | 19)
        && HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h.as_str()))
}

/// Headers a `Connection` option may not remove: the gateway needs them to route and frame.
const NOT_NOMINATABLE: [HeaderName; 2] = [header::HOST, header::CONTENT_LENGTH];

/// Names compared ignoring ASCII case, with `-` and `_` as the same character; `lower` must be
/// lower-case with `-`.
#[inline]
pub fn same_name(name: &str, lower: &str) -> bool {
    name.len() == lower.len()
        && name
            .bytes()
            .zip(lower.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
}

#[inline]
fn starts_with_name(name: &str, lower_prefix: &str) -> bool {
    name.len() >= lower_prefix.len() && same_name(&name[..lower_prefix.len()], lower_prefix)
}

/// Headers that only a trusted proxy may send: they claim facts about the connection.
#[inline]
pub fn is_forwarding_header(name: &str) -> bool {
    same_name(name, "forwarded")
        || starts_with_name(name, "x-forwarded-")
        || same_name(name, "x-real-ip")
        || same_name(name, "x-request-id")
}

/// Request headers the gateway never forwards beyond the hop-by-hop ones: `Expect` (it answers
/// the expectation itself); `X-Original-URL` and `X-Rewrite-URL` in any spelling (some origins
/// — IIS URL Rewrite, Symfony — serve the path they name instead of the request's, past the
/// route the gateway chose by the request's); and, spelt with `_` for `-`, the names that frame
/// a message or belong to one hop (an origin that folds `_` into `-` would read them as the
/// real ones). Runs on every header: lengths first.
#[inline]
pub fn is_withheld_request_header(name: &str) -> bool {
    let folded = |names: &[&str]| name.contains('_') && names.iter().any(|h| same_name(name, h));
    match name.len() {
        6 => name.eq_ignore_ascii_case("expect"),
        13 => same_name(name, "x-rewrite-url"),
        14 => same_name(name, "x-original-url") || folded(&["content-length", "http2-settings"]),
        10 => folded(&["keep-alive"]),
        16 => folded(&["proxy-connection"]),
        17 => folded(&["transfer-encoding"]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_names_in_any_case() {
        for h in &HOP_BY_HOP {
            assert!(is_hop_by_hop(h.as_str()) && is_hop_by_hop(&h.as_str().to_uppercase()));
        }
        for other in ["host", "x-te", "upgrades", "connection2", "content-length"] {
            assert!(!is_hop_by_hop(other), "{other}");
        }
    }

    #[test]
    fn withheld_headers() {
        for name in [
            "Expect",
            "Transfer_Encoding",
            "content_length",
            "HOST_",
            "http2_settings",
            "Connection_",
        ] {
            let withheld = is_withheld_request_header(name);
            assert_eq!(withheld, name != "HOST_" && name != "Connection_", "{name}");
        }
    }

    #[test]
    fn every_header_has_one_fate() {
        let id = [HeaderName::from_static("x-auth-user")];
        let cases = [
            ("Host", false, Fate::Host),
            ("content-length", false, Fate::ContentLength),
            ("Transfer-Encoding", false, Fate::TransferEncoding),
            ("transfer_encoding", false, Fate::Drop),
            ("UPGRADE", false, Fate::Upgrade),
            ("http2-settings", false, Fate::Drop),
            ("Expect", false, Fate::Expect),
            ("Connection", false, Fate::Connection),
            ("Authorization", false, Fate::Authorization),
            ("Cookie", false, Fate::Cookie),
            ("Accept", false, Fate::Accept),
            ("X_Auth_User", true, Fate::Drop),
            ("X-Forwarded-For", false, Fate::Drop),
            ("X-Forwarded-For", true, Fate::ForwardedFor),
            ("X-Request-Id", true, Fate::RequestId),
            ("x-forwarded-proto", true, Fate::ForwardedProto),
            ("x-forwarded-host", true, Fate::ForwardedHost),
            ("x_forwarded_host", true, Fate::Keep),
            ("x_forwarded_host", false, Fate::Drop),
            ("forwarded", true, Fate::Keep),
            ("X-Original-URL", true, Fate::Drop),
            ("x-custom", false, Fate::Keep),
        ];
        for (name, trusted, want) in cases {
            assert_eq!(fate(name, &id, trusted), want, "{name} trusted={trusted}");
        }
        for option in ["close", "Keep-Alive", "host", "Content-Length", ""] {
            assert!(!nominates(option), "{option}");
        }
        assert!(nominates("x-custom") && nominates("X-Auth-User"));
    }
}
