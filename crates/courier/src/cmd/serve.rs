//! `courier up` (every service, one process) and `courier serve <service>` (one service alone).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::Context;
use clap::{Args, ValueEnum};
use courier_kit::server::{self, ServiceSet};
use courier_payments::model::Clock;
use courier_payments::risk::{risk_channel, users_channel, Upstream};
use courier_payments::Ledger;
use tokio::net::TcpListener;

use super::transport::Transport;
use crate::config::{ServeConfig, ServeFlags};

/// `courier up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    flags: ServeFlags,
    /// Accepted for older scripts: development auth is what `up` does by default now (see --no-auth).
    #[arg(long = "dev-auth", hide = true)]
    _dev_auth: bool,
}

/// `courier serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The service to run.
    service: ServiceName,
    #[command(flatten)]
    flags: ServeFlags,
}

/// The services `courier serve` can run alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ServiceName {
    /// courier.users.v1.UserService
    Users,
    /// courier.payments.v1.PaymentService (needs UserService: --users-url)
    Payments,
    /// courier.risk.v1.RiskService (rules from `[risk] rules_file`, else built in)
    Risk,
    /// coprocess.Dispatcher: a Tyk gateway's gRPC plugin checking bearer tokens with `[auth]` (`[tyk]` table)
    TykPlugin,
}

/// Runs every service built so far in this process.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut config = args.flags.load_with_reflection(true)?;
    let admin = config.admin_addr(Some(DEFAULT_ADMIN_LISTEN))?;
    // Without `[auth]`, development auth (a token in the data dir) unless the operator opted out.
    let dev = if config.auth.is_enabled() || config.no_auth { None } else { Some(super::auth::dev_auth(&mut config)?) };
    super::auth::check_up_without_auth(&config)?;
    run(&config, &[ServiceName::Users, ServiceName::Payments, ServiceName::Risk], admin, dev).await
}

/// Runs one service.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.flags.load_with_reflection(false)?;
    let admin = config.admin_addr(None)?;
    run(&config, &[args.service], admin, None).await
}

/// Where `courier up` serves /metrics, /healthz and /readyz unless told otherwise.
const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090);

