//! The outermost layer: one observer per call, from its request headers to the real end of its response.
//!
//! It opens the call's span ([`crate::trace`]) and runs everything below it inside (the other layers, refusals,
//! the handler, the response stream), so every log line of the call carries its trace id. The caller's
//! `traceparent` header makes the span a child of the caller's; a missing or malformed one starts a new trace (a
//! bad header never fails a call).
//!
//! A gRPC call ends when its response body ends (with trailers carrying `grpc-status`), not when the handler
//! returns headers: a server stream can run for minutes after. At that end (the trailers, the end of the body,
//! or the body dropped because the client went away) the call is classified once ([`CallStatus`]) and that one
//! code feeds, in this order, the RPC metrics ([`super::rpc_metrics`]: the count by code, the latency, calls in
//! flight) and the access log line ([`super::access_log`]), both inside the call's span, whose OpenTelemetry end
//! time is that last exit; the span itself closes when the body is dropped.
//!
//! Three layers (trace, access log, metrics) used to do this each on their own, with a body wrapper, a
//! classification and a span entry apiece; one of each is what a call now pays for.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use tonic::Code;
use tower::{Layer, Service};
use tracing::Span;

use super::access_log;
use super::rpc_metrics::{self, MethodMetrics};
use crate::trace::{self, traceparent};

/// The gRPC status a call ended with, as far as it is known: the one place a finished call is classified (for the
/// access log, the RPC metrics and the audit line of [`super::auth`]).
///
/// As tower-http's `classify` and linkerd's `http/classify` do it: the response's headers decide at once for a
/// trailers-only response, otherwise the trailers at the end of the stream do, and a stream that ends without
/// either was cut short.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallStatus(Option<Code>);

impl CallStatus {
    /// A service that failed instead of answering: the server resets the stream; counted as INTERNAL.
    pub const FAILED: Self = Self(Some(Code::Internal));

    /// From the response headers: a trailers-only response (every error answered before a message, tonic's and
    /// every layer's refusal) carries its status there; a response that will stream has none yet.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        Self(grpc_code(headers))
    }

    /// The response's trailers, at the end of the stream: their status is the call's.
    pub fn trailers(&mut self, trailers: &HeaderMap) {
        if let Some(code) = grpc_code(trailers) {
            self.0 = Some(code);
        }
    }

    /// The status, when the call had one.
    pub fn code(self) -> Option<Code> {
        self.0
    }

    /// The call's final code. None at all means the body ended or was dropped mid-call: the client cancelled or
    /// the connection went away, CANCELLED.
    pub fn final_code(self) -> Code {
        self.0.unwrap_or(Code::Cancelled)
    }
}

/// The gRPC status code in `headers` (response headers of a trailers-only response, or trailers).
fn grpc_code(headers: &HeaderMap) -> Option<Code> {
    headers.get("grpc-status").map(|value| Code::from_bytes(value.as_bytes()))
}

/// Layer for [`CallEnd`].
#[derive(Clone, Copy, Debug, Default)]
pub struct CallEndLayer;

impl<S> Layer<S> for CallEndLayer {
    type Service = CallEnd<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallEnd { inner }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct CallEnd<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CallEnd<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<CallBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let path = request.uri().path();
        let metrics = rpc_metrics::method(path);
        metrics.start();
        // The metrics' label is the path itself except past their bound of methods; the log line still names it.
        let uri = (metrics.label() != path).then(|| request.uri().clone());
        let span = trace::rpc_span(path, caller_span(request.headers()));
        let inner = span.in_scope(|| self.inner.call(request));
        let end = CallRecord { metrics, uri, started, status: CallStatus::default() };
        ResponseFuture { inner, span: Some(span), end: Some(end) }
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

/// What the end of one call records. The span is kept beside it, not in it: the call ends inside the span the
/// body's poll already entered (each enter and exit passes every tracing layer), and the span itself closes
/// when the body is dropped, as the body's own work is done.
struct CallRecord {
    metrics: Arc<MethodMetrics>,
    /// The request's URI when the metrics' label is not its path (see [`rpc_metrics`]'s bound).
    uri: Option<http::Uri>,
    started: Instant,
    status: CallStatus,
}

impl CallRecord {
    /// Records the call, inside its span: the metrics first (a test, or an operator, that saw the log line finds
    /// the call counted), then the access log line.
    fn finish(self) {
        let code = self.status.final_code();
        let latency = self.started.elapsed();
        self.metrics.end(code, latency);
        let method = self.uri.as_ref().map_or(self.metrics.label(), http::Uri::path);
        access_log::write(method, code, latency);
    }
}

pin_project_lite::pin_project! {
    /// Future of [`CallEnd`]: polls the inner service's future inside the call's span.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Option<Span>,
        end: Option<CallRecord>,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        /// Dropped before the service answered (the client went away): the call ends here.
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let (Some(span), Some(end)) = (this.span.as_ref(), this.end.take()) {
                let _entered = span.enter();
                end.finish();
            }
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<CallBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = {
            let _entered = this.span.as_ref().map(Span::enter);
            match ready!(this.inner.poll(cx)) {
                Ok(response) => response,
                Err(error) => {
                    if let Some(mut end) = this.end.take() {
                        end.status = CallStatus::FAILED;
                        end.finish();
                    }
                    return Poll::Ready(Err(error));
                }
            }
        };
        let (span, mut end) = this.span.take().zip(this.end.take()).expect("polled after completion");
        end.status = CallStatus::from_headers(response.headers());
        Poll::Ready(Ok(response.map(|inner| CallBody { inner, span, end: Some(end) })))
    }
}

