//! gRPC-Web (binary `application/grpc-web` and base64 `application/grpc-web-text`, unary and server streaming)
//! on the gRPC listener, for browsers; see docs/grpc-web.md.
//!
//! [`GrpcWebLayer`] sits outside every layer of [`crate::layers`]. A gRPC-Web request is translated by tonic-web
//! into a gRPC one (content type `application/grpc`, frames decoded), so the access log, metrics (same `method`
//! label), authentication, deadlines and limits see it as any other call; its response's trailers go back as the
//! final gRPC-Web frame. CORS is tower-http's [`CorsLayer`] (tonic-web has none): only the origins of
//! `server.cors_allowed_origins` get CORS headers, a preflight from any other origin is answered 403, and so is a
//! gRPC-Web request that carries such an `Origin` (a browser's fetch from a page nobody allowed never reaches a
//! service). A gRPC-Web request without `Origin` (curl, a server-side client) is served.
//!
//! Every other request goes straight to the inner stack: tonic-web and CORS never touch gRPC over HTTP/2 (they
//! would box both bodies and add a `Vary` header to each response). Why not `tower::util::option_layer`: its
//! `Either` needs both arms to answer the same body type, so "off" would have to box the gRPC body as well; here
//! off is `None` and costs a branch.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Either;
use tonic::body::Body;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};

/// Headers a page may send on a gRPC-Web call: what connect-web and grpc-web send, plus courier's own.
pub const ALLOWED_HEADERS: [&str; 7] =
    ["authorization", "content-type", "x-grpc-web", "x-user-agent", "grpc-timeout", "traceparent", "idempotency-key"];
/// Response headers a page may read (without them a browser hides the status of a trailers-only answer).
pub const EXPOSED_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];
/// How long a browser may keep a preflight's answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

/// A `cors_allowed_origins` entry that is not an origin.
#[derive(Debug, thiserror::Error)]
#[error("{origin:?} is not an origin (scheme://host[:port], no path or trailing slash; or `*` for any)")]
pub struct InvalidOrigin {
    /// The entry as configured.
    pub origin: String,
}

/// Checks each configured origin: `*`, or `scheme://host[:port]` as a browser sends it in `Origin`.
pub fn check_origins(origins: &[String]) -> Result<(), InvalidOrigin> {
    origins.iter().try_for_each(|origin| match origin_value(origin) {
        Some(_) => Ok(()),
        None => Err(InvalidOrigin { origin: origin.clone() }),
    })
}

fn origin_value(origin: &str) -> Option<HeaderValue> {
    if origin == "*" {
        return Some(HeaderValue::from_static("*"));
    }
    let (scheme, rest) = origin.split_once("://")?;
    let valid = matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@', ' ', ','])
        && rest.parse::<http::uri::Authority>().is_ok();
    valid.then(|| HeaderValue::from_str(origin).ok()).flatten()
}

/// The allowed origins and the CORS answers built from them.
#[derive(Debug)]
struct Web {
    any: bool,
    origins: Vec<HeaderValue>,
    cors: CorsLayer,
}

impl Web {
    fn allows(&self, origin: &HeaderValue) -> bool {
        self.any || self.origins.iter().any(|allowed| allowed == origin)
    }
}

/// gRPC-Web and CORS in front of `S`, or nothing (see the module docs). Build it with [`GrpcWebLayer::new`].
#[derive(Clone, Debug)]
pub struct GrpcWebLayer {
    web: Option<Arc<Web>>,
}

impl GrpcWebLayer {
    /// gRPC-Web with CORS for `origins` when `enabled`; a pass-through otherwise.
    pub fn new(enabled: bool, origins: &[String]) -> Result<Self, InvalidOrigin> {
        check_origins(origins)?;
        if !enabled {
            return Ok(Self { web: None });
        }
        let any = origins.iter().any(|origin| origin == "*");
        let origins: Vec<HeaderValue> = origins.iter().filter_map(|origin| origin_value(origin)).collect();
        let allow_origin = if any { AllowOrigin::any() } else { AllowOrigin::list(origins.clone()) };
        let cors = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::POST])
            .allow_headers(ALLOWED_HEADERS.map(HeaderName::from_static))
            .expose_headers(EXPOSED_HEADERS.map(HeaderName::from_static))
            .max_age(PREFLIGHT_MAX_AGE);
        Ok(Self { web: Some(Arc::new(Web { any, origins, cors })) })
    }

    /// Whether gRPC-Web is served.
    pub fn enabled(&self) -> bool {
        self.web.is_some()
    }
}

