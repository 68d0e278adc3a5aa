//! The server processes' configuration, read once before anything starts (see `courier_kit::config` for the
//! layering: defaults < `--config` TOML file < `COURIER_*` environment < flags).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use courier_kit::auth::AuthConfig;
use courier_kit::logging::LogFormat;
use courier_kit::server::ServerOptions;
use courier_kit::tls::TlsConfig;
use courier_outbox::OutboxConfig;
use courier_payments::PaymentsConfig;
use courier_risk::RiskConfig;
use serde::{Deserialize, Serialize};

/// Everything a server process reads.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The admin HTTP port (/metrics, /healthz, /readyz): an address, or `off`. Unset means the command's
    /// default: `127.0.0.1:9090` for `up`, off for `serve` (one host often runs several; give each its own).
    pub admin_listen: Option<String>,
    /// Directory for the embedded SQLite database.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; empty means `sqlite://<data_dir>/courier.db`.
    pub database_url: String,
    /// Connections per store pool (each service in the process has its own pool).
    pub database_max_connections: u32,
    /// `human` or `json`.
    pub log_format: LogFormat,
    /// Log filter in `RUST_LOG` syntax.
    pub log: String,
    /// Runtime limits and timings (the `[server]` table).
    pub server: ServerOptions,
    /// Where payments finds UserService (comma-separated replicas are balanced); empty means this process's own
    /// address (right for `courier up`).
    pub users_url: String,
    /// Where payments finds RiskService (comma-separated replicas are balanced); empty means this process's own
    /// when it serves risk (as `up` does).
    pub risk_url: String,
    /// Ledger settings (the `[payments]` table).
    pub payments: PaymentsConfig,
    /// Risk rules file and memory bounds (the `[risk]` table).
    pub risk: RiskConfig,
    /// Publishing ledger events to a broker (the `[outbox]` table; see docs/outbox.md). Default: no broker.
    pub outbox: OutboxConfig,
    /// Certificates: served (`cert`, `key`, `client_ca` for mTLS) and trusted on outbound calls (`ca`,
    /// `client_cert`, `client_key`, `domain`). The `[tls]` table; empty means plaintext.
    pub tls: TlsConfig,
    /// Serve plaintext on a non-loopback address anyway (something else encrypts the traffic). Default false.
    pub allow_insecure: bool,
    /// Who may call what: bearer JWTs (`jwks_file` or `secret_file`), mTLS service identities (`[auth.services]`),
    /// issuer, audience, leeway. The `[auth]` table; empty means every caller may call every method.
    pub auth: AuthConfig,
    /// A file holding the bearer token payments sends to UserService and RiskService when they check tokens.
    /// Unset, with `auth.secret_file`, payments signs its own (subject `courier-payments`, scopes `users:read
    /// risk:score`); with mTLS client certificates, `[auth.services]` may grant those scopes instead.
    pub service_token_file: Option<PathBuf>,
    /// Serve without `[auth]` on a non-loopback address anyway (something in front authenticates). Default false.
    pub no_auth: bool,
    /// The Tyk plugin's hook name and required scopes (the `[tyk]` table; `courier serve tyk-plugin` only).
    pub tyk: crate::cmd::tyk::TykConfig,
    /// OTLP/gRPC collector to export trace spans to, e.g. `http://127.0.0.1:4317`; empty means no export (ids are
    /// still assigned, logged and propagated).
    pub otlp_endpoint: String,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            admin_listen: None,
            data_dir: PathBuf::from(crate::cmd::auth::DEFAULT_DATA_DIR),
            database_url: String::new(),
            database_max_connections: 16,
            log_format: LogFormat::Human,
            log: "info".into(),
            server: default_server_options(),
            users_url: String::new(),
            risk_url: String::new(),
            payments: PaymentsConfig::default(),
            risk: RiskConfig::default(),
            outbox: OutboxConfig::default(),
            tls: TlsConfig::default(),
            allow_insecure: false,
            auth: AuthConfig::default(),
            service_token_file: None,
            no_auth: false,
            tyk: crate::cmd::tyk::TykConfig::default(),
            otlp_endpoint: String::new(),
        }
    }
}

/// The runtime defaults, plus the deadline budget of payments' hot call: an Authorize whose caller sent no
/// deadline gets 250 ms (users and risk lookups get their own, shorter, sub-deadlines inside it), and one that
/// arrives with under 2 ms left is refused before any work.
fn default_server_options() -> ServerOptions {
    let mut options = ServerOptions::default();
    options.deadlines.methods.insert(AUTHORIZE.to_owned(), std::time::Duration::from_millis(250));
    // Less than this cannot cover even the ledger's commit: refused at once, before any work.
    options.deadlines.minimums.insert(AUTHORIZE.to_owned(), std::time::Duration::from_millis(2));
    options
}

/// The full method path of Authorize.
pub const AUTHORIZE: &str = "/courier.payments.v1.PaymentService/Authorize";

impl ServeConfig {
    /// How to open a store pool.
    pub fn db_config(&self) -> courier_kit::db::DbConfig {
        let mut config = courier_kit::db::DbConfig::new(self.database_url());
        config.max_connections = self.database_max_connections.max(1);
        config
    }

