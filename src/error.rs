//! The gateway's own errors and the one place that turns them into HTTP responses.
//!
//! - `GatewayError`: why the proxy refuses or fails a request (typed, `thiserror`).
//! - `ApiError`: any answer the gateway makes itself instead of the one asked for — a
//!   `GatewayError`, or a refusal of the session API or the admin listener: status, `error`
//!   code, one message per code, and the headers that go with it (`WWW-Authenticate`,
//!   `Retry-After`, `Location`, `Allow`).
//! - `ApiError::render` is the one function that makes the response, per transport: the JSON
//!   object `{"error": "<snake_case_code>", "message": "<sentence>"}` (SPEC §2) for API
//!   clients, the HTML page (SPEC §4) for browser navigations (gRPC statuses would go here).
//!
//! Messages never carry credentials or anything the client sent beyond what is safe to echo.
//! A session change that kept losing its compare-and-set is a 409 `conflict`, not an outage.

use crate::body::ProxyBody;
use crate::session::cache::CreateError;
use crate::session::store::StoreError;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use std::borrow::Cow;

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

    /// The JSON answer (`ApiError::render` without a page).
    pub fn into_response(self) -> Response<ProxyBody> {
        ApiError::from(self).into_response()
    }
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> ApiError {
        let headers = match &e {
            GatewayError::Unauthenticated { presented } => {
                let challenge = if *presented {
                    HeaderValue::from_static("Bearer error=\"invalid_token\"")
                } else {
                    HeaderValue::from_static("Bearer")
                };
                vec![(header::WWW_AUTHENTICATE, challenge)]
            }
            GatewayError::LoginRedirect(location) => HeaderValue::from_str(location)
                .map(|v| vec![(header::LOCATION, v)])
                .unwrap_or_default(),
            GatewayError::Connect => vec![(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
            )],
            _ => Vec::new(),
        };
        ApiError {
            status: e.status(),
            code: e.code(),
            message: Cow::Owned(e.to_string()),
            members: Vec::new(),
            headers,
        }
    }
}

/// The one message of `session_store_unavailable`, wherever the store failed.
const STORE_UNAVAILABLE: &str = "the session store cannot be reached; try again shortly";

/// An answer the gateway makes itself (see the module doc). Built by the constructors below
/// or from a `GatewayError`; turned into a response only by `render`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// The `error` field: a `snake_case` code clients branch on.
    pub code: &'static str,
    pub message: Cow<'static, str>,
    /// More members of the JSON body, by name: the request `field` at fault, the `login_url`
    /// of a session that waits for a login.
    members: Vec<(&'static str, String)>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// What a browser's HTML error page needs: the site's name (`[ui] title`) and the login
/// page's path.
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    pub site: &'a str,
    pub login: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            members: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// A 400 that names the field at fault: `{"error", "message": "<field>: <message>", "field"}`.
    pub fn field(code: &'static str, field: &str, message: &str) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, format!("{field}: {message}"))
            .with_member("field", field.to_string())
    }

    /// 503 `session_store_unavailable`: the store failed; a retry may work.
    pub fn store_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::StoreUnavailable.code(),
            STORE_UNAVAILABLE,
        )
    }

    /// 503 `token_unavailable`: the gateway could not mint a token (its random number generator
    /// failed); the store is fine, and the cause is logged.
    pub fn token_unavailable() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "token_unavailable",
            "the gateway could not make a token; try again",
        )
    }

    /// 409 `conflict`: the session kept changing under a compare-and-set; the store is fine.
    pub fn conflict() -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "the session changed meanwhile; try again",
        )
    }

    /// One of the headers this answer carries (`Retry-After`, `Location`…).
    pub fn header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The same error with one more member in its JSON body.
    pub fn with_member(mut self, name: &'static str, value: String) -> ApiError {
        self.members.push((name, value));
        self
    }

    /// The same error with one more header (replacing any of that name).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.retain(|(n, _)| *n != name);
        self.headers.push((name, value));
        self
    }

    /// The response, per transport: with `page` (a browser navigation), an HTML page with the
    /// same status and headers — a redirect stays a redirect; without, the JSON object.
    pub fn render(self, page: Option<Page<'_>>) -> Response<ProxyBody> {
        let status = self.status;
        let mut resp = self.json();
        let Some(page) = page.filter(|_| !status.is_redirection()) else {
            return resp;
        };
        let (html, body) =
            crate::pages::respond(status, crate::pages::error_page(page.site, status, page.login))
                .into_parts();
        for (name, value) in html.headers {
            if let Some(name) = name {
                resp.headers_mut().insert(name, value);
            }
        }
        let (parts, _) = resp.into_parts();
        Response::from_parts(parts, body)
    }

    /// `render` for API clients: the JSON object.
    pub fn into_response(self) -> Response<ProxyBody> {
        self.render(None)
    }

    fn json(self) -> Response<ProxyBody> {
        let mut body = serde_json::json!({ "error": self.code, "message": self.message });
        for (name, value) in self.members {
            body[name] = value.into();
        }
        let mut resp = json_response(self.status, body.to_string());
        for (name, value) in self.headers {
            resp.headers_mut().insert(name, value);
        }
        resp
    }
}

impl From<ApiError> for Response<ProxyBody> {
    fn from(e: ApiError) -> Response<ProxyBody> {
        e.into_response()
    }
}

/// A store that failed is unavailable, whatever the reason.
impl From<&StoreError> for ApiError {
    fn from(_: &StoreError) -> ApiError {
        ApiError::store_unavailable()
    }
}

/// A session that could not be made or changed: a compare-and-set that kept losing is a
/// conflict; a store failure is the store's unavailability; a token that could not be minted
/// is the gateway's own (logged here: the answer names no cause).
impl From<&CreateError> for ApiError {
    fn from(e: &CreateError) -> ApiError {
        match e {
            CreateError::Conflict => ApiError::conflict(),
            CreateError::Store(_) => ApiError::store_unavailable(),
            CreateError::Token(why) => {
                tracing::error!(error = %why, "a session token could not be minted");
                ApiError::token_unavailable()
            }
        }
    }
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
