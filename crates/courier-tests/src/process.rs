//! A real `courier` process (the binary under test is passed in: only the binary's own crate knows its path).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use courier_proto::payments::v1::payment_service_client::PaymentServiceClient;
use courier_proto::users::v1::user_service_client::UserServiceClient;
use tonic::transport::Channel;

use crate::bearer::{AuthChannel, Bearer};
use crate::logs::LogLines;

/// A running `courier` server process; killed (SIGKILL) on drop.
pub struct CourierProcess {
    child: Child,
    pub addr: String,
    /// The admin port (`/metrics`, `/healthz`, `/readyz`), when the process serves one.
    pub admin: Option<String>,
    /// Carries the development token `courier up` wrote to its `--data-dir`, when there is one.
    pub channel: AuthChannel,
    /// Its data dir (`--data-dir`, else the default).
    pub data_dir: std::path::PathBuf,
    /// The process's log lines, when started with [`CourierProcess::start_logged`].
    pub logs: Option<LogLines>,
}

impl CourierProcess {
    /// Runs `bin args...` (which must listen on `127.0.0.1:0`) and returns once it printed its address, which it
    /// does after its stores are open and its listener is bound.
    pub fn start(bin: &str, args: &[&str]) -> Self {
        Self::start_with_env(bin, args, &[])
    }

    /// [`CourierProcess::start`] with extra environment variables (e.g. `COURIER_PAYMENTS__...` settings).
    pub fn start_with_env(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(bin);
        command.args(args).envs(env.iter().copied()).args(["--log", "warn"]);
        Self::spawn(&mut command, args, Stdio::inherit())
    }

    /// [`CourierProcess::start_with_env`] logging at `log` (a filter, e.g. `info`) into [`CourierProcess::logs`]
    /// instead of the test's stderr.
    pub fn start_logged(bin: &str, args: &[&str], env: &[(&str, &str)], log: &str) -> Self {
        let mut command = Command::new(bin);
        command.args(args).envs(env.iter().copied()).args(["--log", log]);
        Self::spawn(&mut command, args, Stdio::piped())
    }

    fn spawn(command: &mut Command, args: &[&str], stderr: Stdio) -> Self {
        let mut child = command.stdout(Stdio::piped()).stderr(stderr).spawn().expect("start courier");
        let logs = child.stderr.take().map(LogLines::capture);
        let stdout = child.stdout.take().expect("stdout");
        // Until the process is ours, a panic must not leave it running (it would hold the test's output open).
        let mut unowned = KillOnDrop(Some(child));
        let mut lines = BufReader::new(stdout).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("courier: listening on ").map(str::to_owned))
            .expect("courier printed its address");
        // The admin line, when there is one, comes right after (the lines are printed together).
        let admin =
            lines.next().and_then(Result::ok).and_then(|l| l.strip_prefix("courier: admin on ").map(str::to_owned));
        // Keep draining stdout so the child never writes into a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        let channel = Channel::from_shared(format!("http://{addr}")).expect("uri").connect_lazy();
        // Written before the address is printed, so it is there now.
        let data_dir = crate::bearer::data_dir_arg(args);
        let bearer = Bearer::from_data_dir(&data_dir);
        let child = unowned.0.take().expect("child");
        Self { child, addr, admin, channel: bearer.channel(channel), data_dir, logs }
    }

    pub fn payments(&self) -> PaymentServiceClient<AuthChannel> {
        PaymentServiceClient::new(self.channel.clone())
    }

    pub fn users(&self) -> UserServiceClient<AuthChannel> {
        UserServiceClient::new(self.channel.clone())
    }

    /// The process id (for `kill -TERM`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM: the process starts its graceful drain (see [`CourierProcess::wait_exit`]).
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill -TERM {}", self.pid());
    }

    /// Waits up to `limit` for the process to exit and returns how it exited, `None` if it is still running.
    pub async fn wait_exit(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if started.elapsed() >= limit {
                return None;
            }
            // Polling the child: std offers no async wait, and a thread per wait is more than this needs.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

/// Kills the child it still holds when dropped.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for CourierProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `bin ledger check` on the store named by `store` (e.g. `--data-dir DIR` or `--database-url URL`) and
/// panics with its output unless every invariant holds.
pub fn ledger_check(bin: &str, store: &[&str]) {
    let output = Command::new(bin).args(["ledger", "check"]).args(store).output().expect("run ledger check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("ledger check: ok"),
        "ledger check failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A new ACTIVE user on `users` and their USD account on `payments`, credited with `funds`; returns the account id.
/// (`courier up` serves both: pass the same process twice.)
pub async fn funded_account(users: &CourierProcess, payments: &CourierProcess, funds: i64) -> String {
    use courier_proto::payments::v1 as pb;
    let email = format!("{}@example.com", crate::payments::key().trim_start_matches("key-"));
    let request = courier_proto::users::v1::CreateUserRequest { name: "Holder".into(), email };
    let user = users.users().create_user(request).await.expect("create user").into_inner().user.expect("user");
    let mut client = payments.payments();
    let open = pb::OpenAccountRequest { owner_user_id: user.id, currency: "USD".into(), credit_limit: 0 };
    let account = client.open_account(open).await.expect("open").into_inner().account.expect("account");
    let credit = pb::CreditAccountRequest {
        account_id: account.id.clone(),
        amount: funds,
        currency: "USD".into(),
        idempotency_key: crate::payments::key(),
    };
    client.credit_account(credit).await.expect("credit");
    account.id
}
