//! The login page (SPEC §2.1): `GET /auth/login[?code=…][&rd=…]` is a plain HTML form that
//! works without JavaScript; with a code it shows the code so the person can check it against
//! the one on their device. `POST /auth/login` (form: username, password, code?, rd?) logs the
//! pending session with that code in, or, without a code, starts a cookie session and sends
//! the browser on to `rd` (303; same-origin relative paths only).
//!
//! Security rules: everything shown is HTML-escaped; the page forbids framing, scripts and
//! caching (`Content-Security-Policy`, `X-Frame-Options`, `Cache-Control: no-store`) and sends
//! no referrer (the code is in the URL); cross-site posts are refused (login CSRF); the same
//! rate limits and password checks as every other login apply.

use super::cookie::{authority, cookie_name, cross_site, set_cookie};
use super::forms;
use super::pending::meta;
use super::{LoginRefused, forms::safe_redirect};
use crate::body::ProxyBody;
use crate::gateway::{ConnInfo, Shared};
use crate::session::lifecycle::{display_code, normalize_code};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::fmt::Write;

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

/// What the page shows besides the form.
struct Page<'a> {
    /// Where the form posts: `<api prefix>/auth/login`.
    action: &'a str,
    code: Option<&'a str>,
    rd: Option<&'a str>,
    username: &'a str,
    error: Option<&'a str>,
    /// A finished login: the message replaces the form.
    done: Option<&'a str>,
}

fn render(page: &Page) -> String {
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sign in</title><style>body{font-family:system-ui,sans-serif;max-width:24rem;\
         margin:4rem auto;padding:0 1rem}label,input,button{display:block;width:100%;\
         margin:.4rem 0}input,button{padding:.5rem;font-size:1rem}.code{font:bold 1.6rem \
         monospace;letter-spacing:.2rem}.error{color:#b00020}</style></head><body>\n",
    );
    if let Some(done) = page.done {
        let _ = write!(html, "<h1>Signed in</h1>\n<p>{}</p>\n", escape(done));
        html.push_str("</body></html>\n");
        return html;
    }
    html.push_str("<h1>Sign in</h1>\n");
    if let Some(code) = page.code {
        let _ = write!(
            html,
            "<p>A device is asking to sign in. Continue only if it shows this code:</p>\n\
             <p class=\"code\">{}</p>\n",
            escape(code)
        );
    }
    if let Some(error) = page.error {
        let _ = writeln!(html, "<p class=\"error\" role=\"alert\">{}</p>", escape(error));
    }
    let _ = writeln!(html, "<form method=\"post\" action=\"{}\">", escape(page.action));
    if let Some(code) = page.code {
        let _ = writeln!(
            html,
            "<input type=\"hidden\" name=\"code\" value=\"{}\">",
            escape(code)
        );
    }
    if let Some(rd) = page.rd {
        let _ = writeln!(
            html,
            "<input type=\"hidden\" name=\"rd\" value=\"{}\">",
            escape(rd)
        );
    }
    let _ = write!(
        html,
        "<label for=\"username\">Username</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required value=\"{}\">\n\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\n\
         <button type=\"submit\">Sign in</button>\n</form>\n</body></html>\n",
        escape(page.username)
    );
    html
}

fn html_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// A code as typed, shown back in its canonical form when it is well-formed.
fn shown_code(code: Option<&str>) -> Option<String> {
    code.filter(|c| !c.is_empty())
        .map(|c| normalize_code(c).map_or_else(|| c.chars().take(32).collect(), |n| display_code(&n)))
}

/// `GET /auth/login`.
pub async fn page(shared: &Shared, req: &Request<Incoming>) -> Response<ProxyBody> {
    let query = req.uri().query();
    let code = shown_code(forms::query_param(query, "code").as_deref());
    let rd = forms::query_param(query, "rd");
    html_response(
        StatusCode::OK,
        render(&Page {
            action: &shared.api.url("/auth/login"),
            code: code.as_deref(),
            rd: rd.as_deref(),
            username: "",
            error: None,
            done: None,
        }),
    )
}

