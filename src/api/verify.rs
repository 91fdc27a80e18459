//! Forward authentication and the caller's own sessions (SPEC §2.5).
//! - `GET /auth/verify`: for nginx `auth_request`, Traefik ForwardAuth and Envoy ext_authz
//!   (HTTP). The route — and so the policy — is found from `X-Forwarded-Host` and
//!   `X-Forwarded-Uri`, **only when the caller is in `server.trusted_proxies`** (no matching
//!   route: `authenticated`). From anyone else they choose nothing, and the strictest answer
//!   applies: a caller that names a route that way is refused (403
//!   `untrusted_forwarded_headers`, logged, so a proxy missing from `trusted_proxies` shows
//!   at once instead of having every route judged by one policy — a roles route would pass
//!   any session, a public one would need one); a caller that names none needs a valid
//!   session. The credential is the request's own, decided by the proxy's own phase 4
//!   (`phase::authorize`) and answered with phase 5's identity headers (`phase::inject`):
//!   200 with them, or 401 / 403 (503 when the store is down).
//! - `GET /sessions`: the caller's sessions; `DELETE /sessions`: log out everywhere.

use crate::auth;
use crate::body::ProxyBody;
use crate::config::Policy;
use crate::error::{ApiError, GatewayError, json_response};
use crate::gateway::{ConnInfo, GatewayState};
use crate::phase::authorize::{Ask, authorize};
use crate::phase::inject::Injection;
use crate::route;
use crate::session::cache::Found;
use http::{HeaderMap, Request, Response, StatusCode};
use hyper::body::Incoming;

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `GET /auth/verify`.
pub async fn verify(shared: &GatewayState, conn: &ConnInfo, req: &Request<Incoming>) -> Response<ProxyBody> {
    let h = req.headers();
    let found = if shared.is_trusted(conn.peer.ip()) {
        let host = header(h, "x-forwarded-host")
            .or_else(|| header(h, "host"))
            .map(route::host_of)
            .unwrap_or_default();
        let uri = header(h, "x-forwarded-uri").unwrap_or("/");
        let raw_path = uri.split(['?', '#']).next().unwrap_or("/");
        let path = match route::normalize_path(raw_path) {
            Ok(p) => p,
            Err(e) => return GatewayError::BadPath(e.message()).into_response(),
        };
        shared
            .routes
            .table
            .find(&host, &path)
            .map(|i| (i, &shared.routes.routes[i]))
    } else if ["x-forwarded-host", "x-forwarded-uri", "x-forwarded-method"]
        .iter()
        .any(|n| h.contains_key(*n))
    {
        tracing::warn!(
            peer = %conn.peer.ip(),
            "/auth/verify: X-Forwarded-* from a peer not in server.trusted_proxies refused"
        );
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "untrusted_forwarded_headers",
            "X-Forwarded-Host, -Uri and -Method are read only from server.trusted_proxies",
        )
        .into_response();
    } else {
        None
    };
    let route = found.map(|(_, r)| r);
    let ask = Ask {
        policy: route.map_or(&Policy::Authenticated, |r| &r.config.policy),
        credential: auth::credential(h, shared.cookie_on(conn)),
        // A question about a request, not a change: never refused as cross-site, and never
        // sent to the login page (the proxy asking does that).
        safe: true,
        navigation: false,
        path: "",
        query: None,
    };
    match authorize(shared, ask, || false).await {
        Ok(identity) => {
            let mut resp = json_response(StatusCode::OK, "{}".into());
            Injection::new(shared, route, identity.as_ref()).insert_into(resp.headers_mut());
            resp
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET` or `DELETE /sessions`: list the caller's sessions, or end them all.
pub async fn mine(shared: &GatewayState, conn: &ConnInfo, req: &Request<Incoming>) -> Response<ProxyBody> {
    let live = match auth::credential(req.headers(), shared.cookie_on(conn)) {
        Ok(Some(c)) => match shared.sessions.authenticate(c.token()).await {
            Ok(Found::Active(live)) => live,
            Ok(_) => return GatewayError::Unauthenticated { presented: true }.into_response(),
            Err(_) => return GatewayError::StoreUnavailable.into_response(),
        },
        _ => return GatewayError::Unauthenticated { presented: false }.into_response(),
    };
    let Some(user) = live.user() else {
        return GatewayError::Unauthenticated { presented: true }.into_response();
    };
    if req.method() == http::Method::DELETE {
        return match shared.sessions.revoke_user(&user.index_key()).await {
            Ok(ids) => json_response(
                StatusCode::OK,
                serde_json::json!({ "revoked": ids.len() }).to_string(),
            ),
            Err(_) => GatewayError::StoreUnavailable.into_response(),
        };
    }
    match shared.sessions.store.list_user(&user.index_key()).await {
        Ok(list) => {
            let sessions: Vec<_> = list
                .iter()
                .map(|s| {
                    let mut v = crate::session::session_json(s);
                    v["current"] = (s.id == live.id()).into();
                    v
                })
                .collect();
            json_response(
                StatusCode::OK,
                serde_json::json!({ "sessions": sessions }).to_string(),
            )
        }
        Err(e) => ApiError::from(&e).into_response(),
    }
}
