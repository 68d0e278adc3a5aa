//! A span per RPC ([`crate::trace`]): the outermost layer, so that everything below it (the access log line,
//! refusals, the handler, the response stream) runs inside the call's span and logs its trace id.
//!
//! The caller's `traceparent` header makes the span a child of the caller's; a missing or malformed one starts a
//! new trace (a bad header never fails a call). The span lives as long as the call: the response body holds it
//! and enters it whenever it is polled, so a server stream's work logs its trace id too.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tower::{Layer, Service};
use tracing::Span;

use crate::trace::{self, traceparent};

/// Layer for [`Trace`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Trace<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<TracedBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let parent = caller_span(request.headers());
        let span = trace::rpc_span(request.uri().path(), parent);
        let inner = span.in_scope(|| self.inner.call(request));
        ResponseFuture { inner, span: Some(span) }
    }
}

/// The caller's span from its `traceparent` header, when it sent exactly one valid header.
fn caller_span(headers: &HeaderMap) -> Option<opentelemetry::trace::SpanContext> {
    let mut values = headers.get_all(traceparent::HEADER).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => traceparent::parse(value.as_bytes()),
        _ => None,
    }
}

pin_project_lite::pin_project! {
    /// Future of [`Trace`]: polls the inner service's future inside the call's span.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Option<Span>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<TracedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.as_ref().map(Span::enter);
            std::task::ready!(this.inner.poll(cx))
        };
        let span = this.span.take().expect("polled after completion");
        Poll::Ready(result.map(|response| response.map(|inner| TracedBody { inner, span })))
    }
}

pin_project_lite::pin_project! {
    /// A response body polled inside the call's span, which it keeps open until the call ends.
    pub struct TracedBody<B> {
        #[pin]
        inner: B,
        span: Span,
    }
}

impl<B: Body<Data = Bytes>> Body for TracedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let _entered = this.span.enter();
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
