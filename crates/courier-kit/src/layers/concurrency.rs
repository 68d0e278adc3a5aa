//! A server-wide limit on calls in flight that refuses at once instead of queueing, and sheds doomed calls early.
//!
//! tower's `ConcurrencyLimit` waits for a permit, so under overload a call can sit in a queue past its deadline
//! and its error is not a gRPC status. Here a call that finds no permit gets RESOURCE_EXHAUSTED immediately (a
//! client can retry elsewhere), and a permit is held until the response body ends, so server streams count for
//! as long as they run.
//!
//! Refusals carry `grpc-retry-pushback-ms` (gRFC A6), telling retrying clients how long to stay away. And once the
//! server is saturated (a configured share of the permits taken), a call whose remaining deadline is shorter than
//! its method's expected service time is refused too: it would most likely miss its deadline anyway, and the
//! work would only slow the calls that can still make theirs.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::{Layer, Service};

use super::deadline::RequestDeadline;
use super::observed_body::{BodyObserver, ObservedBody};

/// The header of gRFC A6 server pushback.
pub const RETRY_PUSHBACK_HEADER: &str = "grpc-retry-pushback-ms";

/// What the server does when it is full, the `[server.overload]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OverloadOptions {
    /// Sent as `grpc-retry-pushback-ms` with every RESOURCE_EXHAUSTED refusal; unset sends none. Default 20 ms.
    #[serde(with = "humantime_serde")]
    pub retry_pushback: Option<Duration>,
    /// Share of `max_concurrent_calls` in flight from which the server counts as saturated. Default 0.75.
    pub saturation: f64,
    /// Once saturated, a call with less time left than this is refused; `0s` sheds nothing. Default 0 s.
    #[serde(with = "humantime_serde")]
    pub expected_service_time: Duration,
    /// Per full method path, an expected service time replacing `expected_service_time`. Default empty.
    #[serde(with = "crate::config::durations")]
    pub expected_service_times: BTreeMap<String, Duration>,
}

impl Default for OverloadOptions {
    fn default() -> Self {
        Self {
            retry_pushback: Some(Duration::from_millis(20)),
            saturation: 0.75,
            expected_service_time: Duration::ZERO,
            expected_service_times: BTreeMap::new(),
        }
    }
}

/// Layer for [`ConcurrencyLimit`].
#[derive(Clone)]
pub struct ConcurrencyLimitLayer {
    shared: Arc<Shared>,
}

struct Shared {
    permits: Arc<Semaphore>,
    max_in_flight: usize,
    /// Calls already in flight from which the server is saturated.
    saturated_at: usize,
    pushback: Option<HeaderValue>,
    overload: OverloadOptions,
    sheds: bool,
    /// `courier_server_refused_total{reason="concurrency_limit"}`, resolved once.
    refused_full: prometheus::IntCounter,
    /// `courier_server_refused_total{reason="load_shed"}`.
    refused_shed: prometheus::IntCounter,
}

impl ConcurrencyLimitLayer {
    /// At most `max_in_flight` calls at once across every connection, with the default [`OverloadOptions`].
    pub fn new(max_in_flight: usize) -> Self {
        Self::with_overload(max_in_flight, &OverloadOptions::default())
    }

    /// At most `max_in_flight` calls at once, refusals and shedding as `overload` says.
    pub fn with_overload(max_in_flight: usize, overload: &OverloadOptions) -> Self {
        let saturation = overload.saturation.clamp(0.0, 1.0);
        let shared = Shared {
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            saturated_at: ((max_in_flight as f64 * saturation).ceil() as usize).max(1),
            pushback: overload.retry_pushback.map(|pushback| HeaderValue::from(pushback.as_millis() as u64)),
            overload: overload.clone(),
            sheds: !overload.expected_service_time.is_zero() || !overload.expected_service_times.is_empty(),
            refused_full: crate::metrics::SERVER_REFUSED.with_label_values(&["concurrency_limit"]),
            refused_shed: crate::metrics::SERVER_REFUSED.with_label_values(&["load_shed"]),
        };
        Self { shared: Arc::new(shared) }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit { inner, shared: self.shared.clone() }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> ConcurrencyLimit<S> {
    /// Why a call that got a permit should still be refused: the server is saturated and the call's remaining
    /// deadline is shorter than its method's expected service time.
    fn shed_reason<B>(&self, request: &Request<B>) -> Option<String> {
        let shared = &*self.shared;
        if !shared.sheds {
            return None;
        }
        // Calls in flight before this one (its own permit is already taken).
        let others = shared.max_in_flight.saturating_sub(shared.permits.available_permits() + 1);
        if others < shared.saturated_at {
            return None;
        }
        let deadline = request.extensions().get::<RequestDeadline>()?;
        let path = request.uri().path();
        let overload = &shared.overload;
        let expected = overload.expected_service_times.get(path).copied().unwrap_or(overload.expected_service_time);
        let left = deadline.at.saturating_duration_since(Instant::now());
        (left < expected).then(|| {
            format!(
                "server is saturated and the call's remaining deadline ({left:?}) is shorter than this method's \
                 expected service time ({expected:?})"
            )
        })
    }

    fn refuse<B: Default>(&self, message: String) -> Response<B> {
        let mut response = tonic::Status::resource_exhausted(message).into_http();
        if let Some(pushback) = &self.shared.pushback {
            response.headers_mut().insert(RETRY_PUSHBACK_HEADER, pushback.clone());
        }
        response
    }
}

/// Holds one permit until the response body that carries it ends.
pub struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

impl BodyObserver for Permit {}

/// The response body: the inner body, holding the permit while it streams (none on a refusal).
pub type LimitedBody<B = tonic::body::Body> = ObservedBody<B, Option<Permit>>;

impl<S, ReqBody, B> Service<Request<ReqBody>> for ConcurrencyLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    B: Default,
{
    type Response = Response<LimitedBody<B>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // Health is never refused nor counted: a balancer's probe (or a resilient client's Watch) failing under
        // load would eject a busy but healthy replica, and turn overload into an outage.
        if request.uri().path().starts_with(HEALTH_PREFIX) {
            return ResponseFuture::Admitted { inner: self.inner.call(request), permit: None };
        }
        let Ok(permit) = self.shared.permits.clone().try_acquire_owned() else {
            self.shared.refused_full.inc();
            let response = self.refuse("server is at its concurrency limit; retry later".into());
            return ResponseFuture::Refused { response: Some(response) };
        };
        if let Some(reason) = self.shed_reason(&request) {
            drop(permit);
            self.shared.refused_shed.inc();
            return ResponseFuture::Refused { response: Some(self.refuse(reason)) };
        }
        ResponseFuture::Admitted { inner: self.inner.call(request), permit: Some(permit) }
    }
}

/// Calls under this path are exempt from the limit.
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

pin_project_lite::pin_project! {
    /// Future of [`ConcurrencyLimit`].
    #[allow(missing_docs)]
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F, B> {
        /// Holding a permit, waiting on the inner service.
        Admitted { #[pin] inner: F, permit: Option<OwnedSemaphorePermit> },
        /// Refused; the RESOURCE_EXHAUSTED response, taken on first poll.
        Refused { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<LimitedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Admitted { inner, permit } => {
                let response = std::task::ready!(inner.poll(cx))?;
                let permit = permit.take().map(Permit);
                Poll::Ready(Ok(response.map(|body| ObservedBody::new(body, permit))))
            }
            ResponseFutureProj::Refused { response } => {
                let response = response.take().expect("polled after completion");
                Poll::Ready(Ok(response.map(|body| ObservedBody::new(body, None))))
            }
        }
    }
}
