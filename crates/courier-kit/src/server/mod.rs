//! Running a set of tonic services the way every courier process does.
//!
//! [`ServiceSet`] collects the application services; [`serve`] adds `grpc.health.v1.Health` and server reflection (v1
//! and v1alpha), applies the seven layers of [`crate::layers`] as [`ServerOptions`] configures them, outermost first:
//! the call's end (trace span, RPC metrics, access log), content type, authentication, fault injection, deadline,
//! concurrency limit with load shedding, receive-size limit, with gRPC-Web and CORS ([`grpc_web`]) outside them and, with `rest` on (the default), [`crate::rest`] in front of
//! all of it on the listener (a JSON request to a `google.api.http` route is transcoded into the gRPC call that then
//! passes every layer); and runs until the shutdown future resolves. The process's own calls to its services (`ServiceSet::in_process`) go straight into the same
//! layered stack. Shutdown is graceful: health turns NOT_SERVING and readiness fails first, for `drain_lead` (so
//! balancers and health-checking clients stop sending); then health Watch streams end (an open watch would otherwise
//! hold the drain for the whole grace period), the listener stops, calls in flight get up to `shutdown_grace` to
//! finish (their calls to this process's own services still work), and `serve` returns as soon as they are done.

pub mod grpc_web;
mod in_process;
mod options;
mod reflection;
mod shutdown;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::ServingStatus;
use tower::Service;

use crate::admin::Readiness;
use crate::auth::{Authenticator, MethodScopes};
use crate::layers::{
    AuthLayer, CallEndLayer, ConcurrencyLimitLayer, ContentTypeLayer, DeadlineLayer, DeadlineOptions, FaultLayer,
    RecvLimitLayer,
};
use crate::rest::{Rest, RestLayer};
pub use in_process::InProcess;
pub use options::ServerOptions;
pub use shutdown::shutdown_signal;

/// The application services of one process, with the descriptor sets that describe them for reflection.
#[derive(Default)]
pub struct ServiceSet {
    routes: RoutesBuilder,
    names: Vec<&'static str>,
    descriptor_sets: Vec<&'static [u8]>,
    readiness: Readiness,
    auth: Option<Arc<Authenticator>>,
    scopes: Vec<&'static [(&'static str, &'static str)]>,
    audited: Vec<&'static [&'static str]>,
    in_process: Option<InProcess>,
}

impl ServiceSet {
    /// Adds a generated tonic service; its name is reported by health as SERVING while the server runs.
    pub fn add<S>(&mut self, service: S) -> &mut Self
    where
        S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        self.routes.add_service(service);
        self
    }

    /// Registers an encoded `FileDescriptorSet` for reflection (e.g. `courier_proto::FILE_DESCRIPTOR_SET`).
    pub fn describe(&mut self, encoded_descriptor_set: &'static [u8]) -> &mut Self {
        self.descriptor_sets.push(encoded_descriptor_set);
        self
    }

    /// Requires every call to authenticate with `authenticator` and hold its method's scope (see
    /// [`crate::auth`]); without it (the default) calls are not checked.
    pub fn authenticate(&mut self, authenticator: Arc<Authenticator>) -> &mut Self {
        self.auth = Some(authenticator);
        self
    }

    /// Registers a service's method -> scope table (full method paths); methods in no table are denied when
    /// authentication is on.
    pub fn scopes(&mut self, table: &'static [(&'static str, &'static str)]) -> &mut Self {
        self.scopes.push(table);
        self
    }

    /// Registers methods whose every call is written to the `audit` log (money-moving calls).
    pub fn audited(&mut self, methods: &'static [&'static str]) -> &mut Self {
        self.audited.push(methods);
        self
    }

    /// A handle for this process's own calls to these services (module `in_process`): once [`serve`] runs, they
    /// go straight into the served stack, through the same layers, for as long as the process runs.
    pub fn in_process(&mut self) -> InProcess {
        self.in_process.get_or_insert_with(InProcess::default).clone()
    }

    /// The readiness [`serve`] reports: set once every service is SERVING, cleared when draining starts.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    /// Names of the application services, as health and reflection report them.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }
}

