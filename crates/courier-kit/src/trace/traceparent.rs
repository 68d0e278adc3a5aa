//! The W3C `traceparent` header: `00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`.
//!
//! Written here rather than taken from `opentelemetry_sdk`'s `TraceContextPropagator`, which is lenient where a
//! server should not be: it accepts ids shorter than 32/16 digits (`00-abc-def-01` reads as trace id `0xabc`)
//! and goes through a `Context` map per call. The types are OpenTelemetry's, so a parsed parent goes straight to
//! the SDK. Only version `00` is read; anything else is not a parent, and the call starts a new trace (a bad
//! header never fails a call).

use http::HeaderValue;
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// The header's name.
pub const HEADER: &str = "traceparent";

/// The caller's span as `value` names it, or `None` when `value` is not a valid version-00 `traceparent`.
pub fn parse(value: &[u8]) -> Option<SpanContext> {
    // version(2) - trace id(32) - span id(16) - flags(2)
    let value = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    let mut parts = value.split('-');
    let (version, trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || version != "00" {
        return None;
    }
    let trace_id = TraceId::from(u128::from_str_radix(lower_hex(trace_id, 32)?, 16).ok()?);
    let span_id = SpanId::from(u64::from_str_radix(lower_hex(span_id, 16)?, 16).ok()?);
    let flags = u8::from_str_radix(lower_hex(flags, 2)?, 16).ok()?;
    // All-zero ids are invalid; flags other than `sampled` are unknown to version 00 and dropped.
    let parent =
        SpanContext::new(trace_id, span_id, TraceFlags::new(flags) & TraceFlags::SAMPLED, true, TraceState::NONE);
    parent.is_valid().then_some(parent)
}

/// The header value naming `span` as the parent of the call it goes with; `None` for an invalid span context.
pub fn format(span: &SpanContext) -> Option<HeaderValue> {
    if !span.is_valid() {
        return None;
    }
    let flags = (span.trace_flags() & TraceFlags::SAMPLED).to_u8();
    let value = format!("00-{}-{}-{flags:02x}", span.trace_id(), span.span_id());
    HeaderValue::from_str(&value).ok()
}

/// `digits` when it is exactly `len` lowercase hex digits (the spec allows no other case).
fn lower_hex(digits: &str, len: usize) -> Option<&str> {
    (digits.len() == len && digits.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_names_the_callers_trace_and_span() {
        let parent = parse(VALID.as_bytes()).expect("valid");
        assert_eq!(parent.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.is_sampled());
        assert!(parent.is_remote());
        let unsampled = parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid");
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn format_writes_what_parse_reads() {
        let parent = parse(VALID.as_bytes()).expect("valid");
        assert_eq!(format(&parent).expect("valid").to_str().expect("ascii"), VALID);
        assert_eq!(format(&SpanContext::empty_context()), None);
    }

    #[test]
    fn unknown_flags_are_dropped_but_the_header_is_kept() {
        let parent = parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff").expect("valid");
        assert_eq!(parent.trace_flags(), TraceFlags::SAMPLED);
    }

    #[test]
    fn malformed_headers_are_not_parents() {
        for bad in [
            "",
            "garbage",
            // Other versions, including the forbidden ff.
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // Short and long ids (the SDK's propagator reads `abc` as a trace id).
            "00-abc-def-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47360-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
            // Upper case, non-hex, a sign where a digit goes.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            // All-zero ids.
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            // Missing and extra parts.
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(parse(&[0xff, 0xfe]), None, "not UTF-8");
    }
}
