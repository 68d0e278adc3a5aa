//! One structured log line per RPC, written when the call really ends (after the last message of a stream), with
//! the method, the final gRPC status code and the latency.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use tonic::Code;
use tower::{Layer, Service};

use super::observed_body::{BodyObserver, ObservedBody};

/// Layer for [`AccessLog`].
#[derive(Clone, Copy, Debug, Default)]
pub struct AccessLogLayer;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog { inner }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct AccessLog<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AccessLog<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ObservedBody<ResBody, CallRecord>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The path is `/package.Service/Method`; `http::uri::PathAndQuery` is shared, so cloning it is cheap.
        // The call's span (the trace layer runs outside this one): the line is written when the body is dropped,
        // outside any span, and must still carry the call's trace id.
        let span = tracing::Span::current();
        let record = CallRecord { method: request.uri().clone(), started: Instant::now(), code: None, span };
        ResponseFuture { inner: self.inner.call(request), record: Some(record) }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`AccessLog`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        record: Option<CallRecord>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ObservedBody<B, CallRecord>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        let mut record = this.record.take().expect("polled after completion");
        match result {
            Ok(response) => {
                // A trailers-only response (every error tonic sends before a message) has its status in headers.
                record.code = grpc_code(response.headers());
                Poll::Ready(Ok(response.map(|body| ObservedBody::new(body, record))))
            }
            Err(error) => {
                record.code = Some(Code::Internal);
                Poll::Ready(Err(error))
            }
        }
    }
}

/// What is known of one call until it ends; dropping it writes the log line.
pub struct CallRecord {
    method: http::Uri,
    started: Instant,
    code: Option<Code>,
    span: tracing::Span,
}

impl BodyObserver for CallRecord {
    fn on_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(code) = grpc_code(trailers) {
            self.code = Some(code);
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        // No status at all means the body was dropped mid-call: the client cancelled or the connection went away.
        let code = self.code.unwrap_or(Code::Cancelled);
        let latency_us = self.started.elapsed().as_micros() as u64;
        let method = self.method.path();
        let code_name = crate::status::code_name(code);
        let _entered = self.span.enter();
        if matches!(code, Code::Internal | Code::Unknown | Code::DataLoss) {
            tracing::warn!(target: "courier::rpc", method, code = code_name, latency_us, "rpc");
        } else {
            tracing::info!(target: "courier::rpc", method, code = code_name, latency_us, "rpc");
        }
    }
}

/// The gRPC status code in `headers` (response headers of a trailers-only response, or trailers).
pub(super) fn grpc_code(headers: &HeaderMap) -> Option<Code> {
    headers.get("grpc-status").map(|value| Code::from_bytes(value.as_bytes()))
}
