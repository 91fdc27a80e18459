//! Header hygiene on the forwarding path (SPEC §1.3, §1.9). The order is the security rule:
//! everything the client may not send is removed first — hop-by-hop headers and every header
//! named in `Connection`, identity headers in any spelling (`X-Auth-User`, `x_auth_user`),
//! forwarding headers from untrusted peers — and only then does the gateway add its own, so a
//! client's `Connection: close, X-Forwarded-For, X-Auth-User` can never remove what the gateway sets.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// RFC 9110 §7.6.1 hop-by-hop headers, plus the non-standard ones proxies also drop, and
/// HTTP/2's connection-specific `HTTP2-Settings` (RFC 9113 §3.2.1: only for an h2c upgrade).
static HOP_BY_HOP: [HeaderName; 10] = [
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
pub fn is_hop_by_hop(name: &str) -> bool {
    // Most names have a length none of them has: one comparison, not nine.
    matches!(name.len(), 2 | 7 | 10 | 14 | 16 | 17 | 18 | 19)
        && HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h.as_str()))
}

/// Headers a `Connection` option may not remove: the gateway needs them to route and frame.
static NOT_NOMINATABLE: [HeaderName; 2] = [header::HOST, header::CONTENT_LENGTH];

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Names compared ignoring ASCII case, with `-` and `_` as the same character; `lower` must be
/// lower-case with `-`.
pub fn same_name(name: &str, lower: &str) -> bool {
    name.len() == lower.len()
        && name
            .bytes()
            .zip(lower.bytes())
            .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
}

fn starts_with_name(name: &str, lower_prefix: &str) -> bool {
    name.len() >= lower_prefix.len() && same_name(&name[..lower_prefix.len()], lower_prefix)
}

/// Headers that only a trusted proxy may send: they claim facts about the connection.
pub fn is_forwarding_header(name: &str) -> bool {
    same_name(name, "forwarded")
        || starts_with_name(name, "x-forwarded-")
        || same_name(name, "x-real-ip")
        || same_name(name, "x-request-id")
}

/// Removes hop-by-hop headers and those named in `Connection`. One pass over the (few) names
/// present decides what goes, so the common message (none of these, or only `Connection:
/// keep-alive`) costs no allocation and one removal at most.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let mut found = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            found[i] = true;
        }
    }
    // `Connection` is HOP_BY_HOP[0]: without it, no header is nominated.
    if found[0] {
        for name in nominated(headers) {
            headers.remove(&name);
        }
    }
    for (name, _) in HOP_BY_HOP.iter().zip(found).filter(|(_, f)| *f) {
        headers.remove(name);
    }
}

/// The headers a `Connection` header names, beyond the hop-by-hop ones removed anyway and the
/// ones it may not remove; `close` and `keep-alive` (the usual options) are skipped unparsed.
fn nominated(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.eq_ignore_ascii_case("close"))
        .filter(|t| !HOP_BY_HOP.iter().any(|h| t.eq_ignore_ascii_case(h.as_str())))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .filter(|name| !NOT_NOMINATABLE.contains(name))
        .collect()
}

/// Strips, from a client's request, hop-by-hop headers, identity headers (any `_`/`-` spelling),
/// the headers the gateway withholds (`Expect`, framing names spelt with `_`) and, unless the
/// peer is a trusted proxy, forwarding headers.
pub fn sanitize_request(headers: &mut HeaderMap, identity: &[HeaderName], trusted_peer: bool) {
    remove_hop_by_hop(headers);
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            let n = name.as_str();
            identity.iter().any(|id| same_name(n, id.as_str()))
                || (!trusted_peer && is_forwarding_header(n))
                || super::framing::is_withheld_request_header(n)
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(&name);
    }
}

/// The lines of a trusted proxy's `X-Forwarded-For` that the gateway extends (both paths):
/// those that are text and not empty; any other line is dropped.
pub fn forwarded_for_chain<'a>(values: impl Iterator<Item = &'a [u8]>) -> impl Iterator<Item = &'a str> {
    values
        .filter_map(crate::auth::header_text)
        .filter(|v| !v.trim().is_empty())
}

