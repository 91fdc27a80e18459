//! Phase 6, forward: what both transports send by. The targets are tried in one order
//! (`Upstreams::order`: the picked target, then one other once the first is marked down), and
//! one deadline, the route's `timeout` from the first connection attempt, covers every try
//! until the response head (504 after it). A request that was written is never sent twice,
//! except an idempotent one without a body on a pooled connection the upstream had closed.

use crate::gateway::Route;
use tokio::time::Instant;

/// When a request to `route`, starting now, stops waiting for its response head.
pub fn deadline(route: &Route) -> Instant {
    Instant::now() + route.config.timeout
}
