//! REST/JSON on the gRPC port: every method with a `google.api.http` rule is also reachable as HTTP/1.1 or
//! HTTP/2 with JSON (docs/rest.md), transcoded in process into the very gRPC call a gRPC client would make.
//!
//! [`RestLayer`] is the outermost layer of the served stack. A request whose `content-type` is gRPC's
//! (`application/grpc...`, gRPC-Web's included) or a CORS preflight passes through untouched: one header test,
//! nothing else, so gRPC pays nothing for the edge. Any other request is REST: its method and path are matched
//! against the rules read from the descriptor set ([`routes`]) and it is handed, as a real gRPC `http::Request`
//! (`POST /pkg.Service/Method`, the caller's `Authorization`, `traceparent` and deadline, bounded by the
//! method's default), to the same layered stack every gRPC call goes through: trace, access log, metrics,
//! authentication and scopes, faults, deadlines, the concurrency limit, the receive limit, then the service
//! ([`request`]). Its body becomes the length-prefixed request message (from the JSON body, path variables and
//! query string) only when the service reads it: inside the concurrency limit and the deadline, with any mistake
//! in it the call's status. A request that matches no route is refused through the trace, access log and metrics
//! layers alone, as method [`UNROUTED_METHOD`]. The gRPC answer comes back as JSON, a server stream as
//! newline-delimited JSON, an error as a JSON `google.rpc.Status` with grpc-gateway's HTTP status
//! ([`response`]).

mod openapi;
mod request;
mod response;
mod routes;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Frame;
use prost_reflect::DescriptorPool;
use tonic::body::Body;
use tonic::{Code, Status};
use tower::{BoxError, Layer, Service};

use crate::layers::{CallEndLayer, DeadlineOptions};
pub use response::http_status;

/// The REST edge of one server: its routes and the types to render JSON with.
#[derive(Debug)]
pub struct Rest {
    routes: routes::Routes,
    json: response::Json,
    max_body_bytes: usize,
    /// The server's deadlines: a caller's deadline is bounded by its method's default.
    deadlines: Arc<DeadlineOptions>,
    /// The OpenAPI document, served at [`OPENAPI_PATH`].
    openapi: serde_json::Value,
    openapi_bytes: Bytes,
}

/// The `method` under which the access log, the metrics and the trace record a REST request that matched no
/// route (404, or 405 for a route's path with another HTTP method). A path, as gRPC methods' are (a gRPC call
/// to this path is to no method either).
pub const UNROUTED_METHOD: &str = "/unknown";

/// Where the OpenAPI 3.1 document of the routes is served (without authentication: it describes, it moves nothing).
pub const OPENAPI_PATH: &str = "/openapi.json";

impl Rest {
    /// The routes of `services` (full names) from the rules in `pool`; request bodies are read up to
    /// `max_body_bytes`.
    pub fn new(pool: DescriptorPool, services: &[&str], max_body_bytes: usize) -> Self {
        let routes = routes::Routes::new(&pool, services);
        let openapi = openapi::document(&routes);
        let mut openapi_bytes = serde_json::to_vec_pretty(&openapi).expect("JSON values serialize");
        openapi_bytes.push(b'\n');
        let json = response::Json::new(pool);
        let deadlines = Arc::new(DeadlineOptions::default());
        Self { routes, json, max_body_bytes, deadlines, openapi, openapi_bytes: openapi_bytes.into() }
    }

    /// Bounds REST callers' deadlines by the method defaults of `deadlines` (the server's own, shared with its
    /// deadline layer) instead of [`DeadlineOptions::default`]'s.
    pub fn with_deadlines(mut self, deadlines: Arc<DeadlineOptions>) -> Self {
        self.deadlines = deadlines;
        self
    }

    /// [`Rest::new`] over encoded `FileDescriptorSet`s (e.g. `courier_proto::FILE_DESCRIPTOR_SET`).
    pub fn from_descriptor_sets(
        sets: &[&[u8]],
        services: &[&str],
        max_body_bytes: usize,
    ) -> Result<Self, prost_reflect::DescriptorError> {
        let mut pool = DescriptorPool::new();
        for set in sets {
            pool.decode_file_descriptor_set(*set)?;
        }
        Ok(Self::new(pool, services, max_body_bytes))
    }