async fn run(
    config: &ServeConfig,
    services: &[ServiceName],
    admin: Option<SocketAddr>,
    dev: Option<super::auth::DevAuth>,
) -> anyhow::Result<()> {
    let (mut notes, cli_flags) = match &dev {
        Some(dev) => (dev.lines.clone(), dev.cli_flags.clone()),
        None => (Vec::new(), String::new()),
    };
    // Kept to the end: dropping it exports the spans still queued.
    let telemetry = courier_kit::trace::Telemetry::new(&telemetry_name(services), config.otlp_endpoint())
        .with_context(|| format!("invalid configuration key `otlp_endpoint`: {:?}", config.otlp_endpoint))?;
    courier_kit::logging::init(config.log_format, &config.log, &telemetry)
        .with_context(|| format!("invalid configuration key `log`: {:?}", config.log))?;

    // Rules are read before anything binds: a bad rules file stops the process naming the problem, like a bad
    // configuration value, instead of serving rules nobody meant.
    let risk = if services.contains(&ServiceName::Risk) {
        Some(courier_risk::RiskEngine::start(&config.risk, courier_risk::Clock::system())?)
    } else {
        None
    };

    // Certificates read and the loopback rule applied before binding: an unsafe or broken setup binds nothing.
    let transport = Transport::load(config)?;
    super::auth::check_unauthenticated(config)?;
    // Bound first: in `courier up`, payments calls UserService at this very address.
    let listener = TcpListener::bind(config.listen).await.with_context(|| {
        format!("binding {} (is another courier running? choose another address with --listen)", config.listen)
    })?;
    let addr = listener.local_addr()?;
    // Bound before the stores open, like the gRPC port, so a taken port stops the process at once.
    let admin_listener = match admin {
        Some(admin) => Some(TcpListener::bind(admin).await.with_context(|| {
            format!("binding the admin port {admin} (choose another with --admin-listen ADDR, or --admin-listen off)")
        })?),
        None => None,
    };
    // Only now does anything touch the data dir: an `up` that could not bind leaves the running one's token alone.
    if let Some(dev) = &dev {
        dev.persist()?;
    }
    // Keys read and checked before anything is served; payments' own token for users and risk.
    let authenticator = config.auth.authenticator()?;
    let service_token = super::auth::service_token(config)?;

    let mut set = ServiceSet::default();
    set.describe(courier_proto::FILE_DESCRIPTOR_SET);
    let database_url = config.database_url();
    let mut ledgers = Vec::new();
    for service in services {
        match service {
            ServiceName::Users => {
                let store = courier_users::store::connect(&config.db_config())
                    .await
                    .with_context(|| format!("opening the user store at {}", redact_url(&database_url)))?;
                set.add(courier_users::UsersApi::new(store).into_service());
                set.scopes(courier_users::scopes::METHOD_SCOPES);
            }
            ServiceName::Payments => {
                let pool = courier_payments::open_store(&config.db_config())
                    .await
                    .with_context(|| format!("opening the payments store at {}", redact_url(&database_url)))?;
                // With a broker configured, every batch also queues its events in the outbox (same transaction),
                // and the relay publishes them; several replicas may run it, one publishes (docs/outbox.md).
                let payments =
                    courier_payments::PaymentsConfig { outbox: config.outbox.enabled(), ..config.payments.clone() };
                let relay = courier_outbox::start(pool.clone(), &database_url, config.outbox.clone()).await?;
                if relay.is_some() {
                    notes.push(format!(
                        "courier: outbox publishes events to {} at {} ({})",
                        format!("{:?}", config.outbox.broker).to_lowercase(),
                        redact_url(&config.outbox.url),
                        if config.outbox.required { "required" } else { "optional" }
                    ));
                }
                let ledger = Ledger::start(pool, payments, Clock::system()).await?;
                ledger.spawn_sweeper();
                let token = service_token.as_deref();
                // This process's own users and risk: called straight into the served stack, which outlasts the
                // public drain, unless payments is known to them only by its mTLS certificate (which an in-process
                // call does not have).
                let in_process = authenticator.is_none() || token.is_some();
                let mut own = || -> anyhow::Result<Upstream> {
                    Ok(if in_process {
                        Upstream::InProcess(set.in_process())
                    } else {
                        Upstream::OwnListener { url: transport.own_url(addr)?, tls: transport.client.clone() }
                    })
                };
                let replicas = |urls| Upstream::Replicas { urls, tls: transport.client.clone() };
                let users_upstream = match url_list(&config.users_url) {
                    Some(urls) => replicas(urls),
                    None => own()?,
                };
                let users = users_channel(users_upstream, config.payments.users_timeout, token)
                    .with_context(|| format!("invalid configuration key `users_url`: {:?}", config.users_url))?;
                let mut api = courier_payments::PaymentsApi::new(ledger.clone(), users);
                // RiskService: the one configured, else this process's own when it serves one; without either,
                // authorizations are decided without risk (and the startup lines say so).
                let risk_upstream = match url_list(&config.risk_url) {
                    Some(urls) => Some(replicas(urls)),
                    None if risk.is_some() => Some(own()?),
                    None => None,
                };
                if let Some(upstream) = risk_upstream {
                    let channel = risk_channel(upstream, config.payments.risk_timeout, token)
                        .with_context(|| format!("invalid configuration key `risk_url`: {:?}", config.risk_url))?;
                    api = api.with_risk(channel);
                } else {
                    notes.push("courier: payments runs WITHOUT risk checks (set --risk-url)".to_owned());
                }
                set.add(api.into_service());
                set.scopes(courier_payments::scopes::METHOD_SCOPES).audited(courier_payments::scopes::AUDITED);
                ledgers.push(ledger);
            }
            ServiceName::Risk => {
                if let Some(engine) = &risk {
                    engine.spawn_watcher();
                    set.add(courier_risk::RiskApi::new(engine.clone()).into_service());
                    set.scopes(courier_risk::scopes::METHOD_SCOPES);
                }
            }
            ServiceName::TykPlugin => {
                let authenticator = authenticator.clone().context(
                    "`courier serve tyk-plugin` checks the gateway's bearer tokens with `[auth]`: configure \
                     `auth.jwks_file` or `auth.secret_file`",
                )?;
                let plugin = super::tyk::TykPlugin::new(authenticator, config.tyk.clone());
                set.add(courier_proto::tyk::coprocess::dispatcher_server::DispatcherServer::new(plugin));
            }
        }
    }
    // Scripts and tests wait for the first line (the port is the real one when --listen asked for port 0).
    let mut lines = vec![format!("courier: listening on {addr}")];
    if let Some(admin) = &admin_listener {
        lines.push(format!("courier: admin on {}", admin.local_addr()?));
    }
    lines.extend([
        format!(
            "courier: serving {} + grpc.health.v1.Health{}{}",
            set.names().join(", "),
            reflection_note(config),
            rest_note(config)
        ),
        grpc_web_note(config),
        format!("courier: store {}", redact_url(&database_url)),
        format!(
            "courier: try `courier users create --name Ada --email ada@example.com {}{cli_flags}`",
            transport.cli_hint(addr)
        ),
    ]);
    lines.push(transport.describe(addr));
    lines.push(super::auth::describe(&config.auth));
    // The plugin's caller is the gateway, which sends no token of its own (the token it checks is inside the
    // message): its port is protected by where it listens (the gateway's pod or host) and TLS, not by `[auth]`.
    if let Some(authenticator) = authenticator.filter(|_| !services.contains(&ServiceName::TykPlugin)) {
        set.authenticate(authenticator);
    }
    lines.extend(notes);
    if let Some(admin) = admin_listener {
        tokio::spawn(courier_kit::admin::serve_admin(admin, set.readiness()));
    }
    announce(&lines);
    let shutdown = async move {
        server::shutdown_signal().await;
        // Live event feeds end now, so they do not hold the drain open until the grace period.
        ledgers.iter().for_each(Ledger::close_feeds);
    };
    let options = server::ServerOptions { tls: transport.server, ..config.server.clone() };
    server::serve(listener, set, &options, shutdown).await?;
    // Flushing the last spans blocks for up to a few seconds when the collector is slow: off the runtime's workers.
    tokio::task::spawn_blocking(move || drop(telemetry)).await?;
    Ok(())
}

