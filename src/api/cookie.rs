//! The cookie flow (SPEC §2.4, seed 004) and `GET /users/me`. Security rules:
//! - Every sign-in makes a new session (no fixation); refresh rotates the token; logout
//!   deletes the session everywhere and clears the cookie.
//! - The cookie is `HttpOnly; SameSite=Lax; Path=/` and, on TLS, `Secure` with the `__Host-`
//!   name; on the plain listener the prefix is dropped (browsers refuse `__Host-` without TLS).
//! - Sign-in refuses cross-site posts (`Sec-Fetch-Site: cross-site` or a foreign `Origin`), is
//!   rate-limited per username and per client address (429 + `Retry-After`), and answers
//!   unknown users and wrong passwords the same way (`invalid_credentials`, same work done).
//! - `rd` redirects go only to same-origin relative paths (`forms::safe_redirect`).

use super::forms::{self, BodyError};
use crate::auth::{self, Credential};
use crate::body::ProxyBody;
use crate::error::{json_error, json_response};
use crate::gateway::{ConnInfo, Shared};
use crate::session::Session;
use crate::session::cache::{Found, Live, Meta};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

/// The session cookie's name on this listener.
pub fn cookie_name<'a>(shared: &'a Shared, conn: &ConnInfo) -> &'a str {
    let name = shared.cookie_name.as_str();
    if conn.tls {
        name
    } else {
        name.strip_prefix("__Host-")
            .or_else(|| name.strip_prefix("__Secure-"))
            .unwrap_or(name)
    }
}

fn set_cookie(name: &str, value: &str, max_age: u64, tls: bool) -> Option<HeaderValue> {
    let secure = if tls { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly{secure}; SameSite=Lax; Path=/; Max-Age={max_age}"
    ))
    .ok()
}

fn user_json(session: &Session) -> String {
    let user = session.user.as_ref();
    serde_json::json!({
        "user_id": user.map(|u| u.id),
        "username": user.map(|u| u.username.as_str()),
        "user_uuid": user.map(|u| u.uuid.as_str()),
        "roles": user.map(|u| u.roles.as_slice()).unwrap_or_default(),
        "session": {"id": session.id, "exp": session.ends_at(), "device_uuid": session.device_uuid},
    })
    .to_string()
}

/// Whether a browser says this request comes from another site (`host`: the request's
/// authority, from `Host` or HTTP/2's `:authority`).
pub fn cross_site(headers: &HeaderMap, host: Option<&str>) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = host.unwrap_or("");
    let origin_host = origin.split_once("://").map_or("", |(_, rest)| rest);
    origin == "null" || !origin_host.eq_ignore_ascii_case(host)
}

/// The live session behind the request's credential, or the reason there is none.
async fn current(
    shared: &Shared,
    conn: &ConnInfo,
    headers: &HeaderMap,
) -> Result<Option<std::sync::Arc<Live>>, Response<ProxyBody>> {
    let presented = match auth::credential(headers, cookie_name(shared, conn)) {
        Ok(Some(c)) => c,
        _ => return Ok(None),
    };
    match shared.sessions.authenticate(Credential::token(&presented)).await {
        Ok(Found::Active(live)) => Ok(Some(live)),
        Ok(_) => Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, "session lookup failed");
            Err(store_down())
        }
    }
}

fn store_down() -> Response<ProxyBody> {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "session_store_unavailable",
        "the session store cannot be reached; try again shortly",
    )
}

/// `GET /users/me`: the caller's user and session.
pub async fn me(shared: &Shared, conn: &ConnInfo, req: &Request<Incoming>) -> Response<ProxyBody> {
    match current(shared, conn, req.headers()).await {
        Err(resp) => resp,
        Ok(Some(live)) => json_response(StatusCode::OK, user_json(&live.session)),
        Ok(None) => {
            let mut resp = json_error(StatusCode::UNAUTHORIZED, "invalid_token", "no valid session");
            resp.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/auth/login"));
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
    }
}

fn too_many(retry_after: u64) -> Response<ProxyBody> {
    let mut resp = json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        "too many login attempts; try again later",
    );
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn authority<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST).and_then(|v| v.to_str().ok()))
}

