//! The gateway's own errors and the one place that turns them into HTTP responses:
//! `{"error": "<snake_case_code>", "message": "<sentence>"}` (SPEC §2). Messages never carry
//! credentials or anything the client sent beyond what is safe to echo.

use crate::body::ProxyBody;
use http::{HeaderValue, Response, StatusCode, header};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    BadPath(&'static str),
    /// A request whose framing or head the gateway will not forward (RFC 9112: 400).
    #[error("{0}")]
    BadRequest(&'static str),
    /// `CONNECT`: the gateway is not a forward proxy.
    #[error("CONNECT is not served: this is not a forward proxy")]
    Connect,
    #[error("the only expectation served is a single 100-continue")]
    ExpectationFailed,
    #[error("only the chunked transfer coding is accepted on requests")]
    UnsupportedCoding,
    #[error("no route matches this host and path")]
    NoRoute,
    #[error("the request body is larger than this route allows")]
    BodyTooLarge,
    #[error("no upstream of this route answered")]
    UpstreamUnavailable,
    #[error("a valid session is required")]
    Unauthenticated { presented: bool },
    /// A browser navigation without a session: 302 to the login page with `rd` set.
    #[error("log in to continue")]
    LoginRedirect(String),
    #[error("your session does not have a role this route requires")]
    Forbidden,
    #[error("a cookie-authenticated change from another site is refused")]
    CrossSite,
    #[error("the session store cannot be reached; try again shortly")]
    StoreUnavailable,
    #[error("the upstream did not answer in time")]
    UpstreamTimeout,
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadPath(_) | GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::Connect => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::ExpectationFailed => StatusCode::EXPECTATION_FAILED,
            GatewayError::UnsupportedCoding => StatusCode::NOT_IMPLEMENTED,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            GatewayError::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
            GatewayError::LoginRedirect(_) => StatusCode::FOUND,
            GatewayError::Forbidden | GatewayError::CrossSite => StatusCode::FORBIDDEN,
            GatewayError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadPath(_) => "bad_path",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::Connect => "method_not_allowed",
            GatewayError::ExpectationFailed => "expectation_failed",
            GatewayError::UnsupportedCoding => "unsupported_transfer_coding",
            GatewayError::NoRoute => "no_route",
            GatewayError::BodyTooLarge => "body_too_large",
            GatewayError::UpstreamUnavailable => "upstream_unavailable",
            GatewayError::Unauthenticated { presented: true } => "invalid_token",
            GatewayError::Unauthenticated { presented: false } => "unauthorized",
            GatewayError::LoginRedirect(_) => "login_required",
            GatewayError::Forbidden => "forbidden",
            GatewayError::CrossSite => "cross_site_request",
            GatewayError::StoreUnavailable => "session_store_unavailable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
        }
    }

    /// An HTTP/1.1 connection closes after this answer: what follows the request cannot be
    /// trusted to start a new one (a `CONNECT`, a head the gateway refused to read on).
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            GatewayError::Connect | GatewayError::BadRequest(_) | GatewayError::UnsupportedCoding
        )
    }

    /// The answer for a browser navigation (SPEC §4): the same status and headers, an HTML
    /// page for a body (`site`: `[ui] title`; `login`: the login page's path). A login
    /// redirect stays a redirect.
    pub fn into_page(self, site: &str, login: &str) -> Response<ProxyBody> {
        if matches!(self, GatewayError::LoginRedirect(_)) {
            return self.into_response();
        }
        let status = self.status();
        let (mut parts, _) = self.into_response().into_parts();
        let (page, body) =
            crate::pages::respond(status, crate::pages::error_page(site, status, login)).into_parts();
        for (name, value) in page.headers {
            if let Some(name) = name {
                parts.headers.insert(name, value);
            }
        }
        Response::from_parts(parts, body)
    }

    pub fn into_response(self) -> Response<ProxyBody> {
        let mut resp = json_error(self.status(), self.code(), &self.to_string());
        match &self {
            GatewayError::Unauthenticated { presented } => {
                let challenge = if *presented {
                    HeaderValue::from_static("Bearer error=\"invalid_token\"")
                } else {
                    HeaderValue::from_static("Bearer")
                };
                resp.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
            }
            GatewayError::LoginRedirect(location) => {
                if let Ok(v) = HeaderValue::from_str(location) {
                    resp.headers_mut().insert(header::LOCATION, v);
                }
            }
            GatewayError::Connect => {
                resp.headers_mut().insert(
                    header::ALLOW,
                    HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
                );
            }
            _ => {}
        }
        resp
    }
}

/// A JSON error response in the SPEC's shape.
pub fn json_error(status: StatusCode, code: &str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    json_response(status, body)
}

/// A 400 that names the field at fault: `{"error", "message", "field"}`.
pub fn field_error(code: &str, field: &str, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "error": code,
        "message": format!("{field}: {message}"),
        "field": field,
    })
    .to_string();
    json_response(StatusCode::BAD_REQUEST, body)
}

/// A JSON response with the headers every gateway-made answer carries.
pub fn json_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