pin_project_lite::pin_project! {
    /// The response body, polled inside the call's span; the call ends with it.
    pub struct CallBody<B> {
        #[pin]
        inner: B,
        span: Span,
        end: Option<CallRecord>,
    }

    impl<B> PinnedDrop for CallBody<B> {
        /// Dropped before its end (the client went away, the stream was reset): the call ends here.
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(end) = this.end.take() {
                let _entered = this.span.enter();
                end.finish();
            }
        }
    }
}

impl<B: Body<Data = Bytes>> Body for CallBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        if this.end.is_none() {
            return this.inner.poll_frame(cx);
        }
        let _entered = this.span.enter();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(mut end) = this.end.take() {
                        end.status.trailers(trailers);
                        end.finish();
                    }
                }
            }
            // An error frame ends the stream with what was known (the server resets it).
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                if let Some(end) = this.end.take() {
                    end.finish();
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http_body_util::{BodyExt, StreamBody};
    use tower::ServiceExt;

    use super::*;

    fn status(code: Code) -> HeaderMap {
        let mut headers = HeaderMap::new();
        tonic::Status::new(code, "").add_header(&mut headers).unwrap();
        headers
    }

    #[test]
    fn a_call_is_classified_from_its_headers_then_its_trailers_and_cancelled_without_either() {
        // Trailers-only: the status is in the headers, and there are no trailers.
        assert_eq!(CallStatus::from_headers(&status(Code::PermissionDenied)).final_code(), Code::PermissionDenied);
        // A streamed response: no status in the headers, the trailers' is final.
        let mut streamed = CallStatus::from_headers(&HeaderMap::new());
        assert_eq!(streamed.code(), None);
        streamed.trailers(&status(Code::Ok));
        assert_eq!(streamed.final_code(), Code::Ok);
        // Trailers without a status change nothing.
        streamed.trailers(&HeaderMap::new());
        assert_eq!(streamed.final_code(), Code::Ok);
        // A body that ended (or was dropped) before any status: the client went away.
        assert_eq!(CallStatus::from_headers(&HeaderMap::new()).final_code(), Code::Cancelled);
        assert_eq!(CallStatus::FAILED.final_code(), Code::Internal);
    }

    type Frames = futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

    /// The response body of a call to `method` through the layer, answered with `headers` and `frames`.
    async fn answered(method: &str, headers: HeaderMap, frames: Vec<Frame<Bytes>>) -> CallBody<StreamBody<Frames>> {
        let body = StreamBody::new(futures::stream::iter(frames.into_iter().map(Ok).collect::<Vec<_>>()));
        let mut response = Response::new(body);
        *response.headers_mut() = headers;
        let mut response = Some(response);
        let service = tower::service_fn(move |_: Request<()>| {
            std::future::ready(Ok::<_, Infallible>(response.take().expect("called once")))
        });
        let request = Request::get(method).body(()).unwrap();
        CallEndLayer.layer(service).oneshot(request).await.unwrap().into_body()
    }

    /// The value of the series printed exactly as `series`, 0 when absent.
    fn sample(series: &str) -> f64 {
        let text = crate::metrics::render();
        text.lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |value| value.parse().expect("a number"))
    }

    fn calls(method: &str, code: &str) -> f64 {
        sample(&format!(r#"courier_rpc_server_calls_total{{code="{code}",method="{method}"}}"#))
    }

    fn in_flight(method: &str) -> f64 {
        sample(&format!(r#"courier_rpc_server_in_flight{{method="{method}"}}"#))
    }

    #[tokio::test]
    async fn the_call_is_counted_once_when_its_body_ends_or_is_dropped() {
        // Trailers: counted with their status when the body reaches them, not when the headers came.
        let method = "/call_end.Test/Trailers";
        let frames = vec![Frame::data(Bytes::from_static(b"message")), Frame::trailers(status(Code::NotFound))];
        let mut body = answered(method, HeaderMap::new(), frames).await;
        assert_eq!(in_flight(method), 1.0, "in flight until the body ends");
        while body.frame().await.is_some() {}
        assert_eq!((calls(method, "NOT_FOUND"), in_flight(method)), (1.0, 0.0));

        // Trailers-only: the headers' status, once the (empty) body ends.
        let method = "/call_end.Test/TrailersOnly";
        let mut body = answered(method, status(Code::Unauthenticated), vec![]).await;
        while body.frame().await.is_some() {}
        assert_eq!(calls(method, "UNAUTHENTICATED"), 1.0);

        // Dropped after a message, before its trailers: the client went away.
        let method = "/call_end.Test/Dropped";
        let frames = vec![Frame::data(Bytes::from_static(b"message")), Frame::trailers(status(Code::Ok))];
        let mut body = answered(method, HeaderMap::new(), frames).await;
        body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!((calls(method, "CANCELLED"), calls(method, "OK"), in_flight(method)), (1.0, 0.0, 0.0));

        // The service failed instead of answering (the server resets the stream).
        let method = "/call_end.Test/Failed";
        let failing = tower::service_fn(|_: Request<()>| std::future::ready(Err::<Response<()>, _>("broken")));
        assert!(CallEndLayer.layer(failing).oneshot(Request::get(method).body(()).unwrap()).await.is_err());
        assert_eq!((calls(method, "INTERNAL"), in_flight(method)), (1.0, 0.0));

        // Dropped before the service answered.
        let method = "/call_end.Test/NeverAnswered";
        let pending = tower::service_fn(|_: Request<()>| std::future::pending::<Result<Response<()>, Infallible>>());
        let mut call = CallEndLayer.layer(pending).call(Request::get(method).body(()).unwrap());
        assert!(futures::poll!(&mut call).is_pending());
        drop(call);
        assert_eq!((calls(method, "CANCELLED"), in_flight(method)), (1.0, 0.0));
    }
}
