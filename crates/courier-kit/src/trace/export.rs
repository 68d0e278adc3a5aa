//! The OpenTelemetry tracer provider behind every span's ids, and OTLP/gRPC export when an endpoint is set.
//!
//! Export never holds up a call: a span that ends goes into the SDK's batch span processor, a bounded queue
//! (2048 spans) drained by its own thread, which sends batches (512 spans, every 5 s by default;
//! `OTEL_BSP_SCHEDULE_DELAY` and `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` tune them). When the queue is full a span is
//! dropped. `courier_trace_spans_total{outcome}` counts spans exported, failed and dropped ([`super::counted`]).
//! An unreachable collector makes each batch export fail with a log line; calls go on as before.

use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

use super::counted::{Admission, CountedExporter};

/// Spans waiting for export at most; more are dropped (and counted) rather than held in memory.
const QUEUE_CAPACITY: usize = 2048;

/// How long one export may take before the batch is given up.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long shutdown waits for the last batch.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// The exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The endpoint is not an `http://` or `https://` URL with a host.
    #[error("expected an http:// or https:// URL with a host, e.g. http://127.0.0.1:4317")]
    Endpoint,
    /// The SDK refused the exporter's settings.
    #[error(transparent)]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The process's tracer provider; flushes and stops the exporter when dropped.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// A provider for the service `service_name` (the OTLP resource's `service.name`), exporting to
    /// `otlp_endpoint` (e.g. `http://127.0.0.1:4317`) when given. With an endpoint, must run inside a Tokio
    /// runtime (the gRPC channel's tasks live there).
    pub fn new(service_name: &str, otlp_endpoint: Option<&str>) -> Result<Self, ExportError> {
        let mut builder = SdkTracerProvider::builder()
            .with_resource(Resource::builder_empty().with_service_name(service_name.to_owned()).build());
        if let Some(endpoint) = otlp_endpoint {
            // The exporter connects lazily: a URL it cannot use would only show as failed exports later.
            let uri: http::Uri = endpoint.parse().map_err(|_| ExportError::Endpoint)?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(ExportError::Endpoint);
            }
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(EXPORT_TIMEOUT)
                .build()?;
            let queued = Arc::default();
            let exporter = CountedExporter::new(exporter, Arc::clone(&queued));
            // The other batch settings (delay, batch size) come from the `OTEL_BSP_*` environment variables.
            let config = BatchConfigBuilder::default().with_max_queue_size(QUEUE_CAPACITY).build();
            let batch = BatchSpanProcessor::builder(exporter).with_batch_config(config).build();
            builder = builder.with_span_processor(Admission::new(batch, queued, QUEUE_CAPACITY));
        }
        Ok(Self { provider: builder.build(), exporting: otlp_endpoint.is_some() })
    }

    /// The tracer the `tracing-opentelemetry` layer builds spans with.
    pub fn tracer(&self) -> SdkTracer {
        self.provider.tracer("courier")
    }

    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.exporting
    }
}

impl Drop for Telemetry {
    /// Exports what is queued and stops the exporter (blocks up to a few seconds when the collector is slow).
    fn drop(&mut self) {
        if self.exporting {
            if let Err(error) = self.provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
                tracing::warn!(%error, "trace export: the last spans may be lost");
            }
        }
    }
}
