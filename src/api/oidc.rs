//! The sign-in endpoints of `[[oidc]]` providers (SPEC §4a), at `/auth/oidc/<name>/…`:
//! - `GET start[?rd=…]`: a 302 to the provider, with the sign-in's state in a sealed cookie
//!   (`crate::oidc::state`).
//! - A device's `code` is taken only by `POST start` from this site's own device page, where
//!   the person saw which device asks (the "Approve with …" button); `GET start?code=…` sends
//!   the browser to that page. Otherwise a link would approve an attacker's device as whoever
//!   clicks it while signed in at the provider, with no page in between.
//! - `GET callback`: the state checked against its cookie (which every answer clears), then
//!   the code exchanged and the person verified (`crate::oidc::signin`): a cookie session and
//!   a 303 to `rd`, or the device's pending session activated.
//! - `POST backchannel-logout`: `oidc_logout.rs`.
//!
//! Every failure of a person's sign-in is a page that says what happened, never a 500, and
//! makes no session; password sign-in works whatever the providers do. Logs name the
//! provider and the failure, never a code, a token or the client secret.

use super::caller::{authority, meta};
use super::cookie::set_cookie;
use super::forms;
use crate::body::ProxyBody;
use crate::gateway::{ConnInfo, GatewayState};
use crate::oidc::state::{self, Started};
use crate::oidc::{Failure, Provider};
use crate::pages::{self, escape};
use crate::session::cache::CreateError;
use crate::session::lifecycle::normalize_code;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::sync::Arc;

/// Sign-ins in progress one browser may have (each its own cookie, for tabs side by side).
const KEPT_SIGN_INS: usize = 3;
/// The longest `rd` a sign-in carries.
const MAX_RD: usize = 1024;

