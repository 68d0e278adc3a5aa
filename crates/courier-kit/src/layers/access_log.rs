//! One structured log line per RPC (target `courier::rpc`), written by [`super::call_end`] when the call really
//! ends (after the last message of a stream), inside the call's span: the method, the final gRPC status code and
//! the latency.

use std::time::Duration;

use tonic::Code;

/// Writes the line of a call to `method` that ended with `code` after `latency`. Server-side failures (INTERNAL,
/// UNKNOWN, DATA_LOSS) are warnings, everything else (a refusal, a NOT_FOUND) is the caller's business: info.
pub(super) fn write(method: &str, code: Code, latency: Duration) {
    let latency_us = latency.as_micros() as u64;
    let code_name = crate::status::code_name(code);
    if matches!(code, Code::Internal | Code::Unknown | Code::DataLoss) {
        tracing::warn!(target: "courier::rpc", method, code = code_name, latency_us, "rpc");
    } else {
        tracing::info!(target: "courier::rpc", method, code = code_name, latency_us, "rpc");
    }
}
