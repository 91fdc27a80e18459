//! The gateway's own endpoints on the public listeners (SPEC §2), answered before routing:
//! `GET /.well-known/jwks.json`, `GET /users/me`, the cookie flow (`cookie.rs`), the store
//! protocol's pending sessions (`pending.rs`), login page (`login.rs`) and status socket
//! (`status.rs`), the SessionService in JSON and protobuf (`service.rs`), forward auth and the
//! caller's sessions (`verify.rs`).

mod cookie;
pub mod forms;
mod login;
mod pending;
pub mod proto;
mod service;
mod status;
mod verify;

pub use cookie::{cookie_name, cross_site, cross_site_in};

use crate::auth::password::Passwords;
use crate::auth::ratelimit::RateLimit;
use crate::body::ProxyBody;
use crate::config::{Config, Mode};
use crate::error::{ApiError, json_response};
use crate::gateway::{ConnInfo, Shared};
use crate::metrics::Metrics;
use crate::session::User;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use std::collections::HashMap;
use std::sync::Arc;

/// What the API needs beyond the proxy's shared state.
pub struct Api {
    users: HashMap<String, User>,
    hashes: HashMap<String, String>,
    passwords: Arc<Passwords>,
    per_user: RateLimit,
    per_address: RateLimit,
    /// `mode = "single-user"`: everything is this user, no credential needed.
    pub single_user: Option<User>,
    /// `[api] prefix` ("" = at the root).
    pub prefix: String,
    metrics: Arc<Metrics>,
}

/// Why a login was refused.
pub enum LoginRefused {
    /// Seconds until another attempt is allowed.
    RateLimited(u64),
    /// Unknown user or wrong password: one answer for both.
    Invalid,
}

impl From<LoginRefused> for ApiError {
    fn from(refused: LoginRefused) -> ApiError {
        match refused {
            LoginRefused::RateLimited(wait) => {
                let e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many login attempts; try again later",
                );
                match HeaderValue::from_str(&wait.to_string()) {
                    Ok(v) => e.with_header(header::RETRY_AFTER, v),
                    Err(_) => e,
                }
            }
            LoginRefused::Invalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong username or password",
            ),
        }
    }
}

impl LoginRefused {
    pub fn into_response(self) -> Response<ProxyBody> {
        ApiError::from(self).into_response()
    }
}

impl Api {
    pub fn new(config: &Config, metrics: Arc<Metrics>, passwords: Arc<Passwords>) -> Api {
        Api {
            metrics,
            users: config
                .users
                .iter()
                .map(|u| (u.username.clone(), u.clone()))
                .collect(),
            hashes: config.password_hashes.clone(),
            passwords,
            per_user: RateLimit::new(config.login.per_user, config.login.window),
            per_address: RateLimit::new(config.login.per_address, config.login.window),
            prefix: config.api_prefix.clone(),
            single_user: match &config.mode {
                Mode::SingleUser(u) => Some(u.clone()),
                Mode::MultiUser => None,
            },
        }
    }

    /// Checks a username and password: rate limit per username, then the argon2id check off
    /// the workers (unknown users against a dummy hash, so both refusals look and take alike).
    /// The per-address limit is the caller's, checked before it reads the body.
    pub async fn check_login(&self, username: &str, password: &str) -> Result<&User, LoginRefused> {
        if let Err(wait) = self.per_user.hit(username) {
            Metrics::count(&self.metrics.logins, "rate_limited");
            return Err(LoginRefused::RateLimited(wait));
        }
        let user = self.users.get(username);
        let hash = user
            .and_then(|u| self.hashes.get(&u.username))
            .map(String::as_str);
        let checked = self.passwords.check(hash, password).await;
        match user.filter(|_| checked) {
            Some(user) => {
                Metrics::count(&self.metrics.logins, "succeeded");
                Ok(user)
            }
            None => {
                Metrics::count(&self.metrics.logins, "failed");
                Err(LoginRefused::Invalid)
            }
        }
    }

    /// The configured users.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// A configured user.
    pub fn user(&self, username: &str) -> Option<&User> {
        self.users.get(username)
    }

    /// The public path of an API path (`/auth/login` → `<prefix>/auth/login`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }

    /// The per-address login limit.
    pub fn address_allowed(&self, conn: &ConnInfo) -> Result<(), LoginRefused> {
        self.per_address.hit(&conn.peer.ip().to_string()).map_err(|wait| {
            Metrics::count(&self.metrics.logins, "rate_limited");
            LoginRefused::RateLimited(wait)
        })
    }
}

/// If `path` (normalized) is one of the gateway's own endpoints, its path within the API
/// (without `[api] prefix`). The JWKS stays at the root, where verifiers look for it.
pub fn owns<'a>(shared: &Shared, path: &'a str) -> Option<&'a str> {
    if path == "/.well-known/jwks.json" {
        return shared.assertion.is_some().then_some(path);
    }
    let rest = path.strip_prefix(shared.api.prefix.as_str())?;
    matches!(
        rest,
        "/users/me"
            | "/auth/signin"
            | "/auth/refresh"
            | "/auth/logout"
            | "/auth/verify"
            | "/auth/login"
            | "/auth/device"
            | "/auth/status"
            | "/sessions"
            | "/sessions/renew"
            | "/sessions/reissue"
            | "/sessions/destroy"
            | "/sessions/current"
    )
    .then_some(rest)
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