/// HTTP/2 streams a client may have open at once on one connection. Beyond it its streams wait for one to end
/// (the h2 client queues them); the default `max_concurrent_calls` is as large, so that limit answers first.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 1024;
/// Bytes a client may send on one stream before the server has read them (the per-stream HTTP/2 window).
pub const STREAM_WINDOW: u32 = 16 * 1024;
/// Bytes a client may send on one connection before the server has read them. Its size is what keeps h2's
/// small-DATA-frame guard quiet for legitimate clients, and this is the arithmetic.
///
/// h2 0.4.20 (`proto/streams/counts.rs`, `record_data_frame`) charges every received non-final DATA frame of
/// `len < 256` bytes `256 - len` against a connection budget of half the connection window (its default when,
/// as here, hyper and tonic do not let us set `data_frame_budget`), and gives the charge back when the
/// application reads the frame; overdrawn, it sends GOAWAY ENHANCE_YOUR_CALM `too_many_data_frames` and every
/// stream on the connection dies. Frames the application has not read are bounded by flow control: at most
/// `MAX_STREAMS_PER_CONNECTION * STREAM_WINDOW` = 16 MiB on one connection (this is also the most h2 buffers
/// for a connection, whatever the client does). With the connection window at `8 * 16 MiB` = 128 MiB, the budget is
/// 64 MiB, four times everything that can be unread, so only frames with `(256 - len) / len > 4`, under 52
/// bytes, can ever overdraw it. A gRPC message that small is not a payments call (an AuthorizeStream message, with
/// its 5-byte prefix, an account id of 37 and an idempotency key, is over 90 bytes): clients that send one message
/// per frame never trip the guard however slowly courier reads, and a client that chops messages into tiny
/// frames still does. The large connection window costs nothing by itself: what is buffered is bounded by the
/// stream windows above. (The hyper default, 1 MiB for the connection, unlimited streams of 1 MiB each, tripped
/// the guard once about 350 KiB of 105-byte messages were unread: 300 streams of 100 messages did.)
pub const CONNECTION_WINDOW: u32 = 8 * MAX_STREAMS_PER_CONNECTION * STREAM_WINDOW;

