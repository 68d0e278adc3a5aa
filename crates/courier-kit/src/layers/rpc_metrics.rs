//! Per-method RPC metrics: calls by final status code, latency, calls in flight, recorded by
//! [`super::call_end`]: a call is observed until its response body ends, so a server stream counts as in flight
//! (and its latency runs) until its last message, not until its handler returns.
//!
//! The hot path allocates nothing once a method has been seen: each method's series handles are resolved on its
//! first call and kept in a map looked up by the request path.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock, RwLock};
use std::time::Duration;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use tonic::Code;

use crate::metrics;

/// Distinct method paths tracked; calls to further paths share the series of [`OTHER_METHOD`]. Every real method
/// fits many times over; the bound keeps a client calling random paths from growing the exposition without end.
const MAX_METHODS: usize = 512;
/// The `method` label of calls past [`MAX_METHODS`].
const OTHER_METHOD: &str = "other";

struct Families {
    calls: IntCounterVec,
    latency: HistogramVec,
    in_flight: IntGaugeVec,
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| Families {
    calls: metrics::counter_vec(
        "courier_rpc_server_calls_total",
        "Calls handled, by full method path and final gRPC status code.",
        &["method", "code"],
    ),
    latency: metrics::histogram_vec(
        "courier_rpc_server_duration_seconds",
        "Time from request headers to the end of the response (the last message of a stream), by method.",
        &["method"],
        metrics::LATENCY_BUCKETS,
    ),
    in_flight: metrics::gauge_vec(
        "courier_rpc_server_in_flight",
        "Calls started whose response has not ended yet, by method.",
        &["method"],
    ),
});

/// One method's resolved series. Code counters are resolved on first use, so a method shows only the codes it
/// has answered with.
pub(super) struct MethodMetrics {
    method: Box<str>,
    latency: Histogram,
    in_flight: IntGauge,
    codes: [OnceLock<IntCounter>; 17],
}

impl MethodMetrics {
    fn new(method: &str) -> Self {
        let families = &*FAMILIES;
        Self {
            method: method.into(),
            latency: families.latency.with_label_values(&[method]),
            in_flight: families.in_flight.with_label_values(&[method]),
            codes: Default::default(),
        }
    }

    /// The `method` label: the path, or [`OTHER_METHOD`].
    pub(super) fn label(&self) -> &str {
        &self.method
    }

    /// A call started.
    pub(super) fn start(&self) {
        self.in_flight.inc();
    }

    /// A call ended with `code` after `latency`.
    pub(super) fn end(&self, code: Code, latency: Duration) {
        self.in_flight.dec();
        self.latency.observe(latency.as_secs_f64());
        // `Code` is a dense enum of the 17 spec codes; anything else would be a tonic bug, counted as UNKNOWN.
        let index = (code as usize).min(16);
        self.codes[index]
            .get_or_init(|| FAMILIES.calls.with_label_values(&[&*self.method, crate::status::code_name(code)]))
            .inc();
    }
}

static METHODS: LazyLock<RwLock<HashMap<Box<str>, Arc<MethodMetrics>>>> = LazyLock::new(Default::default);

/// The series of calls to `path`.
pub(super) fn method(path: &str) -> Arc<MethodMetrics> {
    if let Some(found) = METHODS.read().unwrap_or_else(|e| e.into_inner()).get(path) {
        return found.clone();
    }
    let mut methods = METHODS.write().unwrap_or_else(|e| e.into_inner());
    let key = if methods.len() < MAX_METHODS || methods.contains_key(path) { path } else { OTHER_METHOD };
    methods.entry(key.into()).or_insert_with(|| Arc::new(MethodMetrics::new(key))).clone()
}
