//! The client subcommands: connection, rendering of results and of gRPC errors.

pub mod accounts;
pub mod authorizations;
pub mod events;
pub mod users;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_types::StatusExt;

/// Flags every client subcommand takes.
#[derive(Args, Debug, Clone)]
pub struct ClientFlags {
    /// The courier server to call.
    #[arg(long, global = true, env = "COURIER_SERVER_URL", default_value = "http://127.0.0.1:50051", value_parser = server_url)]
    server: String,
    /// Print JSON (one object per line for listings) instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline for each call, e.g. 5s or 500ms.
    #[arg(long, global = true, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// CA certificate (PEM) to trust for an https:// server.
    #[arg(long, global = true, env = "COURIER_CA", value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Client certificate (PEM), for servers that require one (mTLS); with --key.
    #[arg(long, global = true, env = "COURIER_CERT", value_name = "FILE", requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, env = "COURIER_KEY", value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,
    /// Bearer token sent as `authorization: Bearer TOKEN` (servers with `[auth]`). Without it, the token
    /// `courier up` wrote to DATA_DIR/token is used when that file exists.
    #[arg(long, global = true, env = "COURIER_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The data dir of the `courier up` being called, where its development token is (used without --token).
    #[arg(long, global = true, env = "COURIER_DATA_DIR", value_name = "DIR", default_value = "courier-data")]
    data_dir: PathBuf,
}

/// `--server`: an http:// or https:// URL. Without a scheme tonic would take the host for one and fail later as
/// UNAVAILABLE, which reads as a server problem; this is a usage error (exit 2) that says what to type.
pub fn server_url(value: &str) -> Result<String, String> {
    if value.starts_with("http://") || value.starts_with("https://") {
        Ok(value.to_owned())
    } else {
        Err(format!("{value:?} has no scheme: write http://{value} (or https:// for a TLS server)"))
    }
}

/// An amount flag: an integer in minor units. A decimal (`25.00`) is the commonest mistake, so it is answered
/// with the integer it meant.
pub fn minor_units(value: &str) -> Result<i64, String> {
    if let Ok(amount) = value.parse::<i64>() {
        return Ok(amount);
    }
    let hint = match value.split_once('.') {
        Some((whole, fraction)) if fraction.len() == 2 && (whole.parse::<i64>().is_ok() || whole.is_empty()) => {
            let minor = format!("{whole}{fraction}").trim_start_matches('0').to_owned();
            let minor = if minor.is_empty() { "0".to_owned() } else { minor };
            format!(": amounts are integers in minor units, so {value} USD is {minor}")
        }
        _ => ": amounts are integers in minor units (1050 is 10.50 USD)".to_owned(),
    };
    Err(format!("{value:?} is not an amount{hint}"))
}

