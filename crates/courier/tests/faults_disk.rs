//! A full disk under load (issue 11 §1): the SQLite data dir lives on a small tmpfs this test mounts, Authorize
//! load runs until the disk is full, then space is freed (the tmpfs is remounted bigger).
//!
//! Wanted: while full, calls fail cleanly (UNAVAILABLE or RESOURCE_EXHAUSTED, nothing applied); once space exists
//! the same process serves again, without a restart; after a restart every acknowledged APPROVED key replays the
//! same authorization id; `courier ledger check` passes.
//!
//! The same for AuthorizeStream, whose messages are decided in batches.
//!
//! Mounting needs root (CAP_SYS_ADMIN). Where the mount fails the test says so on stderr and returns, except under
//! `CI=true`, where it must run.

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use courier_proto::payments::v1 as pb;
use courier_tests::payments::authorize_request;
use courier_tests::process::CourierProcess;

const BIN: &str = env!("CARGO_BIN_EXE_courier");

/// Risk rules with nothing that declines: one account hammered by many callers would trip the velocity rules.
const PERMISSIVE_RULES: &str = "[rollout]\nactive = \"permissive\"\n\n[[rule_set]]\nversion = \"permissive\"\n";

/// A tmpfs mounted on a temp dir; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (with the reason) when this machine does not let the test mount.
    fn mount(size: &str) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
        }
        Ok(Self { dir })
    }

    /// The tmpfs, or `None` where this machine does not let the test mount (said on stderr; under `CI=true` the
    /// test must run, so there it panics).
    fn mount_or_skip(size: &str) -> Option<Self> {
        match Self::mount(size) {
            Ok(tmpfs) => Some(tmpfs),
            Err(reason) if std::env::var("CI").as_deref() != Ok("true") => {
                eprintln!("SKIPPED: {reason} (needs root; it runs under CI=true)");
                None
            }
            Err(reason) => panic!("CI=true and the tmpfs cannot be mounted: {reason}"),
        }
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "remount the tmpfs to {size}");
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 path")
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn up(data_dir: &str) -> CourierProcess {
    let rules = std::env::temp_dir().join(format!("courier-permissive-disk-{}.toml", std::process::id()));
    std::fs::write(&rules, PERMISSIVE_RULES).expect("write rules");
    let args = ["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", data_dir];
    let env = [
        ("COURIER_RISK__RULES_FILE", rules.to_str().expect("utf-8 path")),
        // Sub-deadlines sized for a loaded debug build: this test is about the ledger, not the budget.
        ("COURIER_PAYMENTS__USERS_TIMEOUT", "5s"),
        ("COURIER_PAYMENTS__RISK_TIMEOUT", "5s"),
        ("COURIER_PAYMENTS__HOLDER_CACHE_TTL", "10min"),
    ];
    CourierProcess::start_with_env(BIN, &args, &env)
}

fn patient<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(30));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_loses_no_acknowledged_approval_and_recovers_without_restart() {
    let Some(tmpfs) = Tmpfs::mount_or_skip("3m") else { return };
    let data_dir = tmpfs.path().to_owned();
    let server = up(&data_dir);
    let account_id = courier_tests::process::funded_account(&server, &server, 1_000_000_000_000).await;

    // Load until the disk is full: every APPROVED answer is recorded with its request; every failure's code counted.
    let approved: Approved = Arc::default();
    let failures: Arc<Mutex<Vec<tonic::Code>>> = Arc::default();
    let full = Arc::new(AtomicBool::new(false));
    let after_full = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..8)
        .map(|_| {
            let (mut payments, account_id) = (server.payments(), account_id.clone());
            let (approved, failures, full, after_full) =
                (approved.clone(), failures.clone(), full.clone(), after_full.clone());
            tokio::spawn(async move {
                // Keep loading a while after the first failure: the bug showed in the batches after it.
                while after_full.load(Ordering::Relaxed) < 200 {
                    if full.load(Ordering::Relaxed) {
                        after_full.fetch_add(1, Ordering::Relaxed);
                    }
                    let request = authorize_request(&account_id, 1);
                    match payments.authorize(patient(request.clone())).await {
                        Ok(answer) => {
                            let authorization = answer.into_inner().authorization.expect("authorization");
                            if authorization.decision() == pb::Decision::Approved {
                                approved.lock().unwrap().push((request, authorization));
                            }
                        }
                        Err(status) => {
                            full.store(true, Ordering::Relaxed);
                            failures.lock().unwrap().push(status.code());
                        }
                    }
                }
            })
        })
        .collect();
    let acknowledged = filled(callers, &approved, &failures).await;

    // Free space: the same process serves again by itself.
    let mut payments = server.payments();
    serves_again_once_freed(&tmpfs, async || {
        let mut request = patient(authorize_request(&account_id, 1));
        request.set_timeout(Duration::from_secs(10));
        payments.authorize(request).await.map(drop).map_err(|status| format!("{status:?}"))
    })
    .await;

    verify_across_restart(server, &data_dir, &acknowledged).await;
}

