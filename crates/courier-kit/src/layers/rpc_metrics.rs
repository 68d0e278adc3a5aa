//! Per-method RPC metrics: calls by final status code, latency, calls in flight.
//!
//! Like the access log, a call is observed until its response body ends, so a server stream counts as in flight
//! (and its latency runs) until its last message, not until its handler returns.
//!
//! The hot path allocates nothing once a method has been seen: each method's series handles are resolved on its
//! first call and kept in a map looked up by the request path.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use tonic::Code;
use tower::{Layer, Service};

use super::access_log::grpc_code;
use super::observed_body::{BodyObserver, ObservedBody};
use crate::metrics;

/// Distinct method paths tracked; calls to further paths share the series of [`OTHER_METHOD`]. Every real method
/// fits many times over; the bound keeps a client calling random paths from growing the exposition without end.
const MAX_METHODS: usize = 512;
/// The `method` label of calls past [`MAX_METHODS`].
const OTHER_METHOD: &str = "other";

struct Families {
    calls: IntCounterVec,
    latency: HistogramVec,
    in_flight: IntGaugeVec,
}

static FAMILIES: LazyLock<Families> = LazyLock::new(|| Families {
    calls: metrics::counter_vec(
        "courier_rpc_server_calls_total",
        "Calls handled, by full method path and final gRPC status code.",
        &["method", "code"],
    ),
    latency: metrics::histogram_vec(
        "courier_rpc_server_duration_seconds",
        "Time from request headers to the end of the response (the last message of a stream), by method.",
        &["method"],
        metrics::LATENCY_BUCKETS,
    ),
    in_flight: metrics::gauge_vec(
        "courier_rpc_server_in_flight",
        "Calls started whose response has not ended yet, by method.",
        &["method"],
    ),
});

/// One method's resolved series. Code counters are resolved on first use, so a method shows only the codes it
/// has answered with.
struct MethodMetrics {
    method: Box<str>,
    latency: Histogram,
    in_flight: IntGauge,
    codes: [OnceLock<IntCounter>; 17],
}

impl MethodMetrics {
    fn new(method: &str) -> Self {
        let families = &*FAMILIES;
        Self {
            method: method.into(),
            latency: families.latency.with_label_values(&[method]),
            in_flight: families.in_flight.with_label_values(&[method]),
            codes: Default::default(),
        }
    }

    fn count(&self, code: Code) {
        // `Code` is a dense enum of the 17 spec codes; anything else would be a tonic bug, counted as UNKNOWN.
        let index = (code as usize).min(16);
        self.codes[index]
            .get_or_init(|| FAMILIES.calls.with_label_values(&[&*self.method, crate::status::code_name(code)]))
            .inc();
    }
}

static METHODS: LazyLock<RwLock<HashMap<Box<str>, Arc<MethodMetrics>>>> = LazyLock::new(Default::default);

fn method_metrics(path: &str) -> Arc<MethodMetrics> {
    if let Some(found) = METHODS.read().unwrap_or_else(|e| e.into_inner()).get(path) {
        return found.clone();
    }
    let mut methods = METHODS.write().unwrap_or_else(|e| e.into_inner());
    let key = if methods.len() < MAX_METHODS || methods.contains_key(path) { path } else { OTHER_METHOD };
    methods.entry(key.into()).or_insert_with(|| Arc::new(MethodMetrics::new(key))).clone()
}

/// Layer for [`RpcMetrics`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RpcMetricsLayer;

impl<S> Layer<S> for RpcMetricsLayer {
    type Service = RpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcMetrics { inner }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct RpcMetrics<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RpcMetrics<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ObservedBody<ResBody, CallMetrics>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let metrics = method_metrics(request.uri().path());
        metrics.in_flight.inc();
        let call = CallMetrics { metrics, started: Instant::now(), code: None };
        ResponseFuture { inner: self.inner.call(request), call: Some(call) }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`RpcMetrics`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<CallMetrics>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ObservedBody<B, CallMetrics>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let mut call = this.call.take().expect("polled after completion");
        match result {
            Ok(response) => {
                // Trailers-only responses (errors before any message) carry the status in the headers.
                call.code = grpc_code(response.headers());
                Poll::Ready(Ok(response.map(|body| ObservedBody::new(body, call))))
            }
            Err(error) => {
                call.code = Some(Code::Internal);
                Poll::Ready(Err(error))
            }
        }
    }
}

/// One call until it ends; dropping it records the call.
pub struct CallMetrics {
    metrics: Arc<MethodMetrics>,
    started: Instant,
    code: Option<Code>,
}

impl BodyObserver for CallMetrics {
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(code) = grpc_code(trailers) {
            self.code = Some(code);
        }
    }
}

impl Drop for CallMetrics {
    fn drop(&mut self) {
        let metrics = &self.metrics;
        metrics.in_flight.dec();
        metrics.latency.observe(self.started.elapsed().as_secs_f64());
        // No status means the body was dropped mid-call: the client cancelled or the connection went away.
        metrics.count(self.code.unwrap_or(Code::Cancelled));
    }
}
