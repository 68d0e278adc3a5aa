//! `tracing` set-up: human-readable lines by default, one JSON object per line for log pipelines, and the
//! OpenTelemetry layer that gives each call's span its trace and span ids ([`crate::trace`]).

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{Directive, Targets};
use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::trace::json::JsonWithTraceIds;
use crate::trace::{Telemetry, SPAN_TARGET};

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
    let human = (format == LogFormat::Human)
        .then(|| tracing_subscriber::fmt::layer().compact().with_writer(std::io::stderr).with_ansi(ansi));
    let json = (format == LogFormat::Json).then(|| {
        let events = tracing_subscriber::fmt::format().json().flatten_event(true).with_current_span(false);
        tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonWithTraceIds::new(events))
            .with_writer(std::io::stderr)
    });
    // Only the call spans become OpenTelemetry spans (log events are not copied into them), and only what ids
    // and export need is collected: no per-poll timing, thread or source location attributes.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(telemetry.tracer())
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false)
        .with_level(false)
        .with_context_activation(false)
        .with_filter(Targets::new().with_target(SPAN_TARGET, Level::INFO));
    // `try_init` fails only when a subscriber is already set, e.g. by an earlier call in the same test binary.
    let _ = tracing_subscriber::registry().with(filter).with(human).with(json).with(otel).try_init();
    Ok(())
}
