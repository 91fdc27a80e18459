//! Prometheus metrics (served as text by the admin listener's `GET /metrics`, never on the
//! public listeners). One `Metrics` per running gateway, shared by the workers, the session
//! service and the admin listener; handles that the hot path touches on every request
//! (a route's histograms, a target's error counter) are made once, when routes are built, so a
//! request pays an atomic add rather than a label lookup.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Latency buckets: 50 µs to ~13 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 19))
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// How requests are grouped by method.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum MethodClass {
    /// GET, HEAD, OPTIONS, TRACE.
    read,
    /// POST, PUT, PATCH, DELETE and anything else.
    write,
}

impl MethodClass {
    pub fn of(method: &http::Method) -> MethodClass {
        if method.is_safe() {
            MethodClass::read
        } else {
            MethodClass::write
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route's name; `api` for the gateway's own endpoints, `-` when nothing matched.
    pub route: &'static str,
    pub method: MethodClass,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub route: &'static str,
    pub target: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    pub listener: &'static str,
    pub protocol: &'static str,
}

/// A route or target name as a label: made `'static` once, so label sets are copied, never
/// allocated, per request. Each distinct name is leaked once for the life of the process (a
/// reload that keeps its names leaks nothing).
pub fn label(name: &str) -> &'static str {
    static NAMES: std::sync::Mutex<std::collections::BTreeSet<&'static str>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: Histograms<RouteLabel>,
    pub upstream_duration: Histograms<RouteLabel>,
    pub upstream_connect_errors: Family<TargetLabels, Counter>,
    /// `hit`, `negative_hit` (an id known not to exist), `miss`, `eviction`.
    pub cache: Family<KindLabel, Counter>,
    /// By store kind.
    pub store_lookups: Family<KindLabel, Counter>,
    pub store_lookup_duration: Histograms<KindLabel>,
    /// `created`, `activated`, `renewed`, `reissued`, `destroyed`, `reused`.
    pub sessions: Family<KindLabel, Counter>,
    /// `succeeded`, `failed`, `rate_limited`.
    pub logins: Family<KindLabel, Counter>,
    pub open_connections: Family<ConnectionLabels, Gauge>,
    /// `published`, `received`.
    pub revocations: Family<KindLabel, Counter>,
    /// `succeeded`, `failed`.
    pub reloads: Family<KindLabel, Counter>,
    /// HTTP/1.1 requests answered by the fast path (forwarded, or refused by a route's policy).
    pub fast_path_requests: Counter,
    /// Connections the fast path handed to hyper, by reason (`h1::request::Handover`).
    pub fast_path_handovers: Family<KindLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let requests = Family::default();
        registry.register(
            "requests",
            "Requests answered, by route, method class (read/write) and status",
            requests.clone(),
        );
        let request_duration: Histograms<RouteLabel> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from request head to response head, by route",
            request_duration.clone(),
        );
        let upstream_duration: Histograms<RouteLabel> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_duration_seconds",
            "Time the upstream took to answer with its response head, by route",
            upstream_duration.clone(),
        );
        let upstream_connect_errors = Family::default();
        registry.register(
            "upstream_connect_errors",
            "Connections to an upstream target that could not be opened",
            upstream_connect_errors.clone(),
        );
        let cache = Family::default();
        registry.register(
            "cache_events",
            "Session cache lookups (hit, negative_hit, miss) and size evictions (eviction)",
            cache.clone(),
        );
        let store_lookups = Family::default();
        registry.register(
            "store_lookups",
            "Session store reads on the authentication path, by store",
            store_lookups.clone(),
        );
        let store_lookup_duration: Histograms<KindLabel> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "store_lookup_duration_seconds",
            "Session store read latency on the authentication path, by store",
            store_lookup_duration.clone(),
        );
        let sessions = Family::default();
        registry.register(
            "session_events",
            "Sessions created, activated, renewed, reissued, destroyed, and reissue tokens reused (theft detected)",
            sessions.clone(),
        );
        let logins = Family::default();
        registry.register(
            "logins",
            "Logins: succeeded, failed, rate_limited (passwords); oidc_succeeded, oidc_failed (identity providers)",
            logins.clone(),
        );
        let open_connections = Family::default();
        registry.register(
            "open_connections",
            "Client connections open now, by listener and protocol",
            open_connections.clone(),
        );
        let revocations = Family::default();
        registry.register(
            "revocation_messages",
            "Session change messages published to and received from other instances (redis)",
            revocations.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "reloads",
            "Configuration reloads: succeeded, failed (the old configuration kept serving)",
            reloads.clone(),
        );
        let fast_path_requests = Counter::default();
        registry.register(
            "fast_path_requests",
            "HTTP/1.1 requests answered by the fast path: forwarded, or refused by a route's policy (the rest are served by hyper)",
            fast_path_requests.clone(),
        );
        let fast_path_handovers = Family::default();
        registry.register(
            "fast_path_handovers",
            "HTTP/1.1 connections the fast path handed to hyper, by the reason of the request that did it",
            fast_path_handovers.clone(),
        );
        registry.register(
            "log_dropped_lines",
            "Log lines dropped because the log's destination could not keep up (the log says so too)",
            crate::access_log::DROPPED.clone(),
        );
        // Every known series exists from the start, so alerts on them see zeros, not nothing.
        for kind in ["succeeded", "failed", "rate_limited"] {
            drop(logins.get_or_create(&KindLabel { kind }));
        }
        for kind in ["published", "received"] {
            drop(revocations.get_or_create(&KindLabel { kind }));
        }
        for kind in ["succeeded", "failed"] {
            drop(reloads.get_or_create(&KindLabel { kind }));
        }
        Metrics {
            registry,
            fast_path_requests,
            fast_path_handovers,
            requests,
            request_duration,
            upstream_duration,
            upstream_connect_errors,
            cache,
            store_lookups,
            store_lookup_duration,
            sessions,
            logins,
            open_connections,
            revocations,
            reloads,
        }
    }

    /// A counter of a `kind`-labelled family.
    pub fn count(family: &Family<KindLabel, Counter>, kind: &'static str) {
        family.get_or_create(&KindLabel { kind }).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// One open connection, counted until dropped.
pub struct OpenConnection(Gauge);

impl OpenConnection {
    pub fn new(metrics: &Metrics, listener: &'static str, protocol: &'static str) -> OpenConnection {
        let gauge = metrics
            .open_connections
            .get_or_create(&ConnectionLabels { listener, protocol })
            .clone();
        gauge.inc();
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}
