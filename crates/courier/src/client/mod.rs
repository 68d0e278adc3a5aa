//! The client subcommands: connection, rendering of results and of gRPC errors.

pub mod users;

use std::time::{Duration, SystemTime};

use clap::Args;
use tonic::transport::{Channel, Endpoint};
use tonic_types::StatusExt;

/// Flags every client subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct ClientFlags {
    /// The courier server to call.
    #[arg(long, global = true, env = "COURIER_SERVER_URL", default_value = "http://127.0.0.1:50051")]
    server: String,
    /// Print JSON (one object per line for listings) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline for each call, e.g. 5s or 500ms.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

impl ClientFlags {
    async fn connect(&self) -> anyhow::Result<Channel> {
        let endpoint = Endpoint::from_shared(self.server.clone())
            .map_err(|_| {
                anyhow::anyhow!("--server {:?} is not a valid URL (e.g. http://127.0.0.1:50051)", self.server)
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(self.timeout);
        endpoint.connect().await.map_err(|e| anyhow::anyhow!("UNAVAILABLE: cannot connect to {}: {e}", self.server))
    }
}

/// A gRPC failure as people read it: `CODE: message`, then each field violation or resource on its own line.
pub fn describe_status(status: &tonic::Status) -> anyhow::Error {
    let mut text = format!("{}: {}", courier_kit::status::code_name(status.code()), status.message());
    let details = status.get_error_details();
    if let Some(bad_request) = details.bad_request() {
        for violation in &bad_request.field_violations {
            text.push_str(&format!("\n  {}: {}", violation.field, violation.description));
        }
    }
    if let Some(info) = details.error_info() {
        text.push_str(&format!("\n  reason: {}", info.reason));
    }
    anyhow::anyhow!(text)
}

/// RFC 3339 with microseconds, UTC.
pub fn format_time(timestamp: Option<&prost_types::Timestamp>) -> String {
    let Some(ts) = timestamp else { return String::new() };
    let Ok(secs) = u64::try_from(ts.seconds) else { return String::new() };
    let time = SystemTime::UNIX_EPOCH + Duration::new(secs, ts.nanos.clamp(0, 999_999_999) as u32);
    humantime::format_rfc3339_micros(time).to_string()
}
