//! `POST /auth/oidc/<name>/backchannel-logout` (OpenID Back-Channel Logout 1.0): a provider's
//! logout token (checked by `crate::oidc::logout`) ends that person's sessions made up to its
//! `iat` (of one provider session when it names a `sid`), on every instance. The answers are
//! the JSON a provider expects, not pages: nobody's browser comes here.

use super::forms;
use crate::body::ProxyBody;
use crate::error::json_response;
use crate::gateway::GatewayState;
use crate::oidc::{Provider, SID, logout::Refused};
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;

/// A session made up to this many seconds after a logout token's `iat` still ends with it
/// (clocks differ a little).
const IAT_LEEWAY: u64 = 5;

/// `POST /auth/oidc/<name>/backchannel-logout` (Back-Channel Logout 1.0 §2.8): 200 when the
/// token was valid (whether or not sessions were left), 400 with a JSON error when it was not,
/// 503 when the provider's keys or the store cannot be reached (the provider may retry).
pub(super) async fn backchannel(
    shared: &GatewayState,
    provider: &Provider,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let token = match forms::fields(content_type.as_deref(), req.into_body()).await {
        Ok(mut fields) => fields.remove("logout_token"),
        Err(e) => return forms::body_error(e).into_response(),
    };
    let Some(token) = token else {
        return logout_error(StatusCode::BAD_REQUEST, "no logout_token in the request");
    };
    let name = &provider.config.name;
    let order = match provider.logout_order(&token, crate::session::now()).await {
        Ok(order) => order,
        Err(Refused::Invalid(why)) => {
            tracing::info!(provider = %name, error = %why, "oidc: back-channel logout refused");
            return logout_error(StatusCode::BAD_REQUEST, &why);
        }
        Err(Refused::Unavailable(why)) => {
            tracing::warn!(provider = %name, error = %why, "oidc: back-channel logout not checked");
            return logout_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the provider's keys cannot be fetched now",
            );
        }
    };
    let key = crate::session::oidc_key(name, &order.sub);
    let sessions = match shared.sessions.store.list_user(&key).await {
        Ok(list) => list,
        Err(e) => {
            tracing::warn!(provider = %name, error = %e, "oidc: back-channel logout: store unavailable");
            return logout_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the session store is unavailable",
            );
        }
    };
    let mut ended = 0;
    for s in sessions {
        let same_sid = match &order.sid {
            None => true,
            Some(sid) => s.extra.get(SID).and_then(|v| v.as_str()) == Some(sid.as_str()),
        };
        if !same_sid || s.created > order.iat + IAT_LEEWAY {
            continue;
        }
        match shared.sessions.revoke(&s.id).await {
            Ok(true) => ended += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(provider = %name, error = %e, "oidc: back-channel logout: store unavailable");
                return logout_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the session store is unavailable",
                );
            }
        }
    }
    tracing::info!(provider = %name, sessions = ended, "oidc: back-channel logout");
    let mut resp = Response::new(ProxyBody::empty());
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn logout_error(status: StatusCode, why: &str) -> Response<ProxyBody> {
    let error = if status == StatusCode::BAD_REQUEST {
        "invalid_request"
    } else {
        "temporarily_unavailable"
    };
    let mut resp = json_response(
        status,
        serde_json::json!({"error": error, "error_description": why}).to_string(),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
