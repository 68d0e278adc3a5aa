//! Span ids when nothing is exported: what the OpenTelemetry SDK would assign, without building its spans.
//!
//! Without an exporter, an OpenTelemetry span is only ever used for its ids; `tracing-opentelemetry` still
//! builds one per call (a span builder with its attributes when the span opens, the SDK span with the sampler's
//! decision, an end time taken at every exit, the finished span handed to no processor): 0.8 µs of CPU per call
//! of the layered stack, measured (docs/performance.md, step 5). [`IdsLayer`] (installed by [`crate::logging::init`] in its place when there is no exporter) keeps
//! only the ids, with the SDK's rules: a call span opened inside another continues its trace and its sampling
//! decision, a span with a remote parent ([`adopt_parent`]) continues the caller's, anything else starts a new
//! trace, sampled (the SDK's default sampler, parent-based, always on).

use opentelemetry::trace::{SpanContext, SpanId, TraceId};
use rand::Rng;
use tracing::span::{Attributes, Id};
use tracing::{Span, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

use super::TraceIds;

/// Gives every span it sees (the call spans, by its filter) its [`TraceIds`].
pub(crate) struct IdsLayer;

impl<S> Layer<S> for IdsLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, _attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut rng = rand::thread_rng();
        let inherited = span.parent().and_then(|parent| parent.extensions().get::<TraceIds>().copied());
        let ids = TraceIds {
            trace_id: inherited.map_or_else(|| TraceId::from(nonzero(|| rng.gen::<u128>())), |ids| ids.trace_id),
            span_id: SpanId::from(nonzero(|| rng.gen::<u64>())),
            sampled: inherited.is_none_or(|ids| ids.sampled),
        };
        span.extensions_mut().insert(ids);
    }
}

/// A random id other than 0, which means "no id".
fn nonzero<T: PartialEq + Default>(mut draw: impl FnMut() -> T) -> T {
    loop {
        let id = draw();
        if id != T::default() {
            return id;
        }
    }
}

/// Makes `span` (whose ids [`IdsLayer`] gave) the child of the caller's `parent`: its trace and its sampling
/// decision; its ids, or `None` when the layer is not installed (the OpenTelemetry layer is, or nothing is).
pub(super) fn adopt_parent(span: &Span, parent: &SpanContext) -> Option<TraceIds> {
    with_ids(span, |ids| {
        ids.trace_id = parent.trace_id();
        ids.sampled = parent.is_sampled();
    })
}

/// The ids [`IdsLayer`] (or `rpc_span`, with the OpenTelemetry layer) gave `span`.
pub(super) fn of(span: &Span) -> Option<TraceIds> {
    span.with_subscriber(|(id, dispatch)| {
        let data = dispatch.downcast_ref::<Registry>()?.span(id)?;
        let ids = data.extensions().get::<TraceIds>().copied();
        ids
    })
    .flatten()
}

/// `f` on the ids of `span`, if it has any; the updated ids.
fn with_ids(span: &Span, f: impl FnOnce(&mut TraceIds)) -> Option<TraceIds> {
    span.with_subscriber(|(id, dispatch)| {
        let data = dispatch.downcast_ref::<Registry>()?.span(id)?;
        let mut extensions = data.extensions_mut();
        let ids = extensions.get_mut::<TraceIds>()?;
        f(ids);
        Some(*ids)
    })
    .flatten()
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{TraceFlags, TraceState};
    use tracing::Level;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::trace::{rpc_span, span_context, SPAN_TARGET};

    #[test]
    fn ids_follow_the_sdks_rules() {
        let calls = Targets::new().with_target(SPAN_TARGET, Level::INFO);
        let subscriber = tracing_subscriber::registry().with(IdsLayer.with_filter(calls));
        tracing::subscriber::with_default(subscriber, || {
            // No parent: a new trace, sampled.
            let call = rpc_span("/a.S/M", None);
            let own = span_context(&call);
            assert!(own.is_valid() && own.is_sampled() && !own.is_remote(), "{own:?}");
            // A call span opened inside it continues its trace with a span of its own.
            let inner = call.in_scope(|| tracing::info_span!(target: SPAN_TARGET, "rpc"));
            let child = span_context(&inner);
            assert_eq!((child.trace_id(), child.is_sampled()), (own.trace_id(), true));
            assert_ne!(child.span_id(), own.span_id());
            // A remote parent: its trace and its decision (here: not sampled), a new span id.
            let parent =
                SpanContext::new(TraceId::from(7), SpanId::from(9), TraceFlags::default(), true, TraceState::NONE);
            let served = span_context(&rpc_span("/a.S/M", Some(parent)));
            assert_eq!((served.trace_id(), served.is_sampled()), (TraceId::from(7), false));
            assert!(served.span_id() != SpanId::from(9) && served.span_id() != SpanId::INVALID);
            // Spans of other targets get none.
            assert!(!span_context(&tracing::info_span!("other")).is_valid());
        });
    }
}
