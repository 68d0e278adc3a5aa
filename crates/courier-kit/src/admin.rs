//! The admin port: `/metrics` (Prometheus text), `/healthz` (200 while the process runs) and `/readyz` (200 while
//! the gRPC server accepts calls, 503 before it does and while it drains).
//!
//! It is plain HTTP/1.1 on its own listener, apart from the gRPC port: scrapers and orchestrator probes speak
//! HTTP/1.1, and an overloaded or draining gRPC server must still answer them.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Whether the gRPC server accepts calls; [`crate::server::serve`] sets it, `/readyz` reports it. Clones share.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the server ready (serving) or not (starting, draining).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the server is ready.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Serves the admin routes on `listener` until the task is dropped or the process ends. It outlives the gRPC
/// server's drain on purpose: `/readyz` must be seen answering 503 while calls finish.
pub async fn serve_admin(listener: TcpListener, readiness: Readiness) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: keep serving the connections we have, try again.
                tracing::warn!(%error, "admin port: accept failed");
                continue;
            }
        };
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let response = route(&request, &readiness);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(error) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await
            {
                tracing::debug!(%error, "admin port: connection ended with an error");
            }
        });
    }
}

fn route(request: &Request<Incoming>, readiness: &Readiness) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match request.uri().path() {
        "/metrics" => {
            let mut response = text(StatusCode::OK, crate::metrics::render());
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(prometheus::TEXT_FORMAT));
            response
        }
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" if readiness.get() => text(StatusCode::OK, "ready\n"),
        "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => text(StatusCode::NOT_FOUND, "not found; try /metrics, /healthz or /readyz\n"),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
