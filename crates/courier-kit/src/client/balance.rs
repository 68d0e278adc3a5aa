//! Balancing one upstream's calls over its replicas: power of two choices on calls in flight, over the replicas
//! whose health says SERVING.
//!
//! tower's p2c `Balance` picks between two random ready endpoints the one with fewer calls in flight (tower's
//! `PendingRequests`, counted here until the response body ends, so a stream weighs for as long as it runs;
//! tonic's own `Channel::balance_list` reports every endpoint as equally loaded). Its endpoint set comes from a
//! `Discover` stream that per-endpoint tasks feed from `grpc.health.v1.Health/Watch` (gRFC A17 client-side
//! health checking): NOT_SERVING (or a broken watch) removes the endpoint, SERVING adds it back. A server
//! without a health service (UNIMPLEMENTED) counts as serving. `Balance` is not `Clone`, so one instance sits
//! behind a `tower::buffer::Buffer` that every clone of the client shares, as tonic does for its own balancer.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tonic::body::Body;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::Change;
use tower::load::completion::TrackCompletion;
use tower::load::pending_requests::{Handle, PendingRequests};
use tower::Service;

use super::breaker::Breaker;
use crate::layers::observed_body::{BodyObserver, ObservedBody};

/// Calls waiting for the balancer to take them; beyond this a caller waits for room (within its deadline).
const DISPATCH_QUEUE: usize = 1024;
/// First and longest pause before watching a replica's health again after the watch broke.
const REWATCH_MIN: Duration = Duration::from_millis(100);
/// Capped at 1 s: the watch is also how the breaker learns that a failed replica is back ([`Breaker::reset`]).
const REWATCH_MAX: Duration = Duration::from_secs(1);

/// The response body of one endpoint, counting as in flight until it ends.
pub(crate) type EndpointBody = ObservedBody<Body, InFlight>;
type Tracked = PendingRequests<Channel, BodyEnd>;
type Balanced = Balance<Discovery, Request<Body>>;
type Buffered = Buffer<Request<Body>, <Balanced as Service<Request<Body>>>::Future>;

/// Where a client's attempts go: the shared handle on the balancer over the replicas, or this process's own
/// served stack (no connection, no balancing: see `crate::server::InProcess`).
#[derive(Clone)]
pub(crate) enum Dispatch {
    Balanced(Buffered),
    InProcess(crate::server::InProcess),
}

impl Service<Request<Body>> for Dispatch {
    type Response = Response<EndpointBody>;
    type Error = tower::BoxError;
    type Future = futures::future::Either<
        <Buffered as Service<Request<Body>>>::Future,
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self {
            Self::Balanced(balanced) => balanced.poll_ready(cx),
            Self::InProcess(_) => Poll::Ready(Ok(())),
        }
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match self {
            Self::Balanced(balanced) => futures::future::Either::Left(balanced.call(request)),
            Self::InProcess(own) => {
                let own = own.clone();
                futures::future::Either::Right(Box::pin(async move {
                    let response = own.call(request).await?;
                    Ok(response.map(|body| ObservedBody::new(body, InFlight(None))))
                }))
            }
        }
    }
}

/// Keeps one call counted in its endpoint's load until dropped (nothing to count for an in-process call).
pub(crate) struct InFlight(#[allow(dead_code)] Option<Handle>);

impl BodyObserver for InFlight {}

/// Ends a call's in-flight count with its response body, not with its response headers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyEnd;

impl TrackCompletion<Handle, Response<Body>> for BodyEnd {
    type Output = Response<EndpointBody>;

    fn track_completion(&self, handle: Handle, response: Response<Body>) -> Self::Output {
        response.map(|body| ObservedBody::new(body, InFlight(Some(handle))))
    }
}

/// The endpoint set changes, as tower's `Discover` wants them.
pub(crate) struct Discovery {
    changes: mpsc::UnboundedReceiver<Change<usize, Tracked>>,
}

impl tokio_stream::Stream for Discovery {
    type Item = Result<Change<usize, Tracked>, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.changes.poll_recv(cx).map(|change| change.map(Ok))
    }
}

/// How many endpoints can take calls, shared with the watchers.
#[derive(Debug)]
pub(crate) struct Endpoints {
    pub total: usize,
    serving: AtomicUsize,
    /// Endpoints whose health has not answered yet.
    undecided: AtomicUsize,
    changed: watch::Sender<usize>,
}

impl Endpoints {
    pub(crate) fn serving(&self) -> usize {
        self.serving.load(Ordering::Acquire)
    }

