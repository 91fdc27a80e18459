//! The admin listener (SPEC §5): a plain `match` on the path. `/healthz` is open; everything
//! else needs `Authorization: Bearer <admin.token>`, compared in constant time. Only health
//! lives here so far; sessions, metrics and reload arrive with their issues.

use crate::body::ProxyBody;
use crate::error::{json_error, json_response};
use http::{Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub struct Admin {
    token: Option<String>,
}

impl Admin {
    pub fn new(token: Option<String>) -> Admin {
        Admin { token }
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

    async fn answer(&self, req: Request<Incoming>) -> Response<ProxyBody> {
        let path = req.uri().path();
        if path == "/healthz" {
            return json_response(StatusCode::OK, r#"{"status":"ok"}"#.into());
        }
        if self.token.is_none() {
            return json_error(
                StatusCode::FORBIDDEN,
                "admin_disabled",
                "the admin API is disabled: set admin.token or admin.token_env",
            );
        }
        if !self.authorized(&req) {
            let mut resp = json_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid admin bearer token is required",
            );
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            return resp;
        }
        match (req.method(), path) {
            (&Method::GET, "/readyz") => json_response(StatusCode::OK, r#"{"status":"ready"}"#.into()),
            _ => json_error(StatusCode::NOT_FOUND, "not_found", "no such admin endpoint"),
        }
    }
}

/// Serves the admin API until `cancel` fires.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>, cancel: CancellationToken) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    loop {
        let (stream, _) = tokio::select! {
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
                async move { Ok::<_, Infallible>(admin.answer(req).await) }
            });
            let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
