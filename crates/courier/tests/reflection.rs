//! Reflection's default per command: on for `courier up` (people explore it with grpcurl), off for
//! `courier serve` (a production service describes its API only when asked to), and either way the configuration
//! file or the environment can turn it the other way. Where it is off the service is not registered, so a
//! reflection call answers UNIMPLEMENTED.

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
