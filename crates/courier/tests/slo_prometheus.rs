//! The SLO alerts of deploy/prometheus against a real Prometheus server scraping a real `courier up`: with a
//! fault injected on Authorize the fast-burn alert fires, and with the fault gone and good traffic flowing it
//! resolves. The rules file is the one deployed, unchanged; only the scrape and evaluation intervals are short.
//!
//! Needs Debian's `prometheus` package (`bash deploy/check.sh tools` installs it), so it is
//! `#[ignore = "needs prometheus"]`: scripts/test.sh runs it with the other outside-service tests, skipping it by
//! name only where no `prometheus` is installed and CI is not "true". Run without the binary it fails loudly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_proto::payments::v1 as pb;
use courier_tests::bearer::AuthChannel;
use courier_tests::http;
use courier_tests::payments::authorize_request;
use courier_tests::process::{funded_account, ledger_check, CourierProcess};

const BIN: &str = env!("CARGO_BIN_EXE_courier");
const AUTHORIZE: &str = "/courier.payments.v1.PaymentService/Authorize";
const FAST_BURN: &str = "CourierAuthorizeAvailabilityFastBurn";
/// How long each phase may take before the test gives up: Prometheus evaluates every second, so a working setup
/// needs a few seconds; the rest is room for a loaded machine.
const PHASE_LIMIT: Duration = Duration::from_secs(120);

/// The `prometheus` binary on PATH, if any.
fn prometheus_binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("prometheus")).find(|candidate| candidate.is_file())
}

/// A Prometheus server of our own; killed on drop.
struct Prometheus {
    child: Child,
    addr: String,
    config: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now. Prometheus has no "print the port you bound" mode, so the port is picked
/// here and handed over; the window in which another process could take it is a few milliseconds.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn config_text(target: &str) -> String {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus/rules/courier-slo.yml");
    let rules = rules.canonicalize().expect("deploy/prometheus/rules/courier-slo.yml exists");
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {rules:?}\n\
         scrape_configs:\n  - job_name: payments\n    static_configs:\n      - targets: [{target:?}]\n"
    )
}