/// The `service.name` of exported spans: `courier` for `up`, `courier-<service>` for `serve <service>`.
fn telemetry_name(services: &[ServiceName]) -> String {
    match services {
        [one] => format!("courier-{}", one.to_possible_value().expect("named").get_name()),
        _ => "courier".to_owned(),
    }
}

/// A comma-separated list of replica URLs, or `None` when empty.
fn url_list(urls: &str) -> Option<Vec<String>> {
    let list: Vec<String> = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_owned).collect();
    (!list.is_empty()).then_some(list)
}

/// Prints to stdout, ignoring failures: a server must not die because whoever started it closed its stdout.
fn announce(lines: &[String]) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    for line in lines {
        let _ = writeln!(stdout, "{line}");
    }
    let _ = stdout.flush();
}

fn rest_note(config: &ServeConfig) -> &'static str {
    if config.server.rest {
        "; REST/JSON on the same port (docs/rest.md)"
    } else {
        ""
    }
}

fn reflection_note(config: &ServeConfig) -> &'static str {
    if config.server.reflection {
        " + grpc.reflection.v1 (+v1alpha)"
    } else {
        ""
    }
}

/// What browsers get: gRPC-Web, and from which origins.
fn grpc_web_note(config: &ServeConfig) -> String {
    match (config.server.grpc_web, config.server.cors_allowed_origins.as_slice()) {
        (false, _) => "courier: gRPC-Web off (--no-grpc-web): HTTP/2 gRPC only".to_owned(),
        (true, []) => "courier: gRPC-Web on (HTTP/1.1 and HTTP/2); no browser origin allowed yet \
                       (--cors-allowed-origins ORIGIN, docs/grpc-web.md)"
            .to_owned(),
        (true, origins) => format!("courier: gRPC-Web on (HTTP/1.1 and HTTP/2); CORS for {}", origins.join(", ")),
    }
}

/// The URL without its password, for messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _password)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/x"), "postgres://app:***@db:5432/x");
        assert_eq!(redact_url("postgres://app@db/x"), "postgres://app@db/x");
        assert_eq!(redact_url("sqlite://courier-data/courier.db"), "sqlite://courier-data/courier.db");
    }
}