    /// Every endpoint has answered and none serves: calls fail at once rather than wait for one.
    pub(crate) fn none_can_serve(&self) -> bool {
        self.serving.load(Ordering::Acquire) == 0 && self.undecided.load(Ordering::Acquire) == 0
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<usize> {
        self.changed.subscribe()
    }
}

/// Starts the balancer over `endpoints` (URL and channel; and their health watchers, with `health` naming the service to ask
/// about, or `None` to trust every endpoint). An endpoint turning SERVING resets `breaker`: the failures it
/// counted are over. Must run inside a Tokio runtime.
pub(crate) fn start(
    upstream: &str,
    endpoints: Vec<(String, Channel)>,
    health: Option<String>,
    breaker: Option<Arc<Breaker>>,
) -> (Dispatch, Arc<Endpoints>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(Endpoints {
        total: endpoints.len(),
        serving: AtomicUsize::new(0),
        undecided: AtomicUsize::new(endpoints.len()),
        changed: watch::Sender::new(0),
    });
    for (key, (url, channel)) in endpoints.into_iter().enumerate() {
        let mut watcher = Watcher {
            key,
            url,
            upstream: upstream.to_owned(),
            channel,
            tx: tx.clone(),
            state: state.clone(),
            decided: false,
            serving: false,
            breaker: breaker.clone(),
        };
        match &health {
            Some(service) => {
                tokio::spawn(watcher.run(service.clone()));
            }
            None => watcher.set(true),
        }
    }
    let dispatch = Buffer::new(Balance::new(Discovery { changes: rx }), DISPATCH_QUEUE);
    (Dispatch::Balanced(dispatch), state)
}

/// The endpoint state of an in-process upstream: one endpoint, always serving.
pub(crate) fn in_process() -> Arc<Endpoints> {
    Arc::new(Endpoints {
        total: 1,
        serving: AtomicUsize::new(1),
        undecided: AtomicUsize::new(0),
        changed: watch::Sender::new(1),
    })
}

/// Follows one endpoint's health and adds it to or removes it from the balancer.
struct Watcher {
    key: usize,
    url: String,
    upstream: String,
    channel: Channel,
    tx: mpsc::UnboundedSender<Change<usize, Tracked>>,
    state: Arc<Endpoints>,
    decided: bool,
    serving: bool,
    breaker: Option<Arc<Breaker>>,
}

/// How one health watch ended.
enum WatchEnd {
    /// The server has no health service: trust it.
    NoHealthService,
    /// The watch failed or ended; `answered` if it had reported a status first.
    Broken { answered: bool },
}

impl Watcher {
    /// Watches until the balancer is gone (every client clone dropped).
    async fn run(mut self, service: String) {
        let gone = self.tx.clone();
        let mut pause = REWATCH_MIN;
        loop {
            let ended = tokio::select! {
                () = gone.closed() => return,
                ended = self.watch(&service) => ended,
            };
            match ended {
                WatchEnd::NoHealthService => {
                    tracing::warn!(target: "courier::client", upstream = %self.upstream, endpoint = %self.url,
                        "endpoint has no health service; sending to it unchecked");
                    self.set(true);
                    gone.closed().await;
                    return;
                }
                WatchEnd::Broken { answered } => {
                    self.set(false);
                    if answered {
                        pause = REWATCH_MIN;
                    }
                }
            }
            // Jittered so that many clients do not come back to a recovering replica in step.
            let wait = pause.mul_f64(rand::thread_rng().gen_range(0.5..1.0));
            pause = (pause * 2).min(REWATCH_MAX);
            tokio::select! {
                () = gone.closed() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn watch(&mut self, service: &str) -> WatchEnd {
        let mut health = HealthClient::new(self.channel.clone());
        let request = HealthCheckRequest { service: service.to_owned() };
        let mut statuses = match health.watch(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::Unimplemented => return WatchEnd::NoHealthService,
            Err(status) => {
                tracing::debug!(target: "courier::client", upstream = %self.upstream, endpoint = %self.url,
                    code = ?status.code(), "health watch failed");
                return WatchEnd::Broken { answered: false };
            }
        };
        let mut answered = false;
        loop {
            match statuses.message().await {
                Ok(Some(reply)) => {
                    answered = true;
                    self.set(reply.status() == ServingStatus::Serving);
                }
                Ok(None) | Err(_) => return WatchEnd::Broken { answered },
            }
        }
    }

    fn set(&mut self, serving: bool) {
        if !self.decided {
            self.decided = true;
            self.state.undecided.fetch_sub(1, Ordering::AcqRel);
        }
        if serving != self.serving {
            self.serving = serving;
            // The change is queued for the balancer before the count moves, so whoever sees the new count and
            // then calls finds the balancer already updated.
            if serving {
                if let Some(breaker) = &self.breaker {
                    breaker.reset();
                }
                let _ = self.tx.send(Change::Insert(self.key, PendingRequests::new(self.channel.clone(), BodyEnd)));
                self.state.serving.fetch_add(1, Ordering::AcqRel);
            } else {
                let _ = self.tx.send(Change::Remove(self.key));
                self.state.serving.fetch_sub(1, Ordering::AcqRel);
            }
            tracing::info!(target: "courier::client", upstream = %self.upstream, endpoint = %self.url, serving,
                "endpoint health changed");
        }
        self.state.changed.send_replace(self.state.serving());
    }
}
