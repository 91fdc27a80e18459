//! The gateway's own endpoints on the public listeners (SPEC §2), answered before routing:
//! `GET /.well-known/jwks.json`, `GET /users/me`, the cookie flow (`cookie.rs`), forward auth
//! and the caller's sessions (`verify.rs`). The rest of the session API (pending sessions,
//! login page, status socket, SessionService, reissue tokens) is not built yet.

mod cookie;
pub mod forms;
mod verify;

pub use cookie::{cookie_name, cross_site};

use crate::auth::password::Passwords;
use crate::auth::ratelimit::RateLimit;
use crate::body::ProxyBody;
use crate::config::Config;
use crate::error::{json_error, json_response};
use crate::gateway::{ConnInfo, Shared};
use crate::session::User;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::time::Duration;

/// What the API needs beyond the proxy's shared state.
pub struct Api {
    users: HashMap<String, User>,
    hashes: HashMap<String, String>,
    passwords: Passwords,
    per_user: RateLimit,
    per_address: RateLimit,
    session_ttl: Duration,
}

impl Api {
    pub fn new(config: &Config) -> Result<Api, String> {
        Ok(Api {
            users: config
                .users
                .iter()
                .map(|u| (u.username.clone(), u.clone()))
                .collect(),
            hashes: config.password_hashes.clone(),
            passwords: Passwords::new(std::thread::available_parallelism().map_or(1, |n| n.get()))?,
            per_user: RateLimit::new(config.login.per_user, config.login.window),
            per_address: RateLimit::new(config.login.per_address, config.login.window),
            session_ttl: config.sessions.ttl,
        })
    }
}

/// Whether `path` (normalized) is one of the gateway's own endpoints.
pub fn owns(shared: &Shared, path: &str) -> bool {
    match path {
        "/.well-known/jwks.json" => shared.assertion.is_some(),
        "/users/me" | "/auth/signin" | "/auth/refresh" | "/auth/logout" | "/auth/verify" | "/sessions" => {
            true
        }
        _ => false,
    }
}

/// Answers one of the paths `owns` claimed.
pub async fn answer(
    shared: &Shared,
    conn: &ConnInfo,
    path: &str,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let method = req.method().clone();
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
            None => json_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no assertion key is configured",
            ),
        },
        ("/users/me", &Method::GET) => cookie::me(shared, conn, &req).await,
        ("/auth/signin", &Method::POST) => cookie::signin(shared, conn, req).await,
        ("/auth/refresh", &Method::POST) => cookie::refresh(shared, conn, &req).await,
        ("/auth/logout", &Method::GET | &Method::POST) => cookie::logout(shared, conn, &req).await,
        ("/auth/verify", &Method::GET | &Method::HEAD) => verify::verify(shared, conn, &req).await,
        ("/sessions", &Method::GET | &Method::DELETE) => verify::mine(shared, conn, &req).await,
        _ => {
            let mut resp = json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this method is not allowed here",
            );
            let allow = match path {
                "/auth/logout" => "GET, POST",
                "/auth/signin" | "/auth/refresh" => "POST",
                "/sessions" => "GET, DELETE",
                _ => "GET",
            };
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
    }
}
