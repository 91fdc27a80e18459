//! A hyper client connection on loan to one response (`Lease`), and the general path's pool
//! of them (`HyperPool`). Below `body`, whose upstream `ProxyBody` hands the lease back when
//! it ends, and `proxy::upstream`, which dials the connections and lends them.

use super::pool::Pool;
use super::request_body::UpstreamBody;
use hyper::client::conn::http1::SendRequest;
use std::sync::Arc;
use std::time::Instant;

/// The general path's pool: hyper client connections.
pub type HyperPool = Pool<SendRequest<UpstreamBody>>;

/// A connection on loan to one response; handed back to the pool when its body has ended.
pub struct Lease {
    pool: Arc<HyperPool>,
    route: usize,
    target: usize,
    sender: SendRequest<UpstreamBody>,
}

impl Lease {
    pub fn new(
        pool: Arc<HyperPool>,
        route: usize,
        target: usize,
        sender: SendRequest<UpstreamBody>,
    ) -> Lease {
        Lease {
            pool,
            route,
            target,
            sender,
        }
    }

    pub fn release(self) {
        if !self.sender.is_closed() {
            self.pool
                .put(self.route, self.target, self.sender, Instant::now());
        }
    }
}