/// Where the token of this run came from, for the message of an UNAUTHENTICATED answer.
static TOKEN_SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The connection every subcommand calls through: a channel that adds the bearer token, if any.
pub type Connection = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer ...` to every call (nothing when there is no token).
#[derive(Clone, Debug)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

impl ClientFlags {
    async fn connect(&self) -> anyhow::Result<Connection> {
        let bearer = self.bearer()?;
        Ok(tonic::service::interceptor::InterceptedService::new(self.channel().await?, bearer))
    }

    /// --token, else the development token of `courier up` in --data-dir, else none.
    fn bearer(&self) -> anyhow::Result<Bearer> {
        let token = resolve_token(self.token.as_deref(), &self.data_dir);
        let token_file = self.data_dir.join(crate::cmd::auth::DEV_TOKEN_FILE);
        let source = match (&self.token, &token) {
            (Some(_), _) => "the token given with --token / COURIER_TOKEN was refused".to_owned(),
            (None, Some(_)) => format!(
                "the token read from {} was refused (it is rewritten by each `courier up`; pass --token or --data-dir)",
                token_file.display()
            ),
            (None, None) => format!("no token was sent: none in --token, COURIER_TOKEN or {}", token_file.display()),
        };
        let _ = TOKEN_SOURCE.set(source);
        let value = token
            .map(|t| format!("Bearer {t}").parse())
            .transpose()
            .map_err(|_| anyhow::anyhow!("--token is not a valid header value (a JWT has only A-Z a-z 0-9 - _ .)"))?;
        Ok(Bearer(value))
    }

    async fn channel(&self) -> anyhow::Result<Channel> {
        let endpoint = Endpoint::from_shared(self.server.clone())
            .map_err(|_| {
                anyhow::anyhow!("--server {:?} is not a valid URL (e.g. http://127.0.0.1:50051)", self.server)
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(self.timeout);
        let endpoint = match self.tls()? {
            Some(tls) => endpoint.tls_config(tls)?,
            None => endpoint,
        };
        endpoint.connect().await.map_err(|e| {
            let reason = courier_kit::tls::error_chain(&e);
            let hint = if reason.contains("refused") {
                "\n  nothing listens there: start a server with `courier up`, or point --server (COURIER_SERVER_URL) at one"
            } else {
                ""
            };
            anyhow::anyhow!("UNAVAILABLE: cannot connect to {}: {reason}{hint}", self.server)
        })
    }
}

/// The token a client command sends: `given` (--token / COURIER_TOKEN), else the development token `courier up`
/// wrote to `data_dir`, else none (a server without `[auth]` needs none).
pub fn resolve_token(given: Option<&str>, data_dir: &std::path::Path) -> Option<String> {
    let token = match given {
        Some(token) => Some(token.to_owned()),
        None => std::fs::read_to_string(data_dir.join(crate::cmd::auth::DEV_TOKEN_FILE)).ok(),
    };
    token.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())
}

impl ClientFlags {
    /// TLS from --ca (and --cert/--key), which go with https:// only: a CA next to an http:// URL would
    /// otherwise send everything in plaintext without a word.
    fn tls(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        let https = self.server.starts_with("https://");
        let Some(ca) = &self.ca else {
            anyhow::ensure!(
                !https,
                "--server {} is https://: pass --ca FILE, the CA that signed its certificate",
                self.server
            );
            anyhow::ensure!(self.cert.is_none(), "--cert and --key need --ca and an https:// --server");
            return Ok(None);
        };
        anyhow::ensure!(https, "--ca is given, so --server must be https:// (it is {:?})", self.server);
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("{flag} {}: cannot read", path.display()))
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((read("--cert", cert)?, read("--key", key)?)),
            _ => None,
        };
        Ok(Some(courier_kit::tls::client_config(read("--ca", ca)?, identity, None)))
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
    if status.code() == tonic::Code::Unauthenticated {
        if let Some(source) = TOKEN_SOURCE.get() {
            text.push_str(&format!("\n  {source}"));
        }
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

/// An optional timestamp for JSON: RFC 3339 like [`format_time`], or `null` when unset.
pub fn json_time(timestamp: Option<&prost_types::Timestamp>) -> serde_json::Value {
    timestamp.map_or(serde_json::Value::Null, |ts| serde_json::Value::String(format_time(Some(ts))))
}

/// A protobuf enum value as people read it: its name without the type prefix (`HELD` for
/// `AUTHORIZATION_STATUS_HELD`), or `UNKNOWN(n)` for a number this build does not know.
pub fn enum_label(name: Option<&'static str>, prefix: &str, number: i32) -> String {
    match name {
        Some(name) => name.strip_prefix(prefix).unwrap_or(name).to_owned(),
        None => format!("UNKNOWN({number})"),
    }
}

/// Prints a compact key/value block, the values lined up.
pub fn print_block(rows: &[(&str, String)]) {
    let width = rows.iter().map(|(key, _)| key.len()).max().unwrap_or(0);
    for (key, value) in rows {
        println!("{key:<width$}  {value}");
    }
}

/// The idempotency key of a money-moving call: the one given with `--idempotency-key`, or a new `cli-<UUIDv7>`.
/// Either way it is printed with the result, so the same operation can be retried safely.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    key: String,
    generated: bool,
}

impl IdempotencyKey {
    /// The given key, or a new one.
    pub fn given_or_new(given: Option<String>) -> Self {
        match given {
            Some(key) => Self { key, generated: false },
            None => Self { key: format!("cli-{}", uuid::Uuid::now_v7()), generated: true },
        }
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// [`describe_status`], plus the generated key when the outcome is unknown (the call may have applied), so
    /// the user can retry without applying it twice.
    pub fn describe(&self, status: &tonic::Status) -> anyhow::Error {
        use tonic::Code;
        let error = describe_status(status);
        let unknown_outcome = matches!(
            status.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown | Code::Internal
        );
        if self.generated && unknown_outcome {
            anyhow::anyhow!("{error}\n  the call may have applied: retry with --idempotency-key {}", self.key)
        } else {
            error
        }
    }
}
