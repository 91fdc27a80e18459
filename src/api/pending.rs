//! The store protocol's sessions (SPEC §2.1, seed 000): `POST /sessions` without a body makes a
//! pending session — a token that works for nothing until a person logs it in on the login
//! page with the session's user code — and `POST /sessions/renew` trades a live token for a new
//! one (same session, new secret, renewed end).

use super::caller::{authority, current, meta, no_session};
use crate::body::ProxyBody;
use crate::error::{ApiError, json_response};
use crate::gateway::{ConnInfo, GatewayState};
use crate::session::lifecycle::{Issued, display_code};
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

/// The login page for a pending session's code.
pub fn login_url(shared: &GatewayState, code: &str) -> String {
    format!("{}?code={}", shared.api.url("/auth/login"), display_code(code))
}

/// `POST /sessions` with no body: 201 `{"token", "status": "pending", "exp", "user_code",
/// "login_url"}`. In single-user mode the token is active at once, for the local user.
pub async fn create(shared: &GatewayState, conn: &ConnInfo, headers: &HeaderMap) -> Response<ProxyBody> {
    if let Some(local) = &shared.api.single_user {
        return match shared
            .sessions
            .create_active(local, None, meta(conn, headers, None))
            .await
        {
            Ok(issued) => {
                let body = serde_json::json!({
                    "token": issued.token,
                    "status": "active",
                    "exp": issued.session.ends_at(),
                    "user_id": local.id,
                    "username": local.username,
                    "user_uuid": local.uuid,
                });
                json_response(StatusCode::CREATED, body.to_string())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot create a session");
                ApiError::from(&e).into_response()
            }
        };
    }
    // Pending sessions cost a store record each for pending_ttl: they count against the
    // per-address login limit.
    if let Err(refused) = shared.api.address_allowed(conn.peer.ip()) {
        return refused.into_response();
    }
    match shared.sessions.create_pending(meta(conn, headers, None)).await {
        Ok((token, session)) => {
            let code = session.user_code.as_deref().unwrap_or("");
            let body = serde_json::json!({
                "token": token,
                "status": "pending",
                "exp": session.ends_at(),
                "user_code": display_code(code),
                "login_url": login_url(shared, code),
            });
            json_response(StatusCode::CREATED, body.to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot create a pending session");
            ApiError::from(&e).into_response()
        }
    }
}

/// A cookie-authenticated change from another site (SPEC §2.4) is refused; bearer tokens are
/// not sent by browsers on their own, so they need no such check.
pub fn cookie_from_another_site<B>(
    shared: &GatewayState,
    conn: &ConnInfo,
    req: &Request<B>,
) -> Option<Response<ProxyBody>> {
    let by_cookie = matches!(
        crate::auth::credential(req.headers(), shared.cookie_on(conn)),
        Ok(Some(crate::auth::Credential::Cookie(_)))
    );
    (by_cookie && crate::auth::browser::cross_site(req.headers(), authority(req))).then(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "cross_site_request",
            "a cookie-authenticated change from another site is refused",
        )
        .into_response()
    })
}

/// The SessionService's create/reissue response body (SPEC §2.2), as JSON.
pub fn issued_json(issued: &Issued) -> String {
    let user = issued.session.user.as_ref();
    serde_json::json!({
        "auth_token": issued.token,
        "reissue_token": issued.reissue_token,
        "exp": issued.session.ends_at(),
        "user_id": user.map(|u| u.id),
        "username": user.map(|u| u.username.as_str()),
        "user_uuid": user.map(|u| u.uuid.as_str()),
    })
    .to_string()
}

/// `POST /sessions/renew` with a live token: 201 with a new token and reissue token for the
/// same session; the old token stops working at once, here and on every instance.
pub async fn renew(shared: &GatewayState, conn: &ConnInfo, req: &Request<Incoming>) -> Response<ProxyBody> {
    if let Some(refused) = cookie_from_another_site(shared, conn, req) {
        return refused;
    }
    let live = match current(shared, conn, req.headers()).await {
        Err(refused) => return refused.into_response(),
        Ok(None) => return no_session().into_response(),
        Ok(Some(live)) => live,
    };
    match shared.sessions.rotate(&live).await {
        Ok(Some(issued)) => json_response(StatusCode::CREATED, issued_json(&issued)),
        Ok(None) => no_session().into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "renew failed");
            ApiError::from(&e).into_response()
        }
    }
}
