//! Client-side balancing over replicas: power of two choices, following each replica's health.

mod support;

use std::time::Duration;

use courier_kit::client::ResilientChannel;
use support::{call, Replica, HANG, UNARY};
use tonic_health::ServingStatus;

async fn wait_serving(channel: &ResilientChannel, n: usize) {
    let mut serving = channel.serving_endpoints();
    tokio::time::timeout(Duration::from_secs(10), serving.wait_for(|serving| *serving == n))
        .await
        .unwrap_or_else(|_| panic!("never {n} serving endpoints: {:?}", channel.state()))
        .unwrap();
}

#[tokio::test]
async fn p2c_spreads_load_over_two_replicas_and_stops_sending_to_one_not_serving() {
    let (a, b) = (Replica::start().await, Replica::start().await);
    let channel = ResilientChannel::builder("echo").endpoints([a.url(), b.url()]).build().unwrap();
    wait_serving(&channel, 2).await;

    for _ in 0..100 {
        call(channel.clone(), UNARY, None).await.unwrap();
    }
    let (on_a, on_b) = (a.script.calls(UNARY), b.script.calls(UNARY));
    assert_eq!(on_a + on_b, 100);
    assert!(on_a >= 15 && on_b >= 15, "uneven spread: {on_a} / {on_b}");

    // B's health turns NOT_SERVING: B gets nothing more.
    b.health.set_service_status("", ServingStatus::NotServing).await;
    wait_serving(&channel, 1).await;
    for _ in 0..50 {
        call(channel.clone(), UNARY, None).await.unwrap();
    }
    assert_eq!(b.script.calls(UNARY), on_b, "a NOT_SERVING replica got calls");
    assert_eq!(a.script.calls(UNARY), on_a + 50);

    // Back to SERVING: it is used again.
    b.health.set_service_status("", ServingStatus::Serving).await;
    wait_serving(&channel, 2).await;
    for _ in 0..100 {
        call(channel.clone(), UNARY, None).await.unwrap();
    }
    assert!(b.script.calls(UNARY) >= on_b + 15, "B was not re-added");
}

#[tokio::test]
async fn p2c_sends_to_the_replica_with_fewer_calls_in_flight() {
    let (a, b) = (Replica::start().await, Replica::start().await);
    let channel = ResilientChannel::builder("echo")
        .endpoints([a.url(), b.url()])
        .max_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    wait_serving(&channel, 2).await;

    // Eight calls that never end: with two replicas, p2c compares both every time, so they alternate.
    let mut hanging = Vec::new();
    for n in 1..=8 {
        hanging.push(tokio::spawn(call(channel.clone(), HANG, None)));
        let in_flight = |replica: &Replica| *replica.script.hanging.borrow();
        let mut total = a.script.hanging.subscribe();
        let mut other = b.script.hanging.subscribe();
        tokio::time::timeout(Duration::from_secs(10), async {
            while in_flight(&a) + in_flight(&b) < n {
                tokio::select! {
                    _ = total.changed() => {}
                    _ = other.changed() => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("call {n} never arrived: {} + {}", in_flight(&a), in_flight(&b)));
    }
    assert_eq!((*a.script.hanging.borrow(), *b.script.hanging.borrow()), (4, 4));
    hanging.iter().for_each(|call| call.abort());
}

#[tokio::test]
async fn a_replica_that_goes_away_is_dropped_and_an_upstream_with_none_fails_fast() {
    let a = Replica::start().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let channel = ResilientChannel::builder("echo").endpoints([a.url(), gone.clone()]).build().unwrap();
    // The unreachable one never serves; every call goes to A.
    wait_serving(&channel, 1).await;
    for _ in 0..20 {
        call(channel.clone(), UNARY, None).await.unwrap();
    }
    assert_eq!(a.script.calls(UNARY), 20);

    // An upstream whose only endpoint cannot serve fails fast once its health has answered, instead of waiting
    // for the deadline.
    let lonely =
        ResilientChannel::builder("nobody").endpoint(gone).max_timeout(Duration::from_secs(30)).build().unwrap();
    let mut decided = lonely.serving_endpoints();
    tokio::time::timeout(Duration::from_secs(10), decided.changed()).await.expect("health never answered").unwrap();
    let started = tokio::time::Instant::now();
    let status = call(lonely, UNARY, None).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("no endpoint is serving"), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
}