/// Adds `X-Forwarded-For` (appended to a trusted proxy's), `X-Forwarded-Proto`,
/// `X-Forwarded-Host` (kept from a trusted proxy) and `X-Request-Id`.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    peer_ip: &HeaderValue,
    trusted_peer: bool,
    proto: &'static str,
    host: Option<&HeaderValue>,
    request_id: &HeaderValue,
) {
    let chain: Vec<&str> = if trusted_peer {
        forwarded_for_chain(
            headers
                .get_all(&X_FORWARDED_FOR)
                .iter()
                .map(HeaderValue::as_bytes),
        )
        .collect()
    } else {
        Vec::new()
    };
    if chain.is_empty() {
        headers.insert(X_FORWARDED_FOR, peer_ip.clone());
    } else {
        let peer = peer_ip.to_str().unwrap_or("unknown");
        if let Ok(v) = HeaderValue::from_str(&format!("{}, {peer}", chain.join(", "))) {
            headers.insert(X_FORWARDED_FOR, v);
        }
    }
    if !(trusted_peer && headers.contains_key(&X_FORWARDED_PROTO)) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(trusted_peer && headers.contains_key(&X_FORWARDED_HOST))
        && let Some(h) = host
    {
        headers.insert(X_FORWARDED_HOST, h.clone());
    }
    headers.insert(X_REQUEST_ID, request_id.clone());
}

/// Cleans an upstream's response: hop-by-hop headers go, except that a `101 Switching
/// Protocols` keeps `Upgrade` and says `Connection: upgrade`.
pub fn sanitize_response(headers: &mut HeaderMap, switching_protocols: bool) {
    let upgrade = if switching_protocols {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    };
    remove_hop_by_hop(headers);
    if let Some(u) = upgrade {
        headers.insert(header::UPGRADE, u);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn identity() -> Vec<HeaderName> {
        vec![
            HeaderName::from_static("x-auth-user"),
            HeaderName::from_static("x-auth-roles"),
        ]
    }

    #[test]
    fn connection_named_headers_go_before_the_gateway_adds_its_own() {
        let mut h = map(&[
            ("connection", "close, X-Forwarded-For, X-Auth-User, x-custom"),
            ("x-custom", "1"),
            ("x-keep", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("host", "a.example"),
        ]);
        sanitize_request(&mut h, &identity(), false);
        add_forwarding(
            &mut h,
            &HeaderValue::from_static("192.0.2.1"),
            false,
            "https",
            None,
            &HeaderValue::from_static("rid"),
        );
        assert!(h.get("x-custom").is_none() && h.get("keep-alive").is_none() && h.get("te").is_none());
        assert!(h.get("connection").is_none());
        assert_eq!(h.get("x-forwarded-for").unwrap(), "192.0.2.1");
        assert_eq!(h.get("x-keep").unwrap(), "1");
        assert_eq!(
            h.get("host").unwrap(),
            "a.example",
            "Connection may not remove Host"
        );
    }

    #[test]
    fn identity_headers_in_any_spelling_are_stripped() {
        let mut h = map(&[
            ("X-Auth-User", "eve"),
            ("x_auth_user", "eve"),
            ("X_AUTH_ROLES", "admin"),
            ("x-auth-userx", "k"),
        ]);
        sanitize_request(&mut h, &identity(), true);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-auth-userx"));
    }

    #[test]
    fn forwarding_headers_only_from_trusted_peers() {
        let spoof = [
            ("forwarded", "for=1.2.3.4"),
            ("x-forwarded-for", "1.2.3.4"),
            ("x_forwarded_host", "evil"),
            ("x-real-ip", "1.2.3.4"),
            ("x-request-id", "mine"),
        ];
        let mut h = map(&spoof);
        sanitize_request(&mut h, &identity(), false);
        assert!(h.is_empty(), "{h:?}");

        let mut h = map(&[("x-forwarded-for", "198.51.100.7"), ("x-forwarded-proto", "http")]);
        sanitize_request(&mut h, &identity(), true);
        add_forwarding(
            &mut h,
            &HeaderValue::from_static("10.0.0.1"),
            true,
            "https",
            None,
            &HeaderValue::from_static("r"),
        );
        assert_eq!(h.get("x-forwarded-for").unwrap(), "198.51.100.7, 10.0.0.1");
        assert_eq!(h.get("x-forwarded-proto").unwrap(), "http");
    }

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
    fn upgrade_survives_only_on_101() {
        let mut r = map(&[("connection", "upgrade"), ("upgrade", "websocket"), ("x-a", "1")]);
        sanitize_response(&mut r, true);
        assert_eq!(r.get("upgrade").unwrap(), "websocket");
        assert_eq!(r.get("connection").unwrap(), "upgrade");
        let mut r = map(&[("connection", "x-a"), ("upgrade", "websocket"), ("x-a", "1")]);
        sanitize_response(&mut r, false);
        assert!(r.is_empty());
    }
}
