//! The forwarding half of the gateway: header hygiene and upstream sending.

pub mod headers;
pub mod upstream;
