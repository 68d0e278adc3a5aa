//! The transport's safe defaults as a user meets them: `courier dev certs`, a server on mutual TLS configured from
//! what that command prints, the CLI over TLS, and the loopback rule for plaintext.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_courier");

/// A server process; killed on drop.
struct Server {
    child: Child,
    addr: String,
    startup: Vec<String>,
}

impl Server {
    /// Starts `courier <args> --data-dir DIR` and reads stdout up to the `courier: TLS`/`plaintext` line, which
    /// follows the address.
    fn start(args: &[&str], data_dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--log", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut startup = Vec::new();
        for line in lines.by_ref().map_while(Result::ok) {
            let done = line.starts_with("courier: TLS") || line.contains("plaintext");
            startup.push(line);
            if done {
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        let addr = startup
            .iter()
            .find_map(|l| l.strip_prefix("courier: listening on ").map(str::to_owned))
            .unwrap_or_else(|| panic!("the server did not start: {startup:?}"));
        Self { child, addr, startup }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(args: &[&str]) -> Output {
    Command::new(BIN).args(args).args(["--timeout", "5s"]).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn binding_every_address_without_tls_refuses_to_start_and_names_allow_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["serve", "users", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("refusing to serve plaintext on 0.0.0.0:0"), "{message}");
    assert!(message.contains("--allow-insecure") && message.contains("[tls] cert"), "{message}");
    // Refused before anything was opened: no store was created.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "the store was opened before the refusal");
}

#[test]
fn with_allow_insecure_it_serves_plaintext_on_every_address_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        Server::start(&["serve", "users", "--listen", "0.0.0.0:0", "--allow-insecure", "--no-auth"], dir.path());
    assert!(server.startup.iter().any(|l| l.contains("WARNING: plaintext")), "{:?}", server.startup);
    let port = server.addr.rsplit(':').next().unwrap();
    let listed = cli(&["users", "list", "--server", &format!("http://127.0.0.1:{port}")]);
    assert!(listed.status.success(), "{}", stderr(&listed));
}

#[test]
fn dev_certs_output_configures_mtls_end_to_end() {
    let certs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let out = certs.path().join("certs");
    let made = Command::new(BIN).args(["dev", "certs", "--out"]).arg(&out).output().unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let printed = String::from_utf8(made.stdout).unwrap();

    // The `[tls]` block exactly as printed is the configuration.
    let block: String =
        printed.lines().skip_while(|l| *l != "[tls]").take_while(|l| !l.is_empty()).map(|l| format!("{l}\n")).collect();
    assert!(block.contains("client_ca") && block.contains("client_key"), "{printed}");
    let config = certs.path().join("courier.toml");
    std::fs::write(&config, &block).unwrap();

    let again = Command::new(BIN).args(["dev", "certs", "--out"]).arg(&out).output().unwrap();
    assert!(!again.status.success() && stderr(&again).contains("--force"), "{}", stderr(&again));

    // `up` calls itself (payments -> users) over the same mTLS, with the client certificate.
    let config_arg = config.to_str().unwrap();
    let server = Server::start(
        &["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--config", config_arg],
        data.path(),
    );
    assert!(server.startup.iter().any(|l| l.contains("TLS on, client certificates required")), "{:?}", server.startup);

    let url = format!("https://{}", server.addr);
    let file = |name: &str| out.join(name).to_str().unwrap().to_owned();
    let (ca, cert, key) = (file("ca.pem"), file("client.pem"), file("client.key"));
    let data_dir = data.path().to_str().unwrap();
    let tls = [
        ["--server", url.as_str(), "--ca", ca.as_str()].as_slice(),
        &["--cert", cert.as_str(), "--key", key.as_str(), "--data-dir", data_dir],
    ]
    .concat();

    let created =
        cli(&[&["users", "create", "--name", "Ada", "--email", "ada@example.com", "--json"][..], &tls[..]].concat());
    assert!(created.status.success(), "{}", stderr(&created));
    let user: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    let owner = user["id"].as_str().unwrap();
    let opened = cli(&[&["accounts", "open", "--owner", owner, "--currency", "USD", "--json"][..], &tls[..]].concat());
    assert!(opened.status.success(), "payments could not ask users over mTLS: {}", stderr(&opened));

    let without_cert = cli(&["users", "list", "--server", &url, "--ca", &ca]);
    assert!(!without_cert.status.success(), "mTLS answered the CLI without a client certificate");
    let plaintext = cli(&["users", "list", "--server", &format!("http://{}", server.addr)]);
    assert!(!plaintext.status.success(), "a TLS port answered plaintext");
    let no_ca = cli(&["users", "list", "--server", &url]);
    assert!(!no_ca.status.success() && stderr(&no_ca).contains("--ca"), "{}", stderr(&no_ca));
}
