//! The sign-in pages (SPEC §2.1, §4), plain HTML forms that work without JavaScript:
//! - `GET /auth/login[?rd=…]`: username and password; `POST` makes a cookie session and sends
//!   the browser on to `rd` (303; same-origin relative paths only).
//! - `GET /auth/login?code=…`: a device asks to sign in. The page names the device (user agent,
//!   address, when) and offers Approve (with the person's password) and Deny; an unknown or
//!   expired code is said at once, before any password is asked. `POST` with `decision =
//!   approve` activates that pending session, `deny` refuses it (its status socket says so).
//! - `GET /auth/device`: a form to type the code the device shows (RFC 8628 style).
//!
//! Security rules: everything shown is HTML-escaped (`pages`); cross-site posts are refused
//! (login CSRF; `Sec-Fetch-Site` is authoritative); the same rate limits and password checks as
//! every other login apply, and every code looked up (page, Approve, Deny) counts against the
//! per-address limit, so codes cannot be enumerated.

use super::caller::{authority, meta};
use super::forms;
use super::forms::safe_redirect;
use crate::api_state::LoginRefused;
use crate::auth::browser::cross_site;
use crate::body::ProxyBody;
use crate::gateway::{ConnInfo, GatewayState};
use crate::pages::{self, escape};
use crate::session::Session;
use crate::session::cache::CreateError;
use crate::session::lifecycle::{display_code, normalize_code};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::fmt::Write;

/// The sign-in form: `rd` and a failed attempt's username and error carried along.
struct SignIn<'a> {
    rd: Option<&'a str>,
    username: &'a str,
    error: Option<&'a str>,
}

fn alert(html: &mut String, error: Option<&str>) {
    if let Some(error) = error {
        let _ = writeln!(html, "<p class=\"alert\" role=\"alert\">{}</p>", escape(error));
    }
}

/// Username and password fields; the username gets the focus unless one is kept (then the
/// password does, after a failure).
fn credentials(html: &mut String, username: &str) {
    let (user_focus, pass_focus) = if username.is_empty() {
        (" autofocus", "")
    } else {
        ("", " autofocus")
    };
    let _ = write!(
        html,
        "<label for=\"username\">Username</label>\n\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" autocapitalize=\"none\" \
         spellcheck=\"false\" required value=\"{}\"{user_focus}>\n\
         <label for=\"password\">Password</label>\n\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" \
         required{pass_focus}>\n",
        escape(username)
    );
}

fn sign_in_page(shared: &GatewayState, form: &SignIn) -> String {
    let mut body = String::new();
    alert(&mut body, form.error);
    let _ = writeln!(
        body,
        "<form method=\"post\" action=\"{}\">",
        escape(&shared.api.url("/auth/login"))
    );
    if let Some(rd) = form.rd {
        let _ = writeln!(
            body,
            "<input type=\"hidden\" name=\"rd\" value=\"{}\">",
            escape(rd)
        );
    }
    credentials(&mut body, form.username);
    body.push_str("<button type=\"submit\">Sign in</button>\n</form>\n");
    providers(&mut body, shared, form.rd);
    let _ = writeln!(
        body,
        "<p class=\"muted\">Signing in a TV, a terminal or another device? <a href=\"{}\">Enter its code</a>.</p>",
        escape(&shared.api.url("/auth/device"))
    );
    pages::page(&shared.ui_title, "Sign in", &body)
}

/// One button per `[[oidc]]` provider (SPEC §4a), each starting its sign-in with `rd`.
fn providers(body: &mut String, shared: &GatewayState, rd: Option<&str>) {
    for provider in shared.oidc.iter() {
        let mut href = shared
            .api
            .url(&format!("/auth/oidc/{}/start", provider.config.name));
        if let Some(rd) = rd {
            href.push('?');
            href.push_str(
                &form_urlencoded::Serializer::new(String::new())
                    .append_pair("rd", rd)
                    .finish(),
            );
        }
        body.push_str(&pages::button_link(
            &href,
            &format!("Sign in with {}", provider.config.display_name),
        ));
    }
}

