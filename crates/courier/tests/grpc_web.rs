//! gRPC-Web through the real binary (docs/grpc-web.md): `courier up` serves it by default, origins come from
//! `--cors-allowed-origins` or `COURIER_SERVER__CORS_ALLOWED_ORIGINS`, development auth and deadlines apply to
//! gRPC-Web calls as to gRPC ones, `--no-grpc-web` turns it off, and an origin that is not one stops the start
//! naming its key.

use std::process::Command;

use courier_proto::users::v1 as pb;
use courier_tests::grpc_web::{self, frame, header, Http, BINARY};
use courier_tests::process::CourierProcess;
use http::StatusCode;

const BIN: &str = env!("CARGO_BIN_EXE_courier");
const CREATE: &str = "/courier.users.v1.UserService/CreateUser";
const LIST: &str = "/courier.users.v1.UserService/ListUsers";
const PAGE: &str = "http://127.0.0.1:5173";

fn up(dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> CourierProcess {
    let dir = dir.to_str().unwrap();
    let mut args = vec!["up", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", dir];
    args.extend_from_slice(extra);
    // At info: the access log is part of what is checked.
    CourierProcess::start_logged(BIN, &args, env, "info")
}

#[tokio::test]
async fn courier_up_serves_grpc_web_behind_auth_and_deadlines_with_the_origins_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let server = up(dir.path(), &["--cors-allowed-origins", PAGE], &[]);
    let token = std::fs::read_to_string(server.data_dir.join("token")).unwrap();
    let bearer = format!("Bearer {}", token.trim());
    let body = frame(&pb::CreateUserRequest { name: "Ada".into(), email: "ada@example.com".into() });

    let (status, headers) = grpc_web::preflight(&server.addr, CREATE, PAGE).await.unwrap();
    assert_eq!((status, header(&headers, "access-control-allow-origin")), (StatusCode::OK, Some(PAGE)));

    // Development auth covers gRPC-Web: no token, UNAUTHENTICATED in the answer; the token, the call is served.
    let origin = ("origin", PAGE);
    let answer = grpc_web::call(Http::One, &server.addr, CREATE, BINARY, &[origin], &body).await.unwrap();
    assert_eq!(answer.grpc_status(), Some(tonic::Code::Unauthenticated as i32), "{answer:?}");
    let authorized = [origin, ("authorization", bearer.as_str())];
    let answer = grpc_web::call(Http::One, &server.addr, CREATE, BINARY, &authorized, &body).await.unwrap();
    assert_eq!(answer.grpc_status(), Some(0), "{answer:?}");
    assert_eq!(answer.decode::<pb::CreateUserResponse>().len(), 1);

    // The caller's `grpc-timeout` is the call's deadline, as for gRPC: 1 ns is over before any work.
    let hurried = [origin, ("authorization", bearer.as_str()), ("grpc-timeout", "1n")];
    let list = frame(&pb::ListUsersRequest::default());
    let answer = grpc_web::call(Http::One, &server.addr, LIST, BINARY, &hurried, &list).await.unwrap();
    assert_eq!(answer.grpc_status(), Some(tonic::Code::DeadlineExceeded as i32), "{answer:?}");

    // The access log has each call under its method, with the code the page got.
    let logs = server.logs.as_ref().expect("logged");
    for (method, code) in [(CREATE, "UNAUTHENTICATED"), (CREATE, "OK"), (LIST, "DEADLINE_EXCEEDED")] {
        let (method, code) = (format!("method=\"{method}\""), format!("code=\"{code}\""));
        logs.wait_for(std::time::Duration::from_secs(10), &format!("{method} {code}"), |line| {
            line.contains(" rpc ") && line.contains(&method) && line.contains(&code)
        });
    }

    // Another page's origin is refused.
    let (status, _) = grpc_web::preflight(&server.addr, CREATE, "http://127.0.0.1:5174").await.unwrap();
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn origins_come_from_the_environment_and_no_grpc_web_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let origins = [("COURIER_SERVER__CORS_ALLOWED_ORIGINS", "https://shop.example, http://127.0.0.1:5173")];
    let server = up(dir.path(), &[], &origins);
    for origin in ["https://shop.example", PAGE] {
        let (status, headers) = grpc_web::preflight(&server.addr, CREATE, origin).await.unwrap();
        assert_eq!((status, header(&headers, "access-control-allow-origin")), (StatusCode::OK, Some(origin)));
    }
    drop(server);

    let dir = tempfile::tempdir().unwrap();
    let server = up(dir.path(), &["--no-grpc-web", "--cors-allowed-origins", PAGE], &[]);
    let body = frame(&pb::CreateUserRequest { name: "Ada".into(), email: "ada@example.com".into() });
    // HTTP/1.1 is still accepted (for REST), but gRPC-Web is not translated: a content type that is not gRPC.
    for http in [Http::One, Http::Two] {
        let answer = grpc_web::call(http, &server.addr, CREATE, BINARY, &[], &body).await.unwrap();
        assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }
    drop(server);

    // Without REST either, the listener is HTTP/2 only again.
    let dir = tempfile::tempdir().unwrap();
    let server = up(dir.path(), &["--no-grpc-web", "--no-rest"], &[]);
    assert!(grpc_web::call(Http::One, &server.addr, CREATE, BINARY, &[], &body).await.is_err());
}

#[test]
fn an_origin_that_is_not_one_is_refused_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    for (flags, env) in [
        (vec!["--cors-allowed-origins", "shop.example"], None),
        (vec![], Some(("COURIER_SERVER__CORS_ALLOWED_ORIGINS", "https://shop.example/"))),
    ] {
        let mut command = Command::new(BIN);
        command.args(["serve", "users", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path()).args(&flags);
        command.envs(env);
        let output = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} {env:?}: {output:?}");
        assert!(stderr.contains("`server.cors_allowed_origins`") && stderr.contains("is not an origin"), "{stderr}");
    }
}
