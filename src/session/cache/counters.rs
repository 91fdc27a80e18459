//! The session metrics' handles (`Counters`), made once per `Sessions` from `metrics.rs`.

use crate::metrics::{KindLabel, Metrics};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// The session metrics' handles, made once (see `metrics.rs`).
pub(in crate::session) struct Counters {
    pub(super) hit: Counter,
    pub(super) negative_hit: Counter,
    pub(super) miss: Counter,
    pub(super) lookups: Counter,
    pub(super) lookup_duration: Histogram,
    pub(in crate::session) created: Counter,
    pub(in crate::session) activated: Counter,
    pub(in crate::session) renewed: Counter,
    pub(in crate::session) reissued: Counter,
    pub(in crate::session) destroyed: Counter,
    pub(in crate::session) reused: Counter,
    pub(super) published: Counter,
    pub(super) received: Counter,
}

impl Counters {
    pub(super) fn new(metrics: &Metrics, store: &'static str) -> Counters {
        let kind = |family: &Family<KindLabel, Counter>, kind: &'static str| {
            family.get_or_create(&KindLabel { kind }).clone()
        };
        let store_label = KindLabel { kind: store };
        Counters {
            hit: kind(&metrics.cache, "hit"),
            negative_hit: kind(&metrics.cache, "negative_hit"),
            miss: kind(&metrics.cache, "miss"),
            lookups: metrics.store_lookups.get_or_create(&store_label).clone(),
            lookup_duration: metrics.store_lookup_duration.get_or_create(&store_label).clone(),
            created: kind(&metrics.sessions, "created"),
            activated: kind(&metrics.sessions, "activated"),
            renewed: kind(&metrics.sessions, "renewed"),
            reissued: kind(&metrics.sessions, "reissued"),
            destroyed: kind(&metrics.sessions, "destroyed"),
            reused: kind(&metrics.sessions, "reused"),
            published: kind(&metrics.revocations, "published"),
            received: kind(&metrics.revocations, "received"),
        }
    }
}
