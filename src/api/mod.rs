//! The gateway's own endpoints on the public listeners (SPEC §2), answered before routing.
//! Today: `GET /.well-known/jwks.json` (when `[assertion]` is configured). The session API
//! (store protocol, SessionService, cookie flow) is not built yet.

use crate::body::ProxyBody;
use crate::gateway::Shared;
use http::{HeaderValue, Method, Response, StatusCode, header};

/// The gateway's answer for this request, if the path is one of its own.
pub fn answer(shared: &Shared, method: &Method, path: &str) -> Option<Response<ProxyBody>> {
    match path {
        "/.well-known/jwks.json" => {
            let signer = shared.assertion.as_ref()?;
            if method != Method::GET && method != Method::HEAD {
                return Some(crate::error::json_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    "use GET",
                ));
            }
            let mut resp = crate::error::json_response(StatusCode::OK, signer.jwks.clone());
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            Some(resp)
        }
        _ => None,
    }
}
