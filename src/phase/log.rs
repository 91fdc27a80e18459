//! Phase 7, log: a request's metrics and its one access-log line, from what the other phases
//! learned of it (`Trace`); both transports end every request here.

use super::request_id::RequestId;
use crate::access_log;
use crate::gateway::{ConnInfo, Worker};
use crate::metrics::{MethodClass, RequestLabels};
use std::time::Duration;

/// What the access log says about a request, filled in as the phases learn it.
#[derive(Default)]
pub(crate) struct Trace {
    pub route: Option<usize>,
    /// Answered by the gateway's own endpoints.
    pub api: bool,
    pub target: Option<usize>,
    pub path: Option<String>,
    /// The session id (not the token) of an authenticated request.
    pub session: Option<String>,
}

/// How a request ended, for its metrics and its access-log line.
pub(crate) struct Done<'a> {
    pub method: &'a str,
    pub class: MethodClass,
    pub status: u16,
    pub request_id: &'a RequestId,
}

/// Phase 7, log: the request's metrics and its access-log line (both paths end here);
/// `elapsed` runs from the request head to the response head.
pub(crate) fn finish(worker: &Worker, trace: &Trace, done: &Done<'_>, elapsed: Duration, conn: &ConnInfo) {
    let shared = &worker.shared;
    let route = trace.route.map(|i| &shared.routes.routes[i]);
    if let Some(route) = route {
        route.request_duration.observe(elapsed.as_secs_f64());
    }
    match route {
        Some(route) if done.status == 200 => route.ok_requests[done.class as usize].inc(),
        _ => {
            let route_label = match route {
                Some(route) => route.label,
                None if trace.api => "api",
                None => "-",
            };
            let labels = RequestLabels {
                route: route_label,
                method: done.class,
                status: done.status,
            };
            shared.metrics.requests.get_or_create(&labels).inc()
        }
    };
    if shared.access_log {
        access_log::record(&access_log::Record {
            method: done.method,
            route: route.map_or("-", |r| r.config.name.as_str()),
            path: trace.path.as_deref().unwrap_or("-"),
            status: done.status,
            upstream: route
                .zip(trace.target)
                .map_or("-", |(r, t)| r.upstreams.target(t).label.as_str()),
            latency: elapsed,
            request_id: done.request_id.as_str(),
            session: trace.session.as_deref().unwrap_or("-"),
            peer: conn.peer,
        });
    }
}
