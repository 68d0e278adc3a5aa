//! Clients that read slowly, tried as an attacker would: ListUsers readers whose HTTP/2 window is tiny and who stop
//! reading. They must hold no pooled connection of the user store while they dawdle, so callers beside them are
//! served as usual; and a pool with no free connection answers UNAVAILABLE (retryable), never INTERNAL.

use std::time::{Duration, Instant};

use courier_proto::users::v1 as pb;
use courier_proto::users::v1::user_service_client::UserServiceClient;
use courier_tests::{Backend, TestServer};
use futures::StreamExt;
use tonic::transport::Endpoint;

/// More readers than the store's pool (16 connections) has connections.
const SLOW_READERS: usize = 20;
/// More than one 256-row page, so each listing needs a second query while its reader is not reading.
const USERS: usize = 600;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_list_readers_hold_no_store_connection() {
    let server = TestServer::start(Backend::Sqlite).await;
    let users = server.users();
    let created: Vec<String> = futures::stream::iter(0..USERS)
        .map(|i| {
            let mut users = users.clone();
            async move {
                let request =
                    pb::CreateUserRequest { name: format!("User {i}"), email: format!("user{i}@example.com") };
                users.create_user(request).await.expect("create").into_inner().user.expect("user").id
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;

    // Each reader on its own connection with a 1 KiB window; it takes one message and then reads no more.
    let mut readers = Vec::new();
    for _ in 0..SLOW_READERS {
        let channel = Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .initial_stream_window_size(1024)
            .initial_connection_window_size(1024)
            .connect()
            .await
            .unwrap();
        let mut stream = UserServiceClient::new(channel)
            .list_users(pb::ListUsersRequest::default())
            .await
            .expect("list")
            .into_inner();
        stream.message().await.expect("first user").expect("one user");
        readers.push(stream);
    }

    // Callers beside them: every GetUser answered, quickly (the pool's acquire wait is 5 s).
    for id in created.iter().step_by(USERS / 40) {
        let started = Instant::now();
        let answer = users.clone().get_user(pb::GetUserRequest { id: id.clone() }).await;
        assert!(answer.is_ok(), "GetUser beside {SLOW_READERS} slow readers: {answer:?}");
        assert!(started.elapsed() < Duration::from_secs(2), "GetUser took {:?}", started.elapsed());
    }

    // The slow readers lost nothing either: read to the end now, each sees every user.
    for stream in readers.iter_mut().take(3) {
        let mut seen = 1;
        while stream.message().await.expect("the rest of the listing").is_some() {
            seen += 1;
        }
        assert_eq!(seen, USERS);
    }
}

/// Every pooled connection taken (here by the test itself, as by a load the pool cannot serve): a call waits the
/// pool's acquire timeout and is answered UNAVAILABLE `STORE_BUSY`, which callers retry, never INTERNAL. (A write:
/// on SQLite, GetUser's read by id no longer takes a pool connection, and it is answered all the same.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_store_pool_answers_unavailable_store_busy() {
    use tonic_types::StatusExt;
    let server = TestServer::start(Backend::Sqlite).await;
    let user = server
        .users()
        .create_user(pb::CreateUserRequest { name: "Ada".into(), email: "ada@example.com".into() })
        .await
        .expect("create a user")
        .into_inner()
        .user
        .expect("the user");
    let pool = server.store.pool();
    let mut held = Vec::new();
    while let Ok(Ok(connection)) = tokio::time::timeout(Duration::from_millis(200), pool.acquire()).await {
        held.push(connection);
    }
    assert_eq!(held.len(), 16, "the default pool size");
    let suspend = || pb::UpdateUserStatusRequest { id: user.id.clone(), status: pb::UserStatus::Suspended.into() };
    let status = server.users().update_user_status(suspend()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(status.get_error_details().error_info().map(|info| info.reason.as_str()), Some("STORE_BUSY"));
    // The read by id does not wait for the pool: it reads on the calling thread.
    let read = server.users().get_user(pb::GetUserRequest { id: user.id.clone() }).await.expect("GetUser");
    assert_eq!(read.into_inner().user.map(|u| u.status), Some(pb::UserStatus::Active.into()));
    drop(held);
    let updated = server.users().update_user_status(suspend()).await.expect("served again once connections are free");
    assert_eq!(updated.into_inner().user.map(|u| u.status), Some(pb::UserStatus::Suspended.into()));
}
