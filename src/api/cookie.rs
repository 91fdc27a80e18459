//! The cookie flow (SPEC §2.4, seed 004) and `GET /users/me`. Security rules:
//! - Every sign-in makes a new session (no fixation); refresh rotates the token; logout
//!   deletes the session everywhere and clears the cookie.
//! - The cookie is `HttpOnly; SameSite=Lax; Path=/` and, on TLS, `Secure` with the `__Host-`
//!   name; on the plain listener the prefix is dropped (browsers refuse `__Host-` without TLS).
//! - Sign-in refuses cross-site posts (`Sec-Fetch-Site: cross-site` or a foreign `Origin`), is
//!   rate-limited per username and per client address (429 + `Retry-After`), and answers
//!   unknown users and wrong passwords the same way (`invalid_credentials`, same work done).
//! - `rd` redirects go only to same-origin relative paths (`forms::safe_redirect`).

use super::caller::{authority, current, no_session};
use super::forms;
use crate::auth;
use crate::auth::browser::cross_site;
use crate::body::ProxyBody;
use crate::error::{ApiError, json_response};
use crate::gateway::{ConnInfo, GatewayState};
use crate::session::Session;
use crate::session::cache::{CachedSession, Found};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

pub(super) fn set_cookie(name: &str, value: &str, max_age: u64, tls: bool) -> Option<HeaderValue> {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly{secure}; SameSite=Lax; Path=/; Max-Age={max_age}"
    ))
    .ok()
}

/// The user JSON of `/users/me`, sign-in and the status socket: the user and its session.
pub(super) fn user_json(
    id: &str,
    exp: u64,
    device_uuid: Option<&str>,
    user: Option<&crate::session::User>,
) -> String {
    serde_json::json!({
        // A provider's people have no numeric id (null), and say which provider it was.
        "user_id": user.filter(|u| u.provider.is_none()).map(|u| u.id),
        "provider": user.and_then(|u| u.provider.as_deref()),
        "username": user.map(|u| u.username.as_str()),
        "user_uuid": user.map(|u| u.uuid.as_str()),
        "roles": user.map(|u| u.roles.as_slice()).unwrap_or_default(),
        "session": {"id": id, "exp": exp, "device_uuid": device_uuid},
    })
    .to_string()
}

/// `user_json` of a cached session.
pub(super) fn live_json(live: &CachedSession) -> String {
    let s = &live.session;
    user_json(live.id(), s.ends_at(), s.device_uuid(), live.user())
}

/// `/users/me` in single-user mode: the local user, no session.
fn local_user_json(user: &crate::session::User) -> String {
    serde_json::json!({
        "user_id": user.id,
        "username": user.username,
        "user_uuid": user.uuid,
        "roles": user.roles,
        "session": null,
    })
    .to_string()
}

/// `GET /users/me`: the caller's user and session; for a pending session, 401 with the login
/// page's address (store protocol, SPEC §2.1).
pub async fn me(shared: &GatewayState, conn: &ConnInfo, req: &Request<Incoming>) -> Response<ProxyBody> {
    if let Some(local) = &shared.api.single_user {
        return json_response(StatusCode::OK, local_user_json(local));
    }
    let found = match auth::credential(req.headers(), shared.cookie_on(conn)) {
        Ok(Some(c)) => match shared.sessions.authenticate(c.token()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "session lookup failed");
                return ApiError::from(&e).into_response();
            }
        },
        _ => Found::Nothing,
    };
    match found {
        Found::Active(live) => json_response(StatusCode::OK, live_json(&live)),
        Found::Pending(live) => {
            let url = super::pending::login_url(shared, live.session.user_code().unwrap_or(""));
            let mut refused = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "login_required",
                "this session waits for a login in a browser",
            )
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            if let Ok(v) = HeaderValue::from_str(&url) {
                refused = refused.with_header(header::LOCATION, v);
            }
            refused.with_member("login_url", url).into_response()
        }
        Found::Nothing => {
            let refused =
                no_session().with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            match HeaderValue::from_str(&shared.api.url("/auth/login")) {
                Ok(login) => refused.with_header(header::LOCATION, login),
                Err(_) => refused,
            }
            .into_response()
        }
    }
}

