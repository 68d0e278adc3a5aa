//! `courier up` (every service, one process) and `courier serve <service>` (one service alone).

use anyhow::Context;
use clap::{Args, ValueEnum};
use courier_kit::db::DbConfig;
use courier_kit::server::{self, ServiceSet};
use courier_payments::model::Clock;
use courier_payments::Ledger;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::config::{ServeConfig, ServeFlags};

/// `courier up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    flags: ServeFlags,
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
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ServiceName {
    /// courier.users.v1.UserService
    Users,
    /// courier.payments.v1.PaymentService (needs UserService: --users-url)
    Payments,
}

/// Runs every service built so far in this process.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let config = args.flags.load()?;
    run(&config, &[ServiceName::Users, ServiceName::Payments]).await
}

/// Runs one service.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.flags.load()?;
    run(&config, &[args.service]).await
}

async fn run(config: &ServeConfig, services: &[ServiceName]) -> anyhow::Result<()> {
    courier_kit::logging::init(config.log_format, &config.log)
        .with_context(|| format!("invalid configuration key `log`: {:?}", config.log))?;

    // Bound first: in `courier up`, payments calls UserService at this very address.
    let listener = TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;

    let mut set = ServiceSet::default();
    set.describe(courier_proto::FILE_DESCRIPTOR_SET);
    let database_url = config.database_url();
    let mut ledgers = Vec::new();
    for service in services {
        match service {
            ServiceName::Users => {
                let store = courier_users::store::connect(&courier_users::store::StoreConfig::new(&database_url))
                    .await
                    .with_context(|| format!("opening the user store at {}", redact_url(&database_url)))?;
                set.add(courier_users::UsersApi::new(store).into_service());
            }
            ServiceName::Payments => {
                let pool = courier_payments::open_store(&DbConfig::new(&database_url))
                    .await
                    .with_context(|| format!("opening the payments store at {}", redact_url(&database_url)))?;
                let ledger = Ledger::start(pool, config.payments.clone(), Clock::system());
                ledger.spawn_sweeper();
                let users_url =
                    if config.users_url.is_empty() { format!("http://{addr}") } else { config.users_url.clone() };
                let users = Channel::from_shared(users_url.clone())
                    .with_context(|| format!("invalid configuration key `users_url`: {users_url:?}"))?
                    .connect_lazy();
                set.add(courier_payments::PaymentsApi::new(ledger.clone(), users).into_service());
                ledgers.push(ledger);
            }
        }
    }
    // Scripts and tests wait for the first line (the port is the real one when --listen asked for port 0).
    announce(&[
        format!("courier: listening on {addr}"),
        format!("courier: serving {} + grpc.health.v1.Health{}", set.names().join(", "), reflection_note(config)),
        format!("courier: store {}", redact_url(&database_url)),
        format!("courier: try `courier users create --name Ada --email ada@example.com --server http://{addr}`"),
    ]);
    let shutdown = async move {
        server::shutdown_signal().await;
        // Live event feeds end now, so they do not hold the drain open until the grace period.
        ledgers.iter().for_each(Ledger::close_feeds);
    };
    server::serve(listener, set, &config.server, shutdown).await?;
    Ok(())
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

fn reflection_note(config: &ServeConfig) -> &'static str {
    if config.server.reflection {
        " + grpc.reflection.v1 (+v1alpha)"
    } else {
        ""
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
