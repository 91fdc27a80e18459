//! The admin listener (SPEC §5): a plain `match` on the path. `/healthz` is open; everything
//! else needs `Authorization: Bearer <admin.token>`, compared in constant time.
//!
//! - `GET /readyz` — 200 when the session store answers, else 503.
//! - `POST /admin/sessions` `{"username", "count", "ttl"}` — mints active sessions for a
//!   configured user without a password (load-test harnesses); at most 10 000 per call.
//! - `GET /admin/sessions?user=NAME`, `DELETE /admin/sessions/{id}`,
//!   `DELETE /admin/users/{name}/sessions` — list and revoke (revocation reaches every instance).

use crate::body::ProxyBody;
use crate::config::{Config, parse_duration};
use crate::error::{ApiError, json_response};
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::session::cache::{Meta, Sessions};
use crate::session::session_json;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The most sessions one `POST /admin/sessions` mints.
pub const MAX_MINT: u64 = 10_000;
const MAX_BODY: usize = 64 * 1024;

pub struct Admin {
    token: Option<String>,
    allow_from: Vec<ipnet::IpNet>,
    metrics: Arc<Metrics>,
    sessions: Arc<Sessions>,
    reloader: Arc<Reloader>,
    session_ttl: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MintRequest {
    username: String,
    #[serde(default = "one")]
    count: u64,
    ttl: Option<String>,
}

fn one() -> u64 {
    1
}

fn bad_request(
    code: &'static str,
    message: impl Into<std::borrow::Cow<'static, str>>,
) -> Response<ProxyBody> {
    ApiError::new(StatusCode::BAD_REQUEST, code, message).into_response()
}

/// A failed store call, logged; the client hears `ApiError`'s reading of it (503, or 409 for
/// a compare-and-set that kept losing).
fn store_failed<'e, E>(e: &'e E) -> Response<ProxyBody>
where
    E: std::fmt::Display,
    ApiError: From<&'e E>,
{
    tracing::warn!(error = %e, "admin: session store error");
    ApiError::from(e).into_response()
}

impl Admin {
    pub fn new(
        config: &Config,
        sessions: Arc<Sessions>,
        metrics: Arc<Metrics>,
        reloader: Arc<Reloader>,
    ) -> Admin {
        Admin {
            token: config.admin.token.clone(),
            allow_from: config.admin.allow_from.clone(),
            metrics,
            sessions,
            reloader,
            session_ttl: config.sessions.ttl,
        }
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(expected) = &self.token else { return false };
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        presented.as_bytes().ct_eq(expected.as_bytes()).into()
    }

