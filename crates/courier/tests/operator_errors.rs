//! Mistakes operators and CLI users make, and what courier answers: each error says what to do, and nothing a
//! failed or read-only command touches is changed on disk.

use std::process::{Command, Output};

use courier_tests::process::CourierProcess;

const BIN: &str = env!("CARGO_BIN_EXE_courier");

fn courier(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run courier")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `courier up` on port 0 in `dir`, with its own free admin port.
fn up(dir: &std::path::Path) -> CourierProcess {
    let dir = dir.to_str().unwrap();
    CourierProcess::start(BIN, &["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", dir])
}

#[test]
fn ledger_check_of_a_missing_store_fails_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("courier-dta");
    let output = courier(&["ledger", "check", "--data-dir", typo.to_str().unwrap()]);
    assert!(!output.status.success(), "a missing store passed: {output:?}");
    assert!(stderr(&output).contains("no payments store at"), "{}", stderr(&output));
    assert!(!typo.exists(), "ledger check created {}", typo.display());

    // A SQLite file that is not a courier store: named as such, not "ok (0 accounts)".
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let status = Command::new("python3")
        .args(["-c", "import sqlite3,sys; sqlite3.connect(sys.argv[1]).execute('create table t(x)')"])
        .arg(other.join("courier.db"))
        .status()
        .unwrap();
    assert!(status.success());
    let output = courier(&["ledger", "check", "--data-dir", other.to_str().unwrap()]);
    assert!(!output.status.success() && stderr(&output).contains("has no ledger"), "{output:?}");
}

#[test]
fn a_misspelled_variable_is_named_with_the_key_it_meant() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["ledger", "check", "--data-dir"])
        .arg(dir.path())
        .env("COURIER_SERVER_REFLECTION", "true")
        .output()
        .unwrap();
    let text = stderr(&output);
    assert!(
        text.contains("COURIER_SERVER_REFLECTION is not a configuration key")
            && text.contains("did you mean COURIER_SERVER__REFLECTION?"),
        "{text}"
    );
}

#[test]
fn a_server_url_without_scheme_is_a_usage_error() {
    let output = courier(&["users", "get", "usr_x", "--server", "127.0.0.1:50051"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let text = stderr(&output);
    assert!(text.contains("http://127.0.0.1:50051"), "{text}");
    assert_eq!(text.matches("has no scheme").count(), 1, "{text}");
}

#[test]
fn a_decimal_amount_is_answered_with_minor_units() {
    let output =
        courier(&["authorize", "--account", "acct_x", "--merchant", "m", "--currency", "USD", "--amount", "25.00"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(stderr(&output).contains("25.00 USD is 2500"), "{}", stderr(&output));
}

#[test]
fn connection_refused_suggests_starting_a_server() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let output = courier(&["users", "get", "usr_x", "--server", &url, "--timeout", "2s"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains(&url) && text.contains("courier up") && text.contains("--server"), "{text}");
}

#[tokio::test]
async fn unauthenticated_says_where_the_token_was_looked_for() {
    let dir = tempfile::tempdir().unwrap();
    let server = up(dir.path());
    let url = format!("http://{}", server.addr);
    let elsewhere = tempfile::tempdir().unwrap();
    // No token anywhere: the CLI looked in the flag, the variable and a data dir without one.
    let output = Command::new(BIN)
        .args(["users", "get", "usr_x", "--server", &url, "--data-dir"])
        .arg(elsewhere.path())
        .env_remove("COURIER_TOKEN")
        .output()
        .unwrap();
    let text = stderr(&output);
    assert!(text.contains("UNAUTHENTICATED") && text.contains("--token") && text.contains("COURIER_TOKEN"), "{text}");
    assert!(text.contains(&elsewhere.path().join("token").display().to_string()), "{text}");
    // A bad token given explicitly: says that one was refused.
    let output = courier(&["users", "get", "usr_x", "--server", &url, "--token", "not.a.jwt"]);
    assert!(stderr(&output).contains("the token given with --token"), "{}", stderr(&output));
}

#[tokio::test]
async fn an_up_that_cannot_bind_changes_nothing_in_the_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let running = up(dir.path());
    // A marker, not the token itself: a token signed again within the same second would be byte-identical.
    let token = b"the running server's token".to_vec();
    std::fs::write(dir.path().join("token"), &token).unwrap();

    // The same gRPC address: refused, with the flag to change it, and the running server's token untouched.
    let output = courier(&[
        "up",
        "--listen",
        &running.addr,
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!output.status.success(), "{output:?}");
    assert!(stderr(&output).contains("--listen"), "{}", stderr(&output));
    assert_eq!(std::fs::read(dir.path().join("token")).unwrap(), token, "the token file was rewritten");

    // A busy admin port names --admin-listen; a fresh data dir stays empty.
    let fresh = tempfile::tempdir().unwrap();
    let admin = running.admin.clone().expect("admin port");
    let output = courier(&[
        "up",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        &admin,
        "--data-dir",
        fresh.path().to_str().unwrap(),
    ]);
    assert!(!output.status.success() && stderr(&output).contains("--admin-listen"), "{output:?}");
    assert_eq!(std::fs::read_dir(fresh.path()).unwrap().count(), 0, "files appeared in a data dir of a failed up");
}

/// A SQLite ledger has one writer (its in-memory knowledge of the stored idempotency keys depends on it): a second
/// `up` on the same data dir is refused, saying what to do, and the first one goes on serving.
#[tokio::test]
async fn a_second_up_on_the_same_sqlite_ledger_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let running = up(dir.path());
    let output = courier(&[
        "up",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    let text = stderr(&output);
    assert!(!output.status.success(), "a second writer started: {output:?}");
    assert!(
        text.contains("another courier process is writing") && text.contains("--data-dir"),
        "the refusal does not say what to do: {text}"
    );
    // The first one still writes its ledger.
    courier_tests::process::funded_account(&running, &running, 100).await;
    courier_tests::process::ledger_check(BIN, &["--data-dir", dir.path().to_str().unwrap()]);
}

#[test]
fn an_out_of_range_setting_is_refused_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["serve", "users", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("COURIER_PAYMENTS__HOLDER_STALE_IF_ERROR", "1h")
        .output()
        .unwrap();
    assert!(!output.status.success(), "{output:?}");
    assert!(stderr(&output).contains("`payments.holder_stale_if_error`"), "{}", stderr(&output));
}
