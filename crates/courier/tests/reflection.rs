//! Reflection's default per command: on for `courier up` (people explore it with grpcurl), off for
//! `courier serve` (a production service describes its API only when asked to), and either way the configuration
//! file or the environment can turn it the other way. Where it is off the service is not registered, so a
//! reflection call answers UNIMPLEMENTED.
//!
//! An unknown symbol, file or extension is an `error_response` (NOT_FOUND) on the stream, which stays open for the
//! next request (tonic-reflection 0.14 ended the whole stream instead), and the google.rpc error details courier
//! sends are described too, so generic clients can decode them.

use courier_tests::bearer::AuthChannel;
use courier_tests::process::CourierProcess;
use tokio_stream::StreamExt;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::ServerReflectionRequest;

const BIN: &str = env!("CARGO_BIN_EXE_courier");

/// The services reflection lists, or the status of the call.
async fn list_services(channel: AuthChannel) -> Result<Vec<String>, tonic::Status> {
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client.server_reflection_info(tokio_stream::iter([request])).await?.into_inner();
    match responses.next().await.expect("one answer")?.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => Ok(list.service.into_iter().map(|s| s.name).collect()),
        other => panic!("unexpected reflection answer {other:?}"),
    }
}

fn start(command: &[&str], dir: &tempfile::TempDir, env: &[(&str, &str)]) -> CourierProcess {
    let data = dir.path().to_str().unwrap();
    let args = [command, &["--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", data]].concat();
    CourierProcess::start_with_env(BIN, &args, env)
}

#[tokio::test]
async fn up_serves_reflection_by_default_and_a_config_file_turns_it_off() {
    let dir = tempfile::tempdir().unwrap();
    let up = start(&["up"], &dir, &[]);
    let services = list_services(up.channel.clone()).await.expect("reflection on `up`");
    assert!(services.iter().any(|s| s == "courier.payments.v1.PaymentService"), "{services:?}");
    drop(up);

    let config = dir.path().join("courier.toml");
    std::fs::write(&config, "[server]\nreflection = false\n").unwrap();
    let up = start(&["up", "--config", config.to_str().unwrap()], &dir, &[]);
    let status = list_services(up.channel.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
}

#[tokio::test]
async fn serve_has_no_reflection_by_default_and_the_environment_turns_it_on() {
    let dir = tempfile::tempdir().unwrap();
    let users = start(&["serve", "users"], &dir, &[]);
    let status = list_services(users.channel.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    drop(users);

    let users = start(&["serve", "users"], &dir, &[("COURIER_SERVER__REFLECTION", "true")]);
    let services = list_services(users.channel.clone()).await.expect("reflection asked for");
    assert!(services.iter().any(|s| s == "courier.users.v1.UserService"), "{services:?}");
}

/// One reflection stream (v1 or v1alpha: the generated types have the same shape), asked one request at a time.
macro_rules! reflection_stream {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        use tonic_reflection::pb::$version::{ExtensionRequest, ServerReflectionRequest};

        let (requests, rx) = tokio::sync::mpsc::channel::<ServerReflectionRequest>(1);
        let mut client = ServerReflectionClient::new($channel);
        let mut responses = client
            .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("reflection stream")
            .into_inner();
        // Sends one request and reads its answer on the same stream.
        let mut ask = async move |request: MessageRequest| -> Answer {
            let request = ServerReflectionRequest { host: String::new(), message_request: Some(request) };
            requests.send(request).await.expect("the stream takes another request");
            let answer = responses.next().await.expect("an answer, not the end of the stream");
            match answer.expect("an answer, not an error status").message_response.expect("a message_response") {
                MessageResponse::ErrorResponse(error) => Answer::Error(error.error_code, error.error_message),
                MessageResponse::ListServicesResponse(list) => {
                    Answer::Services(list.service.into_iter().map(|s| s.name).collect())
                }
                MessageResponse::FileDescriptorResponse(files) => Answer::Files(
                    files
                        .file_descriptor_proto
                        .iter()
                        .map(|bytes| {
                            let file = <prost_types::FileDescriptorProto as prost::Message>::decode(&bytes[..])
                                .expect("a FileDescriptorProto");
                            file.name.unwrap_or_default()
                        })
                        .collect(),
                ),
                MessageResponse::AllExtensionNumbersResponse(numbers) => Answer::Numbers(numbers.extension_number),
            }
        };

        let not_found = tonic::Code::NotFound as i32;
        for request in [
            MessageRequest::FileContainingSymbol("no.such.Symbol".into()),
            MessageRequest::FileByFilename("nope.proto".into()),
            MessageRequest::FileContainingExtension(ExtensionRequest {
                containing_type: "google.rpc.BadRequest".into(),
                extension_number: 1000,
            }),
            MessageRequest::AllExtensionNumbersOfType("no.such.Message".into()),
        ] {
            match ask(request.clone()).await {
                Answer::Error(code, message) => {
                    assert_eq!(code, not_found, "{request:?}: {message}");
                    assert!(!message.is_empty(), "{request:?}");
                }
                other => panic!("{request:?} answered {other:?}"),
            }
        }

        // The same stream answers what follows.
        let Answer::Services(services) = ask(MessageRequest::ListServices(String::new())).await else {
            panic!("no service list")
        };
        for expected in ["courier.users.v1.UserService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"]
        {
            assert!(services.iter().any(|s| s == expected), "{expected} missing from {services:?}");
        }
        let Answer::Files(files) = ask(MessageRequest::FileContainingSymbol("google.rpc.BadRequest".into())).await
        else {
            panic!("no file for google.rpc.BadRequest")
        };
        assert_eq!(files.first().map(String::as_str), Some("google/rpc/error_details.proto"), "{files:?}");
        // A nested message, a field and a method are symbols too.
        for symbol in [
            "google.rpc.BadRequest.FieldViolation",
            "google.rpc.ResourceInfo.resource_name",
            "courier.users.v1.UserService.CreateUser",
        ] {
            let answer = ask(MessageRequest::FileContainingSymbol(symbol.into())).await;
            assert!(matches!(&answer, Answer::Files(files) if !files.is_empty()), "{symbol}: {answer:?}");
        }
        for file in ["google/rpc/error_details.proto", "google/rpc/status.proto", "google/protobuf/duration.proto"] {
            let Answer::Files(files) = ask(MessageRequest::FileByFilename(file.into())).await else {
                panic!("no answer for {file}")
            };
            assert_eq!(files.first().map(String::as_str), Some(file), "{files:?}");
        }
        // A known message without extensions has none (grpcurl asks this of every message type).
        let answer = ask(MessageRequest::AllExtensionNumbersOfType("google.rpc.BadRequest".into())).await;
        assert!(matches!(&answer, Answer::Numbers(numbers) if numbers.is_empty()), "{answer:?}");
    }};
}

#[derive(Debug)]
enum Answer {
    Error(i32, String),
    Services(Vec<String>),
    Files(Vec<String>),
    Numbers(Vec<i32>),
}

#[tokio::test]
async fn unknown_names_are_error_responses_on_a_stream_that_stays_open_and_error_details_are_described() {
    let dir = tempfile::tempdir().unwrap();
    let up = start(&["up"], &dir, &[]);
    reflection_stream!(v1, up.channel.clone());
    reflection_stream!(v1alpha, up.channel.clone());
}
