//! The new configuration keys read from a TOML file like every other option.

use std::io::Write;
use std::time::Duration;

use courier_kit::client::UpstreamOptions;
use courier_kit::layers::faults::DropMode;
use courier_kit::server::ServerOptions;
use serde::{Deserialize, Serialize};
use tonic::Code;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Config {
    server: ServerOptions,
    upstream: UpstreamOptions,
}

#[derive(Serialize)]
struct NoFlags {}

const TOML: &str = r#"
[server.deadlines]
default = "5s"
minimum = "2ms"
[server.deadlines.methods]
"/courier.payments.v1.PaymentService/Authorize" = "250ms"
"/courier.payments.v1.PaymentService/WatchEvents" = "0s"

[server.overload]
retry_pushback = "50ms"
saturation = 0.9
[server.overload.expected_service_times]
"/courier.payments.v1.PaymentService/Authorize" = "20ms"

[server.faults."/courier.users.v1.UserService/GetUser"]
delay = "30ms"
error = "UNAVAILABLE"
error_probability = 0.1
drop = "reset"
drop_probability = 0.01

[upstream]
urls = ["http://127.0.0.1:50051"]
reserve = "10ms"
max_timeout = "300ms"
[upstream.retry]
max_attempts = 4
retryable_status_codes = ["UNAVAILABLE", "resource_exhausted"]
[upstream.methods."/courier.users.v1.UserService/GetUser"]
idempotent = true
max_timeout = "100ms"
[upstream.breaker]
k = 1.5
"#;

#[test]
fn server_and_upstream_options_load_from_toml() {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(TOML.as_bytes()).unwrap();
    let config: Config = courier_kit::config::load(Some(file.path()), &NoFlags {}).unwrap();

    let deadlines = &config.server.deadlines;
    assert_eq!(
        deadlines.default_for("/courier.payments.v1.PaymentService/Authorize"),
        Some(Duration::from_millis(250))
    );
    assert_eq!(deadlines.default_for("/courier.payments.v1.PaymentService/WatchEvents"), None);
    assert_eq!(deadlines.default_for("/other"), Some(Duration::from_secs(5)));
    assert_eq!(deadlines.minimum, Duration::from_millis(2));
    assert_eq!(config.server.overload.retry_pushback, Some(Duration::from_millis(50)));
    let fault = &config.server.faults["/courier.users.v1.UserService/GetUser"];
    assert_eq!(
        (fault.error, fault.drop, fault.delay),
        (Some(Code::Unavailable), DropMode::Reset, Duration::from_millis(30))
    );

    let upstream = &config.upstream;
    assert_eq!(upstream.retry.retryable_status_codes, [Code::Unavailable, Code::ResourceExhausted]);
    assert_eq!(upstream.retry.max_attempts, 4);
    assert!(upstream.methods["/courier.users.v1.UserService/GetUser"].idempotent);
    assert_eq!(upstream.breaker.k, 1.5);
    assert!(upstream.throttle.enabled, "defaults fill what the file leaves out");
}

#[test]
fn defaults_survive_a_round_trip_and_a_bad_code_names_its_key() {
    let config: Config = courier_kit::config::load(None, &NoFlags {}).unwrap();
    assert_eq!(config.server, ServerOptions::default());
    assert_eq!(config.upstream, UpstreamOptions::default());

    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    file.write_all(b"[upstream.retry]\nretryable_status_codes = [\"FLAKY\"]\n").unwrap();
    let error = courier_kit::config::load::<Config, _>(Some(file.path()), &NoFlags {}).unwrap_err().to_string();
    assert!(error.contains("upstream.retry.retryable_status_codes") && error.contains("FLAKY"), "{error}");
}
