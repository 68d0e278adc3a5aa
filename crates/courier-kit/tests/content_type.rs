//! A request with a non-gRPC content type is answered HTTP 415 before any service reads it (gRPC over HTTP/2
//! spec); a gRPC request passes. Raw HTTP/2 requests over a real connection to the real server stack.

mod support;

use bytes::Bytes;
use courier_kit::server::ServerOptions;
use support::{call, TestServer, UNARY};

/// The HTTP status and whether a `grpc-status` came back, for a POST of `body` with `content_type`.
async fn post(server: &TestServer, content_type: Option<&str>, body: &'static [u8]) -> (http::StatusCode, bool) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::post(format!("http://{}{UNARY}", server.addr)).header("te", "trailers");
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = sender.send_request(request.body(http_body_util::Full::new(Bytes::from_static(body))).unwrap());
    let response = response.await.unwrap();
    let status = response.status();
    let in_headers = response.headers().contains_key("grpc-status");
    let collected = response.into_body().collect().await.unwrap();
    let in_trailers = collected.trailers().is_some_and(|t| t.contains_key("grpc-status"));
    (status, in_headers || in_trailers)
}

#[tokio::test]
async fn a_non_grpc_content_type_is_415_and_never_reaches_the_service() {
    // gRPC-Web and the REST edge off: `application/grpc-web` and JSON are content types that are not gRPC (with
    // them on, the layers in front translate them; courier-tests' grpc_web tests, the next test here).
    let server = TestServer::start(ServerOptions { grpc_web: false, rest: false, ..ServerOptions::default() }).await;
    for content_type in [Some("application/json"), Some("text/plain"), Some("application/grpc-web"), None] {
        let (status, grpc) = post(&server, content_type, br#"{"name":"x"}"#).await;
        assert_eq!(status, http::StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
        assert!(!grpc, "{content_type:?}: a 415 is an HTTP answer, not a gRPC status");
    }
    assert_eq!(server.script.calls(UNARY), 0, "a refused request reached the handler");

    // gRPC's own content types pass: an empty message (flag 0, length 0) reaches the handler.
    for content_type in ["application/grpc", "application/grpc+proto"] {
        let (status, grpc) = post(&server, Some(content_type), &[0, 0, 0, 0, 0]).await;
        assert_eq!(status, http::StatusCode::OK, "{content_type}");
        assert!(grpc, "{content_type}");
    }
    call(server.channel(), UNARY, None).await.ok();
    assert_eq!(server.script.calls(UNARY), 3);
}

#[tokio::test]
async fn with_rest_on_a_json_request_off_every_route_is_a_json_404_and_untranslated_grpc_web_still_415() {
    // gRPC-Web off, to see what REST does with it (with it on, the gRPC-Web layer translates it first).
    let server = TestServer::start(ServerOptions { grpc_web: false, ..ServerOptions::default() }).await;
    for content_type in [Some("application/json"), Some("text/plain"), None] {
        let (status, grpc) = post(&server, content_type, br#"{"name":"x"}"#).await;
        assert_eq!(status, http::StatusCode::NOT_FOUND, "{content_type:?}: the gRPC path is no REST route");
        assert!(!grpc, "{content_type:?}");
    }
    // gRPC-Web is passed on to the stack as it is (not transcoded), where the gate refuses it.
    let (status, _) = post(&server, Some("application/grpc-web"), b"").await;
    assert_eq!(status, http::StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(server.script.calls(UNARY), 0, "a refused request reached the handler");
}
