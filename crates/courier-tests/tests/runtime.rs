//! The shared server runtime, seen from a client: health, reflection, the receive-size and concurrency limits,
//! and graceful shutdown.

use std::time::Duration;

use courier_kit::server::ServerOptions;
use courier_proto::users::v1 as pb;
use courier_tests::{Backend, TestServer};
use futures::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::HealthCheckRequest;

const USERS_SERVICE: &str = "courier.users.v1.UserService";

fn check(service: &str) -> HealthCheckRequest {
    HealthCheckRequest { service: service.into() }
}

#[tokio::test]
async fn health_reports_each_service_and_refuses_unknown_ones() {
    let server = TestServer::start(Backend::Sqlite).await;
    let mut health = server.health();
    for service in ["", USERS_SERVICE] {
        let status = health.check(check(service)).await.unwrap().into_inner().status();
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    assert_eq!(health.check(check("no.such.Service")).await.unwrap_err().code(), Code::NotFound);
    server.shutdown().await;
}

async fn reflected_services_v1(server: &TestServer) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(server.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    match responses.next().await.unwrap().unwrap().message_response.unwrap() {
        MessageResponse::ListServicesResponse(list) => list.service.into_iter().map(|s| s.name).collect(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

async fn reflected_file_v1alpha(server: &TestServer, symbol: &str) -> usize {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    let mut client = ServerReflectionClient::new(server.channel.clone());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(symbol.into())),
    };
    let mut responses = client.server_reflection_info(futures::stream::iter([request])).await.unwrap().into_inner();
    match responses.next().await.unwrap().unwrap().message_response.unwrap() {
        MessageResponse::FileDescriptorResponse(files) => files.file_descriptor_proto.len(),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

#[tokio::test]
async fn reflection_v1_lists_and_v1alpha_describes_the_services() {
    let server = TestServer::start(Backend::Sqlite).await;
    let services = reflected_services_v1(&server).await;
    for expected in [USERS_SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"] {
        assert!(services.iter().any(|s| s == expected), "{expected} missing from {services:?}");
    }
    // users.proto and the timestamp.proto it imports.
    assert!(reflected_file_v1alpha(&server, USERS_SERVICE).await >= 1);
    server.shutdown().await;
}

#[tokio::test]
async fn a_request_over_the_receive_limit_is_resource_exhausted() {
    let options = ServerOptions { max_recv_message_bytes: 1024, ..ServerOptions::default() };
    let server = TestServer::start_with(Backend::Sqlite, options).await;
    let mut users = server.users();
    let huge = pb::CreateUserRequest { name: "x".repeat(2048), email: "a@b.co".into() };
    assert_eq!(users.create_user(huge).await.unwrap_err().code(), Code::ResourceExhausted);
    // Under the limit, the request reaches the handler (and its own validation).
    let big = pb::CreateUserRequest { name: "x".repeat(900), email: "a@b.co".into() };
    assert_eq!(users.create_user(big).await.unwrap_err().code(), Code::InvalidArgument);
    server.shutdown().await;
}

#[tokio::test]
async fn calls_beyond_the_concurrency_limit_are_refused_at_once() {
    let options = ServerOptions { max_concurrent_calls: 1, ..ServerOptions::default() };
    let server = TestServer::start_with(Backend::Sqlite, options).await;
    // An event feed is a call that stays open, holding the only permit.
    let feed = courier_proto::payments::v1::WatchEventsRequest { from_sequence: 1, account_id: String::new() };
    let watch = server.payments().watch_events(feed).await.unwrap().into_inner();
    // Health is exempt: probes answer even at the limit.
    let health = server.health().check(check("")).await.unwrap().into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    let mut users = server.users();
    let get = || pb::GetUserRequest { id: "usr_0190f5a0c2b87cc3a1b2c3d4e5f60718".into() };
    assert_eq!(users.get_user(get()).await.unwrap_err().code(), Code::ResourceExhausted);

    // Ending the watch releases the permit: calls are admitted again (the reset reaches the server shortly).
    drop(watch);
    let mut admitted = false;
    for _ in 0..200 {
        match users.get_user(get()).await.unwrap_err().code() {
            Code::NotFound => {
                admitted = true;
                break;
            }
            Code::ResourceExhausted => tokio::time::sleep(Duration::from_millis(10)).await,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(admitted, "the permit was never released");
    server.shutdown().await;
}

#[tokio::test]
async fn shutdown_turns_health_not_serving_and_drains_calls_in_flight() {
    let mut server = TestServer::start(Backend::Sqlite).await;
    let mut users = server.users();
    for i in 0..300 {
        let request = pb::CreateUserRequest { name: format!("U{i}"), email: format!("u{i}@example.com") };
        users.create_user(request).await.unwrap();
    }
    let mut watch = server.health().watch(check(USERS_SERVICE)).await.unwrap().into_inner();
    assert_eq!(watch.next().await.unwrap().unwrap().status(), ServingStatus::Serving);
    // The in-flight call: a listing of 300 users, one page of it read so far.
    let request = pb::ListUsersRequest { page_size: 0, ..Default::default() };
    let mut listing = users.list_users(request).await.unwrap().into_inner();
    listing.next().await.unwrap().unwrap();

    server.begin_shutdown();
    assert_eq!(watch.next().await.unwrap().unwrap().status(), ServingStatus::NotServing);
    drop(watch);

    let mut rest = 0;
    while let Some(item) = listing.next().await {
        item.expect("the in-flight stream completes despite the shutdown");
        rest += 1;
    }
    assert_eq!(rest, 299);
    server.join().await.expect("graceful shutdown ends cleanly");
}

#[tokio::test]
async fn the_grace_period_bounds_shutdown_when_a_call_never_ends() {
    let grace = Duration::from_millis(300);
    let options = ServerOptions { shutdown_grace: grace, ..ServerOptions::default() };
    let mut server = TestServer::start_with(Backend::Sqlite, options).await;
    // A Watch that the client keeps open forever.
    let mut watch = server.health().watch(check("")).await.unwrap().into_inner();
    watch.next().await.unwrap().unwrap();

    let started = std::time::Instant::now();
    server.begin_shutdown();
    server.join().await.expect("shutdown after the grace period is still clean");
    let took = started.elapsed();
    assert!(took >= grace, "returned before the grace period: {took:?}");
    assert!(took < grace + Duration::from_secs(5), "grace period not enforced: {took:?}");
}
