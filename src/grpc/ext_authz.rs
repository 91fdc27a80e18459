//! Envoy's external authorization, `envoy.service.auth.v3.Authorization/Check` (SPEC §2.5):
//! the proxy's own phases decide, from the request attributes Envoy sends — the route and its
//! policy (from the routing table, as `/auth/verify` finds it; no matching route: a valid
//! session is needed),
//! the credential and the policy (`phase::authorize`, with browser navigations sent to the login
//! page and ambient credentials refused on cross-site writes), and what the upstream receives
//! (`phase::inject`). An allowed request gets the identity headers and `X-Auth-Jwt` (replacing
//! any the client sent, in any spelling) and loses the gateway's own credential unless the
//! route forwards it; a refused one gets the HTTP answer the proxy would give (status,
//! `WWW-Authenticate` or the login redirect, the JSON body or the HTML page). Answered only for
//! `server.trusted_proxies`: `grpc::serve` gives anyone else `PERMISSION_DENIED`.

use super::status::from_api;
use crate::auth::{self, Identity, browser};
use crate::config::Policy;
use crate::error::{ApiError, GatewayError};
use crate::gateway::{ConnInfo, GatewayState, Route};
use crate::phase::authorize::{Ask, authorize};
use crate::phase::inject::Injection;
use crate::phase::sanitize::same_name;
use envoy_types::ext_authz::v3::CheckResponseExt;
use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue,
    HeaderValueOption, HttpStatus, OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use http_body_util::BodyExt;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The service for one call: the configuration it started on, and who is calling (Envoy).
pub struct ExtAuthz {
    pub shared: Arc<GatewayState>,
    pub conn: ConnInfo,
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    /// Asked only by trusted proxies: `grpc::serve` refuses anyone else before reading the
    /// message.
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let shared = &self.shared;
        let http = request
            .into_inner()
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .ok_or_else(|| Status::invalid_argument("attributes.request.http: required"))?;
        Ok(Response::new(decide(shared, &http).await))
    }
}

/// The request's header lines: the raw ones when Envoy sends them (`encode_raw_headers`),
/// else its map of combined values. Envoy joins repeated headers with `,`: a `Cookie` so
/// joined is split back into `;`-separated pairs (a cookie's value never holds a `,`), so the
/// session cookie is found and removed wherever it stood.
fn lines(http: &HttpRequest) -> Vec<(String, Vec<u8>)> {
    let mut lines = raw_lines(http);
    for (name, value) in &mut lines {
        if name == "cookie" {
            for b in value.iter_mut().filter(|b| **b == b',') {
                *b = b';';
            }
        }
    }
    lines
}

fn raw_lines(http: &HttpRequest) -> Vec<(String, Vec<u8>)> {
    match &http.header_map {
        Some(map) if !map.headers.is_empty() => map
            .headers
            .iter()
            .map(|h| {
                let value = if h.raw_value.is_empty() {
                    h.value.as_bytes().to_vec()
                } else {
                    h.raw_value.clone()
                };
                (h.key.to_ascii_lowercase(), value)
            })
            .collect(),
        _ => http
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
            .collect(),
    }
}

