//! `tracing` set-up: human-readable lines by default, one JSON object per line for log pipelines, and the layer
//! that gives each call's span its trace and span ids ([`crate::trace`]: OpenTelemetry's when they are
//! exported, a lighter one of our own when not).

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{Directive, Targets};
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::Context;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::trace::json::JsonWithTraceIds;
use crate::trace::{IdsLayer, Telemetry, SPAN_TARGET};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Compact text for people at a terminal; a call's lines show its span's `trace_id` and `span_id`.
    #[default]
    Human,
    /// One JSON object per line; a call's lines start with its `trace_id` and `span_id`.
    Json,
}

/// Installs the global subscriber writing to stderr (stdout stays free for command output). `filter` uses
/// `RUST_LOG` syntax, e.g. `info` or `courier_users=debug,info`. Spans get their ids from `telemetry`, which
/// also exports them when it has an endpoint. Calling it twice is harmless: the first one wins.
pub fn init(
    format: LogFormat,
    filter: &str,
    telemetry: &Telemetry,
) -> Result<(), tracing_subscriber::filter::ParseError> {
    // Call spans are always on, whatever the filter: without them no ids are assigned or propagated. They are
    // spans only (no events use the target), so this shows nothing more in the log.
    let spans: Directive = format!("{SPAN_TARGET}=info").parse()?;
    let filter = EnvFilter::try_new(filter)?.add_directive(spans);
    // Colour only for a person at a terminal, never into files or pipes.
    let ansi = std::io::stderr().is_terminal();
    // The filter is the output layer's own (not global), so the connection guard below can see h2's debug event
    // whatever the filter says.
    let output: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Human => {
            tracing_subscriber::fmt::layer().compact().with_writer(std::io::stderr).with_ansi(ansi).boxed()
        }
        LogFormat::Json => {
            let events = tracing_subscriber::fmt::format().json().flatten_event(true).with_current_span(false);
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(JsonWithTraceIds::new(events))
                .with_writer(std::io::stderr)
                .boxed()
        }
    };
    // Only the call spans get ids. When they are exported they become OpenTelemetry spans (log events are not
    // copied into them), with only what export needs: no per-poll timing, thread or source location attributes.
    // Otherwise a layer of our own gives them the same ids without building OpenTelemetry spans (`trace::ids`).
    let call_spans = || Targets::new().with_target(SPAN_TARGET, Level::INFO);
    let otel = telemetry.exporting().then(|| {
        tracing_opentelemetry::layer()
            .with_tracer(telemetry.tracer())
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_level(false)
            .with_context_activation(false)
            .with_filter(call_spans())
    });
    let ids = (!telemetry.exporting()).then(|| IdsLayer.with_filter(call_spans()));
    let guard = ConnectionGuardLayer.with_filter(Targets::new().with_target(H2_CONNECTION_TARGET, Level::DEBUG));
    // `try_init` fails only when a subscriber is already set, e.g. by an earlier call in the same test binary.
    let _ = tracing_subscriber::registry().with(output.with_filter(filter)).with(otel).with(ids).with(guard).try_init();
    Ok(())
}

/// Where h2 logs the connection errors it closes a connection for (`Connection::poll; connection error`).
const H2_CONNECTION_TARGET: &str = "h2::proto::connection";

/// Logs one WARN line for every HTTP/2 connection that h2 itself closed with a GOAWAY because the peer broke a
/// rule: a protocol error, or one of its flood guards (`too_many_data_frames`, too many resets, ...). Without it
/// nothing says why every stream of a connection died: tonic's serve loop logs the connection's error at debug
/// (`failed serving connection`), and what h2 returns there has lost the GOAWAY's debug data, the guard's name.
/// h2 logs the whole error at debug when it sends the GOAWAY (and again while the connection closes); this
/// layer (with a filter of its own that enables only that module's debug events) turns the ones h2 initiated
/// (`Library`) with a reason other than NO_ERROR into one WARN per connection. The peer's address is not known
/// there (h2 runs the connection outside courier's spans).
struct ConnectionGuardLayer;

impl<S> Layer<S> for ConnectionGuardLayer
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = ErrorField::default();
        event.record(&mut fields);
        let Some((reason, guard)) = fields.error.as_deref().and_then(guard_goaway) else {
            return;
        };
        // h2 logs the error again each time the closing connection is polled; its `Connection` span (enabled by
        // this layer's filter) remembers that the line was written.
        if let Some(span) = ctx.event_span(event) {
            let mut extensions = span.extensions_mut();
            if extensions.get_mut::<Warned>().is_some() {
                return;
            }
            extensions.insert(Warned);
        }
        // Logged from a task of its own: an event dispatched from inside another's dispatch is dropped.
        let warn = move || {
            tracing::warn!(
                target: "courier_kit::server",
                reason,
                guard,
                "HTTP/2 connection closed by a protocol guard: GOAWAY {reason} ({guard}); every stream on it ended"
            )
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(async move { warn() })),
            Err(_) => drop(std::thread::spawn(warn)),
        }
    }
}

/// Marks an h2 `Connection` span whose closing was logged.
struct Warned;

/// The `error` field of an event, as its `Debug` text.
#[derive(Default)]
struct ErrorField {
    error: Option<String>,
}

impl tracing::field::Visit for ErrorField {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "error" {
            self.error = Some(format!("{value:?}"));
        }
    }
}

/// The reason and debug data of a GOAWAY h2 sent on its own, from its error's `Debug` text
/// (`GoAway(b"too_many_data_frames", ENHANCE_YOUR_CALM, Library)`); `None` for anything else (stream resets, I/O
/// errors, a GOAWAY the peer sent, NO_ERROR).
fn guard_goaway(error: &str) -> Option<(String, String)> {
    let inner = error.strip_prefix("GoAway(")?.strip_suffix(", Library)")?;
    let (data, reason) = inner.rsplit_once(", ")?;
    if reason == "NO_ERROR" {
        return None;
    }
    let data = data.strip_prefix("b\"").and_then(|d| d.strip_suffix('"')).unwrap_or(data);
    let guard = if data.is_empty() { "no debug data" } else { data };
    Some((reason.to_owned(), guard.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::guard_goaway;

    #[test]
    fn a_goaway_h2_sent_names_its_reason_and_guard() {
        let flood = guard_goaway("GoAway(b\"too_many_data_frames\", ENHANCE_YOUR_CALM, Library)");
        assert_eq!(flood, Some(("ENHANCE_YOUR_CALM".into(), "too_many_data_frames".into())));
        let bare = guard_goaway("GoAway(b\"\", PROTOCOL_ERROR, Library)");
        assert_eq!(bare, Some(("PROTOCOL_ERROR".into(), "no debug data".into())));
        assert_eq!(guard_goaway("GoAway(b\"\", NO_ERROR, Library)"), None);
        assert_eq!(guard_goaway("GoAway(b\"bye\", ENHANCE_YOUR_CALM, Remote)"), None);
        assert_eq!(guard_goaway("Reset(StreamId(1), CANCEL, Library)"), None);
        assert_eq!(guard_goaway("Io(ConnectionReset, None)"), None);
    }
}
