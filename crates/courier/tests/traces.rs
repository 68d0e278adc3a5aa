//! Distributed tracing across real processes: users, risk and payments each in its own `courier serve`, logging
//! JSON. A client's `traceparent` on Authorize makes one trace of the three services' work, visible in every
//! process's log lines and, with `--otlp-endpoint`, in the spans a collector receives.

use std::collections::HashMap;
use std::time::Duration;

use courier_proto::payments::v1 as pb;
use courier_tests::logs::LogLines;
use courier_tests::payments::authorize_request;
use courier_tests::process::{funded_account, CourierProcess};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use serde_json::Value;
use tokio::sync::mpsc;

const BIN: &str = env!("CARGO_BIN_EXE_courier");
const AUTHORIZE: &str = "/courier.payments.v1.PaymentService/Authorize";
const LOG_WAIT: Duration = Duration::from_secs(10);

/// The client's trace and span, as it sends them.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The three services, each its own process with its own store, logging JSON at `info`.
struct Stack {
    users: CourierProcess,
    risk: CourierProcess,
    payments: CourierProcess,
    _dirs: [tempfile::TempDir; 2],
}

fn stack(extra: &[&str], env: &[(&str, &str)]) -> Stack {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let dir = |i: usize| dirs[i].path().to_str().unwrap().to_owned();
    let start = |args: Vec<&str>| {
        let args: Vec<&str> = args.into_iter().chain(["--log-format", "json"]).chain(extra.iter().copied()).collect();
        CourierProcess::start_logged(BIN, &args, env, "info")
    };
    let users_dir = dir(0);
    let users = start(vec!["serve", "users", "--listen", "127.0.0.1:0", "--data-dir", &users_dir]);
    let risk = start(vec!["serve", "risk", "--listen", "127.0.0.1:0"]);
    let (users_url, risk_url) = (format!("http://{}", users.addr), format!("http://{}", risk.addr));
    let payments_dir = dir(1);
    let payments = start(vec![
        "serve",
        "payments",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &payments_dir,
        "--users-url",
        &users_url,
        "--risk-url",
        &risk_url,
    ]);
    Stack { users, risk, payments, _dirs: dirs }
}

/// An Authorize for a funded account, sent with `traceparent` when given.
async fn authorize_traced(stack: &Stack, traceparent: Option<&str>) -> pb::Authorization {
    let account = funded_account(&stack.users, &stack.payments, 1_000).await;
    let mut request = tonic::Request::new(authorize_request(&account, 10));
    if let Some(value) = traceparent {
        request.metadata_mut().insert("traceparent", value.parse().unwrap());
    }
    stack.payments.payments().authorize(request).await.expect("authorize").into_inner().authorization.unwrap()
}

fn logs(process: &CourierProcess) -> &LogLines {
    process.logs.as_ref().expect("started logged")
}

/// The access log line (`courier::rpc`) of a call to `method` in `trace`.
fn rpc_line(logs: &LogLines, method: &str, trace: &str) -> Value {
    let line = logs.wait_for(LOG_WAIT, &format!("for {method} in trace {trace}"), |line| {
        let Ok(json) = serde_json::from_str::<Value>(line) else { return false };
        json["target"] == "courier::rpc" && json["method"] == method && json["trace_id"] == trace
    });
    serde_json::from_str(&line).unwrap()
}

/// The access log line of the first call to `method`, whatever its trace.
fn any_rpc_line(logs: &LogLines, method: &str) -> Value {
    let line = logs.wait_for(LOG_WAIT, &format!("for {method}"), |line| {
        serde_json::from_str::<Value>(line)
            .is_ok_and(|json| json["target"] == "courier::rpc" && json["method"] == method)
    });
    serde_json::from_str(&line).unwrap()
}

/// The `parent_span_id` field of the line's call span.
fn parent_of(line: &Value) -> &str {
    line["spans"][0]["parent_span_id"].as_str().unwrap_or_else(|| panic!("no parent span in {line}"))
}

