//! The knobs of the server runtime, with production defaults.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::layers::{DeadlineOptions, FaultOptions, OverloadOptions};
use crate::tls::ServerTls;

/// Limits and timings applied to every service a process runs. Deserialised from the `[server]` table of the
/// config file, `COURIER_SERVER_*` variables, or flags (see `courier_kit::config`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerOptions {
    /// Largest request message accepted, in bytes; larger ones get RESOURCE_EXHAUSTED. Default 4 MiB.
    pub max_recv_message_bytes: usize,
    /// Calls in flight at once across all connections; more get RESOURCE_EXHAUSTED at once. Default 1024.
    pub max_concurrent_calls: usize,
    /// HTTP/2 PING interval that detects dead peers on idle connections. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub keepalive_interval: Duration,
    /// How long a PING may go unanswered before the connection is closed. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// How long health reports NOT_SERVING (and readiness fails) before the listener stops accepting, so
    /// balancers and health-checking clients stop sending first. Default 300 ms.
    #[serde(with = "humantime_serde")]
    pub drain_lead: Duration,
    /// How long calls in flight may run after shutdown starts. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Serve gRPC server reflection (v1 and v1alpha). Default on here; the `courier` binary defaults it per
    /// command (on for `up`, off for `serve`).
    pub reflection: bool,
    /// Serve gRPC-Web (binary and text, unary and server streaming) to browsers on the same listener, over
    /// HTTP/1.1 and HTTP/2 (docs/grpc-web.md). Default on.
    pub grpc_web: bool,
    /// Origins (`scheme://host[:port]`, or `*` for any) whose pages may call over gRPC-Web: they get CORS headers
    /// and their preflights are answered; any other origin's are refused. A list, or one comma-separated string
    /// (`COURIER_SERVER__CORS_ALLOWED_ORIGINS=http://a:8080,https://b`). Default empty: no page may.
    #[serde(deserialize_with = "origins")]
    pub cors_allowed_origins: Vec<String>,
    /// Serve REST/JSON on the same port (every method with a `google.api.http` rule, see [`crate::rest`] and
    /// docs/rest.md): HTTP/1.1 is then accepted beside HTTP/2. Default on.
    pub rest: bool,
    /// Deadlines of incoming calls: the default when the caller sent none, per-method defaults and minimums
    /// (`[server.deadlines]`, see [`DeadlineOptions`]).
    pub deadlines: DeadlineOptions,
    /// Pushback on refusals and early shedding when saturated (`[server.overload]`, see [`OverloadOptions`]).
    pub overload: OverloadOptions,
    /// Fault injection per full method path (`[server.faults."/pkg.Service/Method"]`, see [`FaultOptions`]).
    /// Empty, so off, by default.
    pub faults: BTreeMap<String, FaultOptions>,
    /// TLS (mutual when it has a client CA), loaded from the `[tls]` table by the binary (see
    /// [`crate::tls::TlsConfig::server`]); `None`, the default, serves plaintext.
    #[serde(skip)]
    pub tls: Option<ServerTls>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_recv_message_bytes: 4 * 1024 * 1024,
            max_concurrent_calls: 1024,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            drain_lead: Duration::from_millis(300),
            shutdown_grace: Duration::from_secs(10),
            reflection: true,
            grpc_web: true,
            cors_allowed_origins: Vec::new(),
            rest: true,
            deadlines: DeadlineOptions::default(),
            overload: OverloadOptions::default(),
            faults: BTreeMap::new(),
            tls: None,
        }
    }
}

/// A list of origins, or one string of them separated by commas (what an environment variable holds).
fn origins<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Origins {
        List(Vec<String>),
        One(String),
    }
    let origins = match Origins::deserialize(deserializer)? {
        Origins::List(list) => list,
        Origins::One(one) => one.split(',').map(str::to_owned).collect(),
    };
    let origins: Vec<String> =
        origins.iter().map(|origin| origin.trim().to_owned()).filter(|origin| !origin.is_empty()).collect();
    super::grpc_web::check_origins(&origins).map_err(serde::de::Error::custom)?;
    Ok(origins)
}
