//! Export accounting: spans exported, failed and dropped, as Prometheus counters.
//!
//! The SDK's batch processor drops a span when its queue is full but only logs the count (at the first drop and
//! at shutdown). [`Admission`] sits in front of it with the same bound, counting what is queued and not yet
//! exported, so a drop is counted where it happens and the SDK's queue never overflows; [`CountedExporter`]
//! counts each batch's outcome and frees its places.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;
use prometheus::{IntCounter, IntCounterVec};

use crate::metrics;

static SPANS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    metrics::counter_vec(
        "courier_trace_spans_total",
        "Spans handed to the OTLP exporter, by outcome: exported, failed (the collector refused or was \
         unreachable), dropped (the export queue was full).",
        &["outcome"],
    )
});

fn outcome(name: &str) -> IntCounter {
    SPANS.with_label_values(&[name])
}

/// Spans ended but not yet through an export.
type Queued = Arc<AtomicUsize>;

/// A processor in front of `P` that refuses spans beyond `capacity` waiting for export.
#[derive(Debug)]
pub(super) struct Admission<P> {
    inner: P,
    queued: Queued,
    capacity: usize,
    dropped: IntCounter,
}

impl<P> Admission<P> {
    pub(super) fn new(inner: P, queued: Queued, capacity: usize) -> Self {
        Self { inner, queued, capacity, dropped: outcome("dropped") }
    }
}

impl<P: SpanProcessor> SpanProcessor for Admission<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queued.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            self.dropped.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// An exporter counting each batch's spans as exported or failed, and freeing their places in [`Admission`].
#[derive(Debug)]
pub(super) struct CountedExporter<E> {
    inner: E,
    queued: Queued,
    exported: IntCounter,
    failed: IntCounter,
}

impl<E> CountedExporter<E> {
    pub(super) fn new(inner: E, queued: Queued) -> Self {
        Self { inner, queued, exported: outcome("exported"), failed: outcome("failed") }
    }
}

impl<E: SpanExporter> SpanExporter for CountedExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => self.exported.inc_by(spans as u64),
            Err(_) => self.failed.inc_by(spans as u64),
        }
        self.queued.fetch_sub(spans, Ordering::Relaxed);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