fn span_of(line: &Value) -> &str {
    line["span_id"].as_str().unwrap_or_else(|| panic!("no span id in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_trace_id_is_in_the_log_lines_of_all_three_services() {
    let stack = stack(&[], &[("COURIER_PAYMENTS__HOLDER_CACHE_TTL", "0s")]);
    let traceparent = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let authorization = authorize_traced(&stack, Some(&traceparent)).await;
    assert_eq!(authorization.response_code, "00");

    // Payments' span is the client's child; the upstream calls' spans are children of payments' span.
    let authorize = rpc_line(logs(&stack.payments), AUTHORIZE, TRACE_ID);
    assert_eq!(parent_of(&authorize), CLIENT_SPAN);
    let payments_span = span_of(&authorize);
    assert_ne!(payments_span, CLIENT_SPAN);
    let get_user = rpc_line(logs(&stack.users), "/courier.users.v1.UserService/GetUser", TRACE_ID);
    let score = rpc_line(logs(&stack.risk), "/courier.risk.v1.RiskService/Score", TRACE_ID);
    for upstream in [&get_user, &score] {
        assert_eq!(parent_of(upstream), payments_span, "{upstream}");
        assert_ne!(span_of(upstream), payments_span, "{upstream}");
    }
    assert_ne!(span_of(&get_user), span_of(&score));
    eprintln!("the access log lines of the trace:\n{authorize}\n{get_user}\n{score}");

    // Every line payments wrote inside the call carries the trace, not only the access log line.
    let inside: Vec<Value> = logs(&stack.payments)
        .lines()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|json| json["spans"][0]["span_id"] == payments_span)
        .collect();
    assert!(!inside.is_empty() && inside.iter().all(|json| json["trace_id"] == TRACE_ID), "{inside:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_traceparent_is_answered_in_a_new_trace() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path().to_str().unwrap();
    let args = ["serve", "users", "--listen", "127.0.0.1:0", "--data-dir", dir, "--log-format", "json"];
    let users = CourierProcess::start_logged(BIN, &args, &[], "info");
    let bad = [
        "00-abc-def-01",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    ];
    let mut traces = Vec::new();
    for (i, traceparent) in bad.into_iter().enumerate() {
        let create =
            courier_proto::users::v1::CreateUserRequest { name: "Ada".into(), email: format!("ada{i}@example.com") };
        let mut request = tonic::Request::new(create);
        request.metadata_mut().insert("traceparent", traceparent.parse().unwrap());
        let user = users.users().create_user(request).await.expect("answered").into_inner().user.unwrap();
        // The call's lines carry a fresh, valid trace id and no parent.
        let line = logs(&users).wait_for(LOG_WAIT, "for this CreateUser", |line| line.contains(&user.id));
        let line: Value = serde_json::from_str(&line).unwrap();
        let trace = line["trace_id"].as_str().expect("a trace id").to_owned();
        assert!(trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) && trace != "0".repeat(32));
        assert!(!traceparent.to_lowercase().contains(&trace), "{traceparent} {trace}");
        assert_eq!(line["spans"][0].get("parent_span_id"), None, "{line}");
        traces.push(trace);
    }
    traces.dedup();
    assert_eq!(traces.len(), bad.len(), "one new trace per call");
    // A call without a header starts a trace too.
    let mut health = tonic_health::pb::health_client::HealthClient::new(users.channel.clone());
    health.check(tonic_health::pb::HealthCheckRequest::default()).await.unwrap();
    let check = any_rpc_line(logs(&users), "/grpc.health.v1.Health/Check");
    assert_eq!(check["trace_id"].as_str().map(str::len), Some(32));
}

/// An OTLP collector: every span it receives, with the `service.name` of the process that sent it.
#[derive(Clone)]
struct Collector(mpsc::UnboundedSender<(String, opentelemetry_proto::tonic::trace::v1::Span)>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref()?.value.as_ref())
                .map(|value| match value {
                    any_value::Value::StringValue(name) => name.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    let _ = self.0.send((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_all_three_services_reach_an_otlp_collector_as_one_trace() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let (sender, mut received) = mpsc::unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(sender)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    // Batches leave every 100 ms instead of every 5 s.
    let env = [("COURIER_PAYMENTS__HOLDER_CACHE_TTL", "0s"), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let stack = stack(&["--otlp-endpoint", &endpoint], &env);
    let authorization = authorize_traced(&stack, Some(&format!("00-{TRACE_ID}-{CLIENT_SPAN}-01"))).await;
    assert_eq!(authorization.response_code, "00");

    // Wait for the three services' spans of this trace.
    let mut spans = HashMap::new();
    let wanted = ["courier-payments", "courier-users", "courier-risk"];
    let collect = async {
        while !wanted.iter().all(|service| spans.contains_key(*service)) {
            let (service, span) = received.recv().await.expect("collector running");
            if hex(&span.trace_id) == TRACE_ID {
                spans.insert(service, span);
            }
        }
    };
    tokio::time::timeout(LOG_WAIT, collect).await.expect("spans of all three services");

    let payments = &spans["courier-payments"];
    assert_eq!(payments.name, AUTHORIZE.trim_start_matches('/'));
    assert_eq!(hex(&payments.parent_span_id), CLIENT_SPAN);
    assert_eq!(payments.kind, opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32);
    assert_eq!(spans["courier-users"].name, "courier.users.v1.UserService/GetUser");
    assert_eq!(spans["courier-risk"].name, "courier.risk.v1.RiskService/Score");
    for upstream in ["courier-users", "courier-risk"] {
        assert_eq!(spans[upstream].parent_span_id, payments.span_id, "{upstream}'s parent is payments' span");
    }
    // The span covers the call: it ends after its upstream calls.
    assert!(payments.end_time_unix_nano >= spans["courier-users"].end_time_unix_nano);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_succeed_while_the_otlp_collector_is_down() {
    // A port nobody listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let endpoint = format!("http://{closed}");
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "50")];
    let stack = stack(&["--otlp-endpoint", &endpoint, "--admin-listen", "127.0.0.1:0"], &env);
    for _ in 0..3 {
        assert_eq!(authorize_traced(&stack, None).await.response_code, "00");
    }
    // The failed exports are reported in the log (by the SDK), and the process keeps serving.
    logs(&stack.payments).wait_for(LOG_WAIT, "reporting the failed export", |line| {
        line.contains("BatchSpanProcessor.ExportError") && line.contains("Connection refused")
    });
    assert_eq!(authorize_traced(&stack, None).await.response_code, "00");
    // The lost spans are counted (the counter moves before the SDK logs the failure).
    let metrics = scrape(stack.payments.admin.as_deref().expect("admin port")).await;
    let failed = metrics
        .lines()
        .find_map(|line| line.strip_prefix("courier_trace_spans_total{outcome=\"failed\"} "))
        .and_then(|value| value.trim().parse::<f64>().ok());
    assert!(failed.is_some_and(|failed| failed >= 1.0), "{metrics}");
}

/// The admin port's `/metrics` text.
async fn scrape(admin: &str) -> String {
    let (status, body) = courier_tests::http::get(admin, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn an_unusable_otlp_endpoint_stops_the_process_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for endpoint in ["127.0.0.1:4317", "ftp://127.0.0.1:4317", "http://", "not a url"] {
        let output = std::process::Command::new(BIN)
            .args(["serve", "users", "--listen", "127.0.0.1:0", "--data-dir", dir.path().to_str().unwrap()])
            .args(["--otlp-endpoint", endpoint])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{endpoint}: {stderr}");
        assert!(stderr.contains("invalid configuration key `otlp_endpoint`"), "{endpoint}: {stderr}");
        assert!(String::from_utf8_lossy(&output.stdout).is_empty(), "{endpoint}: nothing was served");
    }
}
