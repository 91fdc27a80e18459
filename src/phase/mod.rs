//! The phase core: every decision a proxied request goes through, written once, for both
//! transports. `h1` (the HTTP/1.1 fast path: raw bytes) and `pipeline` (hyper: HTTP/2, and
//! every request the fast path hands over) only read heads and apply what the phases decide.
//! The model is Pingora's `ProxyHttp` phases and sozu's shared H1/H2 routines.
//!
//! # A request's life
//!
//! 1. **route** (`route::route`) — the path normalized (400 `bad_path` on traversal tricks);
//!    the gateway's own endpoints first (`To::Endpoint`), else host then longest prefix
//!    (404 `no_route`). `route::upstream_path` is the path the upstream sees.
//! 2. **frame** (`frame::check_head`, `frame::over_limit`) — what no route may see: `CONNECT`
//!    (405), an HTTP/1.1 request without exactly one valid `Host` (400), a transfer coding
//!    other than `chunked` (501), an expectation other than `100-continue` (417); a declared
//!    body over the route's `max_body` (413). The byte-level rules are `proxy::framing`'s.
//! 3. **sanitize** (`sanitize::fate`) — one fate per client header: kept, dropped (hop-by-hop
//!    and `Connection`-named, identity headers in any spelling, withheld framing names,
//!    forwarding headers from untrusted peers), or read by a later phase (credentials,
//!    `Host`, `Content-Length`, a trusted proxy's forwarding facts).
//! 4. **authorize** (`authorize::authorize`) — the credential (bearer, else cookie) checked
//!    against the route's policy: the identity to forward with, or the refusal (401, the login
//!    redirect for browser navigations, 403, 503 when the store is down, and 403
//!    `cross_site` for an ambient credential on an unsafe cross-site request).
//!    Forward auth calls the same phase: `api::verify` (HTTP) and `grpc::ext_authz` (Envoy).
//! 5. **inject** (`inject::Plan`) — what the gateway adds and removes: identity headers and
//!    `X-Auth-Jwt`, the gateway's own credential removed unless the route forwards it,
//!    `X-Forwarded-*`, `X-Request-Id`, `Host` per `preserve_host`, the upstream path. The fast
//!    path writes a plan as bytes (`h1::request::write_head`), hyper's path into a `HeaderMap`
//!    (`proxy::headers::apply`).
//! 6. **forward** (`forward::deadline`) — target order (`proxy::upstream::Upstreams::order`:
//!    the picked target, then one other once it is marked down) and one deadline, the route's
//!    `timeout`, until the response head (504); each transport sends its own way
//!    (`h1::forward`, `proxy::upstream::send`).
//! 7. **log** (`log::finish`) — the request's metrics and one access-log line.
//!
//! Every refusal is a `GatewayError`, rendered per transport and per client (`error`).

pub mod authorize;
pub mod forward;
pub mod frame;
pub mod inject;
pub mod log;
pub mod request_id;
pub mod route;
pub mod sanitize;
