//! A courier server running inside the test process on `127.0.0.1:0`.

use std::net::SocketAddr;

use courier_kit::server::{self, ServeError, ServerOptions, ServiceSet};
use courier_payments::model::Clock;
use courier_payments::{Ledger, PaymentsConfig};
use courier_proto::payments::v1::payment_service_client::PaymentServiceClient;
use courier_proto::users::v1::user_service_client::UserServiceClient;
use courier_users::UserStore;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::backend::{Backend, TestDatabase};

/// What a test server runs with.
#[derive(Clone, Debug, Default)]
pub struct TestOptions {
    pub server: ServerOptions,
    pub payments: PaymentsConfig,
    /// Where payments finds UserService; `None` is this server itself.
    pub users_url: Option<String>,
    /// Serve RiskService with these settings in this server and have payments consult it; `None`: payments runs
    /// without risk (the ledger-semantics tests), unless `risk_url` points at one elsewhere.
    pub risk: Option<courier_risk::RiskConfig>,
    /// Where payments finds RiskService (a separate server).
    pub risk_url: Option<String>,
}

/// A running server (UserService and PaymentService, as `courier up` runs them) and a channel to it.
/// [`TestServer::shutdown`] stops it gracefully.
pub struct TestServer {
    pub addr: SocketAddr,
    pub channel: Channel,
    pub store: UserStore,
    /// The ledger behind PaymentService, for direct sweeps and checks.
    pub ledger: Ledger,
    /// The ledger's clock: manual, so tests move time instead of waiting for it.
    pub clock: Clock,
    pub database: TestDatabase,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// Starts the user service with default options.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, ServerOptions::default()).await
    }

    /// Starts with server `options` and default payments settings.
    pub async fn start_with(backend: Backend, options: ServerOptions) -> Self {
        Self::start_configured(backend, TestOptions { server: options, ..TestOptions::default() }).await
    }

    /// Starts both services with `options`; returns once health answers SERVING.
    pub async fn start_configured(backend: Backend, options: TestOptions) -> Self {
        let database = backend.database().await;
        let store = courier_users::store::connect(&courier_users::store::StoreConfig::new(&database.url))
            .await
            .expect("open store");
        let mut services = ServiceSet::default();
        services.describe(courier_proto::FILE_DESCRIPTOR_SET);
        services.add(courier_users::UsersApi::new(store.clone()).into_service());

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");

        let pool = courier_payments::open_store(&courier_kit::db::DbConfig::new(&database.url))
            .await
            .expect("open payments store");
        let clock = Clock::manual();
        let ledger = Ledger::start(pool, options.payments.clone(), clock.clone()).await.expect("start the ledger");
        ledger.spawn_sweeper();
        // Like `courier up`: the services' own calls to each other over in-memory connections, unless a test
        // points payments elsewhere.
        let own = courier_payments::risk::Upstream::InProcess(services.in_process());
        let elsewhere =
            |url: &String| courier_payments::risk::Upstream::Replicas { urls: vec![url.clone()], tls: None };
        let users_upstream = options.users_url.as_ref().map_or(own.clone(), elsewhere);
        let users_timeout = options.payments.users_timeout;
        let users = courier_payments::risk::users_channel(users_upstream, users_timeout, None).expect("users");
        let mut payments = courier_payments::PaymentsApi::new(ledger.clone(), users);
        if let Some(config) = &options.risk {
            let engine = courier_risk::RiskEngine::start(config, courier_risk::Clock::system()).expect("risk rules");
            services.add(courier_risk::RiskApi::new(engine).into_service());
        }
        let risk_upstream = match (&options.risk_url, &options.risk) {
            (Some(url), _) => Some(elsewhere(url)),
            (None, Some(_)) => Some(own),
            (None, None) => None,
        };
        if let Some(upstream) = risk_upstream {
            payments = payments.with_risk(
                courier_payments::risk::risk_channel(upstream, options.payments.risk_timeout, None)
                    .expect("risk channel"),
            );
        }
        services.add(payments.into_service());
        let options = options.server;
        let (shutdown, signal) = oneshot::channel::<()>();
        let feeds = ledger.clone();
        let task = tokio::spawn(async move {
            server::serve(listener, services, &options, async move {
                let _ = signal.await;
                feeds.close_feeds();
            })
            .await
        });

        let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
        let server = Self { addr, channel, store, ledger, clock, database, shutdown: Some(shutdown), task: Some(task) };
        server.wait_until_serving().await;
        server
    }

    /// A user service client on the shared channel.
    pub fn users(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.channel.clone())
    }

    /// A payment service client on the shared channel.
    pub fn payments(&self) -> PaymentServiceClient<Channel> {
        PaymentServiceClient::new(self.channel.clone())
    }

    /// Runs `courier ledger check`'s verification and panics with the first violation.
    pub async fn assert_ledger_consistent(&self) {
        let summary = courier_payments::ledger::check(self.ledger.pool()).await.expect("read the ledger");
        if let Err(violation) = summary {
            panic!("ledger check failed: {violation}");
        }
    }

    /// A health client on the shared channel.
    pub fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel.clone())
    }

    /// Starts graceful shutdown without waiting for it; pair with [`TestServer::join`].
    pub fn begin_shutdown(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }

    /// Waits for the server task to end and returns what `serve` returned.
    pub async fn join(&mut self) -> Result<(), ServeError> {
        let task = self.task.take().expect("joined twice");
        task.await.expect("server task panicked")
    }

    /// Graceful shutdown, then the test database is removed.
    pub async fn shutdown(mut self) {
        self.begin_shutdown();
        self.join().await.expect("server ended with an error");
        self.database.cleanup().await;
    }

    /// Health is the readiness signal: the listener is bound before `serve` runs, so calls queue until it does.
    async fn wait_until_serving(&self) {
        let mut health = self.health();
        for _ in 0..500 {
            let request = HealthCheckRequest { service: String::new() };
            if let Ok(response) = health.check(request).await {
                if response.into_inner().status() == ServingStatus::Serving {
                    return;
                }
            }
            tokio::task::yield_now().await;
        }
        panic!("server on {} never reported SERVING", self.addr);
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that panicked mid-way still stops its server.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
