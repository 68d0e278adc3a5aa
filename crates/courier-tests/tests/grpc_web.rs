//! gRPC-Web on the gRPC listener (docs/grpc-web.md), over real sockets: calls framed by hand the way a browser's
//! fetch sends them (courier_tests::grpc_web), over HTTP/1.1 and HTTP/2, binary and text, unary and a server
//! stream; what the layers inside see of them (metrics by method); CORS preflights from an allowed origin and from
//! another; and gRPC-Web off. The browser itself is clients/web (scripts/test.sh).

use courier_kit::server::ServerOptions;
use courier_proto::users::v1 as pb;
use courier_tests::grpc_web::{self, frame, header, Http, BINARY, TEXT};
use courier_tests::{Backend, TestServer};
use http::StatusCode;

const CREATE: &str = "/courier.users.v1.UserService/CreateUser";
const GET: &str = "/courier.users.v1.UserService/GetUser";
const LIST: &str = "/courier.users.v1.UserService/ListUsers";
const ALLOWED: &str = "http://127.0.0.1:5173";

fn options(origins: &[&str]) -> ServerOptions {
    ServerOptions {
        cors_allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
        ..ServerOptions::default()
    }
}

fn create(name: &str, email: &str) -> Vec<u8> {
    frame(&pb::CreateUserRequest { name: name.into(), email: email.into() })
}

