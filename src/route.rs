//! Routing: path normalization (the security boundary: what is matched is what is forwarded)
//! and the route table (host: exact, then `*.suffix`, then any; within it the longest
//! `path_prefix` on a segment boundary). A host that has routes of its own never falls through
//! to the catch-all routes, as with nginx server blocks.

use std::borrow::Cow;
use std::collections::HashMap;

/// Why a request path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    EncodedSlash,
    Nul,
    Backslash,
    BadEscape,
    AboveRoot,
    PathParameterDots,
}

impl PathError {
    pub fn message(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request path must start with /",
            PathError::EncodedSlash => "encoded / or \\ (%2F, %5C) is not allowed in paths",
            PathError::Nul => "NUL is not allowed in paths",
            PathError::Backslash => "\\ is not allowed in paths",
            PathError::BadEscape => "malformed percent-encoding in the path",
            PathError::AboveRoot => "the path climbs above the root with ..",
            PathError::PathParameterDots => "dot segments with ; parameters are not allowed",
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Whether a path is already in normal form: no escapes, no `\\`, no NUL, no `//`, no `/.`.
/// Most real paths are, and skip the rewrite (no allocation on the hot path).
fn already_normal(bytes: &[u8]) -> bool {
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut prev = 0u8;
    for &b in bytes {
        if matches!(b, b'%' | b'\\' | 0) || (prev == b'/' && matches!(b, b'/' | b'.')) {
            return false;
        }
        prev = b;
    }
    true
}

/// Normalizes a request path: percent-encoded unreserved characters are decoded (so `/%61dmin`
/// is `/admin` for matching *and* forwarding), other escapes are kept with upper-case hex,
/// `//` is merged, `.` and `..` segments are resolved. Encoded `/` or `\`, NUL, a raw `\`,
/// broken escapes, a `..` above the root and `..;` style segments are refused.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if already_normal(bytes) {
        return Ok(Cow::Borrowed(raw));
    }
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Pass 1: decode into a clean byte string, segment by segment.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            0 => return Err(PathError::Nul),
            b'\\' => return Err(PathError::Backslash),
            b'%' => {
                let (Some(h), Some(l)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = h * 16 + l;
                match v {
                    b'/' | b'\\' => return Err(PathError::EncodedSlash),
                    0 => return Err(PathError::Nul),
                    v if is_unreserved(v) => decoded.push(v),
                    v => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        decoded.extend_from_slice(&[b'%', HEX[(v >> 4) as usize], HEX[(v & 15) as usize]]);
                    }
                }
                i += 3;
            }
            _ => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    // Pass 2: resolve segments.
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing_slash = false;
    for seg in decoded.split(|&b| b == b'/').skip(1) {
        trailing_slash = false;
        let bare = seg.split(|&b| b == b';').next().unwrap_or(seg);
        match seg {
            b"" => trailing_slash = true,
            b"." => trailing_slash = true,
            b".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = true;
            }
            _ if bare == b"." || bare == b".." => return Err(PathError::PathParameterDots),
            _ => segments.push(seg),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for seg in &segments {
        out.push('/');
        // Every byte is either from a valid &str or an ASCII escape, so this cannot fail; a
        // failure is still a refusal rather than a panic.
        out.push_str(std::str::from_utf8(seg).map_err(|_| PathError::BadEscape)?);
    }
    if segments.is_empty() || trailing_slash {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// Whether `path` is `prefix` or lies beneath it on a segment boundary.
pub fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix_match(prefix, path).is_some()
}

/// How much of `path` (normalized) the route prefix `prefix` covers, in bytes, if it covers
/// it on a segment boundary. Segments are compared as the most lenient common origin reads
/// them, so that no origin serves a protected route's path through a laxer route: `;`
/// parameters dropped (Tomcat, Jetty, Spring: `/admin;x/y` is `/admin/y`), trailing dots and
/// spaces dropped (Windows, IIS), ASCII case ignored (case-insensitive file systems). What is
/// forwarded is the path as normalized, its covered part as the route spells it
/// (`phase::route::upstream_path`).
pub fn prefix_match(prefix: &str, path: &str) -> Option<usize> {
    // The common case: the prefix as it is.
    if let Some(rest) = path.strip_prefix(prefix)
        && (prefix.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
    {
        return Some(prefix.len());
    }
    let wants = prefix.trim_end_matches('/');
    let mut at = 0;
    for want in wants.split('/').skip(1) {
        let rest = path.get(at..)?.strip_prefix('/')?;
        let seg = rest.split('/').next().unwrap_or("");
        if !fold(seg).eq_ignore_ascii_case(fold(want)) {
            return None;
        }
        at += 1 + seg.len();
    }
    // `/api/` covers only what lies beneath `/api`.
    let beneath = path.get(at..).is_some_and(|r| r.starts_with('/'));
    (!prefix.ends_with('/') || prefix == "/" || beneath).then_some(at)
}

/// A path segment as lenient origins read it: without `;` parameters, trailing dots and
/// spaces (raw or `%20`).
fn fold(seg: &str) -> &str {
    let mut seg = seg.split(';').next().unwrap_or("");
    loop {
        let trimmed = seg.trim_end_matches(['.', ' ']);
        let trimmed = trimmed.strip_suffix("%20").unwrap_or(trimmed);
        if trimmed.len() == seg.len() {
            return seg;
        }
        seg = trimmed;
    }
}

/// The request's host name, lower-cased, without port (borrowed when it already is lower-case).
pub fn host_of(authority: &str) -> Cow<'_, str> {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// Route indexes grouped by host, each group sorted by descending prefix length.
pub struct RouteTable {
    exact: HashMap<String, Vec<(String, usize)>>,
    wildcard: Vec<(String, Vec<(String, usize)>)>,
    any: Vec<(String, usize)>,
}

impl RouteTable {
    /// Builds the table from `(host pattern, path_prefix)` per route, in route order.
    pub fn new<'a>(routes: impl IntoIterator<Item = (Option<&'a str>, &'a str)>) -> RouteTable {
        let mut exact: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        let mut wildcard: HashMap<String, Vec<(String, usize)>> = HashMap::new();
        let mut any = Vec::new();
        for (i, (host, prefix)) in routes.into_iter().enumerate() {
            let entry = (prefix.to_string(), i);
            match host {
                None => any.push(entry),
                Some(h) => match h.strip_prefix("*.") {
                    // Stored with the leading dot: "a.example.com".ends_with(".example.com").
                    Some(suffix) => wildcard.entry(format!(".{suffix}")).or_default().push(entry),
                    None => exact.entry(h.to_string()).or_default().push(entry),
                },
            }
        }
        let sort = |v: &mut Vec<(String, usize)>| v.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        exact.values_mut().for_each(sort);
        sort(&mut any);
        let mut wildcard: Vec<_> = wildcard.into_iter().collect();
        wildcard.iter_mut().for_each(|(_, v)| sort(v));
        wildcard.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        RouteTable { exact, wildcard, any }
    }

    /// The index of the route for this host (lower-case, no port) and normalized path.
    pub fn find(&self, host: &str, path: &str) -> Option<usize> {
        let group = self
            .exact
            .get(host)
            .or_else(|| {
                self.wildcard
                    .iter()
                    .find(|(suffix, _)| host.ends_with(suffix.as_str()))
                    .map(|(_, v)| v)
            })
            .unwrap_or(&self.any);
        group
            .iter()
            .find(|(prefix, _)| prefix_matches(prefix, path))
            .map(|(_, i)| *i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_table() {
        let ok = [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a//b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/a/", "/a/"),
            ("//", "/"),
            ("/%61dmin", "/admin"),
            ("/a/%2e", "/a/"),
            ("/a/%2e%2e/b", "/b"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a;v=1/b", "/a;v=1/b"),
        ];
        for (input, want) in ok {
            assert_eq!(normalize_path(input).as_deref(), Ok(want), "{input}");
        }
        let bad = [
            ("", PathError::NotAbsolute),
            ("a", PathError::NotAbsolute),
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e/x", PathError::AboveRoot),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%5Cb", PathError::EncodedSlash),
            ("/a%00", PathError::Nul),
            ("/a\0", PathError::Nul),
            ("/a\\b", PathError::Backslash),
            ("/a%zz", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/public/..;/admin", PathError::PathParameterDots),
        ];
        for (input, want) in bad {
            assert_eq!(normalize_path(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/x"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/api/", "/api/x"));
        assert!(!prefix_matches("/api/", "/api"));
    }

    #[test]
    fn prefixes_match_as_lenient_origins_read_paths() {
        for path in [
            "/private;x/y",
            "/private;jsessionid=1/y",
            "/PRIVATE/y",
            "/Private",
            "/private./y",
            "/private%20/y",
            "/private.%20./y",
            "/a/b;c",
        ] {
            let prefix = if path.starts_with("/a/") {
                "/a/b"
            } else {
                "/private"
            };
            assert!(prefix_matches(prefix, path), "{prefix} {path}");
        }
        for path in ["/privatex/y", "/priv/ate", "/p", "/private-x"] {
            assert!(!prefix_matches("/private", path), "{path}");
        }
        assert_eq!(prefix_match("/private", "/private;x/y"), Some(10));
        assert_eq!(prefix_match("/a/b", "/A;1/b./c"), Some(7));
        assert_eq!(prefix_match("/api/", "/API;x"), None);
        assert_eq!(prefix_match("/api/", "/API;x/1"), Some(6));
    }

    #[test]
    fn hosts_then_longest_prefix() {
        let t = RouteTable::new([
            (None, "/"),
            (None, "/api"),
            (Some("app.example.com"), "/"),
            (Some("*.example.com"), "/w"),
            (Some("*.b.example.com"), "/"),
        ]);
        assert_eq!(t.find("other", "/x"), Some(0));
        assert_eq!(t.find("other", "/api/v1"), Some(1));
        assert_eq!(t.find("app.example.com", "/api"), Some(2));
        assert_eq!(t.find("z.example.com", "/w/1"), Some(3));
        assert_eq!(
            t.find("z.example.com", "/x"),
            None,
            "a host's group does not fall through"
        );
        assert_eq!(
            t.find("c.b.example.com", "/x"),
            Some(4),
            "the longest wildcard wins"
        );
        assert_eq!(
            t.find("example.com", "/x"),
            Some(0),
            "*.example.com does not match example.com"
        );
    }

    #[test]
    fn host_extraction() {
        assert_eq!(host_of("Example.COM:8443"), "example.com");
        assert_eq!(host_of("example.com."), "example.com");
        assert_eq!(host_of("[::1]:80"), "::1");
        assert_eq!(host_of("127.0.0.1"), "127.0.0.1");
    }
}
