//! The forwarding half of the gateway: header hygiene, upstream connections and sending.

pub mod framing;
pub mod headers;
pub mod lease;
pub mod pool;
pub mod progress;
pub mod request_body;
pub mod stream;
pub mod upstream;