    /// The OpenAPI 3.1 document of the routes (docs/openapi.json is this, pretty-printed).
    pub fn openapi(&self) -> &serde_json::Value {
        &self.openapi
    }

    /// [`Rest::openapi`] as served: pretty-printed, with a final newline.
    pub fn openapi_json(&self) -> &Bytes {
        &self.openapi_bytes
    }

    /// (HTTP method, path template, gRPC method path) of every route.
    pub fn routes(&self) -> Vec<(String, String, String)> {
        self.routes.describe()
    }

    /// Answers one REST request through `inner`, the layered gRPC stack (already ready).
    async fn handle<S, B>(self: Arc<Self>, mut inner: S, request: Request<Body>) -> Response<Body>
    where
        S: Service<Request<Body>, Response = Response<B>>,
        S::Error: Into<BoxError> + Send,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if request.method() == Method::GET && request.uri().path() == OPENAPI_PATH {
            let mut response = Response::new(Body::new(http_body_util::Full::new(self.openapi_bytes.clone())));
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            return response;
        }
        let (method, path) = (request.method(), request.uri().path());
        let (rpc, params) = match self.routes.find(method, path) {
            routes::Match::Found(rpc, params) => (rpc.clone(), params),
            routes::Match::MethodNotAllowed(allowed) => {
                let message = format!("{method} is not allowed on {path}");
                let mut response = self.unrouted(request, Code::Unimplemented, message).await;
                *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
                let allow = allowed.iter().map(Method::as_str).collect::<Vec<_>>().join(", ");
                response.headers_mut().insert(header::ALLOW, HeaderValue::from_str(&allow).expect("method names"));
                return response;
            }
            routes::Match::NotFound => {
                let message = format!("no route for {method} {path}");
                return self.unrouted(request, Code::NotFound, message).await;
            }
        };
        // The body is read, and any mistake in the request found, once the stack serves the call.
        let grpc = request::grpc_request(rpc.clone(), params, request, self.max_body_bytes, &self.deadlines);
        match inner.call(grpc).await {
            Ok(response) if rpc.server_streaming => self.json.stream(&rpc.output, response),
            Ok(response) => self.json.unary(&rpc.output, response).await,
            Err(error) => {
                let status = match error.into().downcast::<Status>() {
                    Ok(status) => *status,
                    Err(error) => Status::internal(format!("the call failed: {error}")),
                };
                self.json.error(&status, None)
            }
        }
    }

    /// The refusal (`code`, `message`) of a request that matched no route, observed as a call of the method
    /// [`UNROUTED_METHOD`]: it passes the call-end layer (span, metrics, access log; the caller's `traceparent`
    /// included), and only that, since there is no method to authenticate, limit or serve. One label for every
    /// such request keeps the metrics' label values bounded whatever paths clients send.
    async fn unrouted(&self, request: Request<Body>, code: Code, message: String) -> Response<Body> {
        let (mut parts, _body) = request.into_parts();
        parts.uri = http::Uri::from_parts({
            let mut uri = http::uri::Parts::default();
            uri.path_and_query = Some(http::uri::PathAndQuery::from_static(UNROUTED_METHOD));
            uri
        })
        .expect("a path alone is a URI");
        let refuse = tower::service_fn(move |_: Request<()>| {
            std::future::ready(Ok::<_, Infallible>(Status::new(code, message.clone()).into_http::<Body>()))
        });
        let observed = CallEndLayer.layer(refuse);
        let Ok(response) = tower::ServiceExt::oneshot(observed, Request::from_parts(parts, ())).await;
        let status = Status::from_header_map(response.headers()).expect("a refusal carries its status");
        // Dropping the observed response ends the call: its access log line is written and it is counted.
        self.json.error(&status, None)
    }
}

/// Layer for [`RestService`]; [`RestLayer::off`] passes every request through.
#[derive(Clone, Debug, Default)]
pub struct RestLayer {
    rest: Option<Arc<Rest>>,
}

