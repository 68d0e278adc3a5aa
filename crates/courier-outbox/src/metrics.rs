//! The relay's metrics.

use std::sync::LazyLock;

use courier_kit::metrics;
use prometheus::{Histogram, IntCounterVec, IntGaugeVec};

pub(crate) struct Relay {
    /// Outbox rows not yet confirmed by the broker.
    pub pending: IntGaugeVec,
    /// Age of the oldest of them, seconds.
    pub oldest: prometheus::GaugeVec,
    pub published: IntCounterVec,
    pub errors: IntCounterVec,
    pub publish_seconds: Histogram,
}

pub(crate) static RELAY: LazyLock<Relay> = LazyLock::new(|| Relay {
    pending: metrics::gauge_vec("courier_outbox_pending", "Outbox events not yet confirmed by the broker.", &[]),
    oldest: metrics::float_gauge_vec(
        "courier_outbox_oldest_pending_seconds",
        "Age of the oldest outbox event not yet confirmed by the broker (0 when none is pending).",
        &[],
    ),
    published: metrics::counter_vec(
        "courier_outbox_published_total",
        "Outbox events the broker confirmed, by broker.",
        &["broker"],
    ),
    errors: metrics::counter_vec(
        "courier_outbox_errors_total",
        "Failed relay rounds (connect, publish or confirm), by broker.",
        &["broker"],
    ),
    publish_seconds: metrics::histogram(
        "courier_outbox_publish_seconds",
        "Time to publish one batch and have every message of it confirmed.",
        metrics::LATENCY_BUCKETS,
    ),
});