/// `POST /auth/signin` `{"username", "password"}` (JSON or form).
pub async fn signin(shared: &GatewayState, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
    if cross_site(req.headers(), authority(&req)) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "sign-in from another site is refused",
        )
        .into_response();
    }
    let api = &shared.api;
    if let Err(refused) = api.address_allowed(conn.peer.ip()) {
        return refused.into_response();
    }
    let meta = super::caller::meta(conn, req.headers(), None);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let fields = match forms::fields(content_type.as_deref(), req.into_body()).await {
        Ok(f) => f,
        Err(e) => return forms::body_error(e).into_response(),
    };
    let (Some(username), Some(password)) = (fields.get("username"), fields.get("password")) else {
        let missing = if fields.contains_key("username") {
            "password"
        } else {
            "username"
        };
        return ApiError::field("missing_field", missing, "required").into_response();
    };
    let user = match api.check_login(username, password).await {
        Ok(user) => user,
        Err(refused) => return refused.into_response(),
    };
    match shared.sessions.create_active(user, None, meta).await {
        Ok(issued) => with_cookie(shared, conn, &issued.token, &issued.session),
        Err(e) => {
            tracing::warn!(error = %e, "sign-in: cannot create a session");
            ApiError::from(&e).into_response()
        }
    }
}

fn with_cookie(
    shared: &GatewayState,
    conn: &ConnInfo,
    token: &str,
    session: &Session,
) -> Response<ProxyBody> {
    let body = user_json(
        &session.id,
        session.ends_at(),
        session.device_uuid.as_deref(),
        session.user.as_ref(),
    );
    let mut resp = json_response(StatusCode::OK, body);
    let max_age = session.ends_at().saturating_sub(crate::session::now());
    if let Some(c) = set_cookie(shared.cookie_on(conn), token, max_age, conn.tls) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

/// A browser signed in (the login form, a provider's callback): a 303 to `rd` (already
/// safe) with the new session's cookie.
pub(super) fn signed_in(
    shared: &GatewayState,
    conn: &ConnInfo,
    token: &str,
    session: &Session,
    rd: &str,
) -> Response<ProxyBody> {
    let mut resp = forms::see_other(rd);
    let max_age = session.ends_at().saturating_sub(crate::session::now());
    if let Some(c) = set_cookie(shared.cookie_on(conn), token, max_age, conn.tls) {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

/// `POST /auth/refresh`: a new token and expiry for the caller's session.
pub async fn refresh(shared: &GatewayState, conn: &ConnInfo, req: &Request<Incoming>) -> Response<ProxyBody> {
    if cross_site(req.headers(), authority(req)) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "refresh from another site is refused",
        )
        .into_response();
    }
    let live = match current(shared, conn, req.headers()).await {
        Err(refused) => return refused.into_response(),
        Ok(None) => return no_session().into_response(),
        Ok(Some(live)) => live,
    };
    match shared.sessions.rotate(&live).await {
        Ok(Some(issued)) => with_cookie(shared, conn, &issued.token, &issued.session),
        Ok(None) => no_session().into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "refresh failed");
            ApiError::from(&e).into_response()
        }
    }
}

/// `GET` or `POST /auth/logout[?rd=…]`: the session is deleted everywhere, the cookie cleared.
pub async fn logout(shared: &GatewayState, conn: &ConnInfo, req: &Request<Incoming>) -> Response<ProxyBody> {
    let navigation = crate::auth::is_browser_navigation(
        req.method().as_str(),
        req.headers().get(header::ACCEPT).map(HeaderValue::as_bytes),
    );
    // Another site (a sibling host too) must not sign the person out behind their back.
    if cross_site(req.headers(), authority(req)) {
        if navigation {
            let body = "<p>Signing out from another site is refused. Use this site's own sign-out.</p>\n";
            return crate::pages::respond(
                StatusCode::FORBIDDEN,
                crate::pages::page(&shared.ui_title, "Not signed out", body),
            );
        }
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "logout from another site is refused",
        )
        .into_response();
    }
    if let Ok(Some(live)) = current(shared, conn, req.headers()).await
        && let Err(e) = shared.sessions.revoke(live.id()).await
    {
        tracing::warn!(error = %e, "logout: cannot delete the session");
        return ApiError::from(&e).into_response();
    }
    let rd = forms::query_param(req.uri().query(), "rd");
    let mut resp = match rd {
        Some(rd) => forms::see_other(&forms::safe_redirect(&rd)),
        // A person who signed out in a browser gets a page that says so, with a way back.
        None if navigation => {
            let login = shared.api.url("/auth/login");
            let body = format!(
                "<p>You are signed out of {}. Your session has ended on this device.</p>\n{}",
                crate::pages::escape(&shared.ui_title),
                crate::pages::button_link(&login, "Sign in again")
            );
            crate::pages::respond(
                StatusCode::OK,
                crate::pages::page(&shared.ui_title, "Signed out", &body),
            )
        }
        None => json_response(StatusCode::OK, "{}".into()),
    };
    if let Some(c) = set_cookie(shared.cookie_on(conn), "", 0, conn.tls) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}