/// Why [`serve`] stopped without finishing cleanly.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The transport failed (accept loop, listener).
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A reflection descriptor set could not be decoded.
    #[error("reflection: {0}")]
    Reflection(#[from] prost_reflect::DescriptorError),
    /// `server.cors_allowed_origins` holds something that is not an origin.
    #[error("invalid configuration key `server.cors_allowed_origins`: {0}")]
    CorsOrigin(#[from] grpc_web::InvalidOrigin),
    /// A descriptor set could not be decoded for the REST routes.
    #[error("REST routes: {0}")]
    Rest(#[source] prost_reflect::DescriptorError),
}

/// Serves `services` on `listener` until `shutdown` resolves, then drains gracefully (see the module docs).
///
/// Tests pass a listener bound to `127.0.0.1:0` and a future they control; binaries pass [`shutdown_signal`].
pub async fn serve(
    listener: TcpListener,
    services: ServiceSet,
    options: &ServerOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let ServiceSet { mut routes, names, descriptor_sets, readiness, auth, scopes, audited, in_process } = services;
    // Outside every other layer, on the listener only (the process's own calls are gRPC): see `grpc_web`.
    let web = grpc_web::GrpcWebLayer::new(options.grpc_web, &options.cors_allowed_origins)?;
    let auth_layer = auth_layer(auth, &scopes, &audited);

    let (health, _) = tonic_health::server::health_reporter();
    for name in &names {
        health.set_service_status(*name, ServingStatus::Serving).await;
    }
    health.set_service_status("", ServingStatus::Serving).await;
    let (watches_end, watches_ended) = tokio::sync::watch::channel(false);
    let inner = tonic_health::server::HealthService::from_health_reporter(health.clone());
    routes.add_service(HealthServer::new(DrainingHealth { inner, ended: watches_ended }));

    if options.reflection {
        let descriptors = reflection::Descriptors::new(&descriptor_sets)?;
        routes.add_service(reflection::v1::ServerReflectionServer::new(reflection::v1::ReflectionV1(
            descriptors.clone(),
        )));
        routes.add_service(reflection::v1alpha::ServerReflectionServer::new(reflection::v1alpha::ReflectionV1Alpha(
            descriptors,
        )));
    }

    if !options.faults.is_empty() {
        let methods: Vec<&str> = options.faults.keys().map(String::as_str).collect();
        tracing::warn!(?methods, "fault injection is ON: these methods will be delayed, failed or dropped on purpose");
    }

    // One copy of the deadlines, for the deadline layer and the REST edge that bounds its callers' by them.
    let deadlines = DeadlineLayer::new(&options.deadlines);
    // Every call passes the same layers, from the listener or from this process itself; the layers share their
    // state (one concurrency limit, one set of faults), as when the process's own calls came over its socket.
    // Keep this order in step with the list in `crate::layers`.
    let layers = tower::ServiceBuilder::new()
        .layer(CallEndLayer)
        .layer(ContentTypeLayer)
        .layer(auth_layer)
        .layer(FaultLayer::new(&options.faults))
        .layer(deadlines.clone())
        .layer(ConcurrencyLimitLayer::with_overload(options.max_concurrent_calls, &options.overload))
        .layer(RecvLimitLayer::new(options.max_recv_message_bytes))
        .into_inner();
    let routes = routes.routes();
    if let Some(own) = &in_process {
        let stack = tower::ServiceBuilder::new()
            .map_result(in_process::recover)
            .service(tower::Layer::layer(&layers, routes.clone()));
        own.install(tower::util::BoxCloneSyncService::new(stack));
    }

    // REST/JSON in front of it all, for the listener only (the process's own calls are gRPC).
    let rest = if options.rest {
        rest_layer(&descriptor_sets, &names, options.max_recv_message_bytes, deadlines.options())?
    } else {
        RestLayer::off()
    };

    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    // With TLS, every accepted connection is handshaken first; a failed handshake (no client certificate under
    // mTLS, a plaintext client) drops that connection only.
    let builder = match &options.tls {
        Some(tls) => tonic::transport::Server::builder().tls_config(tls.config())?,
        None => tonic::transport::Server::builder(),
    };
    let server = builder
        .http2_keepalive_interval(Some(options.keepalive_interval))
        .http2_keepalive_timeout(Some(options.keepalive_timeout))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        // HTTP/1.1 for browsers (gRPC-Web) and REST clients; with neither, the listener stays HTTP/2 only.
        .accept_http1(options.rest || web.enabled())
        .layer(rest)
        .layer(tower::ServiceBuilder::new().layer(web).layer(layers))
        .add_routes(routes)
        .serve_with_incoming_shutdown(accepted_without_nagle(listener), async {
            let _ = drain_rx.await;
        });
    tokio::pin!(server);
    readiness.set(true);

    tokio::select! {
        result = &mut server => return result.map_err(ServeError::from),
        () = shutdown => {}
    }

    tracing::info!(grace = ?options.shutdown_grace, "shutting down: health NOT_SERVING, draining calls in flight");
    readiness.set(false);
    health.set_service_status("", ServingStatus::NotServing).await;
    for name in &names {
        health.set_service_status(*name, ServingStatus::NotServing).await;
    }
    tokio::time::sleep(options.drain_lead).await;
    let _ = watches_end.send(true);
    let _ = drain_tx.send(());
    match tokio::time::timeout(options.shutdown_grace, &mut server).await {
        Ok(result) => result?,
        Err(_) => tracing::warn!(grace = ?options.shutdown_grace, "grace period over; abandoning calls still open"),
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// `grpc.health.v1.Health` whose Watch streams end (OK) once the drain's lead time is over, after they told
/// NOT_SERVING: tonic-health's never end, so one watcher held every drain for its whole grace period.
struct DrainingHealth {
    inner: tonic_health::server::HealthService,
    ended: tokio::sync::watch::Receiver<bool>,
}

type HealthWatch =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<tonic_health::pb::HealthCheckResponse, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl Health for DrainingHealth {
    async fn check(
        &self,
        request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        self.inner.check(request).await
    }

    type WatchStream = HealthWatch;

    async fn watch(
        &self,
        request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        use futures::StreamExt;
        let statuses = self.inner.watch(request).await?.into_inner();
        let mut ended = self.ended.clone();
        let end = async move {
            let _ = ended.wait_for(|ended| *ended).await;
        };
        Ok(tonic::Response::new(Box::pin(statuses.take_until(end))))
    }
}

/// The REST edge for the services named `names`, from the rules in their descriptor sets.
fn rest_layer(
    descriptor_sets: &[&[u8]],
    names: &[&str],
    max_body_bytes: usize,
    deadlines: &Arc<DeadlineOptions>,
) -> Result<RestLayer, ServeError> {
    let rest = Rest::from_descriptor_sets(descriptor_sets, names, max_body_bytes)
        .map_err(ServeError::Rest)?
        .with_deadlines(deadlines.clone());
    for (method, path, grpc) in rest.routes() {
        tracing::debug!(%method, %path, %grpc, "REST route");
    }
    Ok(RestLayer::new(rest))
}

/// The authentication layer for these tables; a pass-through without an authenticator.
fn auth_layer(
    auth: Option<Arc<Authenticator>>,
    tables: &[&'static [(&'static str, &'static str)]],
    audited: &[&'static [&'static str]],
) -> AuthLayer {
    let mut scopes = MethodScopes::new(auth.as_ref().is_some_and(|a| a.open_reflection()));
    tables.iter().for_each(|table| scopes.extend(table));
    audited.iter().for_each(|methods| scopes.audit(methods));
    AuthLayer::new(auth, scopes)
}

/// The accepted connections, each with TCP_NODELAY. tonic's `tcp_nodelay` applies only to listeners it binds
/// itself; on an incoming stream handed to it (this one, bound first so that port 0 can be reported) it is
/// ignored, and with Nagle's algorithm on, a small write (one AuthorizeStream answer, a unary response's
/// trailers) waited for the peer's delayed ACK: 40 ms stalls, the p50 of a busy stream.
fn accepted_without_nagle(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn accepted_connections_have_nagle_off() {
        let listener = super::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = super::accepted_without_nagle(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.expect("a connection").expect("accepted");
        assert!(accepted.nodelay().unwrap(), "TCP_NODELAY on the accepted socket");
    }
}