    async fn answer(&self, peer: std::net::IpAddr, req: Request<Incoming>) -> Response<ProxyBody> {
        let path = req.uri().path().to_string();
        // Health probes come from wherever the orchestrator runs and learn nothing.
        if path == "/healthz" {
            return json_response(StatusCode::OK, r#"{"status":"ok"}"#.into());
        }
        if !peer_allowed(&self.allow_from, peer) {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_forbidden",
                "the admin listener only answers loopback and admin.allow_from",
            )
            .into_response();
        }
        if self.token.is_none() {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "the admin API is disabled: set admin.token or admin.token_env",
            )
            .into_response();
        }
        if !self.authorized(&req) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin bearer token is required",
            )
            .with_header(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"))
            .into_response();
        }
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method().clone(), segments.as_slice()) {
            (Method::GET, ["readyz"]) => match self.sessions.store.ping().await {
                Ok(()) => json_response(StatusCode::OK, r#"{"status":"ready"}"#.into()),
                Err(e) => {
                    tracing::warn!(error = %e, "readyz: store unreachable");
                    ApiError::store_unavailable().into_response()
                }
            },
            (Method::GET, ["metrics"]) => {
                let mut resp = Response::new(ProxyBody::full(self.metrics.encode()));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            (Method::POST, ["admin", "sessions"]) => self.mint(req).await,
            (Method::POST, ["admin", "reload"]) => match self.reloader.reload().await {
                Ok(done) => json_response(
                    StatusCode::OK,
                    serde_json::json!({
                        "status": "reloaded",
                        "routes": done.routes,
                        "users": done.users,
                        "needs_restart": done.needs_restart,
                        "users_logged_out": done.users_logged_out,
                    })
                    .to_string(),
                ),
                Err(why) => {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "reload_refused", why).into_response()
                }
            },
            (Method::GET, ["admin", "sessions"]) => {
                // Decoded: usernames may hold `@`, a provider's users are `oidc:<name>:<sub>`.
                let user = crate::api::forms::query_param(req.uri().query(), "user");
                let Some(user) = user else {
                    return bad_request("missing_user", "give the user: /admin/sessions?user=NAME");
                };
                match self.sessions.store.list_user(&user).await {
                    Ok(list) => {
                        let sessions: Vec<_> = list.iter().map(session_json).collect();
                        json_response(
                            StatusCode::OK,
                            serde_json::json!({ "sessions": sessions }).to_string(),
                        )
                    }
                    Err(e) => store_failed(&e),
                }
            }
            (Method::DELETE, ["admin", "sessions", id]) if crate::session::token::parse_id(id).is_none() => {
                ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such session").into_response()
            }
            (Method::DELETE, ["admin", "sessions", id]) => match self.sessions.revoke(id).await {
                Ok(true) => json_response(StatusCode::OK, serde_json::json!({ "revoked": [id] }).to_string()),
                Ok(false) => {
                    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such session").into_response()
                }
                Err(e) => store_failed(&e),
            },
            (Method::DELETE, ["admin", "users", name, "sessions"]) => {
                let name =
                    String::from_utf8_lossy(&crate::api::forms::percent_decode(name.as_bytes())).into_owned();
                match self.sessions.revoke_user(&name).await {
                    Ok(ids) => {
                        json_response(StatusCode::OK, serde_json::json!({ "revoked": ids }).to_string())
                    }
                    Err(e) => store_failed(&e),
                }
            }
            _ => ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint").into_response(),
        }
    }

    async fn mint(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let body: Bytes = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "at most 64 KiB")
                    .into_response();
            }
        };
        let m: MintRequest = match serde_json::from_slice(&body) {
            Ok(m) => m,
            Err(e) => {
                return bad_request(
                    "invalid_json",
                    format!("expected {{\"username\", \"count\", \"ttl\"}}: {e}"),
                );
            }
        };
        // Users as of the current configuration (a reload may have added some).
        let Some(user) = self.reloader.current().api.user(&m.username).cloned() else {
            return bad_request("unknown_user", "username: no such user in the configuration");
        };
        if m.count == 0 || m.count > MAX_MINT {
            return bad_request(
                "invalid_count",
                format!("count: must be between 1 and {MAX_MINT}"),
            );
        }
        let ttl = match m.ttl.as_deref().map(parse_duration) {
            None => self.session_ttl,
            Some(Ok(d)) if !d.is_zero() => d,
            Some(Ok(_)) => return bad_request("invalid_ttl", "ttl: must be greater than zero"),
            Some(Err(e)) => return bad_request("invalid_ttl", format!("ttl: {e}")),
        };
        let mut tokens = Vec::with_capacity(m.count as usize);
        for _ in 0..m.count {
            match self
                .sessions
                .create_active(&user, Some(ttl), Meta::default())
                .await
            {
                Ok(issued) => tokens.push(issued.token),
                Err(e) => return store_failed(&e),
            }
        }
        json_response(
            StatusCode::CREATED,
            serde_json::json!({ "tokens": tokens }).to_string(),
        )
    }
}

/// Loopback, or a peer in `admin.allow_from` (IPv4-mapped IPv6 peers count as IPv4).
fn peer_allowed(allow_from: &[ipnet::IpNet], peer: std::net::IpAddr) -> bool {
    let peer = match peer {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, std::net::IpAddr::V4),
        v4 => v4,
    };
    peer.is_loopback() || allow_from.iter().any(|net| net.contains(&peer))
}

/// Serves the admin API until `cancel` fires.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, cancel: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admin = admin.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.answer(peer.ip(), req).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_allowed_networks_may_use_the_admin_listener() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let none: Vec<ipnet::IpNet> = Vec::new();
        assert!(peer_allowed(&none, ip("127.0.0.1")));
        assert!(peer_allowed(&none, ip("::1")));
        assert!(peer_allowed(&none, ip("::ffff:127.0.0.1")));
        assert!(!peer_allowed(&none, ip("10.1.2.3")));
        assert!(!peer_allowed(&none, ip("::ffff:10.1.2.3")));
        let ops = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(peer_allowed(&ops, ip("10.1.2.3")));
        assert!(peer_allowed(&ops, ip("::ffff:10.1.2.3")));
        assert!(!peer_allowed(&ops, ip("192.168.1.1")));
    }
}