/// `POST /auth/signin` `{"username", "password"}` (JSON or form).
pub async fn signin(shared: &Shared, conn: &ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
    if cross_site(req.headers(), authority(&req)) {
        return json_error(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "sign-in from another site is refused",
        );
    }
    let api = &shared.api;
    let address = conn.peer.ip().to_string();
    if let Err(wait) = api.per_address.hit(&address) {
        return too_many(wait);
    }
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect::<String>());
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let fields = match forms::fields(content_type.as_deref(), req.into_body()).await {
        Ok(f) => f,
        Err(BodyError::UnsupportedType) => {
            return json_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json or application/x-www-form-urlencoded",
            );
        }
        Err(BodyError::TooLarge) => {
            return json_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "at most 16 KiB");
        }
        Err(BodyError::Unreadable) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "unreadable_body",
                "the body could not be read",
            );
        }
        Err(BodyError::Invalid(why)) => return json_error(StatusCode::BAD_REQUEST, "invalid_body", &why),
    };
    let (Some(username), Some(password)) = (fields.get("username"), fields.get("password")) else {
        let missing = if fields.contains_key("username") {
            "password"
        } else {
            "username"
        };
        return json_error(
            StatusCode::BAD_REQUEST,
            "missing_field",
            &format!("{missing}: required"),
        );
    };
    if let Err(wait) = api.per_user.hit(username) {
        return too_many(wait);
    }
    let user = api.users.get(username.as_str());
    let hash = user.and_then(|u| api.hashes.get(&u.username)).map(String::as_str);
    if !api.passwords.check(hash, password).await {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong username or password",
        );
    }
    let Some(user) = user else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "wrong username or password",
        );
    };
    let meta = Meta {
        ip: Some(address),
        user_agent,
        device_uuid: None,
    };
    match shared.sessions.create_active(user, api.session_ttl, meta).await {
        Ok((token, session)) => with_cookie(shared, conn, &token, &session),
        Err(e) => {
            tracing::warn!(error = %e, "sign-in: cannot create a session");
            store_down()
        }
    }
}

fn with_cookie(shared: &Shared, conn: &ConnInfo, token: &str, session: &Session) -> Response<ProxyBody> {
    let mut resp = json_response(StatusCode::OK, user_json(session));
    let max_age = session.ends_at().saturating_sub(crate::session::now());
    if let Some(c) = set_cookie(cookie_name(shared, conn), token, max_age, conn.tls) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}

/// `POST /auth/refresh`: a new token and expiry for the caller's session.
pub async fn refresh(shared: &Shared, conn: &ConnInfo, req: &Request<Incoming>) -> Response<ProxyBody> {
    if cross_site(req.headers(), authority(req)) {
        return json_error(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "refresh from another site is refused",
        );
    }
    let live = match current(shared, conn, req.headers()).await {
        Err(resp) => return resp,
        Ok(None) => return json_error(StatusCode::UNAUTHORIZED, "invalid_token", "no valid session"),
        Ok(Some(live)) => live,
    };
    match shared.sessions.rotate(&live, shared.api.session_ttl).await {
        Ok((token, session)) => with_cookie(shared, conn, &token, &session),
        Err(e) => {
            tracing::warn!(error = %e, "refresh failed");
            store_down()
        }
    }
}

/// `GET` or `POST /auth/logout[?rd=…]`: the session is deleted everywhere, the cookie cleared.
pub async fn logout(shared: &Shared, conn: &ConnInfo, req: &Request<Incoming>) -> Response<ProxyBody> {
    if let Ok(Some(live)) = current(shared, conn, req.headers()).await
        && let Err(e) = shared.sessions.revoke(&live.session.id).await
    {
        tracing::warn!(error = %e, "logout: cannot delete the session");
        return store_down();
    }
    let rd = forms::query_param(req.uri().query(), "rd");
    let mut resp = match rd {
        Some(rd) => {
            let mut r = Response::new(ProxyBody::empty());
            *r.status_mut() = StatusCode::SEE_OTHER;
            if let Ok(v) = HeaderValue::from_str(&forms::safe_redirect(&rd)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        None => json_response(StatusCode::OK, "{}".into()),
    };
    if let Some(c) = set_cookie(cookie_name(shared, conn), "", 0, conn.tls) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    resp
}