impl RestLayer {
    /// Serves `rest`'s routes in front of the layered stack.
    pub fn new(rest: Rest) -> Self {
        Self { rest: Some(Arc::new(rest)) }
    }

    /// No REST: every request goes to the stack as it came (non-gRPC ones are then refused there with 415).
    pub fn off() -> Self {
        Self { rest: None }
    }
}

impl<S> Layer<S> for RestLayer {
    type Service = RestService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RestService { inner, rest: self.rest.clone() }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct RestService<S> {
    inner: S,
    rest: Option<Arc<Rest>>,
}

/// Whether the request is for the gRPC stack as it is: a gRPC or gRPC-Web content type, or a CORS preflight.
fn passes_through<B>(request: &Request<B>) -> bool {
    const GRPC: &[u8] = b"application/grpc";
    let headers = request.headers();
    let grpc = headers
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .is_some_and(|value| value.len() >= GRPC.len() && value[..GRPC.len()].eq_ignore_ascii_case(GRPC));
    grpc || (request.method() == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD))
}

impl<S, B> Service<Request<Body>> for RestService<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<RestBody<B>>;
    type Error = S::Error;
    type Future = RestFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        match &self.rest {
            Some(rest) if !passes_through(&request) => {
                // The service that was made ready goes with the call; a clone stays for the next one.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                RestFuture::Rest { inner: Box::pin(rest.clone().handle(inner, request)) }
            }
            _ => RestFuture::Grpc { inner: self.inner.call(request) },
        }
    }
}

pin_project_lite::pin_project! {
    /// Future of [`RestService`].
    #[allow(missing_docs)]
    #[project = RestFutureProj]
    pub enum RestFuture<F> {
        /// A gRPC call, as the stack answers it.
        Grpc { #[pin] inner: F },
        /// A transcoded REST call; it always answers (errors are JSON statuses).
        Rest { inner: Pin<Box<dyn Future<Output = Response<Body>> + Send>> },
    }
}

impl<F, B, E> Future for RestFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<RestBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            RestFutureProj::Grpc { inner } => {
                inner.poll(cx).map(|result| result.map(|response| response.map(|inner| RestBody::Grpc { inner })))
            }
            RestFutureProj::Rest { inner } => inner.as_mut().poll(cx).map(|response| Ok(response.map(RestBody::rest))),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response body of [`RestService`]: the stack's own for gRPC (not boxed again), JSON for REST.
    #[allow(missing_docs)]
    #[project = RestBodyProj]
    pub enum RestBody<B> {
        Grpc { #[pin] inner: B },
        Rest { #[pin] inner: Body },
    }
}

impl<B> RestBody<B> {
    fn rest(inner: Body) -> Self {
        Self::Rest { inner }
    }
}

impl<B> http_body::Body for RestBody<B>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            RestBodyProj::Grpc { inner } => inner.poll_frame(cx).map(|f| f.map(|f| f.map_err(Into::into))),
            RestBodyProj::Rest { inner } => inner.poll_frame(cx).map(|f| f.map(|f| f.map_err(Into::into))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Grpc { inner } => inner.is_end_stream(),
            Self::Rest { inner } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            Self::Grpc { inner } => inner.size_hint(),
            Self::Rest { inner } => inner.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::passes_through;

    #[test]
    fn grpc_grpc_web_and_preflights_pass_through_and_json_does_not() {
        let request = |method: &str, content_type: Option<&str>, preflight: bool| {
            let mut builder = http::Request::builder().method(method).uri("/v1/users");
            if let Some(content_type) = content_type {
                builder = builder.header("content-type", content_type);
            }
            if preflight {
                builder = builder.header("access-control-request-method", "POST");
            }
            builder.body(()).unwrap()
        };
        assert!(passes_through(&request("POST", Some("application/grpc"), false)));
        assert!(passes_through(&request("POST", Some("application/grpc+proto"), false)));
        assert!(passes_through(&request("POST", Some("application/grpc-web-text"), false)));
        assert!(passes_through(&request("OPTIONS", None, true)));
        assert!(!passes_through(&request("POST", Some("application/json"), false)));
        assert!(!passes_through(&request("GET", None, false)));
        assert!(!passes_through(&request("OPTIONS", None, false)));
    }
}
