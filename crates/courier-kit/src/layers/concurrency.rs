//! A server-wide limit on calls in flight that refuses at once instead of queueing.
//!
//! tower's `ConcurrencyLimit` waits for a permit, so under overload a call can sit in a queue past its deadline
//! and its error is not a gRPC status. Here a call that finds no permit gets RESOURCE_EXHAUSTED immediately (a
//! client can retry elsewhere), and a permit is held until the response body ends, so server streams count for
//! as long as they run.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

use super::observed_body::{BodyObserver, ObservedBody};

/// Layer for [`ConcurrencyLimit`].
#[derive(Clone)]
pub struct ConcurrencyLimitLayer {
    permits: Arc<Semaphore>,
}

impl ConcurrencyLimitLayer {
    /// At most `max_in_flight` calls at once across every connection.
    pub fn new(max_in_flight: usize) -> Self {
        Self { permits: Arc::new(Semaphore::new(max_in_flight)) }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit { inner, permits: self.permits.clone() }
    }
}

/// See the module documentation.
#[derive(Clone)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

/// Holds one permit until the response body that carries it ends.
pub struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

impl BodyObserver for Permit {}

/// The response body: the inner body, holding the permit while it streams (none on a refusal).
pub type LimitedBody = ObservedBody<tonic::body::Body, Option<Permit>>;

impl<S, ReqBody> Service<Request<ReqBody>> for ConcurrencyLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<tonic::body::Body>>,
{
    type Response = Response<LimitedBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => ResponseFuture::Admitted { inner: self.inner.call(request), permit: Some(permit) },
            Err(_) => {
                let status = tonic::Status::resource_exhausted("server is at its concurrency limit; retry later");
                ResponseFuture::Refused { response: Some(status.into_http()) }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`ConcurrencyLimit`].
    #[allow(missing_docs)]
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F> {
        /// Holding a permit, waiting on the inner service.
        Admitted { #[pin] inner: F, permit: Option<OwnedSemaphorePermit> },
        /// Refused; the RESOURCE_EXHAUSTED response, taken on first poll.
        Refused { response: Option<Response<tonic::body::Body>> },
    }
}

impl<F, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<tonic::body::Body>, E>>,
{
    type Output = Result<Response<LimitedBody>, E>;

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
