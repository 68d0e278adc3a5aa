//! ListUsers streams from the store: 10,000 users arrive in order, and a user created while the stream is open
//! still arrives, which it could not if the server had loaded the listing into memory before sending.

use courier_proto::users::v1 as pb;
use courier_tests::{on_every_backend, Backend, TestServer};
use courier_users::model::UserId;
use futures::StreamExt;
use sqlx::Acquire;

const USERS: usize = 10_000;

/// Seeds rows straight into the store in one transaction: creating 10,000 users through the API would spend the
/// test's time on fsyncs, and the subject here is the listing.
async fn seed(server: &TestServer, count: usize) -> Vec<String> {
    let mut conn = server.store.pool().acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        let id = UserId::generate().to_string();
        sqlx::query(
            "INSERT INTO users (id, name, email, email_key, status, created_at_us, updated_at_us) \
             VALUES ($1, $2, $3, $3, 1, 0, 0)",
        )
        .bind(&id)
        .bind(format!("Seeded {i}"))
        .bind(format!("seed{i}@example.com"))
        .execute(&mut *tx)
        .await
        .unwrap();
        ids.push(id);
    }
    tx.commit().await.unwrap();
    ids
}

async fn ten_thousand_users_stream_in_order_from_the_store(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut ids = seed(&server, USERS).await;
    let mut users = server.users();
    let mut stream = users.list_users(pb::ListUsersRequest::default()).await.unwrap().into_inner();

    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(first.user.unwrap().id, ids[0]);
    // Created after the stream began and after every seeded id: a streamed listing reaches it.
    let late = pb::CreateUserRequest { name: "Late".into(), email: "late@example.com".into() };
    ids.push(users.create_user(late).await.unwrap().into_inner().user.unwrap().id);

    let mut received = vec![ids[0].clone()];
    while let Some(item) = stream.next().await {
        let item = item.unwrap();
        assert_eq!(item.resume_token, item.user.as_ref().unwrap().id);
        received.push(item.user.unwrap().id);
    }
    assert_eq!(received.len(), USERS + 1);
    assert!(received == ids, "every user once, in id order, ending with the late one");
    server.shutdown().await;
}

async fn a_client_that_stops_reading_frees_the_server(backend: Backend) {
    let server = TestServer::start(backend).await;
    seed(&server, 2_000).await;
    let mut users = server.users();
    let mut stream = users.list_users(pb::ListUsersRequest::default()).await.unwrap().into_inner();
    stream.next().await.unwrap().unwrap();
    drop(stream);
    // The abandoned stream must not hold the server: a graceful shutdown completes.
    server.shutdown().await;
}

on_every_backend!(ten_thousand_users_stream_in_order_from_the_store, a_client_that_stops_reading_frees_the_server);
