//! Distributed tracing: a span per RPC, W3C `traceparent` in and out, trace ids in every log line, and optional
//! OTLP export.
//!
//! - The server layer [`crate::layers::call_end`] opens a span per call (target [`SPAN_TARGET`]) that continues the
//!   caller's trace from its `traceparent` header ([`traceparent`]) or starts a new one. The handler, the access
//!   log line and the response body all run inside it, so every log line of the call carries `trace_id` and
//!   `span_id` (as span fields in the human format, as top-level keys in JSON: [`json`]).
//! - The resilient client ([`crate::client`]) sends `traceparent` naming the span of the call being served, on
//!   every attempt: the upstream's span is a child of it, in the same trace.
//! - With `--otlp-endpoint`, ids come from the OpenTelemetry SDK through `tracing-opentelemetry`, and the spans
//!   are batched and exported over OTLP/gRPC ([`Telemetry`]) off the calls' path. Without an exporter a small
//!   layer of our own ([`ids`]) assigns the same ids by the same rules and builds no OpenTelemetry span.
//!
//! Work a handler moves to another task keeps the call's span with `tracing::Instrument`:
//! `tokio::spawn(work.instrument(tracing::Span::current()))`.

pub mod json;
pub mod traceparent;

mod counted;
mod export;
mod ids;

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing::field::Value;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Registry;

pub use export::{ExportError, Telemetry};
pub(crate) use ids::IdsLayer;

/// The `tracing` target of the per-call spans. Logging always enables it, whatever the log filter, so that ids
/// are assigned and propagated even when nothing is logged.
pub const SPAN_TARGET: &str = "courier::trace";

/// The ids of a call's span, kept in its `tracing` extensions: what the JSON log format and [`span_context`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceIds {
    /// The trace the call belongs to (the caller's, or a new one).
    pub trace_id: TraceId,
    /// This call's own span.
    pub span_id: SpanId,
    /// Whether the trace is sampled: the caller's decision, else yes.
    pub sampled: bool,
}

/// The OpenTelemetry context of `span`: its trace and span ids, invalid when tracing is not installed.
pub fn span_context(span: &Span) -> SpanContext {
    match ids::of(span) {
        Some(ids) => {
            let flags = if ids.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
            SpanContext::new(ids.trace_id, ids.span_id, flags, false, TraceState::NONE)
        }
        None => span.context().span().span_context().clone(),
    }
}

/// Opens the span of one incoming call to `path` (`/package.Service/Method`), the child of `parent` when the
/// caller sent one, and records its ids on it.
pub(crate) fn rpc_span(path: &str, parent: Option<SpanContext>) -> Span {
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "rpc",
        otel.name = path.trim_start_matches('/'),
        otel.kind = "server",
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        parent_span_id = tracing::field::Empty,
    );
    let parent_span_id = parent.as_ref().map(|parent| tracing::field::display(parent.span_id()));
    // Without an exporter the ids layer gave the span its ids; with one, the OpenTelemetry layer does. Neither
    // is installed in tests that set up no subscriber: then there are no ids.
    let given = match &parent {
        Some(parent) => ids::adopt_parent(&span, parent),
        None => ids::of(&span),
    };
    let Some(ids) = given.or_else(|| exported_ids(&span, parent)) else { return span };
    record_ids(&span, parent_span_id, ids);
    span
}

/// The ids the OpenTelemetry layer gives `span` (the child of `parent` when given), copied into its extensions.
fn exported_ids(span: &Span, parent: Option<SpanContext>) -> Option<TraceIds> {
    if let Some(parent) = parent {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
    let own = span.context().span().span_context().clone();
    if !own.is_valid() {
        return None;
    }
    let ids = TraceIds { trace_id: own.trace_id(), span_id: own.span_id(), sampled: own.is_sampled() };
    span.with_subscriber(|(id, dispatch)| {
        if let Some(data) = dispatch.downcast_ref::<Registry>().and_then(|registry| registry.span(id)) {
            data.extensions_mut().insert(ids);
        }
    });
    Some(ids)
}

/// Records the span's ids (and its parent's) in one dispatch: each `record` passes every tracing layer (the log
/// format and OpenTelemetry each take the span's data again), and this is on every call's path.
fn record_ids(span: &Span, parent_span_id: Option<impl Value>, ids: TraceIds) {
    let Some(fields) = span.metadata().map(tracing::Metadata::fields) else { return };
    let (Some(parent), Some(trace), Some(own)) =
        (fields.field("parent_span_id"), fields.field("trace_id"), fields.field("span_id"))
    else {
        return;
    };
    let (trace_id, span_id) = (tracing::field::display(ids.trace_id), tracing::field::display(ids.span_id));
    span.record_all(&fields.value_set(&[
        (&parent, parent_span_id.as_ref().map(|id| id as &dyn Value)),
        (&trace, Some(&trace_id as &dyn Value)),
        (&own, Some(&span_id as &dyn Value)),
    ]));
}