/// Held by the tests that call CREATE or LIST: the metrics registry is the process's, shared by every test here,
/// so a count is only exact while no other test calls the same method.
static METRICS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// `courier_rpc_server_calls_total` for `method` and `code`, from the process's registry.
fn calls(method: &str, code: &str) -> u64 {
    let needle = format!("courier_rpc_server_calls_total{{code=\"{code}\",method=\"{method}\"}} ");
    courier_kit::metrics::render()
        .lines()
        .find_map(|line| line.strip_prefix(&needle))
        .map_or(0, |count| count.trim().parse().expect("a count"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_grpc_web_call_over_http1_is_served_by_the_same_stack_as_grpc() {
    let _counting = METRICS.lock().await;
    let server = TestServer::start_with(Backend::Sqlite, options(&[])).await;
    let addr = server.addr.to_string();
    let before = calls(CREATE, "OK");

    let answer =
        grpc_web::call(Http::One, &addr, CREATE, BINARY, &[], &create("Ada", "ada@example.com")).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/grpc-web+proto"));
    assert_eq!(answer.grpc_status(), Some(0), "{answer:?}");
    let [created] = answer.decode::<pb::CreateUserResponse>().try_into().expect("one message");
    let user = created.user.expect("a user");
    assert_eq!((user.name.as_str(), user.email.as_str()), ("Ada", "ada@example.com"));

    // Stored: gRPC over HTTP/2 on the same port reads what gRPC-Web wrote.
    let fetched = server.users().get_user(pb::GetUserRequest { id: user.id.clone() }).await.unwrap().into_inner();
    assert_eq!(fetched.user.as_ref(), Some(&user));
    // The layers inside saw it as any call: metrics under the method's own label.
    assert_eq!(calls(CREATE, "OK"), before + 1, "the gRPC-Web call is counted under {CREATE}");

    // A failure is a gRPC status in the trailer frame (or the headers of a trailers-only answer), HTTP 200.
    let unknown = frame(&pb::GetUserRequest { id: "usr_0190f5a0c2b87cc3a1b2c3d4e5f60718".into() });
    let answer = grpc_web::call(Http::One, &addr, GET, BINARY, &[], &unknown).await.unwrap();
    assert_eq!((answer.status, answer.grpc_status()), (StatusCode::OK, Some(tonic::Code::NotFound as i32)));
    assert!(answer.messages.is_empty());

    // gRPC-Web over HTTP/2 too, on the same connection kind as gRPC.
    let answer = grpc_web::call(Http::Two, &addr, CREATE, BINARY, &[], &create("Grace", "grace@example.com")).await;
    let answer = answer.unwrap();
    assert_eq!((answer.status, answer.grpc_status()), (StatusCode::OK, Some(0)), "{answer:?}");
    assert_eq!(answer.decode::<pb::CreateUserResponse>().len(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stream_over_grpc_web_sends_every_message_then_the_trailers() {
    let _counting = METRICS.lock().await;
    let server = TestServer::start_with(Backend::Sqlite, options(&[])).await;
    let addr = server.addr.to_string();
    let mut users = server.users();
    let mut ids = Vec::new();
    for i in 0..5 {
        let request = pb::CreateUserRequest { name: format!("User {i}"), email: format!("user{i}@example.com") };
        ids.push(users.create_user(request).await.unwrap().into_inner().user.unwrap().id);
    }
    let before = calls(LIST, "OK");

    let answer =
        grpc_web::call(Http::One, &addr, LIST, BINARY, &[], &frame(&pb::ListUsersRequest::default())).await.unwrap();
    assert_eq!((answer.status, answer.grpc_status()), (StatusCode::OK, Some(0)), "{answer:?}");
    let listed: Vec<String> =
        answer.decode::<pb::ListUsersResponse>().into_iter().map(|message| message.user.unwrap().id).collect();
    assert_eq!(listed, ids, "every user, in order, one frame each");
    // The stream counts as one call, ended with its last message.
    assert_eq!(calls(LIST, "OK"), before + 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_text_is_base64_both_ways_unary_and_streaming() {
    let _counting = METRICS.lock().await;
    let server = TestServer::start_with(Backend::Sqlite, options(&[])).await;
    let addr = server.addr.to_string();

    let answer = grpc_web::call(Http::One, &addr, CREATE, TEXT, &[], &create("Ada", "ada@example.com")).await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/grpc-web-text+proto"));
    assert_eq!(answer.grpc_status(), Some(0), "{answer:?}");
    let [created] = answer.decode::<pb::CreateUserResponse>().try_into().expect("one message");
    let id = created.user.unwrap().id;

    let answer = grpc_web::call(Http::One, &addr, GET, TEXT, &[], &frame(&pb::GetUserRequest { id: id.clone() })).await;
    let [fetched] = answer.unwrap().decode::<pb::GetUserResponse>().try_into().expect("one message");
    assert_eq!(fetched.user.unwrap().id, id);

    let answer = grpc_web::call(Http::One, &addr, LIST, TEXT, &[], &frame(&pb::ListUsersRequest::default())).await;
    let answer = answer.unwrap();
    assert_eq!(answer.grpc_status(), Some(0), "{answer:?}");
    assert_eq!(answer.decode::<pb::ListUsersResponse>().len(), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preflight_from_an_allowed_origin_is_answered_and_from_another_refused() {
    let _counting = METRICS.lock().await;
    let server = TestServer::start_with(Backend::Sqlite, options(&[ALLOWED, "https://shop.example"])).await;
    let addr = server.addr.to_string();

    let (status, headers) = grpc_web::preflight(&addr, CREATE, ALLOWED).await.unwrap();
    assert_eq!(status, StatusCode::OK, "{headers:?}");
    assert_eq!(header(&headers, "access-control-allow-origin"), Some(ALLOWED));
    assert_eq!(header(&headers, "access-control-allow-methods"), Some("POST"));
    let allowed = header(&headers, "access-control-allow-headers").unwrap_or_default();
    for name in courier_kit::server::grpc_web::ALLOWED_HEADERS {
        assert!(allowed.split(',').any(|h| h.trim() == name), "{name} not in {allowed:?}");
    }

    let (status, headers) = grpc_web::preflight(&addr, CREATE, "http://evil.example").await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}");
    assert!(!headers.keys().any(|name| name.as_str().starts_with("access-control-")), "{headers:?}");

    // The call itself from the allowed origin carries CORS headers a page needs to read the status.
    let origin = [("origin", ALLOWED)];
    let answer = grpc_web::call(Http::One, &addr, CREATE, BINARY, &origin, &create("Ada", "ada@example.com")).await;
    let answer = answer.unwrap();
    assert_eq!(answer.grpc_status(), Some(0), "{answer:?}");
    assert_eq!(answer.header("access-control-allow-origin"), Some(ALLOWED));
    let exposed = answer.header("access-control-expose-headers").unwrap_or_default();
    for name in courier_kit::server::grpc_web::EXPOSED_HEADERS {
        assert!(exposed.split(',').any(|h| h.trim() == name), "{name} not in {exposed:?}");
    }

    // From an origin not allowed it never reaches a service.
    let before = calls(CREATE, "OK");
    let origin = [("origin", "http://evil.example")];
    let answer = grpc_web::call(Http::One, &addr, CREATE, BINARY, &origin, &create("Eve", "eve@example.com")).await;
    let answer = answer.unwrap();
    assert_eq!((answer.status, answer.grpc_status()), (StatusCode::FORBIDDEN, None), "{answer:?}");
    assert_eq!(calls(CREATE, "OK"), before);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_origin_is_allowed_by_default() {
    let server = TestServer::start(Backend::Sqlite).await;
    let addr = server.addr.to_string();
    let (status, headers) = grpc_web::preflight(&addr, CREATE, ALLOWED).await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN, "{headers:?}");
    assert!(header(&headers, "access-control-allow-origin").is_none());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_grpc_web_off_it_is_not_served_and_grpc_still_is() {
    let _counting = METRICS.lock().await;
    // REST off too: with it on, HTTP/1.1 stays accepted for REST clients.
    let options = ServerOptions { grpc_web: false, rest: false, ..options(&[ALLOWED]) };
    let server = TestServer::start_with(Backend::Sqlite, options).await;
    let addr = server.addr.to_string();

    // HTTP/2 only: an HTTP/1.1 request gets no HTTP answer at all.
    let body = create("Ada", "ada@example.com");
    let refused = grpc_web::call(Http::One, &addr, CREATE, BINARY, &[], &body).await;
    assert!(refused.is_err(), "{refused:?}");
    // Over HTTP/2 it is one more content type that is not gRPC.
    let answer = grpc_web::call(Http::Two, &addr, CREATE, BINARY, &[], &body).await.unwrap();
    assert_eq!((answer.status, answer.grpc_status()), (StatusCode::UNSUPPORTED_MEDIA_TYPE, None), "{answer:?}");
    // And no preflight is answered.
    assert!(grpc_web::preflight(&addr, CREATE, ALLOWED).await.is_err());

    let mut users = server.users();
    let created = users.create_user(pb::CreateUserRequest { name: "Ada".into(), email: "a@example.com".into() });
    assert!(created.await.is_ok(), "gRPC is served as before");
    server.shutdown().await;
}
