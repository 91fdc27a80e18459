//! Phase 1, route: the normalized path, then the gateway's own endpoints, else the route by
//! host and longest prefix; and the path the chosen route's upstream is sent.

use crate::error::GatewayError;
use crate::gateway::{GatewayState, Route};
use crate::route;
use std::borrow::Cow;

/// A request's normalized path, and where it goes.
pub struct Routed<'p> {
    pub path: Cow<'p, str>,
    pub to: To,
}

pub enum To {
    /// The gateway's own endpoints (session API, JWKS), by their path within the API.
    Endpoint(String),
    /// A route, by its index in the table.
    Route(usize),
    /// No route matches: 404 `no_route`.
    Nowhere,
}

/// Routes a request by its raw path (before `?`) and its authority (`Host`, an absolute-form
/// target's, or HTTP/2's `:authority`; empty when there is none); 400 `bad_path` for a path
/// that does not normalize.
pub fn route<'p>(
    shared: &GatewayState,
    raw_path: &'p str,
    authority: &str,
) -> Result<Routed<'p>, GatewayError> {
    let path = route::normalize_path(raw_path).map_err(|e| GatewayError::BadPath(e.message()))?;
    let to = if let Some(api_path) = shared.api.owns(&path, shared.assertion.is_some()) {
        To::Endpoint(api_path.to_string())
    } else {
        let host = route::host_of(authority);
        shared
            .routes
            .table
            .find(&host, &path)
            .map_or(To::Nowhere, To::Route)
    };
    Ok(Routed { path, to })
}

/// The normalized path as the upstream sees it: without the route's prefix with
/// `strip_prefix`; otherwise a prefix matched leniently (`/Admin;x/`, `/admin./` for `/admin`,
/// `route::prefix_match`) is sent as the route spells it, so the origin serves the path the
/// route's policy was decided for (a case-sensitive origin would serve `/admin/Login/x` under
/// `/admin`, not under a public `/admin/login`).
pub fn upstream_path<'p>(route: &Route, path: &'p str) -> Cow<'p, str> {
    let prefix = route.config.path_prefix.trim_end_matches('/');
    let covered = if prefix.is_empty() {
        Some(0)
    } else {
        route::prefix_match(prefix, path)
    };
    let Some((matched, rest)) = covered.and_then(|at| path.split_at_checked(at)) else {
        return Cow::Borrowed(path);
    };
    if !route.config.strip_prefix {
        return if matched == prefix {
            Cow::Borrowed(path)
        } else {
            Cow::Owned(format!("{prefix}{rest}"))
        };
    }
    if rest.starts_with('/') {
        Cow::Borrowed(rest)
    } else {
        Cow::Owned(format!("/{rest}"))
    }
}
