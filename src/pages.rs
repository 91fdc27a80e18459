//! Every HTML page the gateway shows a person (SPEC §4): one layout, one stylesheet, one set of
//! headers. Pages work without JavaScript; everything shown is HTML-escaped; the CSP allows
//! nothing but the stylesheet (by its hash), form posts to this origin, and no framing. The
//! referrer policy keeps URLs (which may carry a device code) on this site while letting the
//! browser send the real `Origin` on the gateway's own form posts (`no-referrer` made Chromium
//! send `Origin: null`).

use crate::body::ProxyBody;
use http::{HeaderValue, Response, StatusCode, header};
use std::fmt::Write;
use std::sync::OnceLock;

/// The one stylesheet: a card that fits a phone, large targets, visible focus.
const CSS: &str = "*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;background:#eef1f5;color:#1b2230}\
main{max-width:26rem;margin:3rem auto;padding:1.75rem 1.5rem;background:#fff;border-radius:.75rem;\
box-shadow:0 1px 2px rgba(16,24,40,.08),0 4px 16px rgba(16,24,40,.08)}\
@media (max-width:30rem){main{margin:0;min-height:100vh;border-radius:0;box-shadow:none}}\
.site{margin:0 0 .25rem;color:#566070;font-size:.875rem;font-weight:600;letter-spacing:.03em}\
h1{margin:0 0 1rem;font-size:1.5rem;line-height:1.25}\
p{margin:.5rem 0}a{color:#1e5bd6}\
label{display:block;margin:.9rem 0 .3rem;font-weight:600}\
input{display:block;width:100%;padding:.65rem .75rem;font:inherit;border:1px solid #aab3c0;border-radius:.5rem}\
input:focus,button:focus,a:focus{outline:3px solid #8bb4ff;outline-offset:2px}\
button,.button{display:block;width:100%;margin-top:1.25rem;padding:.75rem 1rem;font:inherit;font-weight:600;\
text-align:center;text-decoration:none;border:0;border-radius:.5rem;background:#1e5bd6;color:#fff;cursor:pointer}\
button:hover,.button:hover{background:#1649ad}\
button.secondary{margin-top:.6rem;background:#e6e9ef;color:#1b2230}\
button.secondary:hover{background:#d5dae3}\
.alert{margin:0 0 1rem;padding:.65rem .8rem;border-radius:.5rem;background:#fdecee;color:#8a1020}\
.code{margin:.5rem 0 1rem;font:700 1.75rem/1.2 ui-monospace,SFMono-Regular,Menlo,monospace;letter-spacing:.15em}\
dl{display:grid;grid-template-columns:auto 1fr;gap:.2rem .9rem;margin:0 0 1rem;padding:.75rem .9rem;\
background:#f5f7fa;border-radius:.5rem;font-size:.9375rem}\
dt{color:#566070}dd{margin:0;overflow-wrap:anywhere}\
.muted{color:#566070;font-size:.9375rem}";

/// The page's `Content-Security-Policy`: the stylesheet by hash, nothing else loads.
fn csp() -> &'static HeaderValue {
    static CSP: OnceLock<HeaderValue> = OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, CSS.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        let policy = format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
    })
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: the site's name over the heading, then `body` (already HTML).
pub fn page(site: &str, heading: &str, body: &str) -> String {
    let mut html = String::with_capacity(CSS.len() + body.len() + 512);
    let _ = write!(
        html,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{heading} · {site}</title><style>{CSS}</style></head>\n\
         <body><main>\n<p class=\"site\">{site}</p>\n<h1>{heading}</h1>\n{body}</main></body></html>\n",
        heading = escape(heading),
        site = escape(site),
    );
    html
}

/// An HTML answer with the pages' headers.
pub fn respond(status: StatusCode, html: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(html));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::CONTENT_SECURITY_POLICY, csp().clone());
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// A link that looks like the primary button.
pub fn button_link(href: &str, text: &str) -> String {
    format!(
        "<a class=\"button\" href=\"{}\">{}</a>\n",
        escape(href),
        escape(text)
    )
}

/// The page a browser navigation gets instead of a JSON error: what happened, in words, and
/// a way on. `login`: the login page's path.
pub fn error_page(site: &str, status: StatusCode, login: &str) -> String {
    let (heading, text, way) = match status.as_u16() {
        400 => (
            "Bad request",
            "The address or the request could not be understood.",
            None,
        ),
        403 => (
            "Not allowed",
            "You are signed in, but your account does not have access to this page.",
            Some(("Sign in as someone else", true)),
        ),
        404 => ("Page not found", "Nothing is served at this address.", None),
        405 => (
            "Not allowed",
            "This page does not accept that kind of request.",
            None,
        ),
        413 => (
            "Too large",
            "What was sent is larger than this page accepts.",
            None,
        ),
        502 => (
            "The application is not answering",
            "The service behind this page could not be reached. Try again in a moment.",
            None,
        ),
        503 => (
            "Temporarily unavailable",
            "Sign-in checks cannot be made right now. Try again in a moment.",
            None,
        ),
        504 => (
            "The application took too long",
            "The service behind this page did not answer in time. Try again in a moment.",
            None,
        ),
        _ => ("Something went wrong", "The request could not be served.", None),
    };
    let mut body = format!("<p>{}</p>\n", escape(text));
    match way {
        Some((label, true)) => body.push_str(&button_link(login, label)),
        _ => body.push_str(&button_link("/", "Go to the start page")),
    }
    let _ = writeln!(body, "<p class=\"muted\">Error {}</p>", status.as_u16());
    page(site, heading, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csp_admits_exactly_the_stylesheet() {
        let csp = csp().to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'; style-src 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe-inline"));
        let html = page("Site <x>", "Heading", "<p>b</p>");
        assert!(html.contains(&format!("<style>{CSS}</style>")));
        assert!(html.contains("Site &lt;x&gt;") && !html.contains("<x>"));
    }

    #[test]
    fn every_error_page_says_what_happened() {
        for code in [400, 403, 404, 405, 413, 417, 501, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            let html = error_page("portcullis", status, "/auth/login");
            assert!(html.contains(&format!("Error {code}")) && html.contains("class=\"button\""));
        }
    }
}
