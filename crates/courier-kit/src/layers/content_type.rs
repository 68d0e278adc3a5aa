//! The content-type gate: a request whose `content-type` is not gRPC's (`application/grpc`, optionally
//! `+proto`/`+json`/`;params`) is answered HTTP 415, as the gRPC over HTTP/2 spec asks, before any service
//! reads its body. Without it tonic serves `application/json` or `text/plain` as gRPC (HTTP 200) and reads the
//! first bytes of a JSON body as a frame header. REST/JSON requests never get here when REST is on: the REST
//! edge ([`crate::rest`], in front of every layer) transcodes them into gRPC first; with it off, they are refused
//! here like anything else that is not gRPC. (gRPC-Web is turned into gRPC before it gets here, by
//! `server::grpc_web` outside every layer.)

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, Request, Response, StatusCode};
use tower::{Layer, Service};

/// Layer for [`ContentTypeGate`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ContentTypeLayer;

impl<S> Layer<S> for ContentTypeLayer {
    type Service = ContentTypeGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ContentTypeGate { inner }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct ContentTypeGate<S> {
    inner: S,
}

/// Whether `value` is a gRPC content type: `application/grpc` exactly or followed by `+` or `;`.
fn is_grpc(value: &[u8]) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    value.len() >= GRPC.len()
        && value[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(value.get(GRPC.len()), None | Some(b'+' | b';'))
}

impl<S, ReqBody, B> Service<Request<ReqBody>> for ContentTypeGate<S>
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    B: Default,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let content_type = request.headers().get(header::CONTENT_TYPE).map(http::HeaderValue::as_bytes);
        if content_type.is_some_and(is_grpc) {
            return ResponseFuture::Passed { inner: self.inner.call(request) };
        }
        let mut response = Response::new(B::default());
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        // Says what would have been accepted, for a human with curl.
        response.headers_mut().insert(header::ACCEPT, http::HeaderValue::from_static("application/grpc"));
        ResponseFuture::Refused { response: Some(response) }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`ContentTypeGate`].
    #[allow(missing_docs)]
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<F, B> {
        /// A gRPC request, passed on.
        Passed { #[pin] inner: F },
        /// Refused with 415; the response, taken on first poll.
        Refused { response: Option<Response<B>> },
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Passed { inner } => inner.poll(cx),
            ResponseFutureProj::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_grpc;

    #[test]
    fn grpc_content_types_pass_and_others_do_not() {
        for ok in ["application/grpc", "application/grpc+proto", "application/grpc;charset=utf-8", "Application/GRPC"] {
            assert!(is_grpc(ok.as_bytes()), "{ok}");
        }
        for refused in ["application/json", "text/plain", "application/grpcx", "application/grpc-web", ""] {
            assert!(!is_grpc(refused.as_bytes()), "{refused}");
        }
    }
}
