//! The session API's state, kept by `gateway::GatewayState` and so below it (and below `api`,
//! whose endpoints use it): the configured users and their password hashes, the login rate
//! limits per username and per client address, `mode = "single-user"`'s user, and `[api]
//! prefix`. A refused login (`LoginRefused`) becomes an `ApiError` here.

use crate::auth::password::Passwords;
use crate::auth::ratelimit::RateLimit;
use crate::body::ProxyBody;
use crate::config::{Config, Mode};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::session::User;
use http::{HeaderValue, Response, StatusCode, header};
use std::collections::HashMap;
use std::net::IpAddr;
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
    /// If `path` (normalized) is one of the gateway's own endpoints, its path within the API
    /// (without `[api] prefix`). The JWKS stays at the root, where verifiers look for it, and is
    /// served only when the gateway signs assertions (`jwks`).
    pub fn owns<'a>(&self, path: &'a str, jwks: bool) -> Option<&'a str> {
        if path == "/.well-known/jwks.json" {
            return jwks.then_some(path);
        }
        let rest = path.strip_prefix(self.prefix.as_str())?;
        if rest.starts_with("/auth/oidc/") {
            return Some(rest);
        }
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
    pub fn address_allowed(&self, peer: IpAddr) -> Result<(), LoginRefused> {
        self.per_address.hit(&peer.to_string()).map_err(|wait| {
            Metrics::count(&self.metrics.logins, "rate_limited");
            LoginRefused::RateLimited(wait)
        })
    }
}
