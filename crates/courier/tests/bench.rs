//! `courier bench` against a real `courier up`: it sets up its own user and accounts, runs, and reports numbers
//! that say calls were answered (not that they were fast: machines differ, so speed is for the README's runs).

use std::process::Command;

use courier_tests::process::CourierProcess;

const BIN: &str = env!("CARGO_BIN_EXE_courier");

fn bench(server: &CourierProcess, extra: &[&str]) -> serde_json::Value {
    let url = format!("http://{}", server.addr);
    let output = Command::new(BIN)
        .args(["bench", "--server", &url, "--duration", "1s", "--warmup", "200ms", "--concurrency", "4", "--json"])
        .args(extra)
        .output()
        .expect("run courier bench");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("one JSON report")
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_reports_answered_calls_for_each_scenario_and_mode() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let server =
        CourierProcess::start(BIN, &["up", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", data]);
    for (extra, scenario, mode) in [
        (&["--scenario", "get-user"][..], "get-user", "closed"),
        (&["--scenario", "authorize", "--accounts", "50"][..], "authorize(50 accounts)", "closed"),
        (&["--scenario", "authorize-hot", "--rate", "200"][..], "authorize(hot account)", "open@200/s"),
    ] {
        let report = bench(&server, extra);
        assert_eq!((report["scenario"].as_str(), report["mode"].as_str()), (Some(scenario), Some(mode)), "{report}");
        assert!(report["ok"].as_u64().unwrap() > 0, "{report}");
        assert_eq!(report["errors"], serde_json::json!([]), "{report}");
        let (p50, p99, max) = (report["p50_us"].as_u64(), report["p99_us"].as_u64(), report["max_us"].as_u64());
        assert!(p50 <= p99 && p99 <= max, "{report}");
    }
    let refused = Command::new(BIN).args(["bench", "--rate", "0"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--rate must be more than 0"));
}
