//! `courier bench` against a real `courier up`: it sets up its own user and accounts, runs, and reports numbers
//! that say calls were answered (not that they were fast: machines differ, so speed is for the runs in
//! docs/benchmarks.md).

use std::process::{Command, Output};

use courier_tests::process::CourierProcess;

const BIN: &str = env!("CARGO_BIN_EXE_courier");

fn run_bench(server: &CourierProcess, extra: &[&str]) -> Output {
    let url = format!("http://{}", server.addr);
    // Short runs unless the test says otherwise (clap refuses a flag given twice).
    let defaults = [("--duration", "1s"), ("--warmup", "200ms"), ("--concurrency", "4")];
    let mut command = Command::new(BIN);
    // `--data-dir`: where `courier up` wrote the development token bench sends.
    command.args(["bench", "--server", &url, "--json", "--data-dir"]).arg(&server.data_dir).args(extra);
    for (flag, value) in defaults.into_iter().filter(|(flag, _)| !extra.contains(flag)) {
        command.args([flag, value]);
    }
    command.output().expect("run courier bench")
}

fn bench(server: &CourierProcess, extra: &[&str]) -> serde_json::Value {
    let output = run_bench(server, extra);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

/// `courier up` for the bench. Its Authorize budget is raised from 250 ms to 10 s: these tests check that every
/// scenario's calls are answered, and a CI machine running other test binaries at once can queue a call past
/// 250 ms, which would turn load into errors that say nothing about the bench.
fn start() -> (tempfile::TempDir, CourierProcess) {
    start_with("")
}

/// [`start`] with more of the config file (`extra`, TOML).
fn start_with(extra: &str) -> (tempfile::TempDir, CourierProcess) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let config = dir.path().join("courier.toml");
    std::fs::write(
        &config,
        format!("[server.deadlines.methods]\n\"/courier.payments.v1.PaymentService/Authorize\" = \"10s\"\n{extra}"),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let args = ["up", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", &data, "--config", &config];
    let server = CourierProcess::start(BIN, &args);
    (dir, server)
}

fn assert_answered(report: &serde_json::Value, scenario: &str, mode: &str) {
    assert_eq!((report["scenario"].as_str(), report["mode"].as_str()), (Some(scenario), Some(mode)), "{report}");
    assert!(report["ok"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let (p50, p99, max) = (report["p50_us"].as_u64(), report["p99_us"].as_u64(), report["max_us"].as_u64());
    assert!(p50 <= p99 && p99 <= max, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_reports_answered_calls_for_each_scenario_and_mode() {
    let (_dir, server) = start();
    for (extra, scenario, mode) in [
        (&["--scenario", "get-user"][..], "get-user", "closed"),
        (&["--scenario", "authorize", "--accounts", "50"][..], "authorize(50 accounts)", "closed"),
        (&["--scenario", "authorize-hot", "--rate", "200"][..], "authorize(hot account)", "open@200/s"),
        (
            &["--scenario", "authorize-stream", "--accounts", "50", "--concurrency", "16"][..],
            "authorize-stream(1 stream, 50 accounts)",
            "closed",
        ),
        (
            &["--scenario", "authorize-stream", "--streams", "2", "--accounts", "50", "--rate", "300"][..],
            "authorize-stream(2 streams, 50 accounts)",
            "open@300/s",
        ),
        (
            &["--scenario", "mixed", "--accounts", "50"][..],
            "mixed(50% authorize, 20% get-authorization, 10% capture, 20% get-user; 50 accounts)",
            "closed",
        ),
    ] {
        assert_answered(&bench(&server, extra), scenario, mode);
    }
    // --token is sent as `authorization: Bearer ...` instead of the data dir's; a wrong one is refused.
    let token = std::fs::read_to_string(server.data_dir.join("token")).unwrap();
    assert_answered(&bench(&server, &["--scenario", "get-user", "--token", token.trim()]), "get-user", "closed");
    let refused = run_bench(&server, &["--scenario", "get-user", "--token", "not-a-jwt"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("malformed bearer token"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_transport_sends_the_same_calls_as_json_over_http1_and_server_cpu_is_read_from_proc() {
    let (_dir, server) = start();
    let pid = server.pid().to_string();
    for (scenario, name) in [("get-user", "get-user"), ("authorize", "authorize(20 accounts)")] {
        let args = ["--scenario", scenario, "--accounts", "20", "--transport", "rest", "--server-pid", &pid];
        let report = bench(&server, &args);
        assert_answered(&report, name, "closed");
        assert_eq!(report["transport"], "rest", "{report}");
        // The server did the work of the measured calls: some CPU time, and a per-call figure that is that time
        // divided by the calls answered.
        let (cpu, per_call) = (report["server_cpu_us"].as_f64().unwrap(), report["server_cpu_per_call_us"].as_f64());
        assert!(cpu > 0.0, "{report}");
        // Within a rounding error: the report's JSON prints both figures to 17 digits, not their exact bits.
        let expected = cpu / report["ok"].as_f64().unwrap();
        assert!(per_call.is_some_and(|per_call| (per_call - expected).abs() <= expected * 1e-9), "{report}");
    }
    let grpc = bench(&server, &["--scenario", "get-user"]);
    assert_eq!(grpc["transport"], "grpc", "{grpc}");
    assert!(grpc.get("server_cpu_us").is_none(), "no --server-pid, no CPU figure: {grpc}");
    // A scenario without a REST form, and a process that is not there, are refused with the reason.
    let refused = run_bench(&server, &["--scenario", "mixed", "--transport", "rest"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("REST serves the authorize scenarios"), "{stderr}");
    let gone = run_bench(&server, &["--scenario", "get-user", "--server-pid", "4294967295"]);
    let stderr = String::from_utf8_lossy(&gone.stderr);
    assert!(!gone.status.success() && stderr.contains("/proc/4294967295/stat"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_scenario_sends_many_messages_on_one_stream_in_flight() {
    let (_dir, server) = start();
    // 1 s of a closed loop with 32 in flight on one stream answers far more than 32 messages: they overlap.
    let report = bench(&server, &["--scenario", "authorize-stream", "--accounts", "50", "--concurrency", "32"]);
    assert!(report["ok"].as_u64().unwrap() > 32, "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_opened_used_once_and_held() {
    let (_dir, server) = start();
    let output = run_bench(&server, &["--scenario", "idle-connections", "--connections", "25", "--duration", "300ms"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("courier bench: holding 25 connections open for 300ms"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!((report["scenario"].as_str(), report["ok"].as_u64()), (Some("idle-connections"), Some(25)));
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plot_writes_an_svg_percentile_curve() {
    let (dir, server) = start();
    let path = dir.path().join("latency.svg");
    bench(&server, &["--scenario", "get-user", "--plot", path.to_str().unwrap()]);
    let svg = std::fs::read_to_string(&path).expect("the plot was written");
    assert!(svg.starts_with("<svg"), "{svg}");
    let document = roxmltree::Document::parse(&svg).expect("well-formed XML");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let labels: Vec<&str> =
        document.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect();
    for tick in ["50%", "90%", "99%", "99.9%", "99.99%"] {
        assert!(labels.contains(&tick), "no {tick} tick in {labels:?}");
    }
    let curve = document.descendants().find(|n| n.has_tag_name("polyline")).expect("a latency curve");
    assert!(curve.attribute("points").unwrap().split(' ').count() > 5, "{svg}");
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    for (args, reason) in [
        (&["bench", "--rate", "0"][..], "--rate must be more than 0"),
        (&["bench", "--scenario", "authorize-stream", "--streams", "0"][..], "--streams must be at least 1"),
        (&["bench", "--token", "bad\ntoken"][..], "the token must be printable ASCII"),
    ] {
        let refused = Command::new(BIN).args(args).output().unwrap();
        assert!(!refused.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
    }
}

#[test]
fn the_baseline_script_parses_and_explains_itself() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/run.sh");
    let syntax = Command::new("bash").args(["-n", script]).output().unwrap();
    assert!(syntax.status.success(), "{}", String::from_utf8_lossy(&syntax.stderr));
    let help = Command::new("bash").args([script, "--help"]).output().unwrap();
    assert!(help.status.success());
    let usage = String::from_utf8_lossy(&help.stdout);
    assert!(usage.contains("--quick") && usage.contains("--duration"), "{usage}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_slo_measures_authorize_availability_and_fails_when_faults_spend_the_budget() {
    let slo_of = |output: &Output| -> serde_json::Value {
        let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
        report["slo"].clone()
    };
    let args = ["--scenario", "authorize", "--accounts", "20", "--slo"];

    let (_dir, healthy) = start();
    let output = run_bench(&healthy, &args);
    let slo = slo_of(&output);
    assert_eq!(slo[0]["slo"], "authorize-availability", "{slo}");
    assert_eq!((slo[0]["met"].as_bool(), slo[0]["measured"].as_f64()), (Some(true), Some(1.0)), "{slo}");
    assert_eq!(slo[1]["slo"], "authorize-latency", "{slo}");
    // Latency depends on the machine: only that it was measured, and that the exit status follows the verdicts.
    assert!(slo[1]["measured"].as_f64().is_some_and(|m| (0.0..=1.0).contains(&m)), "{slo}");
    assert_eq!(output.status.success(), slo[1]["met"].as_bool().unwrap(), "{slo}");

    // One Authorize in ten fails: 90% against 99.9%.
    let faults = "[server.faults.\"/courier.payments.v1.PaymentService/Authorize\"]\nerror = \"UNAVAILABLE\"\nerror_probability = 0.1\n";
    let (_dir, faulty) = start_with(faults);
    let output = run_bench(&faulty, &args);
    let slo = slo_of(&output);
    assert_eq!(slo[0]["met"].as_bool(), Some(false), "{slo}");
    assert!(slo[0]["measured"].as_f64().unwrap() < 0.99, "{slo}");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SLO authorize-availability missed"), "{stderr}");
}
