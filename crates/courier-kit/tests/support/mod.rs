//! A tiny scripted gRPC service (raw bytes, no protos) served by the real runtime on `127.0.0.1:0`, and a raw
//! client for it. Each test binary uses part of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use courier_kit::client::{BreakerOptions, MethodOptions, ResilientChannel, ResilientChannelBuilder, RetryPolicy};
use courier_kit::server::{self, ServerOptions, ServiceSet};
use http::uri::PathAndQuery;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::StdError;
use tonic::server::{NamedService, UnaryService};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::server::HealthReporter;

pub const SERVICE: &str = "courier.test.Echo";
/// Answers from the script (OK by default).
pub const UNARY: &str = "/courier.test.Echo/Unary";
/// Like UNARY; tests mark it idempotent in their clients.
pub const GET: &str = "/courier.test.Echo/Get";
/// Never answers; counts itself in `Script::hanging` first.
pub const HANG: &str = "/courier.test.Echo/Hang";
/// Answers the milliseconds left of `courier_kit::deadline::current()`, or `none`.
pub const DEADLINE: &str = "/courier.test.Echo/Deadline";
/// Calls UNARY on `Script::relay` and answers what it answered.
pub const RELAY: &str = "/courier.test.Echo/Relay";

/// Messages are raw bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct BytesCodec;

impl Codec for BytesCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl Encoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for BytesCodec {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// What the server saw of one call (recorded before the handler runs).
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub timeout: Option<Duration>,
    pub previous_attempts: Option<u32>,
    /// The W3C `traceparent` header, as sent.
    pub traceparent: Option<String>,
    pub at: Instant,
}

/// A scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    Ok,
    Fail(Code),
    /// Fails with `grpc-retry-pushback-ms` set to the value.
    FailWithPushback(Code, &'static str),
}

/// The server's state, shared with the test.
pub struct Script {
    seen: Mutex<Vec<Seen>>,
    replies: Mutex<VecDeque<Reply>>,
    otherwise: Mutex<Reply>,
    pub hanging: watch::Sender<usize>,
    pub relay: Mutex<Option<ResilientChannel>>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            seen: Mutex::default(),
            replies: Mutex::default(),
            otherwise: Mutex::new(Reply::Ok),
            hanging: watch::Sender::new(0),
            relay: Mutex::default(),
        }
    }
}

impl Script {
    /// Answers these first, in order.
    pub fn then(&self, replies: impl IntoIterator<Item = Reply>) {
        self.replies.lock().unwrap().extend(replies);
    }

    /// Answers this once the scripted answers are used up.
    pub fn otherwise(&self, reply: Reply) {
        *self.otherwise.lock().unwrap() = reply;
    }

    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|seen| seen.path == path).cloned().collect()
    }

    pub fn calls(&self, path: &str) -> usize {
        self.seen(path).len()
    }

    /// Resolves once `n` HANG calls are being served.
    pub async fn wait_hanging(&self, n: usize) {
        let mut hanging = self.hanging.subscribe();
        tokio::time::timeout(Duration::from_secs(10), hanging.wait_for(|hanging| *hanging >= n))
            .await
            .expect("calls never arrived")
            .unwrap();
    }

    fn next_reply(&self) -> Reply {
        let scripted = self.replies.lock().unwrap().pop_front();
        scripted.unwrap_or_else(|| self.otherwise.lock().unwrap().clone())
    }
}

/// The test service.
#[derive(Clone, Default)]
pub struct Echo(pub Arc<Script>);

impl NamedService for Echo {
    const NAME: &'static str = SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<Body>> for Echo {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let headers = request.headers();
        let seen = Seen {
            path: request.uri().path().to_owned(),
            timeout: headers
                .get("grpc-timeout")
                .and_then(|v| courier_kit::deadline::grpc_timeout::parse(v.as_bytes()).ok()),
            previous_attempts: headers.get("grpc-previous-rpc-attempts").map(|v| v.to_str().unwrap().parse().unwrap()),
            traceparent: headers.get("traceparent").map(|v| v.to_str().unwrap().to_owned()),
            at: Instant::now(),
        };
        self.0.seen.lock().unwrap().push(seen.clone());
        let handler = Handler { script: self.0.clone(), path: seen.path };
        Box::pin(async move { Ok(tonic::server::Grpc::new(BytesCodec).unary(handler, request).await) })
    }
}

struct Handler {
    script: Arc<Script>,
    path: String,
}

