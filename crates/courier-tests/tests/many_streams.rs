//! Many AuthorizeStream calls on one HTTP/2 connection (issue 11 §6), in process: one tonic Channel (one
//! connection), 300 streams of 100 messages, each message in a DATA frame of its own, sent as fast as the client
//! can. Before the fix h2 closed the connection with GOAWAY ENHANCE_YOUR_CALM `too_many_data_frames` (its
//! small-DATA-frame guard, overdrawn by frames courier had not read yet) and every stream died; now every stream
//! gets every answer and the ledger checks out. (`crates/courier/tests/many_streams.rs` does the same against a
//! `courier up` process, measures its peak RSS, and checks the WARN line of a connection a guard closes.)

use courier_proto::payments::v1 as pb;
use courier_tests::payments::*;
use courier_tests::{Backend, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_streams_on_one_connection_all_get_every_answer() {
    const STREAMS: usize = 300;
    const MESSAGES: usize = 100;
    let server = TestServer::start(Backend::Sqlite).await;
    let mut accounts = Vec::new();
    for _ in 0..8 {
        accounts.push(funded_account(&server, 1_000_000_000, 0).await.id);
    }
    let started = std::time::Instant::now();
    let failures =
        stream_approvals(server.payments(), &accounts, STREAMS, MESSAGES, std::time::Duration::from_secs(60)).await;
    eprintln!("{STREAMS} streams x {MESSAGES} messages on one connection: {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {STREAMS} streams failed, e.g.: {:#?}",
        failures.len(),
        &failures[..3.min(failures.len())]
    );
    // The same connection still serves: no GOAWAY closed it.
    let after = authorize(&mut server.payments(), authorize_request(&accounts[0], 1)).await;
    assert_eq!(after.decision(), pb::Decision::Approved);
    let held: i64 = {
        let mut total = 0;
        for id in &accounts {
            total += account(&mut server.payments(), id).await.held_amount;
        }
        total
    };
    assert_eq!(held, (STREAMS * MESSAGES) as i64 + 1, "every approval holds its 1");
    server.assert_ledger_consistent().await;
    server.shutdown().await;
}