/// When a pending session was asked for, in words: `2026-11-30 02:15 UTC (3 minutes ago)`.
fn when(created: u64, now: u64) -> String {
    // A store holds what it is given: a time past year 9999 reads as that year's end.
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(created.min(253_402_300_799));
    let stamp = humantime::format_rfc3339_seconds(at).to_string();
    let stamp = stamp.get(..16).unwrap_or(&stamp).replace('T', " ");
    let ago = now.saturating_sub(created);
    let ago = match ago {
        0..=59 => "just now".to_string(),
        60..=119 => "1 minute ago".to_string(),
        _ => format!("{} minutes ago", ago / 60),
    };
    format!("{stamp} UTC ({ago})")
}

/// The page for a device's code: who asks, then Approve (with a password) or Deny.
fn device_page(
    shared: &GatewayState,
    code: &str,
    pending: &Session,
    username: &str,
    error: Option<&str>,
) -> String {
    let mut body = String::new();
    alert(&mut body, error);
    let _ = write!(
        body,
        "<p>A device is asking to sign in to {site}. Continue only if it shows this code:</p>\n\
         <p class=\"code\">{code}</p>\n<dl>\n<dt>Device</dt><dd>{agent}</dd>\n\
         <dt>Address</dt><dd>{ip}</dd>\n<dt>Asked</dt><dd>{when}</dd>\n</dl>\n",
        site = escape(&shared.ui_title),
        code = escape(code),
        agent = escape(pending.user_agent.as_deref().unwrap_or("unknown")),
        ip = escape(pending.ip.as_deref().unwrap_or("unknown")),
        when = escape(&when(pending.created, crate::session::now())),
    );
    let _ = writeln!(
        body,
        "<form method=\"post\" action=\"{}\">\n<input type=\"hidden\" name=\"code\" value=\"{}\">",
        escape(&shared.api.url("/auth/login")),
        escape(code)
    );
    credentials(&mut body, username);
    body.push_str(
        "<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>\n\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\" formnovalidate>Deny</button>\n\
         </form>\n",
    );
    for provider in shared.oidc.iter() {
        // A form, not a link: the provider's sign-in approves this device (`api::oidc`).
        let _ = writeln!(
            body,
            "<form method=\"post\" action=\"{}\">\n<input type=\"hidden\" name=\"code\" value=\"{}\">\n\
             <button type=\"submit\" class=\"secondary\">Approve with {}</button>\n</form>",
            escape(
                &shared
                    .api
                    .url(&format!("/auth/oidc/{}/start", provider.config.name))
            ),
            escape(code),
            escape(&provider.config.display_name)
        );
    }
    pages::page(&shared.ui_title, "Approve this device?", &body)
}

/// The code-entry form (`GET /auth/device`), with what went wrong with the last code.
fn code_page(shared: &GatewayState, error: Option<&str>) -> String {
    let mut body = String::new();
    alert(&mut body, error);
    let _ = write!(
        body,
        "<p>Type the code your device shows.</p>\n<form method=\"get\" action=\"{}\">\n\
         <label for=\"code\">Code</label>\n\
         <input id=\"code\" name=\"code\" autocomplete=\"off\" autocapitalize=\"characters\" \
         spellcheck=\"false\" placeholder=\"ABCD-EFGH\" required autofocus>\n\
         <button type=\"submit\">Continue</button>\n</form>\n",
        escape(&shared.api.url("/auth/login"))
    );
    pages::page(&shared.ui_title, "Sign in a device", &body)
}

fn done_page(shared: &GatewayState, heading: &str, text: &str) -> String {
    pages::page(&shared.ui_title, heading, &format!("<p>{}</p>\n", escape(text)))
}

const UNKNOWN_CODE: &str = "This code is unknown or has expired. Start again on your device.";

/// A code as typed, in its canonical form when it is well-formed.
fn shown_code(code: &str) -> String {
    normalize_code(code).map_or_else(|| code.chars().take(32).collect(), |n| display_code(&n))
}

/// `GET /auth/device`.
pub fn device(shared: &GatewayState) -> Response<ProxyBody> {
    pages::respond(StatusCode::OK, code_page(shared, None))
}