impl UnaryService<Bytes> for Handler {
    type Response = Bytes;
    type Future = BoxFuture<Result<tonic::Response<Bytes>, Status>>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let script = self.script.clone();
        let path = self.path.clone();
        Box::pin(async move {
            match path.as_str() {
                HANG => {
                    script.hanging.send_modify(|n| *n += 1);
                    std::future::pending().await
                }
                DEADLINE => {
                    let left = courier_kit::deadline::remaining();
                    let text = left.map_or("none".to_owned(), |left| left.as_millis().to_string());
                    Ok(tonic::Response::new(Bytes::from(text)))
                }
                RELAY => {
                    let relay = script.relay.lock().unwrap().clone().expect("no relay configured");
                    call(relay, UNARY, None).await
                }
                _ => match script.next_reply() {
                    Reply::Ok => Ok(tonic::Response::new(request.into_inner())),
                    Reply::Fail(code) => Err(Status::new(code, "scripted failure")),
                    Reply::FailWithPushback(code, pushback) => {
                        let mut status = Status::new(code, "scripted failure with pushback");
                        status.metadata_mut().insert("grpc-retry-pushback-ms", pushback.parse().unwrap());
                        Err(status)
                    }
                },
            }
        })
    }
}

/// One unary call of `path` with a raw client over any gRPC channel, as generated clients make it.
pub async fn call<T>(
    channel: T,
    path: &'static str,
    timeout: Option<Duration>,
) -> Result<tonic::Response<Bytes>, Status>
where
    T: tonic::client::GrpcService<Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: http_body::Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error: Into<StdError> + Send,
{
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|error| Status::unknown(error.into().to_string()))?;
    let mut request = tonic::Request::new(Bytes::from_static(b"ping"));
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    grpc.unary(request, PathAndQuery::from_static(path), BytesCodec).await
}

/// One unary call over a bare HTTP/2 connection, which (unlike tonic's channel) never times out by itself:
/// the status is the server's. `headers` are added to the request.
pub async fn raw_call(addr: SocketAddr, path: &str, headers: &[(&'static str, &str)]) -> Status {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(connection);
    // An empty message: flag 0, length 0.
    let body = http_body_util::Full::new(Bytes::from_static(&[0, 0, 0, 0, 0]));
    let mut request = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(body)
        .unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    let response = sender.send_request(request).await.unwrap();
    if let Some(status) = Status::from_header_map(response.headers()) {
        return status;
    }
    let collected = response.into_body().collect().await.unwrap();
    Status::from_header_map(&collected.trailers().cloned().unwrap_or_default()).expect("a grpc-status trailer")
}

/// A courier server (`courier_kit::server::serve`, every layer) running the test service.
pub struct TestServer {
    pub addr: SocketAddr,
    pub script: Arc<Script>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    pub async fn start(options: ServerOptions) -> Self {
        let script = Arc::new(Script::default());
        let mut services = ServiceSet::default();
        services.add(Echo(script.clone()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, signal) = oneshot::channel::<()>();
        let options = ServerOptions { shutdown_grace: Duration::from_millis(100), ..options };
        tokio::spawn(async move {
            server::serve(listener, services, &options, async {
                let _ = signal.await;
            })
            .await
            .unwrap();
        });
        Self { addr, script, shutdown: Some(shutdown) }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A plain tonic channel, for calls that should see the server as it is.
    pub fn channel(&self) -> Channel {
        Channel::from_shared(self.url()).unwrap().connect_lazy()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

/// A bare tonic server with the test service and a health service the test controls, as one replica.
pub struct Replica {
    pub addr: SocketAddr,
    pub script: Arc<Script>,
    pub health: HealthReporter,
}

impl Replica {
    pub async fn start() -> Self {
        let script = Arc::new(Script::default());
        let (health, health_service) = tonic_health::server::health_reporter();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = tonic::transport::Server::builder().add_service(health_service).add_service(Echo(script.clone()));
        tokio::spawn(router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)));
        Self { addr, script, health }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A client of `server` named `upstream`: GET is idempotent, retried up to `attempts` times with 1 ms backoff; UNARY
/// is not. No breaker, so that the failures tests provoke refuse nothing locally.
pub fn retrying_client(upstream: &str, server: &TestServer, attempts: u32) -> ResilientChannelBuilder {
    ResilientChannel::builder(upstream)
        .endpoint(server.url())
        .method(GET, MethodOptions::idempotent())
        .retry_policy(RetryPolicy {
            max_attempts: attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            ..RetryPolicy::default()
        })
        .breaker(BreakerOptions { enabled: false, ..BreakerOptions::default() })
}