impl<S> Layer<S> for GrpcWebLayer {
    type Service = GrpcWeb<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcWeb { inner, web: self.web.clone() }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct GrpcWeb<S> {
    inner: S,
    web: Option<Arc<Web>>,
}

/// Whether `request` is gRPC-Web (tonic-web's own test: `application/grpc-web`, `-text`, optionally `+proto`).
fn is_grpc_web<B>(request: &Request<B>) -> bool {
    request.headers().get(header::CONTENT_TYPE).is_some_and(|value| {
        matches!(
            value.as_bytes(),
            b"application/grpc-web"
                | b"application/grpc-web+proto"
                | b"application/grpc-web-text"
                | b"application/grpc-web-text+proto"
        )
    })
}

/// Whether `request` is a CORS preflight.
fn is_preflight<B>(request: &Request<B>) -> bool {
    request.method() == Method::OPTIONS
        && request.headers().contains_key(header::ORIGIN)
        && request.headers().contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

type WebService<S> = Cors<tonic_web::GrpcWebService<S>>;

impl<S, B> Service<Request<Body>> for GrpcWeb<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + std::fmt::Display,
{
    type Response = Response<Either<Body, B>>;
    type Error = S::Error;
    type Future = ResponseFuture<<WebService<S> as Service<Request<Body>>>::Future, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(web) = self.web.as_ref().filter(|_| is_grpc_web(&request) || is_preflight(&request)) else {
            return ResponseFuture::Inner { inner: self.inner.call(request) };
        };
        if request.headers().get(header::ORIGIN).is_some_and(|origin| !web.allows(origin)) {
            tracing::debug!(origin = ?request.headers().get(header::ORIGIN), path = request.uri().path(),
                "gRPC-Web: origin not in server.cors_allowed_origins, refused");
            let mut refused = Response::new(Body::empty());
            *refused.status_mut() = StatusCode::FORBIDDEN;
            return ResponseFuture::Refused { response: Some(refused) };
        }
        // The clone `poll_ready` readied serves this call; the one left behind is readied before the next.
        let ready = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, ready);
        let mut service = web.cors.layer(tonic_web::GrpcWebLayer::new().layer(ready));
        ResponseFuture::Web { web: service.call(request) }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`GrpcWeb`].
    #[allow(missing_docs)]
    #[project = ResponseFutureProj]
    pub enum ResponseFuture<W, F> {
        /// Not gRPC-Web: the inner stack's answer, untouched.
        Inner { #[pin] inner: F },
        /// A gRPC-Web call or a preflight from an allowed origin.
        Web { #[pin] web: W },
        /// An origin not allowed: 403, taken on first poll.
        Refused { response: Option<Response<Body>> },
    }
}

impl<W, F, B, E> Future for ResponseFuture<W, F>
where
    W: Future<Output = Result<Response<Body>, E>>,
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<Either<Body, B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseFutureProj::Inner { inner } => inner.poll(cx).map_ok(|response| response.map(Either::Right)),
            ResponseFutureProj::Web { web } => web.poll(cx).map_ok(|response| response.map(Either::Left)),
            ResponseFutureProj::Refused { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion").map(Either::Left)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_origins;

    #[test]
    fn origins_are_scheme_host_port_or_a_star() {
        for ok in ["http://127.0.0.1:8080", "https://shop.example.com", "http://localhost", "*"] {
            assert!(check_origins(&[ok.to_owned()]).is_ok(), "{ok}");
        }
        for bad in ["127.0.0.1:8080", "http://a.example/", "https://a.example/path", "ftp://a.example", "http://", ""] {
            let error = check_origins(&[bad.to_owned()]).expect_err(bad).to_string();
            assert!(error.contains("is not an origin"), "{error}");
        }
    }
}
