//! Many AuthorizeStream calls on one HTTP/2 connection (issue 11 §6): a real `courier up` process, one tonic
//! Channel (one connection), hundreds of streams sending one message per DATA frame as fast as the client can.
//! Every stream must get every answer: h2's small-DATA-frame guard (`too_many_data_frames`) must never close a
//! connection that only streams legitimately, and the server's peak RSS stays bounded.

use std::time::Instant;

use courier_proto::payments::v1 as pb;
use courier_tests::outbox::{patient, PERMISSIVE_RULES};
use courier_tests::payments::{authorize_request, stream_approvals};
use courier_tests::process::CourierProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_courier");

fn up(data_dir: &str) -> CourierProcess {
    up_logging(data_dir, None)
}

/// `courier up` on `data_dir`; with `log`, its log lines at that filter are kept in `logs`.
fn up_logging(data_dir: &str, log: Option<&str>) -> CourierProcess {
    let rules = std::env::temp_dir().join(format!("courier-permissive-streams-{}.toml", std::process::id()));
    std::fs::write(&rules, PERMISSIVE_RULES).expect("write rules");
    let args = ["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", data_dir];
    let env = [
        ("COURIER_RISK__RULES_FILE", rules.to_str().expect("utf-8 path")),
        // Sub-deadlines sized for a loaded debug build: holder and risk lookups are not what this measures.
        ("COURIER_PAYMENTS__USERS_TIMEOUT", "10s"),
        ("COURIER_PAYMENTS__RISK_TIMEOUT", "10s"),
        ("COURIER_PAYMENTS__HOLDER_CACHE_TTL", "10min"),
    ];
    match log {
        Some(filter) => CourierProcess::start_logged(BIN, &args, &env, filter),
        None => CourierProcess::start_with_env(BIN, &args, &env),
    }
}

/// The process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM line");
    line.split_whitespace().nth(1).expect("a number").parse().expect("KiB")
}

async fn accounts(server: &CourierProcess, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(courier_tests::process::funded_account(server, server, 1_000_000_000).await);
    }
    ids
}

/// 500 streams of 100 messages on one connection to a `courier up` process: every answer arrives, the connection
/// lives, the ledger checks out, and the server's peak RSS (`VmHWM`) stays bounded. Before the fix the connection
/// was closed by h2's guard at once (the figure the issue reports, 325 MB, was of a run whose clients retried);
/// with the windows fixed but without the process-wide `streams_in_flight`, 300 streams put 19,200
/// authorizations at once on the store's pool (most timed out: UNAVAILABLE) and peaked at 199 MiB.
/// 50,000 authorizations through a debug build on a shared two-core machine take minutes: a measurement, run by
/// hand (`-- --ignored`); `courier-tests/tests/many_streams.rs` runs 300 x 100 in process in every test run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: 50,000 authorizations, minutes in a debug build (run with --ignored)"]
async fn five_hundred_streams_on_one_connection_in_bounded_memory() {
    const STREAMS: usize = 500;
    const MESSAGES: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let server = up(&data_dir);
    let accounts = accounts(&server, 8).await;
    let baseline = peak_rss_kib(server.pid());

    let started = Instant::now();
    // A 10 min deadline: this load through a debug build is slow, and its speed is not measured.
    let failures =
        stream_approvals(server.payments(), &accounts, STREAMS, MESSAGES, std::time::Duration::from_secs(600)).await;
    let took = started.elapsed();
    let peak = peak_rss_kib(server.pid());
    eprintln!(
        "{STREAMS} streams x {MESSAGES} messages on one connection: {took:?}, server peak RSS {} MiB (at start {} MiB)",
        peak / 1024,
        baseline / 1024
    );
    assert!(
        failures.is_empty(),
        "{} of {STREAMS} streams failed, e.g.: {:#?}",
        failures.len(),
        &failures[..3.min(failures.len())]
    );

    // The same connection still serves: it was not closed by a GOAWAY.
    assert!(peak <= 200 * 1024, "peak RSS {} MiB", peak / 1024);
    let mut payments = server.payments();
    let after = payments.authorize(patient(authorize_request(&accounts[0], 1))).await.expect("the connection lives");
    assert_eq!(after.into_inner().authorization.unwrap().decision(), pb::Decision::Approved);

    server.kill();
    courier_tests::process::ledger_check(BIN, &["--data-dir", &data_dir]);
}

/// One HTTP/2 frame: 9-byte header (length, type, flags, stream id), then `payload`.
fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK "literal header field without indexing, new name" (no Huffman; names and values under 127 bytes).
fn literal(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0);
    block.push(name.len() as u8);
    block.extend_from_slice(name.as_bytes());
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

/// A client that opens an AuthorizeStream and sends 101 empty DATA frames (h2 allows 100 per connection): h2's
/// flood guard closes the connection with GOAWAY ENHANCE_YOUR_CALM `too_many_data_frames`, and the server says so
/// in one WARN line, which it did not before (the reason was logged at debug only, without the guard's name).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_by_a_protocol_guard_is_logged_once_at_warn() {
    let dir = tempfile::tempdir().unwrap();
    let server = up_logging(dir.path().to_str().unwrap(), Some("warn"));
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, 0x4, 0, 0, &[]);
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/courier.payments.v1.PaymentService/AuthorizeStream"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        literal(&mut block, name, value);
    }
    frame(&mut out, 0x1, 0x4, 1, &block);
    for _ in 0..101 {
        frame(&mut out, 0x0, 0, 1, &[]);
    }
    let mut tcp = tokio::net::TcpStream::connect(&server.addr).await.expect("connect");
    tcp.write_all(&out).await.expect("send");

    // Read the server's frames until its GOAWAY.
    let goaway = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            let mut header = [0u8; 9];
            tcp.read_exact(&mut header).await.expect("a frame before the connection closes");
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; len];
            tcp.read_exact(&mut payload).await.expect("the frame's payload");
            if header[3] == 0x7 {
                break payload;
            }
        }
    })
    .await
    .expect("a GOAWAY in time");
    let code = u32::from_be_bytes(goaway[4..8].try_into().unwrap());
    assert_eq!(code, 0xb, "ENHANCE_YOUR_CALM");
    assert_eq!(&goaway[8..], b"too_many_data_frames");

    let logs = server.logs.as_ref().expect("logged");
    let line = logs.wait_for(std::time::Duration::from_secs(10), "naming the guard at WARN", |l| {
        l.contains("WARN") && l.contains("too_many_data_frames")
    });
    assert!(line.contains("ENHANCE_YOUR_CALM"), "{line}");
    let guard_lines = logs.lines().into_iter().filter(|l| l.contains("protocol guard")).count();
    assert_eq!(guard_lines, 1, "one line per connection: {:#?}", logs.lines());
}