/// `POST /auth/login`.
pub async fn submit(shared: &Shared, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
    if cross_site(req.headers(), authority(&req)) {
        return html_response(
            StatusCode::FORBIDDEN,
            render(&Page {
                action: &shared.api.url("/auth/login"),
                code: None,
                rd: None,
                username: "",
                error: Some("Sign-in from another site is refused."),
                done: None,
            }),
        );
    }
    let headers = req.headers().clone();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let fields = match forms::fields(content_type, req.into_body()).await {
        Ok(f) => f,
        Err(e) => return forms::body_error(e),
    };
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    let code = shown_code(Some(field("code")));
    let rd = fields.get("rd").map(String::as_str);
    let username = field("username");
    let again = |status: StatusCode, error: &str| {
        html_response(
            status,
            render(&Page {
                action: &shared.api.url("/auth/login"),
                code: code.as_deref(),
                rd,
                username: &username.chars().take(64).collect::<String>(),
                error: Some(error),
                done: None,
            }),
        )
    };
    if username.is_empty() || field("password").is_empty() {
        return again(StatusCode::BAD_REQUEST, "Enter your username and password.");
    }
    let api = &shared.api;
    let checked = match api.address_allowed(conn) {
        Ok(()) => api.check_login(username, field("password")).await,
        Err(refused) => Err(refused),
    };
    let user = match checked {
        Ok(user) => user,
        Err(LoginRefused::Invalid) => return again(StatusCode::UNAUTHORIZED, "Wrong username or password."),
        Err(LoginRefused::RateLimited(wait)) => {
            let mut resp = again(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts. Wait a minute and try again.",
            );
            if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
    };
    if let Some(code) = &code {
        return match shared
            .sessions
            .activate(code, user, meta(conn, &headers, None))
            .await
        {
            Ok(Some(_)) => html_response(
                StatusCode::OK,
                render(&Page {
                    action: &shared.api.url("/auth/login"),
                    code: None,
                    rd: None,
                    username: "",
                    error: None,
                    done: Some(&format!(
                        "The device showing {code} is now signed in as {}. You can close this window.",
                        user.username
                    )),
                }),
            ),
            Ok(None) => again(
                StatusCode::BAD_REQUEST,
                "This code is unknown or has expired. Start again on your device.",
            ),
            Err(e) => {
                tracing::warn!(error = %e, "login page: cannot activate a session");
                again(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sign-in is unavailable right now. Try again shortly.",
                )
            }
        };
    }
    match shared
        .sessions
        .create_active(user, None, meta(conn, &headers, None))
        .await
    {
        Ok(issued) => {
            let mut resp = Response::new(ProxyBody::empty());
            *resp.status_mut() = StatusCode::SEE_OTHER;
            if let Ok(v) = HeaderValue::from_str(&safe_redirect(rd.unwrap_or("/"))) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            let max_age = issued.session.ends_at().saturating_sub(crate::session::now());
            if let Some(c) = set_cookie(cookie_name(shared, conn), &issued.token, max_age, conn.tls) {
                resp.headers_mut().insert(header::SET_COOKIE, c);
            }
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, "login page: cannot create a session");
            again(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is unavailable right now. Try again shortly.",
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_shown_is_escaped() {
        let html = render(&Page {
            action: "/p\"><x>/auth/login",
            code: Some("<script>x</script>"),
            rd: Some("\"><img src=x onerror=alert(1)>"),
            username: "a'b&c",
            error: Some("<b>"),
            done: None,
        });
        assert!(!html.contains("<script>x"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(!html.contains("<x>"), "{html}");
        assert!(html.contains("a&#39;b&amp;c"));
        assert!(html.contains("&lt;script&gt;"));
    }
}
