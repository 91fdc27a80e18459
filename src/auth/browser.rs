//! What the gateway judges a browser's request by, on the proxy path and in the session API
//! alike: the session cookie's name on a listener, and whether a request comes from another
//! site (a cookie-authenticated change from another site is refused). Below `gateway`.

use http::HeaderMap;

/// The session cookie's name on a listener (`configured`: `[cookie] name`). On TLS it is the
/// configured name; on the plain listener a `__Host-` or `__Secure-` prefix is dropped
/// (browsers refuse those names without TLS).
pub fn cookie_name(configured: &str, tls: bool) -> &str {
    if tls {
        configured
    } else {
        configured
            .strip_prefix("__Host-")
            .or_else(|| configured.strip_prefix("__Secure-"))
            .unwrap_or(configured)
    }
}

/// Whether a browser says this request comes from another site (`host`: the request's
/// authority, from `Host` or HTTP/2's `:authority`).
pub fn cross_site(headers: &HeaderMap, host: Option<&str>) -> bool {
    cross_site_in(headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())), host)
}

/// `cross_site` over a request's header lines, as both proxy paths hold them. A browser's
/// `Sec-Fetch-Site` is authoritative where present (every current browser sends it): only
/// `same-origin` (and `none`, a navigation the user started) is this site; `same-site` (a
/// sibling host) and `cross-site` are not, and every line counts, so a second cannot hide the
/// first. Without it (older browsers), `Origin` decides: `null`, not text, or another host is
/// another site. Under `Referrer-Policy: no-referrer` Chromium posts a page's own form with
/// `Origin: null` and `Sec-Fetch-Site: same-origin`: this site.
pub fn cross_site_in<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>, host: Option<&str>) -> bool {
    let host = host.unwrap_or("");
    let mut fetch_site: Option<bool> = None;
    let mut origin_cross = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("sec-fetch-site") {
            let value = value.trim_ascii();
            let same = value.eq_ignore_ascii_case(b"same-origin") || value.eq_ignore_ascii_case(b"none");
            fetch_site = Some(fetch_site.unwrap_or(false) || !same);
        } else if name.eq_ignore_ascii_case("origin") {
            origin_cross |= match super::header_text(value) {
                Some(origin) => {
                    let origin = origin.trim();
                    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
                    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
                }
                None => true,
            };
        }
    }
    fetch_site.unwrap_or(origin_cross)
}
