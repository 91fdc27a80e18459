//! The gateway's own endpoints on the public listeners (SPEC §2), answered before routing:
//! `GET /.well-known/jwks.json`, `GET /users/me`, the cookie flow (`cookie.rs`), the store
//! protocol's pending sessions (`pending.rs`), login page (`login.rs`) and status socket
//! (`status.rs`), the SessionService in JSON and protobuf (`service.rs`), forward auth and the
//! caller's sessions (`verify.rs`), sign-in through identity providers (`oidc.rs`, and their back-channel logout `oidc_logout.rs`); what several of them read off the caller is `caller.rs`.
//! Their state (users, login limits, prefix) is `crate::api_state::Api`, kept by
//! `gateway::GatewayState`; the cookie and cross-site rules are `crate::auth::browser`'s.

pub(crate) mod caller;
mod cookie;
pub mod forms;
mod login;
pub mod oidc;
mod oidc_logout;
mod pending;
pub mod proto;
pub(crate) mod service;
mod status;
mod verify;

use crate::body::ProxyBody;
use crate::error::{ApiError, json_response};
use crate::gateway::{ConnInfo, GatewayState};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;

/// Answers one of the paths `owns` claimed.
pub async fn answer(
    shared: &GatewayState,
    conn: &ConnInfo,
    path: &str,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let method = req.method().clone();
    if path.starts_with("/auth/oidc/") {
        return oidc::answer(shared, conn, path, req).await;
    }
    match (path, &method) {
        ("/.well-known/jwks.json", &Method::GET | &Method::HEAD) => match &shared.assertion {
            Some(signer) => {
                let mut resp = json_response(StatusCode::OK, signer.jwks.clone());
                resp.headers_mut().insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=300"),
                );
                resp
            }
            None => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no assertion key is configured",
            )
            .into_response(),
        },
        ("/users/me", &Method::GET) => cookie::me(shared, conn, &req).await,
        ("/auth/signin", &Method::POST) => cookie::signin(shared, conn, req).await,
        ("/auth/refresh", &Method::POST) => cookie::refresh(shared, conn, &req).await,
        ("/auth/logout", &Method::GET | &Method::POST) => cookie::logout(shared, conn, &req).await,
        ("/auth/verify", &Method::GET | &Method::HEAD) => verify::verify(shared, conn, &req).await,
        ("/sessions", &Method::GET | &Method::DELETE) => verify::mine(shared, conn, &req).await,
        ("/sessions", &Method::POST) => service::create(shared, conn, req).await,
        ("/sessions/reissue", &Method::POST) => service::reissue(shared, req).await,
        ("/sessions/destroy", &Method::POST) | ("/sessions/current", &Method::DELETE) => {
            service::destroy(shared, conn, req).await
        }
        ("/sessions/renew", &Method::POST) => pending::renew(shared, conn, &req).await,
        ("/auth/login", &Method::GET | &Method::HEAD) => login::page(shared, conn, &req).await,
        ("/auth/device", &Method::GET | &Method::HEAD) => login::device(shared),
        ("/auth/login", &Method::POST) => login::submit(shared, conn, req).await,
        ("/auth/status", &Method::GET) => status::socket(shared, conn, req),
        _ => {
            let allow = match path {
                "/auth/logout" | "/auth/login" => "GET, POST",
                "/auth/signin" | "/auth/refresh" | "/sessions/renew" | "/sessions/reissue"
                | "/sessions/destroy" => "POST",
                "/sessions" => "GET, POST, DELETE",
                "/sessions/current" => "DELETE",
                _ => "GET",
            };
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed here",
            )
            .with_header(header::ALLOW, HeaderValue::from_static(allow))
            .into_response()
        }
    }
}
