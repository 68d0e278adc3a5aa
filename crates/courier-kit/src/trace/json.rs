//! JSON log lines with the call's `trace_id` and `span_id` as top-level keys.
//!
//! tracing-subscriber's JSON format puts span fields under `spans`/`span`, where a log pipeline has to dig for
//! them; a join on trace id wants them at the top. [`JsonWithTraceIds`] writes the stock JSON line and, for an
//! event inside a call, starts the object with the ids of the nearest call span ([`super::TraceIds`]).

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use super::TraceIds;

/// A JSON event format: `inner`'s line, with `trace_id` and `span_id` first when the event belongs to a call.
pub struct JsonWithTraceIds {
    inner: Format<Json>,
}

impl JsonWithTraceIds {
    /// Wraps the stock JSON format as configured.
    pub fn new(inner: Format<Json>) -> Self {
        Self { inner }
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let ids = ctx
            .event_scope()
            .and_then(|scope| scope.into_iter().find_map(|span| span.extensions().get::<TraceIds>().copied()));
        let Some(ids) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        // The stock line is one JSON object: `{"timestamp":...}\n`.
        let rest = line.strip_prefix('{').ok_or(fmt::Error)?;
        write!(writer, "{{\"trace_id\":\"{}\",\"span_id\":\"{}\",{rest}", ids.trace_id, ids.span_id)
    }
}