/// Answers `/auth/oidc/<name>/<action>` (`path`: within the API prefix).
pub async fn answer(
    shared: &GatewayState,
    conn: &ConnInfo,
    path: &str,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let rest = path.strip_prefix("/auth/oidc/").unwrap_or_default();
    let (name, action) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(provider) = shared.oidc.get(name).cloned() else {
        let shown: String = name.chars().take(64).collect();
        return page(
            shared,
            StatusCode::NOT_FOUND,
            "Unknown sign-in provider",
            &format!("This site has no sign-in provider named \"{shown}\"."),
        );
    };
    let method = req.method().clone();
    match (action, &method) {
        ("start", &Method::GET | &Method::HEAD) => start(shared, conn, &provider, &req).await,
        ("start", &Method::POST) => approve_device(shared, conn, &provider, req).await,
        ("callback", &Method::GET) => callback(shared, conn, &provider, &req).await,
        ("backchannel-logout", &Method::POST) => {
            super::oidc_logout::backchannel(shared, &provider, req).await
        }
        ("start" | "callback" | "backchannel-logout", _) => {
            let allow = match action {
                "backchannel-logout" => "POST",
                "start" => "GET, POST",
                _ => "GET",
            };
            let mut resp = page(
                shared,
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                "This address does not take this kind of request.",
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
        _ => page(
            shared,
            StatusCode::NOT_FOUND,
            "Not found",
            "There is nothing at this address.",
        ),
    }
}

/// `GET /auth/oidc/<name>/start`.
async fn start(
    shared: &GatewayState,
    conn: &ConnInfo,
    provider: &Provider,
    req: &Request<Incoming>,
) -> Response<ProxyBody> {
    let query = req.uri().query();
    if let Some(code) = forms::query_param(query, "code").filter(|c| !c.trim().is_empty()) {
        // The device page first: the person sees which device asks before approving it.
        let mut to = shared.api.url("/auth/login?");
        to.push_str(
            &form_urlencoded::Serializer::new(String::new())
                .append_pair("code", &code)
                .finish(),
        );
        return forms::see_other(&to);
    }
    let rd = forms::query_param(query, "rd").map(|rd| forms::safe_redirect(&rd));
    begin(shared, conn, provider, req, rd, None).await
}

/// `POST /auth/oidc/<name>/start` with a device's `code`: the device page's "Approve with …"
/// button. Refused from other sites, like every form of the gateway's.
async fn approve_device(
    shared: &GatewayState,
    conn: &ConnInfo,
    provider: &Provider,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if crate::auth::browser::cross_site(req.headers(), authority(&req)) {
        return page(
            shared,
            StatusCode::FORBIDDEN,
            "Not approved",
            "Approving a device from another site is refused. Use this site's own device page.",
        );
    }
    let (parts, body) = req.into_parts();
    let head = Request::from_parts(parts, ());
    let content_type = head
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let code = match forms::fields(content_type, body).await {
        Ok(mut fields) => fields.remove("code").unwrap_or_default(),
        Err(e) => return forms::body_error(e).into_response(),
    };
    let code = match pending_code(shared, conn, &code).await {
        Ok(code) => code,
        Err(resp) => return resp,
    };
    begin(shared, conn, provider, &head, None, Some(code)).await
}

/// Sends the browser to the provider: the sign-in's cookie and a 302.
async fn begin<B>(
    shared: &GatewayState,
    conn: &ConnInfo,
    provider: &Provider,
    req: &Request<B>,
    rd: Option<String>,
    code: Option<String>,
) -> Response<ProxyBody> {
    let Some(redirect_uri) = redirect_uri(shared, conn, provider, req) else {
        return page(
            shared,
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "This request does not name the site it is for (no valid Host), so the provider could not send you back.",
        );
    };
    let keys = shared.sessions.keys();
    let derived = state::new_state().and_then(|s| {
        let nonce = state::derived(keys, 0, b"nonce", &s)?;
        let verifier = state::derived(keys, 0, b"pkce", &s)?;
        let cookie = state::cookie_name(shared.cookie_on(conn), &s)?;
        Some((s, nonce, verifier, cookie))
    });
    let Some((state_value, nonce, verifier, cookie)) = derived else {
        tracing::error!(provider = %provider.config.name, "oidc: cannot make a sign-in's state");
        return unavailable(shared);
    };
    let url = match provider
        .authorize_url(&redirect_uri, &state_value, nonce, verifier)
        .await
    {
        Ok(url) => url,
        Err(failure) => return failed(shared, provider, &failure),
    };
    let started = Started {
        provider: provider.config.name.clone(),
        state: state_value,
        // A long `rd` would make every sign-in cookie long: such a one goes home instead.
        rd: rd.filter(|rd| rd.len() <= MAX_RD),
        code,
        redirect_uri,
        expires: crate::session::now() + state::LIFETIME,
        key: 0,
    };
    let sealed = state::seal(keys, &started);
    let (Some(sealed), Ok(location)) = (sealed, HeaderValue::from_str(&url)) else {
        return unavailable(shared);
    };
    let mut resp = match &started.code {
        None => {
            let mut r = Response::new(ProxyBody::empty());
            *r.status_mut() = StatusCode::FOUND;
            r.headers_mut().insert(header::LOCATION, location);
            r
        }
        // Answering the device page's form: a redirect to another site would be blocked by the
        // pages' `form-action 'self'`, so a page sends the browser on (`Refresh`, and a button).
        Some(_) => {
            let name = &provider.config.display_name;
            let body = format!(
                "<p>Continuing to {} to approve this device…</p>\n{}",
                escape(name),
                pages::button_link(&url, &format!("Continue to {name}"))
            );
            let mut r = pages::respond(
                StatusCode::OK,
                pages::page(&shared.ui_title, "Approve this device", &body),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("0;url={url}")) {
                r.headers_mut().insert("refresh", v);
            }
            r
        }
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(c) = set_cookie(&cookie, &sealed, state::LIFETIME, conn.tls) {
        h.append(header::SET_COOKIE, c);
    }
    for stale in crowded_out(shared, conn, req.headers()) {
        if let Some(c) = set_cookie(&stale, "", 0, conn.tls) {
            h.append(header::SET_COOKIE, c);
        }
    }
    resp
}

/// The sign-in cookies a new one crowds out: all but the `KEPT_SIGN_INS - 1` newest this
/// browser holds (unreadable ones first). Without this, a page sending a browser to `start`
/// a few dozen times would grow its `Cookie` header past what any server takes (431), shutting
/// the person out of the whole site for as long as the cookies live.
fn crowded_out(shared: &GatewayState, conn: &ConnInfo, headers: &http::HeaderMap) -> Vec<String> {
    let prefix = format!("{}-oidc-", shared.cookie_on(conn));
    let now = crate::session::now();
    let values = headers
        .get_all(header::COOKIE)
        .into_iter()
        .map(HeaderValue::as_bytes);
    let mut held: Vec<(u64, String)> = crate::auth::cookie_pairs(values)
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(name, value)| {
            let expires = state::open(shared.sessions.keys(), value, now).map_or(0, |s| s.expires);
            (expires, name.to_string())
        })
        .collect();
    held.sort();
    let keep = KEPT_SIGN_INS - 1;
    let drop = held.len().saturating_sub(keep);
    held.into_iter().take(drop).map(|(_, name)| name).collect()
}

/// A device's code, normalized, if a pending session has it now; else the page that says
/// why. Looking codes up counts against the per-address limit, as on the login page.
async fn pending_code(
    shared: &GatewayState,
    conn: &ConnInfo,
    code: &str,
) -> Result<String, Response<ProxyBody>> {
    if shared.api.address_allowed(conn.peer.ip()).is_err() {
        return Err(page(
            shared,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            "Too many attempts from this address. Wait a minute and try again.",
        ));
    }
    let unknown = || {
        page(
            shared,
            StatusCode::NOT_FOUND,
            "Unknown code",
            "This code is unknown or has expired. Start again on your device.",
        )
    };
    let normalized = normalize_code(code).ok_or_else(unknown)?;
    match shared.sessions.find_pending(&normalized).await {
        Ok(Some(_)) => Ok(normalized),
        Ok(None) => Err(unknown()),
        Err(e) => {
            tracing::warn!(error = %e, "oidc: cannot look a code up");
            Err(unavailable(shared))
        }
    }
}

/// The redirect URI: the configured one, else this site's callback as the request names it
/// (`https` on the TLS listener, or behind a trusted proxy that says so).
fn redirect_uri<B>(
    shared: &GatewayState,
    conn: &ConnInfo,
    provider: &Provider,
    req: &Request<B>,
) -> Option<String> {
    if let Some(uri) = &provider.config.redirect_uri {
        return Some(uri.clone());
    }
    let host: http::uri::Authority = authority(req)?.parse().ok()?;
    let forwarded_https = shared.is_trusted(conn.peer.ip())
        && req
            .headers()
            .get("x-forwarded-proto")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let scheme = if conn.tls || forwarded_https {
        "https"
    } else {
        "http"
    };
    let path = shared
        .api
        .url(&format!("/auth/oidc/{}/callback", provider.config.name));
    Some(format!("{scheme}://{host}{path}"))
}

/// `GET /auth/oidc/<name>/callback`.
async fn callback(
    shared: &GatewayState,
    conn: &ConnInfo,
    provider: &Arc<Provider>,
    req: &Request<Incoming>,
) -> Response<ProxyBody> {
    let query = req.uri().query();
    let param = |name: &str| forms::query_param(query, name);
    let now = crate::session::now();
    let state_value = param("state").unwrap_or_default();
    let cookie = state::cookie_name(shared.cookie_on(conn), &state_value);
    let started = cookie.as_deref().and_then(|name| {
        let value = crate::auth::cookie(req.headers(), name).ok().flatten()?;
        let started = state::open(shared.sessions.keys(), value, now)?;
        let same = started.provider == provider.config.name
            && started.state.len() == state_value.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(
                started.state.as_bytes(),
                state_value.as_bytes(),
            )
            .is_ok();
        same.then_some(started)
    });
    let mut resp = match started {
        None => {
            tracing::info!(provider = %provider.config.name, failure = "state_mismatch", "oidc: sign-in refused");
            page(
                shared,
                StatusCode::BAD_REQUEST,
                "Sign-in expired",
                "This sign-in did not start in this browser, or it took longer than 10 minutes. Start again.",
            )
        }
        Some(started) => finish(shared, conn, provider, req, started, &param).await,
    };
    // The sign-in's cookie is spent, whatever happened.
    if let Some(name) = &cookie
        && let Some(c) = set_cookie(name, "", 0, conn.tls)
    {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

async fn finish(
    shared: &GatewayState,
    conn: &ConnInfo,
    provider: &Provider,
    req: &Request<Incoming>,
    started: Started,
    param: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Response<ProxyBody> {
    if let Some(error) = param("error") {
        let failure = Failure::Refused {
            error: error.chars().take(64).collect(),
            description: param("error_description").map(|d| d.chars().take(300).collect()),
        };
        return failed(shared, provider, &failure);
    }
    // RFC 9207: a provider that names itself must be the one this sign-in went to.
    if let Some(iss) = param("iss")
        && iss != provider.config.issuer
    {
        let failure = Failure::BadAnswer("the answer came from another provider (iss)".into());
        return failed(shared, provider, &failure);
    }
    let Some(code) = param("code").filter(|c| !c.is_empty() && c.len() <= 4096) else {
        let failure = Failure::BadAnswer("it sent no authorization code".into());
        return failed(shared, provider, &failure);
    };
    let keys = shared.sessions.keys();
    let (Some(nonce), Some(verifier)) = (
        state::derived(keys, started.key, b"nonce", &started.state),
        state::derived(keys, started.key, b"pkce", &started.state),
    ) else {
        return unavailable(shared);
    };
    let signed_in = match provider
        .finish(&started.redirect_uri, &code, &nonce, verifier)
        .await
    {
        Ok(s) => s,
        Err(failure) => return failed(shared, provider, &failure),
    };
    let mut meta = meta(conn, req.headers(), None);
    if let Some(sid) = &signed_in.sid {
        meta.extra.insert(crate::oidc::SID.into(), sid.clone().into());
    }
    let user = &signed_in.user;
    tracing::info!(provider = %provider.config.name, user = %user.username, "oidc: signed in");
    crate::metrics::Metrics::count(&shared.metrics.logins, "oidc_succeeded");
    if let Some(code) = &started.code {
        return match shared.sessions.activate(code, user, meta).await {
            Ok(Some(_)) => page(
                shared,
                StatusCode::OK,
                "Device signed in",
                &format!(
                    "The device showing {} is now signed in as {}. You can close this window.",
                    crate::session::lifecycle::display_code(code),
                    user.username
                ),
            ),
            Ok(None) => page(
                shared,
                StatusCode::NOT_FOUND,
                "Unknown code",
                "This code expired or was answered meanwhile. Start again on your device.",
            ),
            Err(CreateError::Conflict) => page(
                shared,
                StatusCode::CONFLICT,
                "Changed meanwhile",
                "This device's request changed while it was being answered. Start again on your device.",
            ),
            Err(e) => {
                tracing::warn!(error = %e, "oidc: cannot activate a device's session");
                unavailable(shared)
            }
        };
    }
    match shared.sessions.create_active(user, None, meta).await {
        Ok(issued) => {
            let rd = started.rd.as_deref().unwrap_or("/");
            let mut resp = super::cookie::signed_in(shared, conn, &issued.token, &issued.session, rd);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => {
            tracing::warn!(error = %e, "oidc: cannot create a session");
            unavailable(shared)
        }
    }
}

/// The page for a failed sign-in, logged by kind.
fn failed(shared: &GatewayState, provider: &Provider, failure: &Failure) -> Response<ProxyBody> {
    let (heading, text) = failure.words(&provider.config.display_name);
    tracing::info!(provider = %provider.config.name, failure = failure.kind(), detail = %failure.detail(), "oidc: sign-in failed");
    crate::metrics::Metrics::count(&shared.metrics.logins, "oidc_failed");
    page(shared, failure.status(), heading, &text)
}

fn unavailable(shared: &GatewayState) -> Response<ProxyBody> {
    page(
        shared,
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        "Sign-in is unavailable right now. Try again shortly.",
    )
}

/// A page with `text` and a way back to the sign-in page.
fn page(shared: &GatewayState, status: StatusCode, heading: &str, text: &str) -> Response<ProxyBody> {
    let login = shared.api.url("/auth/login");
    let body = if status.is_success() {
        format!("<p>{}</p>\n", escape(text))
    } else {
        format!(
            "<p class=\"alert\" role=\"alert\">{}</p>\n{}",
            escape(text),
            pages::button_link(&login, "Back to sign-in")
        )
    };
    pages::respond(status, pages::page(&shared.ui_title, heading, &body))
}
