//! PaymentService over a real socket, on SQLite and on PostgreSQL: accounts, the two-phase ledger's semantics, every
//! decline code, every refusal's code and ErrorInfo reason. Every scenario ends with the full ledger check.

use std::time::Duration;

use courier_proto::payments::v1 as pb;
use courier_proto::users::v1 as users;
use courier_tests::payments::*;
use courier_tests::{on_every_backend, Backend, TestOptions, TestServer};
use tonic::Code;
use tonic_types::StatusExt;

use pb::{AuthorizationStatus as Auth, DeclineReason};

/// Holder status is asked every time (no cache), and the background sweeper stays out of the way: tests sweep.
fn options() -> TestOptions {
    let mut options = TestOptions::default();
    options.payments.holder_cache_ttl = Duration::ZERO;
    options.payments.sweep_interval = Duration::from_secs(3600);
    options
}

async fn start(backend: Backend) -> TestServer {
    TestServer::start_configured(backend, options()).await
}

fn violated_fields(status: &tonic::Status) -> Vec<String> {
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    status.get_details_bad_request().expect("BadRequest").field_violations.into_iter().map(|v| v.field).collect()
}

async fn open_account_needs_an_active_owner(backend: Backend) {
    let server = start(backend).await;
    let mut payments = server.payments();
    let open = |owner: &str, currency: &str, limit| pb::OpenAccountRequest {
        owner_user_id: owner.into(),
        currency: currency.into(),
        credit_limit: limit,
    };

    let owner = active_user(&server).await;
    let account = payments.open_account(open(&owner, "EUR", 500)).await.unwrap().into_inner().account.unwrap();
    assert!(account.id.starts_with("acct_"));
    assert_eq!((account.posted_balance, account.held_amount, account.available_amount), (0, 0, 500));
    assert_eq!((account.currency.as_str(), account.status()), ("EUR", pb::AccountStatus::Active));
    assert_eq!(account.owner_user_id, owner);

    let unknown = payments.open_account(open("usr_0190f5a0c2b87cc3a1b2c3d4e5f60718", "EUR", 0)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    let request = users::UpdateUserStatusRequest { id: owner.clone(), status: users::UserStatus::Suspended as i32 };
    server.users().update_user_status(request).await.unwrap();
    let suspended = payments.open_account(open(&owner, "EUR", 0)).await.unwrap_err();
    assert_eq!(reason(&suspended, Code::FailedPrecondition), "OWNER_NOT_ACTIVE");

    let malformed = payments.open_account(open("", "euro", -1)).await.unwrap_err();
    assert_eq!(violated_fields(&malformed), ["owner_user_id", "currency", "credit_limit"]);

    let missing = pb::GetAccountRequest { account_id: "acct_0190f5a0c2b87cc3a1b2c3d4e5f60718".into() };
    assert_eq!(payments.get_account(missing).await.unwrap_err().code(), Code::NotFound);
    let malformed = pb::GetAccountRequest { account_id: "nope".into() };
    assert_eq!(violated_fields(&payments.get_account(malformed).await.unwrap_err()), ["account_id"]);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn approve_iff_amount_within_available(backend: Backend) {
    let server = start(backend).await;
    let mut payments = server.payments();
    let account = funded_account(&server, 1_000, 500).await;
    assert_eq!(account.available_amount, 1_500);

    let approved = authorize(&mut payments, authorize_request(&account.id, 1_200)).await;
    assert_eq!((approved.decision(), approved.response_code.as_str()), (pb::Decision::Approved, "00"));
    assert_eq!((approved.status(), approved.held_amount, approved.available_after), (Auth::Held, 1_200, 300));
    let expires = approved.expires_at.unwrap().seconds - approved.created_at.unwrap().seconds;
    assert_eq!(expires, 7 * 24 * 3600, "default hold TTL is 7 days");

    let declined = authorize(&mut payments, authorize_request(&account.id, 301)).await;
    assert_eq!((declined.decision(), declined.response_code.as_str()), (pb::Decision::Declined, "51"));
    assert_eq!((declined.decline_reason(), declined.status()), (DeclineReason::InsufficientFunds, Auth::Declined));
    assert_eq!((declined.held_amount, declined.available_after), (0, 300));
    assert!(declined.expires_at.is_none());

    // Exactly the available amount is approved; nothing more, ever.
    let exact = authorize(&mut payments, authorize_request(&account.id, 300)).await;
    assert_eq!((exact.decision(), exact.available_after), (pb::Decision::Approved, 0));
    let one_more = authorize(&mut payments, authorize_request(&account.id, 1)).await;
    assert_eq!(one_more.response_code, "51");

    let now = courier_tests::payments::account(&mut payments, &account.id).await;
    assert_eq!((now.posted_balance, now.held_amount, now.available_amount), (1_000, 1_500, 0));
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn every_decline_code(backend: Backend) {
    let server = start(backend).await;
    let mut payments = server.payments();
    let account = funded_account(&server, 10_000, 0).await;
    let code = |a: &pb::Authorization| (a.response_code.clone(), a.decline_reason());

    let unknown = authorize(&mut payments, authorize_request("acct_0190f5a0c2b87cc3a1b2c3d4e5f60718", 10)).await;
    assert_eq!(code(&unknown), ("14".into(), DeclineReason::UnknownAccount));

    let mut euros = authorize_request(&account.id, 10);
    euros.currency = "EUR".into();
    assert_eq!(code(&authorize(&mut payments, euros).await), ("13".into(), DeclineReason::CurrencyMismatch));

    let too_big = authorize_request(&account.id, server.ledger.config().max_authorization_amount + 1);
    assert_eq!(code(&authorize(&mut payments, too_big).await), ("13".into(), DeclineReason::AmountNotAllowed));

    let frozen =
        pb::UpdateAccountStatusRequest { account_id: account.id.clone(), status: pb::AccountStatus::Frozen as i32 };
    payments.update_account_status(frozen).await.unwrap();
    let declined = authorize(&mut payments, authorize_request(&account.id, 10)).await;
    assert_eq!(code(&declined), ("57".into(), DeclineReason::AccountNotActive));
    let active =
        pb::UpdateAccountStatusRequest { account_id: account.id.clone(), status: pb::AccountStatus::Active as i32 };
    payments.update_account_status(active).await.unwrap();

    let request = users::UpdateUserStatusRequest {
        id: account.owner_user_id.clone(),
        status: users::UserStatus::Suspended as i32,
    };
    server.users().update_user_status(request).await.unwrap();
    let declined = authorize(&mut payments, authorize_request(&account.id, 10)).await;
    assert_eq!(code(&declined), ("62".into(), DeclineReason::HolderNotActive));

    let request =
        users::UpdateUserStatusRequest { id: account.owner_user_id.clone(), status: users::UserStatus::Active as i32 };
    server.users().update_user_status(request).await.unwrap();
    assert_eq!(authorize(&mut payments, authorize_request(&account.id, 10)).await.response_code, "00");
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn closing_an_account_is_final(backend: Backend) {
    let server = start(backend).await;
    let mut payments = server.payments();
    let account = funded_account(&server, 500, 0).await;
    let held = authorize(&mut payments, authorize_request(&account.id, 200)).await;
    let set = |status: pb::AccountStatus| pb::UpdateAccountStatusRequest {
        account_id: account.id.clone(),
        status: status as i32,
    };
    let closed = payments.update_account_status(set(pb::AccountStatus::Closed)).await.unwrap().into_inner();
    assert_eq!(closed.account.unwrap().status(), pb::AccountStatus::Closed);
    let reopen = payments.update_account_status(set(pb::AccountStatus::Active)).await.unwrap_err();
    assert_eq!(reason(&reopen, Code::FailedPrecondition), "ACCOUNT_CLOSED");
    let credit = pb::CreditAccountRequest {
        account_id: account.id.clone(),
        amount: 1,
        currency: "USD".into(),
        idempotency_key: key(),
    };
    assert_eq!(reason(&payments.credit_account(credit).await.unwrap_err(), Code::FailedPrecondition), "ACCOUNT_CLOSED");
    assert_eq!(authorize(&mut payments, authorize_request(&account.id, 1)).await.response_code, "57");
    // An open hold is still the merchant's to capture.
    payments.capture(capture_request(&held.id, 0)).await.unwrap();
    let unspecified = payments.update_account_status(set(pb::AccountStatus::Unspecified)).await.unwrap_err();
    assert_eq!(violated_fields(&unspecified), ["status"]);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn user_service_down_declines_with_91(backend: Backend) {
    // Port 1 on loopback: nothing listens there, so every UserService call fails fast.
    let mut options = options();
    options.users_url = Some("http://127.0.0.1:1".into());
    let server = TestServer::start_configured(backend, options).await;
    let mut payments = server.payments();
    let open =
        pb::OpenAccountRequest { owner_user_id: active_user(&server).await, currency: "USD".into(), credit_limit: 100 };
    let refused = payments.open_account(open).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");

    // The account is opened on the ledger directly: OpenAccount itself needs UserService.
    let account = server
        .ledger
        .open_account(courier_payments::ledger::NewAccount {
            owner_user_id: "usr_x".into(),
            currency: "USD".into(),
            credit_limit: 100,
        })
        .await
        .unwrap();
    let declined = authorize(&mut payments, authorize_request(&account.id, 10)).await;
    assert_eq!((declined.response_code.as_str(), declined.decline_reason()), ("91", DeclineReason::IssuerUnavailable));
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn malformed_requests_name_every_field(backend: Backend) {
    let server = start(backend).await;
    let mut payments = server.payments();
    let request = pb::AuthorizeRequest {
        idempotency_key: "k".repeat(256),
        account_id: "acct_123".into(),
        merchant_id: "bad merchant!".into(),
        amount: 0,
        currency: "usd".into(),
        description: "d".repeat(501),
        metadata: [("".to_string(), "v".to_string())].into(),
    };
    let error = payments.authorize(request).await.unwrap_err();
    assert_eq!(
        violated_fields(&error),
        ["idempotency_key", "account_id", "merchant_id", "amount", "currency", "description", "metadata[]"]
    );
    let empty = payments.authorize(pb::AuthorizeRequest::default()).await.unwrap_err();
    assert_eq!(violated_fields(&empty), ["idempotency_key", "account_id", "merchant_id", "amount", "currency"]);
    // 255 bytes is the longest key allowed.
    let account = funded_account(&server, 100, 0).await;
    let mut longest = authorize_request(&account.id, 1);
    longest.idempotency_key = "k".repeat(255);
    assert_eq!(authorize(&mut payments, longest).await.response_code, "00");
    // A NUL is text PostgreSQL cannot store: refused at the boundary, it never reaches (and fails) a ledger batch.
    let mut nul = authorize_request(&account.id, 1);
    nul.idempotency_key = "k\0".into();
    nul.description = "lunch\0".into();
    assert_eq!(violated_fields(&payments.authorize(nul).await.unwrap_err()), ["idempotency_key", "description"]);
    let tabbed = pb::AuthorizeRequest { description: "a\tb".into(), ..authorize_request(&account.id, 1) };
    assert_eq!(violated_fields(&payments.authorize(tabbed).await.unwrap_err()), ["description"]);

    let capture = pb::CaptureRequest { authorization_id: "auth_x".into(), amount: -1, idempotency_key: String::new() };
    assert_eq!(
        violated_fields(&payments.capture(capture).await.unwrap_err()),
        ["authorization_id", "amount", "idempotency_key"]
    );
    let credit = pb::CreditAccountRequest {
        account_id: account.id.clone(),
        amount: -5,
        currency: "XXX1".into(),
        idempotency_key: key(),
    };
    assert_eq!(violated_fields(&payments.credit_account(credit).await.unwrap_err()), ["amount", "currency"]);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn capture_void_and_their_refusals(backend: Backend) {
    let server = start(backend).await;
    let mut payments = server.payments();
    let account = funded_account(&server, 1_000, 0).await;

    // Partial capture posts 600 and releases the other 400.
    let held = authorize(&mut payments, authorize_request(&account.id, 1_000)).await;
    let too_much = payments.capture(capture_request(&held.id, 1_001)).await.unwrap_err();
    assert_eq!(reason(&too_much, Code::FailedPrecondition), "CAPTURE_EXCEEDS_HOLD");
    let captured = payments.capture(capture_request(&held.id, 600)).await.unwrap().into_inner().authorization.unwrap();
    assert_eq!((captured.status(), captured.captured_amount, captured.held_amount), (Auth::Captured, 600, 1_000));
    assert!(captured.resolved_at.is_some());
    let after = courier_tests::payments::account(&mut payments, &account.id).await;
    assert_eq!((after.posted_balance, after.held_amount, after.available_amount), (400, 0, 400));

    let twice = payments.capture(capture_request(&held.id, 100)).await.unwrap_err();
    assert_eq!(reason(&twice, Code::FailedPrecondition), "ALREADY_CAPTURED");
    let void_captured = payments.void(void_request(&held.id)).await.unwrap_err();
    assert_eq!(reason(&void_captured, Code::FailedPrecondition), "ALREADY_CAPTURED");

    // Void releases the whole hold; then capture and void again are refused.
    let held = authorize(&mut payments, authorize_request(&account.id, 300)).await;
    let voided = payments.void(void_request(&held.id)).await.unwrap().into_inner().authorization.unwrap();
    assert_eq!((voided.status(), voided.captured_amount), (Auth::Voided, 0));
    let capture_voided = payments.capture(capture_request(&held.id, 0)).await.unwrap_err();
    assert_eq!(reason(&capture_voided, Code::FailedPrecondition), "ALREADY_VOIDED");
    let void_twice = payments.void(void_request(&held.id)).await.unwrap_err();
    assert_eq!(reason(&void_twice, Code::FailedPrecondition), "ALREADY_VOIDED");

    // Amount 0 captures the whole hold; a declined authorization cannot be captured.
    let held = authorize(&mut payments, authorize_request(&account.id, 400)).await;
    let all = payments.capture(capture_request(&held.id, 0)).await.unwrap().into_inner().authorization.unwrap();
    assert_eq!(all.captured_amount, 400);
    let declined = authorize(&mut payments, authorize_request(&account.id, 1)).await;
    assert_eq!(declined.response_code, "51");
    let capture_declined = payments.capture(capture_request(&declined.id, 0)).await.unwrap_err();
    assert_eq!(reason(&capture_declined, Code::FailedPrecondition), "AUTHORIZATION_DECLINED");

    let unknown = payments.capture(capture_request("auth_0190f5a0c2b87cc3a1b2c3d4e5f60718", 1)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let fetched = payments.get_authorization(pb::GetAuthorizationRequest { authorization_id: held.id.clone() }).await;
    assert_eq!(fetched.unwrap().into_inner().authorization.unwrap(), all);
    let after = courier_tests::payments::account(&mut payments, &account.id).await;
    assert_eq!((after.posted_balance, after.held_amount), (0, 0));
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn holds_expire_after_their_ttl(backend: Backend) {
    let server = start(backend).await;
    let mut payments = server.payments();
    let account = funded_account(&server, 1_000, 0).await;
    let swept_later = authorize(&mut payments, authorize_request(&account.id, 100)).await;
    let captured_late = authorize(&mut payments, authorize_request(&account.id, 200)).await;
    let voided_late = authorize(&mut payments, authorize_request(&account.id, 300)).await;

    server.clock.advance(Duration::from_secs(7 * 24 * 3600 - 1));
    assert_eq!(server.ledger.sweep().await.unwrap().expired, 0, "not yet due");
    server.clock.advance(Duration::from_secs(1));

    // Capture and void of a hold past its expiry are refused, and the hold is released even before the sweep.
    let late = payments.capture(capture_request(&captured_late.id, 0)).await.unwrap_err();
    assert_eq!(reason(&late, Code::FailedPrecondition), "HOLD_EXPIRED");
    let late = payments.void(void_request(&voided_late.id)).await.unwrap_err();
    assert_eq!(reason(&late, Code::FailedPrecondition), "HOLD_EXPIRED");
    assert_eq!(courier_tests::payments::account(&mut payments, &account.id).await.held_amount, 100);

    assert_eq!(server.ledger.sweep().await.unwrap().expired, 1);
    let expired =
        payments.get_authorization(pb::GetAuthorizationRequest { authorization_id: swept_later.id.clone() }).await;
    assert_eq!(expired.unwrap().into_inner().authorization.unwrap().status(), Auth::Expired);
    let after = courier_tests::payments::account(&mut payments, &account.id).await;
    assert_eq!((after.posted_balance, after.held_amount, after.available_amount), (1_000, 0, 1_000));
    let again = payments.capture(capture_request(&swept_later.id, 0)).await.unwrap_err();
    assert_eq!(reason(&again, Code::FailedPrecondition), "HOLD_EXPIRED");
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn the_background_sweeper_expires_holds(backend: Backend) {
    let mut options = options();
    options.payments.hold_ttl = Duration::from_secs(60);
    options.payments.sweep_interval = Duration::from_millis(20);
    let server = TestServer::start_configured(backend, options).await;
    let mut payments = server.payments();
    let account = funded_account(&server, 1_000, 0).await;
    let held = authorize(&mut payments, authorize_request(&account.id, 100)).await;
    server.clock.advance(Duration::from_secs(61));
    // Wait on the event feed, not on a timer: the EXPIRED event is the sweeper's proof of work.
    let watch = pb::WatchEventsRequest { from_sequence: 1, account_id: account.id.clone() };
    let mut events = payments.watch_events(watch).await.unwrap().into_inner();
    let expired = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let event = events.message().await.unwrap().unwrap().event.unwrap();
            if event.r#type() == pb::EventType::Expired {
                return event;
            }
        }
    })
    .await
    .expect("the sweeper expired the hold");
    assert_eq!((expired.authorization_id.as_str(), expired.amount), (held.id.as_str(), 100));
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn idempotency_replays_and_refuses_reuse(backend: Backend) {
    let server = start(backend).await;
    let mut payments = server.payments();
    let account = funded_account(&server, 1_000, 0).await;

    let request = authorize_request(&account.id, 400);
    let first = authorize(&mut payments, request.clone()).await;
    let replay = authorize(&mut payments, request.clone()).await;
    assert_eq!(replay, first, "the stored answer, same id");

    // A decline is a result too: replayed, not re-decided (even once funds arrive).
    let decline_request = authorize_request(&account.id, 700);
    let declined = authorize(&mut payments, decline_request.clone()).await;
    assert_eq!(declined.response_code, "51");
    credit(&mut payments, &account.id, 10_000).await;
    assert_eq!(authorize(&mut payments, decline_request).await, declined);

    let mut changed = request.clone();
    changed.amount = 401;
    let reused = payments.authorize(changed).await.unwrap_err();
    assert_eq!(reason(&reused, Code::AlreadyExists), "IDEMPOTENCY_KEY_REUSED");

    // Keys are scoped to the merchant: another merchant's identical key is its own.
    let mut other_merchant = request.clone();
    other_merchant.merchant_id = "m_2".into();
    let other = authorize(&mut payments, other_merchant).await;
    assert_ne!(other.id, first.id);

    // Captures replay too, and a key reused for another operation is refused.
    let capture = capture_request(&first.id, 100);
    let captured = payments.capture(capture.clone()).await.unwrap().into_inner();
    assert_eq!(payments.capture(capture.clone()).await.unwrap().into_inner(), captured);
    let void_same_key =
        pb::VoidRequest { authorization_id: first.id.clone(), idempotency_key: capture.idempotency_key };
    let reused = payments.void(void_same_key).await.unwrap_err();
    assert_eq!(reason(&reused, Code::AlreadyExists), "IDEMPOTENCY_KEY_REUSED");

    // Credits replay with the same key and do not credit twice.
    let credit_request = pb::CreditAccountRequest {
        account_id: account.id.clone(),
        amount: 5,
        currency: "USD".into(),
        idempotency_key: key(),
    };
    let first_credit = payments.credit_account(credit_request.clone()).await.unwrap().into_inner();
    assert_eq!(payments.credit_account(credit_request).await.unwrap().into_inner(), first_credit);

    // Kept 24 hours by default; forgotten after, so the key is free again.
    server.clock.advance(Duration::from_secs(23 * 3600));
    assert_eq!(server.ledger.sweep().await.unwrap().forgotten_keys, 0);
    server.clock.advance(Duration::from_secs(3600 + 1));
    assert!(server.ledger.sweep().await.unwrap().forgotten_keys >= 5);
    let mut reused_later = request.clone();
    reused_later.amount = 1;
    assert_ne!(authorize(&mut payments, reused_later).await.id, first.id);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn one_key_sent_concurrently_places_one_hold(backend: Backend) {
    let server = start(backend).await;
    let account = funded_account(&server, 1_000, 0).await;
    let request = authorize_request(&account.id, 10);
    let calls = (0..32).map(|_| {
        let (mut payments, request) = (server.payments(), request.clone());
        tokio::spawn(async move { authorize(&mut payments, request).await })
    });
    let answers: Vec<pb::Authorization> = futures::future::try_join_all(calls).await.unwrap();
    assert!(answers.iter().all(|a| a == &answers[0]), "every caller got the one stored answer");
    let after = courier_tests::payments::account(&mut server.payments(), &account.id).await;
    assert_eq!(after.held_amount, 10);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn sixty_four_callers_get_exactly_n_approvals(backend: Backend) {
    const N: i64 = 40;
    const AMOUNT: i64 = 25;
    let server = start(backend).await;
    let account = funded_account(&server, N * AMOUNT, 0).await;
    let callers = (0..64).map(|_| {
        let (mut payments, account_id) = (server.payments(), account.id.clone());
        tokio::spawn(async move {
            let mut approved = 0;
            for _ in 0..2 {
                let answer = authorize(&mut payments, authorize_request(&account_id, AMOUNT)).await;
                approved += i64::from(answer.decision() == pb::Decision::Approved);
                assert!(answer.available_after >= 0);
            }
            approved
        })
    });
    let approvals: i64 = futures::future::try_join_all(callers).await.unwrap().into_iter().sum();
    assert_eq!(approvals, N);
    let after = courier_tests::payments::account(&mut server.payments(), &account.id).await;
    assert_eq!((after.held_amount, after.available_amount), (N * AMOUNT, 0));
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn a_deadline_during_the_ledger_step_leaves_no_unknown_state(backend: Backend) {
    use sqlx::{Connection, Executor};
    let server = start(backend).await;
    let account = funded_account(&server, 1_000, 0).await;
    // Another transaction holds the ledger lock, so the writer cannot commit until it lets go.
    let mut blocker = sqlx::AnyConnection::connect(&server.database.url).await.unwrap();
    blocker.execute("BEGIN").await.unwrap();
    blocker.execute("UPDATE ledger_meta SET last_sequence = last_sequence WHERE id = 1").await.unwrap();

    let request = authorize_request(&account.id, 100);
    let mut call = tonic::Request::new(request.clone());
    call.set_timeout(Duration::from_millis(300));
    let timed_out = server.payments().authorize(call).await.unwrap_err();
    // On PostgreSQL the writer gives up before the deadline (UNAVAILABLE: its COMMIT was never sent); on SQLite
    // it waits out the lock, and the caller's deadline ends the call.
    assert!(matches!(timed_out.code(), Code::DeadlineExceeded | Code::Cancelled | Code::Unavailable), "{timed_out:?}");
    blocker.execute("ROLLBACK").await.unwrap();

    // The retry with the same key either finds the committed authorization or makes the only one: never two.
    let mut payments = server.payments();
    let retried = authorize(&mut payments, request.clone()).await;
    assert_eq!(authorize(&mut payments, request).await, retried);
    let after = courier_tests::payments::account(&mut payments, &account.id).await;
    assert_eq!(after.held_amount, 100);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

async fn sums_never_wrap(backend: Backend) {
    let server = start(backend).await;
    let mut payments = server.payments();
    let account = funded_account(&server, i64::MAX - 10, 0).await;
    let request = pb::CreditAccountRequest {
        account_id: account.id.clone(),
        amount: 11,
        currency: "USD".into(),
        idempotency_key: key(),
    };
    let overflow = payments.credit_account(request).await.unwrap_err();
    assert_eq!(reason(&overflow, Code::FailedPrecondition), "AMOUNT_OVERFLOW");
    // A credit limit leaves no room either: posted + limit must stay representable.
    let limited = funded_account(&server, 0, i64::MAX).await;
    let request = pb::CreditAccountRequest {
        account_id: limited.id.clone(),
        amount: 1,
        currency: "USD".into(),
        idempotency_key: key(),
    };
    assert_eq!(
        reason(&payments.credit_account(request).await.unwrap_err(), Code::FailedPrecondition),
        "AMOUNT_OVERFLOW"
    );
    let after = courier_tests::payments::account(&mut payments, &account.id).await;
    assert_eq!(after.posted_balance, i64::MAX - 10);
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}

on_every_backend!(
    open_account_needs_an_active_owner,
    approve_iff_amount_within_available,
    every_decline_code,
    closing_an_account_is_final,
    user_service_down_declines_with_91,
    malformed_requests_name_every_field,
    capture_void_and_their_refusals,
    holds_expire_after_their_ttl,
    the_background_sweeper_expires_holds,
    idempotency_replays_and_refuses_reuse,
    one_key_sent_concurrently_places_one_hold,
    sixty_four_callers_get_exactly_n_approvals,
    sums_never_wrap,
    a_deadline_during_the_ledger_step_leaves_no_unknown_state,
);