async fn decide(shared: &GatewayState, http: &HttpRequest) -> CheckResponse {
    let lines = lines(http);
    let first = |name: &str| lines.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice());
    let all = |name: &'static str| {
        lines
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    };
    let target = if http.path.is_empty() {
        "/"
    } else {
        http.path.as_str()
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let host = if http.host.is_empty() {
        first(":authority")
            .or(first("host"))
            .and_then(auth::header_text)
            .unwrap_or("")
    } else {
        http.host.as_str()
    };
    // The route as `/auth/verify` finds it: by the routing table alone. (Not `phase::route`,
    // whose first answer is the gateway's own endpoints: behind Envoy, `/users/me` on an
    // upstream's host is that upstream's, under that route's policy.)
    let normalized = match crate::route::normalize_path(path) {
        Ok(p) => p,
        Err(e) => return denied(shared, GatewayError::BadPath(e.message()).into(), false).await,
    };
    let route = shared
        .routes
        .table
        .find(&crate::route::host_of(host), &normalized)
        .map(|index| &shared.routes.routes[index]);
    let method = http.method.as_str();
    let navigation = auth::is_browser_navigation(method, first("accept"));
    // The cookie's name on the client's side of Envoy: the configured one over TLS, else the
    // one without its `__Host-` prefix. `scheme` is Envoy's view, which a TLS-terminating load
    // balancer in front of it hides: both names are read, and both are removed.
    let names = [
        browser::cookie_name(&shared.cookie_name, http.scheme == "https"),
        browser::cookie_name(&shared.cookie_name, http.scheme != "https"),
    ];
    let credential = match auth::credential_in(first("authorization"), all("cookie"), names[0]) {
        Ok(None) => auth::credential_in(None, all("cookie"), names[1]),
        other => other,
    };
    let ask = Ask {
        policy: route.map_or(&Policy::Authenticated, |r| &r.config.policy),
        credential,
        safe: matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE"),
        navigation,
        path,
        query,
    };
    let cross_site =
        || browser::cross_site_in(lines.iter().map(|(n, v)| (n.as_str(), v.as_slice())), Some(host));
    match authorize(shared, ask, cross_site).await {
        Ok(identity) => allowed(shared, route, identity.as_ref(), &lines, names),
        Err(refusal) => denied(shared, refusal.into(), navigation).await,
    }
}

fn header(key: &str, value: &[u8]) -> HeaderValueOption {
    #[allow(deprecated)]
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_string(),
            value: String::from_utf8_lossy(value).into_owned(),
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
        keep_empty_value: false,
    }
}

/// OK, with the identity's headers set, every client copy of an identity header (any
/// spelling) that was not set removed, and the gateway's own credential removed unless the
/// route forwards it.
fn allowed(
    shared: &GatewayState,
    route: Option<&Route>,
    identity: Option<&Identity>,
    lines: &[(String, Vec<u8>)],
    cookie_names: [&str; 2],
) -> CheckResponse {
    let mut ok = OkHttpResponse::default();
    Injection::new(shared, route, identity)
        .for_each(|name, value| ok.headers.push(header(name.as_str(), value)));
    let set = |name: &str| {
        ok.headers
            .iter()
            .any(|h| h.header.as_ref().is_some_and(|h| h.key == name))
    };
    let mut remove: Vec<String> = shared
        .identity_headers
        .iter()
        .map(|n| n.as_str().to_string())
        .chain(
            lines
                .iter()
                .filter(|(n, _)| shared.identity_headers.iter().any(|id| same_name(n, id.as_str())))
                .map(|(n, _)| n.clone()),
        )
        .filter(|n| !set(n))
        .collect();
    if !route.is_some_and(|r| r.config.forward_credentials) {
        let ours = |(n, v): &&(String, Vec<u8>)| n == "authorization" && auth::is_own_authorization(v);
        if lines.iter().any(|l| ours(&l)) {
            remove.push("authorization".into());
        }
        let cookies = lines
            .iter()
            .filter(|(n, _)| n == "cookie")
            .map(|(_, v)| v.as_slice());
        if lines.iter().any(|(n, _)| n == "cookie") {
            let kept = auth::cookies_without(cookies, cookie_names[0]);
            let kept = auth::cookies_without(std::iter::once(kept.as_bytes()), cookie_names[1]);
            if kept.is_empty() {
                remove.push("cookie".into());
            } else {
                ok.headers.push(header("cookie", kept.as_bytes()));
            }
        }
    }
    remove.sort();
    remove.dedup();
    ok.headers_to_remove = remove;
    let mut response = CheckResponse::with_status(Status::ok(""));
    response.set_http_response(ok);
    response
}

/// The refusal, with the HTTP answer the proxy would give this request.
async fn denied(shared: &GatewayState, refusal: ApiError, navigation: bool) -> CheckResponse {
    let status = from_api(refusal.clone());
    let (parts, body) = shared.answer(refusal, navigation).into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let mut denied = DeniedHttpResponse {
        status: Some(HttpStatus {
            code: i32::from(parts.status.as_u16()),
        }),
        body: String::from_utf8_lossy(&body).into_owned(),
        ..DeniedHttpResponse::default()
    };
    for (name, value) in &parts.headers {
        denied.headers.push(header(name.as_str(), value.as_bytes()));
    }
    let mut response = CheckResponse::with_status(status);
    response.set_http_response(denied);
    response
}
