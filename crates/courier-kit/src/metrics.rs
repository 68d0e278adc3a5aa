//! Prometheus metrics, in the process-wide default registry that the admin port's `/metrics` renders.
//!
//! One registry per process is what Prometheus scrapes anyway, and it lets any crate (the ledger writer, the
//! resilient client) register its metrics where the work happens without a registry being passed around. Metric
//! families are registered once, lazily, on first use; code on a hot path keeps the resolved child handles.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

/// Latency buckets in seconds, 100 µs to 5 s: sub-millisecond for cached reads, the tens of milliseconds of a
/// group commit, up to the longest deadline anyone should wait on.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Registers a counter family in the default registry.
///
/// # Panics
/// If the name or labels are invalid or the name is taken: a programming error caught by any test that records.
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    prometheus::register(Box::new(counter.clone())).expect("counter registered once");
    counter
}

/// Registers a gauge family in the default registry (panics as [`counter_vec`]).
pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let gauge = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    prometheus::register(Box::new(gauge.clone())).expect("gauge registered once");
    gauge
}

/// Registers a float gauge family in the default registry (panics as [`counter_vec`]).
pub fn float_gauge_vec(name: &str, help: &str, labels: &[&str]) -> prometheus::GaugeVec {
    let gauge = prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    prometheus::register(Box::new(gauge.clone())).expect("gauge registered once");
    gauge
}

/// Registers a histogram family in the default registry (panics as [`counter_vec`]).
pub fn histogram_vec(name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let histogram =
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("valid histogram");
    prometheus::register(Box::new(histogram.clone())).expect("histogram registered once");
    histogram
}

/// Registers an unlabelled histogram in the default registry (panics as [`counter_vec`]).
pub fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("valid");
    prometheus::register(Box::new(histogram.clone())).expect("histogram registered once");
    histogram
}

/// Calls the server refused before any handler ran, by reason (`concurrency_limit`, `load_shed`).
pub(crate) static SERVER_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "courier_server_refused_total",
        "Calls refused with RESOURCE_EXHAUSTED before any handler ran, by reason.",
        &["reason"],
    )
});

/// Everything registered so far, in the Prometheus text exposition format.
pub fn render() -> String {
    prometheus::TextEncoder::new().encode_to_string(&prometheus::gather()).unwrap_or_else(|error| {
        tracing::error!(%error, "metrics could not be encoded");
        String::new()
    })
}
