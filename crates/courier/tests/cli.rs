//! The `courier` binary as a user runs it: a server process, the CLI against it, signals, and configuration
//! errors reported before anything starts.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_courier");

/// A `courier serve users` (or `courier up`) process on port 0 with its own data dir; killed if the test fails.
struct ServerProcess {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl ServerProcess {
    fn start(extra_args: &[&str]) -> Self {
        Self::start_logging_to(extra_args, Stdio::null())
    }

    fn start_logging_to(extra_args: &[&str], stderr: Stdio) -> Self {
        Self::launch(&["serve", "users"], extra_args, stderr)
    }

    /// `courier up`: every service, payments included, in one process.
    fn up() -> Self {
        // Its admin port defaults to 9090: a free one, so tests in parallel do not collide.
        Self::launch(&["up"], &["--admin-listen", "127.0.0.1:0"], Stdio::null())
    }

    fn launch(command: &[&str], extra_args: &[&str], stderr: Stdio) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(command)
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let addr = listening_addr(&mut child).expect("server exited before listening");
        Self { child, url: format!("http://{addr}"), dir }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    fn cli(&self, args: &[&str]) -> Output {
        // `--data-dir`: where `courier up`'s development token is (a `serve users` has none and needs none).
        Command::new(BIN).args(args).args(["--server", &self.url, "--data-dir"]).arg(self.data_dir()).output().unwrap()
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        self.child.wait().unwrap()
    }
}

/// Reads the child's stdout up to `courier: listening on ADDR` (printed once it is bound and its store is open),
/// then keeps draining it on a thread so the child never writes into a full or closed pipe.
fn listening_addr(child: &mut Child) -> Option<String> {
    let mut lines = BufReader::new(child.stdout.take()?).lines();
    let addr =
        lines.by_ref().map_while(Result::ok).find_map(|l| l.strip_prefix("courier: listening on ").map(str::to_owned));
    std::thread::spawn(move || lines.for_each(drop));
    addr
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `--json` listings: one object per line.
fn json_lines(output: &Output) -> Vec<serde_json::Value> {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    text.lines().map(|line| serde_json::from_str(line).expect("every line is one JSON object")).collect()
}

#[test]
fn the_cli_creates_gets_lists_and_updates_users_then_sigterm_exits_zero() {
    let server = ServerProcess::start(&[]);
    let created = json(&server.cli(&["users", "create", "--name", "Ada", "--email", "ada@example.com", "--json"]));
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["status"], "ACTIVE");

    let fetched = json(&server.cli(&["users", "get", &id, "--json"]));
    assert_eq!(fetched["email"], "ada@example.com");

    let updated = json(&server.cli(&["users", "set-status", &id, "suspended", "--json"]));
    assert_eq!(updated["status"], "SUSPENDED");

    let table = server.cli(&["users", "list"]);
    assert!(table.status.success());
    let text = String::from_utf8(table.stdout).unwrap();
    assert!(text.starts_with("ID ") && text.contains(&id) && text.contains("SUSPENDED"), "{text}");

    assert!(server.terminate().success(), "SIGTERM must end in a clean exit 0");
}

#[test]
fn cli_errors_exit_non_zero_with_the_code_and_fields_on_stderr() {
    let server = ServerProcess::start(&[]);
    let missing = server.cli(&["users", "get", "usr_0190f5a0c2b87cc3a1b2c3d4e5f60718"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NOT_FOUND"));

    let invalid = server.cli(&["users", "create", "--name", "", "--email", "nope"]);
    assert!(!invalid.status.success());
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(stderr.contains("INVALID_ARGUMENT") && stderr.contains("name:") && stderr.contains("email:"), "{stderr}");
    assert!(invalid.stdout.is_empty());

    server.cli(&["users", "create", "--name", "A", "--email", "a@b.co"]);
    let duplicate = server.cli(&["users", "create", "--name", "B", "--email", "A@B.CO"]);
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("ALREADY_EXISTS"));
    drop(server);

    let unreachable = Command::new(BIN).args(["users", "list", "--server", "http://127.0.0.1:1"]).output().unwrap();
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("UNAVAILABLE"));
}

#[test]
fn json_logs_have_one_line_per_rpc_with_method_code_and_latency() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = ServerProcess::start_logging_to(&["--log-format", "json"], Stdio::from(log));
    server.cli(&["users", "get", "usr_0190f5a0c2b87cc3a1b2c3d4e5f60718"]);
    assert!(server.terminate().success());

    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> =
        text.lines().map(|line| serde_json::from_str(line).expect("every log line is JSON")).collect();
    let rpc = lines
        .iter()
        .find(|l| l["method"] == "/courier.users.v1.UserService/GetUser")
        .unwrap_or_else(|| panic!("no access log line for GetUser in {text}"));
    assert_eq!(rpc["code"], "NOT_FOUND");
    assert!(rpc["latency_us"].is_u64(), "{rpc}");
}