/// `GET /auth/login`.
pub async fn page(shared: &GatewayState, conn: &ConnInfo, req: &Request<Incoming>) -> Response<ProxyBody> {
    let query = req.uri().query();
    let rd = forms::query_param(query, "rd");
    let Some(code) = forms::query_param(query, "code").filter(|c| !c.trim().is_empty()) else {
        let form = SignIn {
            rd: rd.as_deref(),
            username: "",
            error: None,
        };
        return pages::respond(StatusCode::OK, sign_in_page(shared, &form));
    };
    // Looking codes up counts against the per-address limit, so codes cannot be enumerated.
    if let Err(refused) = shared.api.address_allowed(conn.peer.ip()) {
        let (status, error, wait) = refusal(refused);
        return retry_after(pages::respond(status, code_page(shared, Some(error))), wait);
    }
    match shared.sessions.find_pending(&code).await {
        Ok(Some(pending)) => pages::respond(
            StatusCode::OK,
            device_page(shared, &shown_code(&code), &pending, "", None),
        ),
        Ok(None) => pages::respond(StatusCode::NOT_FOUND, code_page(shared, Some(UNKNOWN_CODE))),
        Err(e) => {
            tracing::warn!(error = %e, "login page: cannot look a code up");
            unavailable(shared)
        }
    }
}

fn unavailable(shared: &GatewayState) -> Response<ProxyBody> {
    pages::respond(
        StatusCode::SERVICE_UNAVAILABLE,
        done_page(
            shared,
            "Temporarily unavailable",
            "Sign-in is unavailable right now. Try again shortly.",
        ),
    )
}

/// `POST /auth/login`.
pub async fn submit(shared: &GatewayState, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
    if cross_site(req.headers(), authority(&req)) {
        let form = SignIn {
            rd: None,
            username: "",
            error: Some("Sign-in from another site is refused."),
        };
        return pages::respond(StatusCode::FORBIDDEN, sign_in_page(shared, &form));
    }
    let headers = req.headers().clone();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let fields = match forms::fields(content_type, req.into_body()).await {
        Ok(f) => f,
        Err(e) => return forms::body_error(e).into_response(),
    };
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or("");
    let code = Some(field("code").trim()).filter(|c| !c.is_empty());
    let username: String = field("username").chars().take(64).collect();
    if let Some(code) = code {
        return device_submit(
            shared,
            conn,
            &headers,
            code,
            &username,
            field("password"),
            field("decision"),
        )
        .await;
    }
    let rd = fields.get("rd").map(String::as_str);
    let again = |status: StatusCode, error: &str| {
        let form = SignIn {
            rd,
            username: &username,
            error: Some(error),
        };
        pages::respond(status, sign_in_page(shared, &form))
    };
    if username.is_empty() || field("password").is_empty() {
        return again(StatusCode::BAD_REQUEST, "Enter your username and password.");
    }
    let user = match check(shared, conn, &username, field("password")).await {
        Ok(user) => user,
        Err((status, error, wait)) => return retry_after(again(status, error), wait),
    };
    match shared
        .sessions
        .create_active(user, None, meta(conn, &headers, None))
        .await
    {
        Ok(issued) => {
            let rd = safe_redirect(rd.unwrap_or("/"));
            super::cookie::signed_in(shared, conn, &issued.token, &issued.session, &rd)
        }
        Err(e) => {
            tracing::warn!(error = %e, "login page: cannot create a session");
            unavailable(shared)
        }
    }
}

/// A refused password check: the status, what the page says, and a `Retry-After`.
type Refusal = (StatusCode, &'static str, Option<u64>);

/// The per-address limit, then the per-user limit and the password.
async fn check<'s>(
    shared: &'s GatewayState,
    conn: &ConnInfo,
    username: &str,
    password: &str,
) -> Result<&'s crate::session::User, Refusal> {
    let api = &shared.api;
    let checked = match api.address_allowed(conn.peer.ip()) {
        Ok(()) => api.check_login(username, password).await,
        Err(refused) => Err(refused),
    };
    checked.map_err(refusal)
}

fn refusal(refused: LoginRefused) -> Refusal {
    match refused {
        LoginRefused::Invalid => (StatusCode::UNAUTHORIZED, "Wrong username or password.", None),
        LoginRefused::RateLimited(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts. Wait a minute and try again.",
            Some(wait),
        ),
    }
}