    /// Where the admin port listens, if anywhere: `admin_listen`, else `default` (the command's).
    pub fn admin_addr(&self, default: Option<SocketAddr>) -> anyhow::Result<Option<SocketAddr>> {
        match self.admin_listen.as_deref().map(str::trim) {
            None => Ok(default),
            Some("" | "off") => Ok(None),
            Some(addr) => addr.parse().map(Some).map_err(|error| {
                anyhow::anyhow!(
                    "invalid configuration key `admin_listen`: {addr:?} is not an address or `off` ({error})"
                )
            }),
        }
    }

    /// The OTLP collector spans go to, if any.
    pub fn otlp_endpoint(&self) -> Option<&str> {
        Some(self.otlp_endpoint.trim()).filter(|endpoint| !endpoint.is_empty())
    }

    /// The database URL, derived from the data dir when none was given.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("courier.db").display())
        } else {
            self.database_url.clone()
        }
    }
}

/// Flags shared by `up` and `serve`; each overrides the same key from the file and the environment.
#[derive(Args, Debug, Default, Serialize)]
pub struct ServeFlags {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Admin HTTP address for /metrics, /healthz, /readyz, or `off` [default: 127.0.0.1:9090 for up, off for serve].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// Directory for the embedded SQLite database [default: ./courier-data].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://FILE or postgres://USER@HOST/DB [default: sqlite://DATA_DIR/courier.db].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Log format: human or json.
    #[arg(long, value_name = "FORMAT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
    /// Where payments reaches UserService, e.g. http://127.0.0.1:50051 [default: this process].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users_url: Option<String>,
    /// Where payments reaches RiskService, e.g. http://127.0.0.1:50053 [default: this process, if it serves risk].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_url: Option<String>,
    /// Log filter, e.g. `info` or `courier_users=debug,info`.
    #[arg(long, value_name = "FILTER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Export trace spans over OTLP/gRPC to this collector, e.g. http://127.0.0.1:4317 [default: no export].
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Serve plaintext on a non-loopback address (without it, such an address needs `[tls] cert` and `key`).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allow_insecure: bool,
    /// Serve without authentication on a non-loopback address (without it, such an address needs `[auth]`).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_auth: bool,
    /// REST, gRPC-Web and CORS (`[server] rest`, `grpc_web`, `cors_allowed_origins`).
    #[command(flatten)]
    #[serde(skip_serializing_if = "WebFlags::is_empty")]
    pub server: WebFlags,
}

/// The `[server]` keys with flags of their own: REST/JSON (docs/rest.md) and gRPC-Web for browsers
/// (docs/grpc-web.md).
#[derive(Args, Debug, Default)]
pub struct WebFlags {
    /// Do not serve REST/JSON on the gRPC port (docs/rest.md) [default: served].
    #[arg(long)]
    pub no_rest: bool,
    /// Do not serve gRPC-Web (browsers) on the gRPC listener, which then speaks HTTP/2 only [default: served].
    #[arg(long)]
    pub no_grpc_web: bool,
    /// Origins whose pages may call over gRPC-Web (CORS), e.g. http://127.0.0.1:5173,https://shop.example
    /// (comma-separated or repeated; `*` for any) [default: none].
    #[arg(long = "cors-allowed-origins", value_name = "ORIGINS", value_delimiter = ',')]
    pub cors_allowed_origins: Vec<String>,
}

impl WebFlags {
    fn is_empty(&self) -> bool {
        !self.no_rest && !self.no_grpc_web && self.cors_allowed_origins.is_empty()
    }
}

/// Only what was passed, under the `[server]` keys it overrides.
impl Serialize for WebFlags {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if self.no_rest {
            map.serialize_entry("rest", &false)?;
        }
        if self.no_grpc_web {
            map.serialize_entry("grpc_web", &false)?;
        }
        if !self.cors_allowed_origins.is_empty() {
            map.serialize_entry("cors_allowed_origins", &self.cors_allowed_origins)?;
        }
        map.end()
    }
}

impl ServeFlags {
    /// Loads the configuration these flags point at and override, over the defaults of `ServeConfig`.
    pub fn load(&self) -> anyhow::Result<ServeConfig> {
        checked(courier_kit::config::load(self.config.as_deref(), self)?)
    }

    /// [`ServeFlags::load`] with `server.reflection` defaulting to `reflection` (the command's default: on for
    /// `courier up`, which people explore with grpcurl, off for `courier serve`, which describes its API to no
    /// one unless asked); `[server] reflection` and `COURIER_SERVER__REFLECTION` override it.
    pub fn load_with_reflection(&self, reflection: bool) -> anyhow::Result<ServeConfig> {
        let mut defaults = ServeConfig::default();
        defaults.server.reflection = reflection;
        checked(courier_kit::config::load_over(defaults, self.config.as_deref(), self)?)
    }
}

/// Bounds a type cannot express, checked once after loading, so a value out of range stops the process naming the
/// key instead of being quietly clamped.
fn checked(config: ServeConfig) -> anyhow::Result<ServeConfig> {
    let max = courier_payments::config::MAX_HOLDER_STALE_IF_ERROR;
    anyhow::ensure!(
        config.payments.holder_stale_if_error <= max,
        "invalid configuration key `payments.holder_stale_if_error`: {} is more than the {} a holder's status may \
         be served stale (a frozen holder would be approved that long)",
        humantime::format_duration(config.payments.holder_stale_if_error),
        humantime::format_duration(max)
    );
    Ok(config)
}
