//! Fault injection: break any hop on purpose, so tests and demos can watch deadlines, retries, breakers and
//! balancing do their work against a real server.
//!
//! Off unless `[server.faults]` names a method; [`crate::server::serve`] logs a warning at start when any fault
//! is configured. Per full method path, independently drawn for each call, in this order:
//! - drop (`drop_probability`): `hang` never answers (the caller's own deadline ends the call), `reset` resets the
//!   HTTP/2 stream;
//! - error (`error`, `error_probability`): answer that status code at once, without serving the call;
//! - delay (`delay`, `delay_probability`): wait, then serve. The call's deadline is already running and it holds
//!   its concurrency permit meanwhile, as a slow handler would.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::time::Sleep;
use tonic::Code;
use tower::{BoxError, Layer, Service};

/// The faults of one method, a `[server.faults."/pkg.Service/Method"]` table.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultOptions {
    /// Added before the call is served. Default 0 s.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    /// Chance (0 to 1) that `delay` applies to a call. Default 1.
    pub delay_probability: f64,
    /// Status code answered instead of serving the call (`"UNAVAILABLE"`). Default none.
    #[serde(with = "crate::config::codes::option")]
    pub error: Option<Code>,
    /// Chance (0 to 1) that `error` is answered. Default 1.
    pub error_probability: f64,
    /// How a dropped call ends. Default `hang`.
    pub drop: DropMode,
    /// Chance (0 to 1) that a call is dropped. Default 0.
    pub drop_probability: f64,
}

impl Default for FaultOptions {
    fn default() -> Self {
        Self {
            delay: Duration::ZERO,
            delay_probability: 1.0,
            error: None,
            error_probability: 1.0,
            drop: DropMode::Hang,
            drop_probability: 0.0,
        }
    }
}

/// How a dropped call ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DropMode {
    /// Never answer.
    Hang,
    /// Reset the HTTP/2 stream.
    Reset,
}

/// The error that makes the HTTP/2 server reset a dropped call's stream.
#[derive(Debug, thiserror::Error)]
#[error("fault injection dropped the call (stream reset)")]
pub struct InjectedReset;

/// Layer for [`Faults`].
#[derive(Clone, Debug, Default)]
pub struct FaultLayer {
    /// `None` when nothing is configured: every call passes with one branch.
    faults: Option<Arc<BTreeMap<String, FaultOptions>>>,
}

impl FaultLayer {
    /// Injects `faults` (per full method path); an empty map injects nothing.
    pub fn new(faults: &BTreeMap<String, FaultOptions>) -> Self {
        Self { faults: (!faults.is_empty()).then(|| Arc::new(faults.clone())) }
    }
}

impl<S> Layer<S> for FaultLayer {
    type Service = Faults<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Faults { inner, faults: self.faults.clone() }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Faults<S> {
    inner: S,
    faults: Option<Arc<BTreeMap<String, FaultOptions>>>,
}

fn chance(rng: &mut impl Rng, probability: f64) -> bool {
    probability >= 1.0 || (probability > 0.0 && rng.gen::<f64>() < probability)
}

impl<S, ReqBody, B> Service<Request<ReqBody>> for Faults<S>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Error: Into<BoxError>,
    B: Default,
{
    type Response = Response<B>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let fault = self.faults.as_deref().and_then(|faults| faults.get(request.uri().path()));
        let Some(fault) = fault else { return ResponseFuture::Pass { inner: self.inner.call(request) } };
        let method = request.uri().path();
        let mut rng = rand::thread_rng();
        if chance(&mut rng, fault.drop_probability) {
            tracing::debug!(target: "courier::faults", method, mode = ?fault.drop, "dropping the call");
            return match fault.drop {
                DropMode::Hang => ResponseFuture::Hang,
                DropMode::Reset => ResponseFuture::Reset,
            };
        }
        if let Some(code) = fault.error.filter(|_| chance(&mut rng, fault.error_probability)) {
            tracing::debug!(target: "courier::faults", method, ?code, "answering an injected error");
            let response = tonic::Status::new(code, "injected fault").into_http();
            return ResponseFuture::Answer { response: Some(response) };
        }
        if !fault.delay.is_zero() && chance(&mut rng, fault.delay_probability) {
            tracing::debug!(target: "courier::faults", method, delay = ?fault.delay, "delaying the call");
            return ResponseFuture::Delayed { sleep: tokio::time::sleep(fault.delay), inner: self.inner.call(request) };
        }
        ResponseFuture::Pass { inner: self.inner.call(request) }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`Faults`].
    #[allow(missing_docs)]
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F, B> {
        /// No fault: the inner call.
        Pass { #[pin] inner: F },
        /// The inner call, polled once the delay is over.
        Delayed { #[pin] sleep: Sleep, #[pin] inner: F },
        /// An injected status, taken on first poll.
        Answer { response: Option<Response<B>> },
        /// Fails, which makes the server reset the stream.
        Reset,
        /// Never ready.
        Hang,
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Pass { inner } => inner.poll(cx).map_err(Into::into),
            ResponseFutureProj::Delayed { sleep, inner } => {
                ready!(sleep.poll(cx));
                inner.poll(cx).map_err(Into::into)
            }
            ResponseFutureProj::Answer { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            ResponseFutureProj::Reset => Poll::Ready(Err(InjectedReset.into())),
            // Dropped by the server when the caller gives up or the connection closes.
            ResponseFutureProj::Hang => Poll::Pending,
        }
    }
}
