//! The resilient client: how every courier service calls another.
//!
//! tonic's `Channel` sends each call once, to one connection (or to a random one of a list), with whatever
//! timeout the caller set by hand. It has no retries (gRFC A6 is not implemented), no deadline propagation from
//! the call being served, no circuit breaker and no health-aware balancing. [`ResilientChannel`] adds them as a
//! tower service that generated clients wrap like a `Channel`:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use courier_kit::client::{MethodOptions, ResilientChannel};
//! use tonic_health::pb::health_client::HealthClient; // any generated client, e.g. UserServiceClient
//!
//! let channel = ResilientChannel::builder("users")
//!     .endpoints(["http://10.0.0.1:50051", "http://10.0.0.2:50051"])
//!     .reserve(std::time::Duration::from_millis(5))
//!     .method("/grpc.health.v1.Health/Check", MethodOptions::idempotent())
//!     .build()?;
//! let mut client = HealthClient::new(channel);
//! # Ok(()) }
//! ```
//!
//! Per call, in order ([`call`] has the loop):
//! 1. **Deadline**: `min(inbound deadline - reserve, max_timeout)`, the inbound deadline being
//!    [`crate::deadline::current`] of the call being served. No time left after the reserve: DEADLINE_EXCEEDED
//!    at once, nothing sent. Each attempt carries what is left as `grpc-timeout`, and the client enforces it
//!    locally too, also while a response streams.
//! 2. **Circuit breaker** per upstream ([`breaker`]): adaptive throttling from the Google SRE book; a refused
//!    attempt fails locally with UNAVAILABLE saying the circuit is open.
//! 3. **Balancing** ([`balance`]): tower's power-of-two-choices over calls in flight, across the replicas whose
//!    `grpc.health.v1` Watch says SERVING.
//! 4. **Retries** ([`retry`]) per gRFC A6, for methods marked idempotent: exponential backoff with full jitter,
//!    server pushback (`grpc-retry-pushback-ms`), the upstream's retry throttle, `grpc-previous-rpc-attempts` on
//!    each retry, never past the deadline, and only while the call is not committed (a trailers-only answer).
//! 5. **Trace context**: every attempt carries W3C `traceparent` naming the span of the call being served
//!    ([`crate::trace`]), so the upstream's span joins the caller's trace.
//!
//! A transport failure (no connection, reset) counts as UNAVAILABLE: it is retried like one, for idempotent
//! methods only, since the client cannot always tell whether the request reached the server (A6's transparent
//! retries are not implemented). Each call runs as one boxed future (the retry loop's state); the breaker and
//! throttle are lock-free atomics, and no lock is taken on a call's path.

mod balance;
mod body;
mod breaker;
mod builder;
mod call;
mod metrics;
mod options;
mod retry;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::sync::watch;
use tonic::body::Body;
use tower::{BoxError, Service};

pub use body::ResilientBody;
pub use builder::{BuildError, ResilientChannelBuilder};
pub use options::{BreakerOptions, MethodOptions, RetryPolicy, ThrottleOptions, UpstreamOptions};
pub use retry::PREVIOUS_ATTEMPTS_HEADER;

use self::balance::Dispatch;
use self::call::Upstream;

/// A channel to one upstream service with deadlines, retries, a circuit breaker and balancing (see the module
/// documentation). Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ResilientChannel {
    upstream: Arc<Upstream>,
    dispatch: Dispatch,
}

impl std::fmt::Debug for ResilientChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResilientChannel").field("upstream", &self.upstream.name).finish_non_exhaustive()
    }
}

/// A snapshot of an upstream's protection state, for tests and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamState {
    /// The chance that the breaker refuses the next attempt locally; 0 when the upstream is healthy.
    pub reject_probability: f64,
    /// Retry throttle tokens left, `None` when throttling is off.
    pub retry_tokens: Option<f64>,
    /// Endpoints currently in the balancer.
    pub serving_endpoints: usize,
    /// Endpoints configured.
    pub endpoints: usize,
}

impl UpstreamState {
    /// Whether the breaker refuses some calls now.
    pub fn circuit_open(&self) -> bool {
        self.reject_probability > 0.0
    }
}

impl ResilientChannel {
    /// Starts building a channel to the upstream `name` (used in logs and error messages).
    pub fn builder(name: impl Into<String>) -> ResilientChannelBuilder {
        ResilientChannelBuilder::new(name)
    }

    /// A channel to `name` as `options` (its `urls` included) describe it. Must run inside a Tokio runtime.
    pub fn from_options(name: impl Into<String>, options: UpstreamOptions) -> Result<Self, BuildError> {
        Self::builder(name).options(options).build()
    }

    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.upstream.name
    }

    /// Time kept back from the inbound deadline for the caller's own work (`reserve`): a call made with less
    /// left than this is not sent.
    pub fn reserve(&self) -> std::time::Duration {
        self.upstream.reserve
    }

    /// The breaker, throttle and balancer state now.
    pub fn state(&self) -> UpstreamState {
        UpstreamState {
            reject_probability: self.upstream.breaker.as_ref().map_or(0.0, |breaker| breaker.reject_probability()),
            retry_tokens: self.upstream.throttle.as_ref().map(|throttle| throttle.tokens()),
            serving_endpoints: self.upstream.endpoints.serving(),
            endpoints: self.upstream.endpoints.total,
        }
    }

    /// The number of serving endpoints, updated as their health changes (`wait_for(|n| *n == 2)` to wait until
    /// both replicas serve).
    pub fn serving_endpoints(&self) -> watch::Receiver<usize> {
        self.upstream.endpoints.subscribe()
    }
}

impl Service<Request<Body>> for ResilientChannel {
    type Response = Response<ResilientBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    /// Always ready: each call waits for the balancer inside its own future, bounded by its deadline.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // Read here, in the caller's task: the future may be polled anywhere.
        let inbound = crate::deadline::current();
        // The upstream's span is a child of the call being served; every attempt copies this header.
        let caller = crate::trace::span_context(&tracing::Span::current());
        if let Some(value) = crate::trace::traceparent::format(&caller) {
            request.headers_mut().insert(crate::trace::traceparent::HEADER, value);
        }
        Box::pin(call::run(self.upstream.clone(), self.dispatch.clone(), request, inbound))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_channel_and_its_futures_can_cross_threads() {
        fn shared<T: Send + Sync + Clone + 'static>() {}
        fn sent<T: Send + 'static>() {}
        shared::<ResilientChannel>();
        sent::<<ResilientChannel as Service<Request<Body>>>::Future>();
        sent::<ResilientBody>();
    }
}
