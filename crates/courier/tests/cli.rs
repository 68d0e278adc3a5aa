//! The `courier` binary as a user runs it: a server process, the CLI against it, signals, and configuration
//! errors reported before anything starts.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_courier");

/// A `courier serve users` process on port 0 with its own data dir; killed if the test fails.
struct ServerProcess {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    fn start(extra_args: &[&str]) -> Self {
        Self::start_logging_to(extra_args, Stdio::null())
    }

    fn start_logging_to(extra_args: &[&str], stderr: Stdio) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "users", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let addr = listening_addr(&mut child).expect("server exited before listening");
        Self { child, url: format!("http://{addr}"), _dir: dir }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN).args(args).args(["--server", &self.url]).output().unwrap()
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
