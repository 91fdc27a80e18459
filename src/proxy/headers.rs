//! Phases 3 and 5 on hyper's path: what `phase::sanitize` decides removed from a request's
//! `HeaderMap`, and a `phase::inject::Plan` applied to it (the fast path applies the same
//! decisions to raw lines in `h1::request`); and an upstream response's hop-by-hop headers.

use crate::auth;
use crate::phase::inject::{Plan, forwarded_for_chain};
use crate::phase::sanitize::{HOP_BY_HOP, fate, nominates};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

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

/// The headers a `Connection` header names (`phase::sanitize::nominates`).
fn nominated(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| nominates(t))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect()
}

/// Phase 3: removes from a client's request every header whose fate is removal
/// (`phase::sanitize::fate`), and those its `Connection` names.
pub fn sanitize_request(headers: &mut HeaderMap, identity: &[HeaderName], trusted_peer: bool) {
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| fate(name.as_str(), identity, trusted_peer).removed())
        .cloned()
        .collect();
    if doomed.contains(&header::CONNECTION) {
        doomed.extend(nominated(headers));
    }
    for name in doomed {
        headers.remove(&name);
    }
}

/// Phase 5: applies `plan` to a sanitized request's headers (`host`: the request's authority,
/// as sent; `trusted_peer`: a trusted proxy's forwarding facts are kept).
pub fn apply(headers: &mut HeaderMap, plan: &Plan<'_>, trusted_peer: bool, host: Option<HeaderValue>) {
    // Room for what is added, so the map grows once at most.
    headers.reserve(12);
    plan.identity.insert_into(headers);
    if let Some(cookie_name) = plan.strip_credentials {
        auth::remove_credentials(headers, cookie_name);
    }
    // Visible ASCII by construction (`phase::request_id`).
    let request_id = HeaderValue::from_bytes(plan.request_id).unwrap_or(HeaderValue::from_static("-"));
    add_forwarding(
        headers,
        plan.peer_ip,
        trusted_peer,
        plan.proto,
        host.as_ref(),
        &request_id,
    );
    match (host, plan.preserve_host) {
        (Some(v), true) => {
            headers.insert(header::HOST, v);
        }
        _ => {
            headers.remove(header::HOST);
        }
    }
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
