//! CPU per call of the served layer stack, in process: no sockets, no HTTP/2, no other thread, so differences of a
//! few hundred nanoseconds show through a noisy machine that `bench/cpu_per_call.sh` cannot resolve.
//!
//! Calls tonic-health's Check (a real tonic service: decode, handler, encode) through the layers `serve` applies,
//! in its order (authentication off: the bench's cached-token check is not what this measures), then through no
//! layer at all; logging is set up as `courier up --log warn` sets it. Prints the thread's CPU time per call,
//! the best and the median of seven rounds.
//!
//!     cargo run --release -p courier-kit --example layer_stack_cpu [CALLS_PER_ROUND]

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use courier_kit::layers::{
    AuthLayer, CallEndLayer, ConcurrencyLimitLayer, ContentTypeLayer, DeadlineLayer, DeadlineOptions, FaultLayer,
    RecvLimitLayer,
};
use http_body_util::BodyExt;
use prost::Message;
use tower::{Service, ServiceExt};

const ROUNDS: usize = 7;

fn main() {
    let calls: usize = std::env::args().nth(1).map_or(100_000, |n| n.parse().expect("a number of calls"));
    let telemetry = courier_kit::trace::Telemetry::new("layer-stack-cpu", None).expect("no exporter");
    courier_kit::logging::init(courier_kit::logging::LogFormat::Human, "warn", &telemetry).expect("a valid filter");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_service_status("", tonic_health::ServingStatus::Serving).await;
        let routes = tonic::service::Routes::new(health);
        let layered = tower::ServiceBuilder::new()
            .layer(CallEndLayer)
            .layer(ContentTypeLayer)
            .layer(AuthLayer::default())
            .layer(FaultLayer::default())
            .layer(DeadlineLayer::new(&DeadlineOptions::default()))
            .layer(ConcurrencyLimitLayer::new(1024))
            .layer(RecvLimitLayer::new(4 << 20))
            .service(routes.clone());
        println!("layers:   {}", per_call(layered, calls).await);
        println!("no layer: {}", per_call(routes, calls).await);
    });
}

/// The thread's CPU time per call of `calls` Checks through `service`, best and median of the rounds.
async fn per_call<S, B>(service: S, calls: usize) -> String
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let message = tonic_health::pb::HealthCheckRequest::default().encode_to_vec();
    let mut frame = BytesMut::new();
    frame.put_u8(0);
    frame.put_u32(message.len() as u32);
    frame.put_slice(&message);
    let frame = frame.freeze();
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = thread_cpu();
        for _ in 0..calls {
            check(service.clone(), frame.clone()).await;
        }
        rounds.push((thread_cpu() - start).as_nanos() as f64 / calls as f64);
    }
    rounds.sort_by(f64::total_cmp);
    format!("{:.0} ns per call (best of {ROUNDS}), median {:.0}", rounds[0], rounds[ROUNDS / 2])
}

async fn check<S, B>(mut service: S, frame: Bytes)
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let request = http::Request::post("/grpc.health.v1.Health/Check")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(http_body_util::Full::new(frame)))
        .expect("a valid request");
    let response = service.ready().await.expect("ready").call(request).await.expect("answered");
    let mut body = std::pin::pin!(response.into_body());
    while let Some(frame) = body.as_mut().frame().await {
        frame.expect("a frame");
    }
}

/// CPU time this thread has run (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("Linux");
    Duration::from_nanos(stat.split_whitespace().next().and_then(|ns| ns.parse().ok()).expect("schedstat"))
}
