//! Phase 2, frame: what the gateway refuses whatever the route (SPEC §1.10), and a declared
//! body over the route's limit. The rules over raw values are `proxy::framing`'s; the fast
//! path hands every request one of them would refuse to hyper, so the refusals are made here.

use crate::error::GatewayError;
use crate::gateway::Route;
use crate::proxy::framing;
use http::{HeaderValue, Version, header};

/// What the gateway refuses before routing, on both HTTP/1.1 paths (SPEC §1.10): `CONNECT`
/// (405), an HTTP/1.1 request without exactly one valid `Host` (an HTTP/1.0 one may have none),
/// a transfer coding other than `chunked` (501), an expectation other than one `100-continue`
/// (417; HTTP/1.0's are ignored, RFC 9110 §10.1.1). The fast path hands every such request
/// here. (hyper's server answers a `100-continue` itself when the body is first read: after
/// authorization, as the request goes upstream.)
pub fn check_head(parts: &http::request::Parts) -> Result<(), GatewayError> {
    if parts.method == http::Method::CONNECT {
        return Err(GatewayError::Connect);
    }
    let values =
        |name: header::HeaderName| parts.headers.get_all(name).into_iter().map(HeaderValue::as_bytes);
    let http10 = matches!(parts.version, Version::HTTP_10 | Version::HTTP_09);
    if parts.version == Version::HTTP_11 || (http10 && parts.headers.contains_key(header::HOST)) {
        framing::single_host(values(header::HOST)).map_err(GatewayError::BadRequest)?;
    }
    // An absolute-form target (or HTTP/2's `:authority`) is the host routed by and forwarded;
    // HTTP/2 without `:authority` goes by `Host`, held to HTTP/1.1's rule, and one with both
    // must name one host (RFC 9113 §8.3.1).
    match parts.uri.authority() {
        Some(authority) => {
            if framing::valid_host(authority.as_str().as_bytes()).is_none() {
                return Err(GatewayError::BadRequest(
                    "the request target's authority is not a valid host name and port",
                ));
            }
            if parts.version >= Version::HTTP_2 && parts.headers.contains_key(header::HOST) {
                let host = framing::single_host(values(header::HOST)).map_err(GatewayError::BadRequest)?;
                if !host.eq_ignore_ascii_case(authority.as_str()) {
                    return Err(GatewayError::BadRequest(
                        "Host and :authority name different hosts",
                    ));
                }
            }
        }
        None if parts.version >= Version::HTTP_2 => {
            framing::single_host(values(header::HOST)).map_err(GatewayError::BadRequest)?;
        }
        None => {}
    }
    if parts.headers.contains_key(header::TRANSFER_ENCODING)
        && !framing::request_codings_ok(values(header::TRANSFER_ENCODING))
    {
        return Err(GatewayError::UnsupportedCoding);
    }
    if !http10 && framing::expectation(values(header::EXPECT)) == framing::Expectation::Unsupported {
        return Err(GatewayError::ExpectationFailed);
    }
    Ok(())
}

/// A declared body (`Content-Length`) over the route's `max_body`: refused (413) before the
/// upstream is asked anything. A streamed one is cut off at the limit as it is read.
pub fn over_limit(route: &Route, declared: u64) -> bool {
    declared > route.config.max_body
}