fn serve_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["serve", "users", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("listening"), "nothing may start on a bad configuration: {stdout}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_bad_environment_value_names_the_variable_before_anything_starts() {
    let stderr = serve_fails(&["--listen", "127.0.0.1:0"], &[("COURIER_SERVER__MAX_CONCURRENT_CALLS", "lots")]);
    assert!(stderr.contains("`server.max_concurrent_calls`"), "{stderr}");
    assert!(stderr.contains("COURIER_SERVER__MAX_CONCURRENT_CALLS"), "{stderr}");
}

#[test]
fn a_bad_config_file_key_is_reported_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("courier.toml");
    std::fs::write(&file, "[server]\nmax_concurent_calls = 5\n").unwrap();
    let stderr = serve_fails(&["--listen", "127.0.0.1:0", "--config", file.to_str().unwrap()], &[]);
    assert!(stderr.contains("max_concurent_calls") && stderr.contains("courier.toml"), "{stderr}");
}

#[test]
fn flags_override_the_environment_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("courier.toml");
    std::fs::write(&file, "listen = \"not an address\"\n").unwrap();
    // Both the file and the environment hold bad listen values; the flag wins, so the server starts.
    let file_arg = file.to_str().unwrap().to_owned();
    let server = {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "users", "--config", &file_arg, "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("COURIER_LISTEN", "also bad")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = listening_addr(&mut child);
        let _ = child.kill();
        let _ = child.wait();
        addr
    };
    assert!(server.is_some_and(|addr| addr.starts_with("127.0.0.1:")), "the flag's address was not used");
    // Without the flag, the environment's bad value is reported.
    let stderr = serve_fails(&[], &[("COURIER_LISTEN", "also bad")]);
    assert!(stderr.contains("`listen`") && stderr.contains("COURIER_LISTEN"), "{stderr}");
}

