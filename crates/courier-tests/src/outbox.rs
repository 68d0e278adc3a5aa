//! What the outbox tests on every broker share: permissive risk rules, patient calls, the store's last sequence,
//! and an Authorize load that runs while a broker is cut.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use courier_proto::payments::v1::payment_service_client::PaymentServiceClient;

use crate::bearer::AuthChannel;
use crate::payments::authorize_request;

/// Risk rules with nothing that declines: the load hammers one account, which the built-in velocity rules
/// (rightly) deny, and these tests are about delivery, not decisions.
pub const PERMISSIVE_RULES: &str = "[rollout]\nactive = \"permissive\"\n\n[[rule_set]]\nversion = \"permissive\"\n";

/// A request with a 30 s deadline: a loaded machine's queueing must not turn into failures these tests count.
pub fn patient<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(Duration::from_secs(30));
    request
}

/// The last committed event's sequence in the store at `url`.
pub async fn last_sequence_at(url: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(url).await.expect("open the store");
    sqlx::query_scalar("SELECT COALESCE(MAX(sequence), 0) FROM events").fetch_one(&mut conn).await.expect("max")
}

/// Authorize calls of 1 on one account from several tasks until [`AuthorizeLoad::stop`]; each must approve.
pub struct AuthorizeLoad {
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl AuthorizeLoad {
    pub fn start(payments: &PaymentServiceClient<AuthChannel>, account: &str, workers: usize) -> Self {
        let (stop, answered) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let tasks = (0..workers)
            .map(|_| {
                let (mut payments, account, stop, answered) =
                    (payments.clone(), account.to_owned(), stop.clone(), answered.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let response = payments.authorize(patient(authorize_request(&account, 1))).await;
                        let authorization = response.expect("Authorize answers while the broker is down").into_inner();
                        assert_eq!(authorization.authorization.unwrap().response_code, "00");
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Self { stop, answered, tasks }
    }

    /// Calls answered so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }

    /// Stops the tasks and waits for them (a failed call fails the test here).
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.expect("load task");
        }
    }
}
