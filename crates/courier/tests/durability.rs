//! Durability and multi-process correctness, with real `courier` processes:
//!
//! - SIGKILL under load, repeatedly: every acknowledged operation survives, nothing is half-written
//!   (`courier ledger check` passes after every crash, and every acknowledged key replays its stored answer).
//! - The same under SIGKILL of a process answering AuthorizeStreams (the batched path).
//! - Several processes on one PostgreSQL database: 64 concurrent callers spread over them get exactly N approvals,
//!   and one idempotency key sent to all of them places one hold.

use std::sync::{Arc, Mutex};

use courier_proto::payments::v1 as pb;
use courier_tests::payments::{authorize_request, capture_request};
use courier_tests::process::CourierProcess;
use tokio::sync::Notify;

const BIN: &str = env!("CARGO_BIN_EXE_courier");

/// Risk rules with nothing that declines: these tests are about the ledger under crashes and concurrency, and the
/// built-in velocity rules would (rightly) deny a single account hammered by 64 callers.
const PERMISSIVE_RULES: &str = "[rollout]\nactive = \"permissive\"\n\n[[rule_set]]\nversion = \"permissive\"\n";

fn up(store: &[&str]) -> CourierProcess {
    let rules = std::env::temp_dir().join(format!("courier-permissive-{}.toml", std::process::id()));
    std::fs::write(&rules, PERMISSIVE_RULES).expect("write rules");
    let args: Vec<&str> = ["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]
        .into_iter()
        .chain(store.iter().copied())
        .collect();
    let env = [
        ("COURIER_RISK__RULES_FILE", rules.to_str().expect("utf-8 path")),
        // Sub-deadlines sized for a loaded debug build, so holder and risk lookups are not what this measures.
        ("COURIER_PAYMENTS__USERS_TIMEOUT", "5s"),
        ("COURIER_PAYMENTS__RISK_TIMEOUT", "5s"),
        // Three processes, two pools each, on one PostgreSQL (max_connections 100 by default): stay well inside it.
        ("COURIER_DATABASE_MAX_CONNECTIONS", "8"),
        // Warmed once per process (below), the holder's status then outlives the test.
        ("COURIER_PAYMENTS__HOLDER_CACHE_TTL", "10min"),
    ];
    CourierProcess::start_with_env(BIN, &args, &env)
}

/// A call with a generous deadline: these tests load a debug build on two cores, and are about the ledger's
/// correctness, not about the 250 ms default budget of an Authorize (which the deadline tests cover).
fn patient<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(std::time::Duration::from_secs(30));
    request
}

fn ledger_check(store: &[&str]) {
    courier_tests::process::ledger_check(BIN, store);
}

async fn funded_account(server: &CourierProcess, funds: i64) -> String {
    courier_tests::process::funded_account(server, server, funds).await
}

/// What the load acknowledged: authorizations (with the request that made them) and captures.
#[derive(Default)]
struct Acknowledged {
    authorizations: Vec<(pb::AuthorizeRequest, pb::Authorization)>,
    captures: Vec<(pb::CaptureRequest, pb::Authorization)>,
}

/// What the load's tasks share: they record each acknowledged operation, and the round ends once `target`
/// authorizations are acknowledged in all.
#[derive(Clone)]
struct Recorder {
    acknowledged: Arc<Mutex<Acknowledged>>,
    enough: Arc<Notify>,
    target: usize,
}

impl Recorder {
    fn authorized(&self, request: pb::AuthorizeRequest, authorization: pb::Authorization) {
        let mut acked = self.acknowledged.lock().unwrap();
        acked.authorizations.push((request, authorization));
        if acked.authorizations.len() >= self.target {
            self.enough.notify_one();
        }
    }

    fn captured(&self, request: pb::CaptureRequest, captured: pb::Authorization) {
        self.acknowledged.lock().unwrap().captures.push((request, captured));
    }
}