#[test]
fn the_cli_walks_a_payment_from_account_to_capture_and_the_ledger_checks_out() {
    let server = ServerProcess::up();
    let user = json(&server.cli(&["users", "create", "--name", "Ada", "--email", "ada@example.com", "--json"]));
    let user_id = user["id"].as_str().unwrap();

    let opened = json(&server.cli(&["accounts", "open", "--owner", user_id, "--currency", "USD", "--json"]));
    assert_eq!((opened["status"].as_str(), opened["available_amount"].as_i64()), (Some("ACTIVE"), Some(0)));
    let account_id = opened["id"].as_str().unwrap().to_owned();

    let credit = ["accounts", "credit", &account_id, "--amount", "10000", "--currency", "USD", "--json"];
    let credited = json(&server.cli(&credit));
    assert_eq!(credited["posted_balance"], 10000);
    assert_eq!(credited["event_sequence"], 2);
    assert!(credited["idempotency_key"].as_str().unwrap().starts_with("cli-"), "a generated key is printed");

    let authorize = |amount: &str| {
        let args = ["authorize", "--account", &account_id, "--merchant", "coffee_shop", "--amount", amount];
        server.cli(&[&args[..], &["--currency", "USD", "--metadata", "table=4", "--json"]].concat())
    };
    let approved = json(&authorize("2500"));
    assert_eq!(approved["decision"], "APPROVED");
    assert_eq!(approved["response_code"], "00");
    assert_eq!(approved["decline_reason"], serde_json::Value::Null);
    assert_eq!(approved["status"], "HELD");
    assert_eq!((approved["held_amount"].as_i64(), approved["available_after"].as_i64()), (Some(2500), Some(7500)));
    assert_eq!(approved["metadata"]["table"], "4");
    assert!(approved["expires_at"].is_string());
    let auth_id = approved["id"].as_str().unwrap().to_owned();

    // A decline is an answer, not an error: exit status 0 (`json` asserts it).
    let declined = json(&authorize("9000"));
    assert_eq!(declined["decision"], "DECLINED");
    assert_eq!(declined["response_code"], "51");
    assert_eq!(declined["decline_reason"], "INSUFFICIENT_FUNDS");
    assert_eq!((declined["status"].as_str(), declined["held_amount"].as_i64()), (Some("DECLINED"), Some(0)));

    let captured = json(&server.cli(&["capture", &auth_id, "--amount", "1200", "--json"]));
    assert_eq!(captured["status"], "CAPTURED");
    assert_eq!(captured["captured_amount"], 1200);
    // Retrying with the printed key replays the capture instead of posting it twice.
    let key = captured["idempotency_key"].as_str().unwrap();
    let replayed = json(&server.cli(&["capture", &auth_id, "--amount", "1200", "--idempotency-key", key, "--json"]));
    assert_eq!(replayed, captured);

    let void = server.cli(&["void", &auth_id]);
    assert!(!void.status.success(), "voiding a captured authorization must fail");
    let stderr = String::from_utf8_lossy(&void.stderr);
    assert!(stderr.contains("FAILED_PRECONDITION") && stderr.contains("reason: ALREADY_CAPTURED"), "{stderr}");
    assert!(void.stdout.is_empty());

    let shown = json(&server.cli(&["accounts", "show", &account_id, "--json"]));
    let balances = ["posted_balance", "held_amount", "available_amount"].map(|k| shown[k].as_i64().unwrap());
    assert_eq!(balances, [8800, 0, 8800], "10000 credited - 1200 captured; the rest of the hold released");

    let listed = json_lines(&server.cli(&["authorizations", "list", "--account", &account_id, "--json"]));
    let statuses: Vec<&str> = listed.iter().map(|a| a["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["CAPTURED", "DECLINED"], "creation order");
    let fetched = json(&server.cli(&["authorizations", "get", &auth_id, "--json"]));
    assert_eq!(fetched, listed[0]);
    assert_eq!(json_lines(&server.cli(&["authorizations", "list", "--limit", "1", "--json"])).len(), 1);
    let declines = json_lines(&server.cli(&["authorizations", "list", "--status", "declined", "--json"]));
    assert_eq!(declines.len(), 1);

    // The backlog is exactly these five events, so --limit 5 ends the watch (the failed void wrote nothing).
    let events = json_lines(&server.cli(&["events", "watch", "--from", "1", "--limit", "5", "--json"]));
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ACCOUNT_OPENED", "CREDITED", "AUTHORIZED", "DECLINED", "CAPTURED"]);
    let sequences: Vec<i64> = events.iter().map(|e| e["sequence"].as_i64().unwrap()).collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    let amounts: Vec<i64> = events.iter().map(|e| e["amount"].as_i64().unwrap()).collect();
    assert_eq!(amounts, [0, 10000, 2500, 9000, 1200]);
    assert_eq!(events[2]["authorization_id"], auth_id.as_str());
    assert_eq!((events[2]["response_code"].as_str(), events[3]["response_code"].as_str()), (Some("00"), Some("51")));

    let check = Command::new(BIN).args(["ledger", "check", "--data-dir"]).arg(server.data_dir()).output().unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "stdout: {stdout} stderr: {}", String::from_utf8_lossy(&check.stderr));
    assert!(stdout.starts_with("ledger check: ok") && stdout.contains("5 events"), "{stdout}");
}

#[test]
fn payment_cli_errors_exit_non_zero_with_the_code_and_every_bad_field() {
    let server = ServerProcess::up();
    let account = "acct_0190f5a0c2b87cc3a1b2c3d4e5f60718";
    let args = ["authorize", "--account", account, "--merchant", "m1", "--amount", "0", "--currency", "usd"];
    let invalid = server.cli(&args);
    assert!(!invalid.status.success());
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert!(stderr.contains("INVALID_ARGUMENT"), "{stderr}");
    assert!(stderr.contains("\n  amount: ") && stderr.contains("\n  currency: "), "one line per bad field: {stderr}");
    assert!(invalid.stdout.is_empty());

    // A streaming call's refusal is reported the same way.
    let watch = server.cli(&["events", "watch", "--account", "acct_nope", "--json"]);
    assert!(!watch.status.success());
    let stderr = String::from_utf8_lossy(&watch.stderr);
    assert!(stderr.contains("INVALID_ARGUMENT") && stderr.contains("\n  account_id: "), "{stderr}");

    let missing = server.cli(&["accounts", "show", account]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NOT_FOUND"));
}
