//! Per-upstream metrics of the resilient client: retries sent, calls refused locally, and the breaker's reject
//! probability. Handles are resolved once per channel; clones of a channel share them, and two channels to the
//! same upstream name share its series.

use std::sync::LazyLock;

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec};

use crate::metrics;

struct Families {
    retries: IntCounterVec,
    refused: IntCounterVec,
    reject_probability: GaugeVec,
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| Families {
    retries: metrics::counter_vec(
        "courier_client_retries_total",
        "Attempts sent after the first (gRFC A6 retries), by upstream.",
        &["upstream"],
    ),
    refused: metrics::counter_vec(
        "courier_client_refused_total",
        "Calls failed locally without reaching the upstream, by upstream and reason (circuit_open, no_endpoint).",
        &["upstream", "reason"],
    ),
    reject_probability: metrics::float_gauge_vec(
        "courier_client_breaker_reject_probability",
        "The circuit breaker's chance of refusing the next attempt, as of the upstream's last attempt (0: closed).",
        &["upstream"],
    ),
});

/// One upstream's resolved series.
#[derive(Debug)]
pub(crate) struct ClientMetrics {
    pub retries: IntCounter,
    pub circuit_open: IntCounter,
    pub no_endpoint: IntCounter,
    pub reject_probability: Gauge,
}

impl ClientMetrics {
    pub(crate) fn new(upstream: &str) -> Self {
        let families = &*FAMILIES;
        Self {
            retries: families.retries.with_label_values(&[upstream]),
            circuit_open: families.refused.with_label_values(&[upstream, "circuit_open"]),
            no_endpoint: families.refused.with_label_values(&[upstream, "no_endpoint"]),
            reject_probability: families.reject_probability.with_label_values(&[upstream]),
        }
    }
}