impl Prometheus {
    async fn start(binary: &Path, dir: &Path, target: &str) -> Self {
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_text(target)).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={addr}"))
            // For /-/reload, which points it at the second courier process.
            .arg("--web.enable-lifecycle")
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let prometheus = Self { child, addr, config };
        let started = Instant::now();
        let mut ready = tokio::time::interval(Duration::from_millis(100));
        loop {
            if http::listening(&prometheus.addr).await && http::get(&prometheus.addr, "/-/ready").await.0 == 200 {
                return prometheus;
            }
            assert!(started.elapsed() < PHASE_LIMIT, "prometheus not ready at {}", prometheus.addr);
            ready.tick().await;
        }
    }

    /// Scrapes `target` from now on (the old one's samples stay in the windows, as after a real redeploy).
    async fn retarget(&self, target: &str) {
        std::fs::write(&self.config, config_text(target)).unwrap();
        let (status, body) = http::request(&self.addr, "POST", "/-/reload").await;
        assert_eq!(status, 200, "reload: {body}");
    }

    /// The state of `alert` (`pending`, `firing`), or `None` when it is not active.
    async fn alert_state(&self, alert: &str) -> Option<String> {
        let (status, body) = http::get(&self.addr, "/api/v1/alerts").await;
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("the alerts API answers JSON");
        answer["data"]["alerts"]
            .as_array()
            .expect("an alerts array")
            .iter()
            .find(|a| a["labels"]["alertname"] == alert)
            .map(|a| a["state"].as_str().expect("a state").to_owned())
    }

    /// The value of an instant query that returns one sample.
    async fn query(&self, expr: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", percent_encode(expr));
        let (status, body) = http::get(&self.addr, &path).await;
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        answer["data"]["result"].get(0).and_then(|sample| sample["value"][1].as_str()?.parse().ok())
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Authorize calls counted by outcome.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

async fn authorize_once(channel: &AuthChannel, account: &str, tally: &Tally) {
    let mut client = pb::payment_service_client::PaymentServiceClient::new(channel.clone());
    // Approved or declined (the velocity rules decline most of them): both are answers.
    match client.authorize(authorize_request(account, 1)).await {
        Ok(_) => tally.ok.fetch_add(1, Ordering::Relaxed),
        Err(status) => {
            eprintln!("Authorize failed: {:?} {}", status.code(), status.message());
            tally.failed.fetch_add(1, Ordering::Relaxed)
        }
    };
}

fn up(data_dir: &Path, config: Option<&Path>) -> CourierProcess {
    let data_dir = data_dir.to_str().unwrap();
    let mut args = vec!["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", data_dir];
    if let Some(config) = config {
        args.extend(["--config", config.to_str().unwrap()]);
    }
    CourierProcess::start(BIN, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs prometheus"]
async fn prometheus_fast_burn_alert_fires_under_injected_faults_and_resolves_without_them() {
    let binary = prometheus_binary().expect("no prometheus on PATH: `bash deploy/check.sh tools` installs it");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    // One Authorize in five answers UNAVAILABLE: 20% bad, far above the 1.44% that burns the 99.9% budget at 14.4x.
    let faults = dir.path().join("faults.toml");
    std::fs::write(
        &faults,
        format!("[server.faults.{AUTHORIZE:?}]\nerror = \"UNAVAILABLE\"\nerror_probability = 0.2\n"),
    )
    .unwrap();

    let faulty = up(&data, Some(&faults));
    let account = funded_account(&faulty, &faulty, 1_000_000_000).await;
    let prometheus = Prometheus::start(&binary, dir.path(), faulty.admin.as_deref().expect("an admin port")).await;
    assert_eq!(prometheus.alert_state(FAST_BURN).await, None, "no traffic yet, no alert");

    // A steady 20 calls a second, so the bad calls stay few and the good traffic after them can outweigh them.
    let tally = Tally::default();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let started = Instant::now();
    for call in 1.. {
        tick.tick().await;
        authorize_once(&faulty.channel, &account, &tally).await;
        // Asked twice a second: Prometheus evaluates once a second.
        if call % 10 == 0 && prometheus.alert_state(FAST_BURN).await.as_deref() == Some("firing") {
            break;
        }
        assert!(
            started.elapsed() < PHASE_LIMIT,
            "{FAST_BURN} did not fire; {} calls failed",
            tally.failed.load(Ordering::Relaxed)
        );
    }
    let failed = tally.failed.load(Ordering::Relaxed);
    let ratio = prometheus.query("courier:authorize_error_ratio:rate5m").await.expect("an error ratio");
    eprintln!(
        "fired after {:?}: {failed} of {} calls failed, 5m error ratio {ratio:.3}",
        started.elapsed(),
        failed + tally.ok.load(Ordering::Relaxed)
    );
    assert!(failed > 0);

    // The fault fixed: the same store, served without the fault, scraped in place of the faulty process.
    drop(faulty);
    let fixed = up(&data, None);
    prometheus.retarget(fixed.admin.as_deref().unwrap()).await;

    // Good traffic at full speed until the alert resolves; not one call may fail now.
    let good = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let drivers: Vec<_> = (0..4)
        .map(|_| {
            let (channel, account, good, stop) = (fixed.channel.clone(), account.clone(), good.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    authorize_once(&channel, &account, &good).await;
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut poll = tokio::time::interval(Duration::from_millis(250));
    while prometheus.alert_state(FAST_BURN).await.is_some() {
        assert!(
            started.elapsed() < PHASE_LIMIT,
            "{FAST_BURN} still active after {} good calls",
            good.ok.load(Ordering::Relaxed)
        );
        poll.tick().await;
    }
    stop.store(true, Ordering::Relaxed);
    for driver in drivers {
        driver.await.unwrap();
    }
    let ratio = prometheus.query("courier:authorize_error_ratio:rate5m").await.expect("an error ratio");
    eprintln!(
        "resolved after {:?} and {} good calls, 5m error ratio {ratio:.4}",
        started.elapsed(),
        good.ok.load(Ordering::Relaxed)
    );
    assert_eq!(good.failed.load(Ordering::Relaxed), 0, "calls failed without a fault");
    assert!(ratio < 14.4 * 0.001, "resolved with the 5m ratio at {ratio}");

    drop(fixed);
    ledger_check(BIN, &["--data-dir", data.to_str().unwrap()]);
}