fn retry_after(mut resp: Response<ProxyBody>, wait: Option<u64>) -> Response<ProxyBody> {
    if let Some(v) = wait.and_then(|w| HeaderValue::from_str(&w.to_string()).ok()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// `POST /auth/login` with a device's code: Approve (with a password) or Deny.
async fn device_submit(
    shared: &GatewayState,
    conn: &ConnInfo,
    headers: &http::HeaderMap,
    code: &str,
    username: &str,
    password: &str,
    decision: &str,
) -> Response<ProxyBody> {
    let shown = shown_code(code);
    // One hit on the per-address limit per decision, taken before the code is looked up.
    if let Err(refused) = shared.api.address_allowed(conn.peer.ip()) {
        let (status, error, wait) = refusal(refused);
        return retry_after(pages::respond(status, code_page(shared, Some(error))), wait);
    }
    let pending = match shared.sessions.find_pending(code).await {
        Ok(Some(p)) => p,
        Ok(None) => return pages::respond(StatusCode::NOT_FOUND, code_page(shared, Some(UNKNOWN_CODE))),
        Err(e) => {
            tracing::warn!(error = %e, "login page: cannot look a code up");
            return unavailable(shared);
        }
    };
    if decision == "deny" {
        return match shared.sessions.deny(code).await {
            Ok(true) => pages::respond(
                StatusCode::OK,
                done_page(
                    shared,
                    "Request denied",
                    &format!("The device showing {shown} was not signed in. It has been told so."),
                ),
            ),
            Ok(false) => pages::respond(StatusCode::NOT_FOUND, code_page(shared, Some(UNKNOWN_CODE))),
            Err(CreateError::Conflict) => pages::respond(
                StatusCode::CONFLICT,
                device_page(shared, &shown, &pending, username, Some(CHANGED_MEANWHILE)),
            ),
            Err(e) => {
                tracing::warn!(error = %e, "login page: cannot deny a session");
                unavailable(shared)
            }
        };
    }
    let again = |status: StatusCode, error: &str| {
        pages::respond(
            status,
            device_page(shared, &shown, &pending, username, Some(error)),
        )
    };
    if username.is_empty() || password.is_empty() {
        return again(
            StatusCode::BAD_REQUEST,
            "Enter your username and password to approve.",
        );
    }
    let user = match shared.api.check_login(username, password).await {
        Ok(user) => user,
        Err(refused) => {
            let (status, error, wait) = refusal(refused);
            return retry_after(again(status, error), wait);
        }
    };
    match shared
        .sessions
        .activate(code, user, meta(conn, headers, None))
        .await
    {
        Ok(Some(_)) => pages::respond(
            StatusCode::OK,
            done_page(
                shared,
                "Device signed in",
                &format!(
                    "The device showing {shown} is now signed in as {}. You can close this window.",
                    user.username
                ),
            ),
        ),
        Ok(None) => pages::respond(StatusCode::NOT_FOUND, code_page(shared, Some(UNKNOWN_CODE))),
        // Not an outage: the request changed meanwhile (another tab approved or denied it).
        Err(CreateError::Conflict) => again(StatusCode::CONFLICT, CHANGED_MEANWHILE),
        Err(e) => {
            tracing::warn!(error = %e, "login page: cannot activate a session");
            unavailable(shared)
        }
    }
}

/// A device request that kept changing while it was being approved or denied.
const CHANGED_MEANWHILE: &str = "This request changed while it was being answered. Try again.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_a_person_says_them() {
        assert_eq!(when(0, 30), "1970-01-01 00:00 UTC (just now)");
        assert_eq!(when(60, 150), "1970-01-01 00:01 UTC (1 minute ago)");
        assert_eq!(when(0, 200), "1970-01-01 00:00 UTC (3 minutes ago)");
        assert_eq!(when(u64::MAX, 0), "9999-12-31 23:59 UTC (just now)");
    }

    #[test]
    fn what_a_client_sent_is_escaped() {
        let mut html = String::new();
        alert(&mut html, Some("<b>"));
        credentials(&mut html, "\"><img src=x onerror=alert(1)>");
        assert!(!html.contains("<b>") && !html.contains("<img"), "{html}");
        assert!(html.contains("&lt;b&gt;") && html.contains("&quot;&gt;&lt;img"));
        assert!(html.contains("type=\"password\" autocomplete=\"current-password\" required autofocus"));
        assert!(
            !html.contains("value=\"\" autofocus"),
            "the password gets the focus after a failure"
        );
    }
}