/// The batched stream path on a full disk: each message a full disk refuses gets its own UNAVAILABLE or
/// RESOURCE_EXHAUSTED answer (or the stream ends with one), no answered authorization is lost, and the process
/// serves streams again once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_under_stream_load_loses_no_acknowledged_approval() {
    use pb::authorize_stream_response::Result as Answer;
    let Some(tmpfs) = Tmpfs::mount_or_skip("3m") else { return };
    let data_dir = tmpfs.path().to_owned();
    let server = up(&data_dir);
    let account_id = courier_tests::process::funded_account(&server, &server, 1_000_000_000_000).await;

    let approved: Approved = Arc::default();
    let failures: Arc<Mutex<Vec<tonic::Code>>> = Arc::default();
    let after_full = Arc::new(AtomicUsize::new(0));
    let streams: Vec<_> = (0..2)
        .map(|stream| {
            let (mut payments, account_id) = (server.payments(), account_id.clone());
            let (approved, failures, after_full) = (approved.clone(), failures.clone(), after_full.clone());
            tokio::spawn(async move {
                while after_full.load(Ordering::Relaxed) < 200 {
                    // Sends until enough refusals were seen after the disk filled, then ends its side.
                    let sent = Arc::new(Mutex::new(std::collections::HashMap::new()));
                    let (outbound_sent, outbound_after_full) = (sent.clone(), after_full.clone());
                    let account_id = account_id.clone();
                    let mut n = 0u64;
                    let outbound = futures::stream::iter(std::iter::from_fn(move || {
                        (outbound_after_full.load(Ordering::Relaxed) < 200).then(|| {
                            n += 1;
                            let request = authorize_request(&account_id, 1);
                            let correlation_id = format!("s{stream}-{n}");
                            outbound_sent.lock().unwrap().insert(correlation_id.clone(), request.clone());
                            pb::AuthorizeStreamRequest { correlation_id, request: Some(request) }
                        })
                    }));
                    let mut answers = match payments.authorize_stream(patient(outbound)).await {
                        Ok(answers) => answers.into_inner(),
                        Err(status) => {
                            failures.lock().unwrap().push(status.code());
                            after_full.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    };
                    loop {
                        match answers.message().await {
                            Ok(Some(answer)) => match answer.result.expect("a result") {
                                Answer::Authorization(authorization) => {
                                    let request = sent.lock().unwrap().remove(&answer.correlation_id).expect("sent");
                                    if authorization.decision() == pb::Decision::Approved {
                                        approved.lock().unwrap().push((request, authorization));
                                    }
                                }
                                Answer::Error(error) => {
                                    failures.lock().unwrap().push(tonic::Code::from(error.code));
                                    after_full.fetch_add(1, Ordering::Relaxed);
                                }
                            },
                            Ok(None) => break,
                            // The whole stream refused: counted, and a new stream is opened.
                            Err(status) => {
                                failures.lock().unwrap().push(status.code());
                                after_full.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let acknowledged = filled(streams, &approved, &failures).await;

    // Free space: the same process answers a stream again by itself.
    let mut payments = server.payments();
    serves_again_once_freed(&tmpfs, async || {
        let message = pb::AuthorizeStreamRequest {
            correlation_id: "after".into(),
            request: Some(authorize_request(&account_id, 1)),
        };
        let mut request = tonic::Request::new(futures::stream::iter([message]));
        request.set_timeout(Duration::from_secs(10));
        let answer = match payments.authorize_stream(request).await {
            Ok(answers) => answers.into_inner().message().await.map_err(|status| format!("{status:?}"))?,
            Err(status) => return Err(format!("{status:?}")),
        };
        match answer {
            Some(pb::AuthorizeStreamResponse { result: Some(Answer::Authorization(_)), .. }) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    verify_across_restart(server, &data_dir, &acknowledged).await;
}

/// Every acknowledged approval is in the store, in the serving process and after a SIGKILL and a restart; the
/// ledger checks after each.
async fn verify_across_restart(
    server: CourierProcess,
    data_dir: &str,
    acknowledged: &[(pb::AuthorizeRequest, pb::Authorization)],
) {
    verify(&server, acknowledged).await;
    server.kill();
    courier_tests::process::ledger_check(BIN, &["--data-dir", data_dir]);
    let server = up(data_dir);
    verify(&server, acknowledged).await;
    drop(server);
    courier_tests::process::ledger_check(BIN, &["--data-dir", data_dir]);
}

/// Each acknowledged key replays the very authorization that was acknowledged (a lost one makes a new id).
async fn verify(server: &CourierProcess, acknowledged: &[(pb::AuthorizeRequest, pb::Authorization)]) {
    let mut payments = server.payments();
    let mut lost = 0;
    for (request, acked) in acknowledged {
        let replay = payments.authorize(patient(request.clone())).await.expect("replay").into_inner();
        if replay.authorization.expect("authorization").id != acked.id {
            lost += 1;
        }
    }
    assert_eq!(lost, 0, "{lost} of {} acknowledged approvals were lost", acknowledged.len());
}

type Approved = Arc<Mutex<Vec<(pb::AuthorizeRequest, pb::Authorization)>>>;

/// Waits (bounded) for the load's tasks, which end once the disk has been full a while; checks that it filled and
/// that every refusal was clean; returns the approvals acknowledged meanwhile.
async fn filled(
    tasks: Vec<tokio::task::JoinHandle<()>>,
    approved: &Approved,
    failures: &Mutex<Vec<tonic::Code>>,
) -> Vec<(pb::AuthorizeRequest, pb::Authorization)> {
    let loading = async {
        for task in tasks {
            task.await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(300), loading).await.expect("the load filled the disk in time");
    let acknowledged = approved.lock().unwrap().clone();
    assert_refused_cleanly(&failures.lock().unwrap(), acknowledged.len());
    acknowledged
}

/// Frees space (remounts the tmpfs bigger), then retries `attempt` until the same process serves it: within 20 s,
/// without a restart.
async fn serves_again_once_freed(tmpfs: &Tmpfs, mut attempt: impl AsyncFnMut() -> Result<(), String>) {
    tmpfs.resize("64m");
    let freed = Instant::now();
    while let Err(refusal) = attempt().await {
        assert!(
            freed.elapsed() < Duration::from_secs(20),
            "still refusing {}s after space was freed: {refusal}",
            freed.elapsed().as_secs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("served again {:?} after space was freed", freed.elapsed());
}

/// The disk filled, and every refusal said so cleanly: UNAVAILABLE or RESOURCE_EXHAUSTED (nothing applied).
fn assert_refused_cleanly(failures: &[tonic::Code], approved: usize) {
    eprintln!("while filling: {approved} approved, {} refused: {:?}", failures.len(), summary(failures));
    assert!(!failures.is_empty(), "the disk never filled");
    assert!(
        failures.iter().all(|code| matches!(code, tonic::Code::Unavailable | tonic::Code::ResourceExhausted)),
        "a full disk answers UNAVAILABLE or RESOURCE_EXHAUSTED, nothing else: {:?}",
        summary(failures)
    );
}

fn summary(codes: &[tonic::Code]) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for code in codes {
        *counts.entry(format!("{code:?}")).or_default() += 1;
    }
    counts
}