/// `rounds` times on one store: start courier, check that everything acknowledged so far replays, start `load`
/// on a funded account (its tasks end at their first failure), SIGKILL the process once `acks_per_round` more
/// authorizations were acknowledged, with operations queued and committing, and run `courier ledger check`.
/// Then once more after a last restart.
async fn sigkill_rounds(
    rounds: usize,
    acks_per_round: usize,
    load: impl Fn(&CourierProcess, &str, &Recorder) -> Vec<tokio::task::JoinHandle<()>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let store = ["--data-dir", data_dir.as_str()];
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let mut account = None;
    for round in 0..rounds {
        let server = up(&store);
        let account_id = match &account {
            Some(id) => String::clone(id),
            None => account.insert(funded_account(&server, 1_000_000_000).await).clone(),
        };
        verify_acknowledged(&server, &acknowledged).await;
        let target = acknowledged.lock().unwrap().authorizations.len() + acks_per_round;
        let recorder = Recorder { acknowledged: acknowledged.clone(), enough: Arc::new(Notify::new()), target };
        let tasks = load(&server, &account_id, &recorder);
        // Bounded: if every task stopped early (an unexpected refusal), fail instead of waiting forever.
        tokio::time::timeout(std::time::Duration::from_secs(120), recorder.enough.notified())
            .await
            .expect("the load reached its target before the kill");
        server.kill();
        for task in tasks {
            task.await.unwrap();
        }
        ledger_check(&store);
        eprintln!(
            "round {round}: {} authorizations acknowledged so far",
            acknowledged.lock().unwrap().authorizations.len()
        );
    }
    let server = up(&store);
    verify_acknowledged(&server, &acknowledged).await;
    drop(server);
    ledger_check(&store);
}

/// 16 callers authorizing, every third approval captured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_operation() {
    sigkill_rounds(4, 120, |server, account_id, recorder| {
        (0..16)
            .map(|_| {
                let (mut payments, account_id, recorder) = (server.payments(), account_id.to_owned(), recorder.clone());
                tokio::spawn(async move {
                    for n in 0.. {
                        let request = authorize_request(&account_id, 1 + n % 7);
                        let Ok(answer) = payments.authorize(patient(request.clone())).await else { return };
                        let authorization = answer.into_inner().authorization.unwrap();
                        let approved = authorization.decision() == pb::Decision::Approved;
                        let id = authorization.id.clone();
                        recorder.authorized(request, authorization);
                        if n % 3 == 0 && approved {
                            let capture = capture_request(&id, 1);
                            let Ok(answer) = payments.capture(capture.clone()).await else { return };
                            recorder.captured(capture, answer.into_inner().authorization.unwrap());
                        }
                    }
                })
            })
            .collect()
    })
    .await;
}

/// The same promise on the batched stream path: four AuthorizeStreams keep messages in flight (a batch is one risk
/// ScoreBatch and one run of ledger jobs), and every message that was answered with an authorization is in the
/// store afterwards, replayed by its key as the very answer the stream gave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_stream_load_loses_no_acknowledged_authorization() {
    use futures::StreamExt;
    use pb::authorize_stream_response::Result as Answer;
    sigkill_rounds(3, 400, |server, account_id, recorder| {
        (0..4)
            .map(|stream| {
                let (mut payments, account_id, recorder) = (server.payments(), account_id.to_owned(), recorder.clone());
                tokio::spawn(async move {
                    // What was sent, by correlation id: an answer names its request only by that id.
                    let sent = Arc::new(Mutex::new(std::collections::HashMap::new()));
                    let outbound = {
                        let sent = sent.clone();
                        futures::stream::iter(0..).map(move |n: i64| {
                            let request = authorize_request(&account_id, 1 + n % 7);
                            let correlation_id = format!("s{stream}-{n}");
                            sent.lock().unwrap().insert(correlation_id.clone(), request.clone());
                            pb::AuthorizeStreamRequest { correlation_id, request: Some(request) }
                        })
                    };
                    let Ok(answers) = payments.authorize_stream(patient(outbound)).await else { return };
                    let mut answers = answers.into_inner();
                    // Ends at the kill: the stream breaks with an error status (or ends).
                    while let Ok(Some(answer)) = answers.message().await {
                        let Some(Answer::Authorization(authorization)) = answer.result else { continue };
                        let request =
                            sent.lock().unwrap().remove(&answer.correlation_id).expect("an answer to a sent id");
                        recorder.authorized(request, authorization);
                    }
                })
            })
            .collect()
    })
    .await;
}

