//! What several endpoints read off the request about who is calling: the live session behind
//! its credential (`current`, and `no_session` when there is none), the host it was sent to
//! (`authority`, for the cross-site checks) and where a session made for it comes from
//! (`meta`). Below the endpoints that share them (cookie flow, pending sessions, login page,
//! SessionService); it uses none of them.

use crate::auth::{self, Credential};
use crate::error::ApiError;
use crate::gateway::{ConnInfo, GatewayState};
use crate::session::cache::{CachedSession, Found, Meta};
use http::{HeaderMap, Request, StatusCode, header};

/// The live session behind the request's credential (none: no credential, or one that opens
/// no live session); `Err` when the store could not say.
pub(crate) async fn current(
    shared: &GatewayState,
    conn: &ConnInfo,
    headers: &HeaderMap,
) -> Result<Option<std::sync::Arc<CachedSession>>, ApiError> {
    let presented = match auth::credential(headers, shared.cookie_on(conn)) {
        Ok(Some(c)) => c,
        _ => return Ok(None),
    };
    match shared.sessions.authenticate(Credential::token(&presented)).await {
        Ok(Found::Active(live)) => Ok(Some(live)),
        Ok(_) => Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, "session lookup failed");
            Err(ApiError::from(&e))
        }
    }
}

/// 401 `invalid_token`: the request's credential opens no live session.
pub(crate) fn no_session() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid_token", "no valid session")
}

/// The host the request was sent to: its URI's authority, else its `Host` header.
pub(super) fn authority<B>(req: &Request<B>) -> Option<&str> {
    req.uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| req.headers().get(header::HOST).and_then(|v| v.to_str().ok()))
}

/// Where a session is made from, as `GET /sessions` shows it later.
pub(crate) fn meta(conn: &ConnInfo, headers: &HeaderMap, device_uuid: Option<String>) -> Meta {
    Meta {
        ip: Some(conn.peer.ip().to_string()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        device_uuid,
        extra: Default::default(),
    }
}