/// Every acknowledged operation is in the store: its key replays the very answer that was acknowledged.
async fn verify_acknowledged(server: &CourierProcess, acknowledged: &Mutex<Acknowledged>) {
    let (authorizations, captures) = {
        let acked = acknowledged.lock().unwrap();
        (acked.authorizations.clone(), acked.captures.clone())
    };
    let mut payments = server.payments();
    for (request, acked) in authorizations {
        let replay = payments.authorize(patient(request)).await.expect("replay").into_inner().authorization.unwrap();
        assert_eq!(replay, acked, "an acknowledged authorization was lost or changed");
    }
    for (request, acked) in captures {
        let replay = payments.capture(request).await.expect("replay capture").into_inner().authorization.unwrap();
        assert_eq!(replay, acked, "an acknowledged capture was lost or changed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL"]
async fn several_processes_on_one_postgres_approve_exactly_n() {
    const N: i64 = 50;
    const AMOUNT: i64 = 10;
    let database = courier_tests::Backend::Postgres.database().await;
    // Each process its own data dir, for its development auth secret and token (the store is PostgreSQL).
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let servers: Vec<CourierProcess> = dirs
        .iter()
        .map(|dir| up(&["--database-url", database.url.as_str(), "--data-dir", dir.path().to_str().unwrap()]))
        .collect();
    let account_id = funded_account(&servers[0], N * AMOUNT).await;
    // Warm each process's holder cache with a request that moves no money (another currency declines 13), so the
    // burst below measures the ledger, not 64 cold UserService lookups racing a loaded machine.
    for server in &servers {
        let mut warm = authorize_request(&account_id, 1);
        warm.currency = "EUR".into();
        let answer = server.payments().authorize(patient(warm)).await.expect("warm-up");
        assert_eq!(answer.into_inner().authorization.unwrap().response_code, "13");
    }

    let callers = (0..64).map(|i| {
        let (mut payments, account_id) = (servers[i % servers.len()].payments(), account_id.clone());
        tokio::spawn(async move {
            let mut approvals = 0;
            for _ in 0..2 {
                let answer =
                    payments.authorize(patient(authorize_request(&account_id, AMOUNT))).await.expect("authorize");
                approvals += i64::from(answer.into_inner().authorization.unwrap().decision() == pb::Decision::Approved);
            }
            approvals
        })
    });
    let approvals: i64 = futures::future::try_join_all(callers).await.unwrap().into_iter().sum();
    assert_eq!(approvals, N, "exactly N approvals across processes");
    let account = servers[2]
        .payments()
        .get_account(pb::GetAccountRequest { account_id: account_id.clone() })
        .await
        .unwrap()
        .into_inner()
        .account
        .unwrap();
    assert_eq!((account.held_amount, account.available_amount), (N * AMOUNT, 0));

    // One key, sent to every process at once, places at most one hold and answers one authorization.
    let other = funded_account(&servers[1], 1_000).await;
    let request = authorize_request(&other, 7);
    let same_key = (0..24).map(|i| {
        let (mut payments, request) = (servers[i % servers.len()].payments(), request.clone());
        tokio::spawn(async move {
            payments.authorize(patient(request)).await.expect("authorize").into_inner().authorization.unwrap()
        })
    });
    let answers = futures::future::try_join_all(same_key).await.unwrap();
    assert!(answers.iter().all(|a| a.id == answers[0].id));
    let other = servers[0].payments().get_account(pb::GetAccountRequest { account_id: other }).await.unwrap();
    assert_eq!(other.into_inner().account.unwrap().held_amount, 7);

    drop(servers);
    ledger_check(&["--database-url", database.url.as_str()]);
    database.cleanup().await;
}
