//! TLS and mutual TLS over real loopback sockets, with certificates made by the same code as `courier dev certs`
//! and loaded through the `[tls]` table's loader.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use courier_kit::client::ResilientChannel;
use courier_kit::server::{self, ServerOptions, ServiceSet};
use courier_kit::tls::dev::{DevCertFiles, DevCerts};
use courier_kit::tls::TlsConfig;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A server (health only) on `127.0.0.1:0`; it drains when dropped.
struct TestServer {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn start(tls: TlsConfig) -> TestServer {
    let options = ServerOptions { tls: tls.server().expect("server TLS loads"), ..ServerOptions::default() };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        server::serve(listener, ServiceSet::default(), &options, async {
            let _ = stopped.await;
        })
        .await
        .expect("serve");
    });
    TestServer { addr, _stop: stop }
}

fn certs(dir: &Path) -> DevCertFiles {
    DevCerts::generate().unwrap().write(dir, false).unwrap()
}

fn server_tls(files: &DevCertFiles, mutual: bool) -> TlsConfig {
    TlsConfig {
        cert: Some(files.server_cert.clone()),
        key: Some(files.server_key.clone()),
        client_ca: mutual.then(|| files.ca.clone()),
        ..TlsConfig::default()
    }
}

/// The outbound side of the `[tls]` table: trust `files`' CA, present its client certificate when `identity`.
fn client_tls(files: &DevCertFiles, identity: bool) -> ClientTlsConfig {
    let config = TlsConfig {
        ca: Some(files.ca.clone()),
        client_cert: identity.then(|| files.client_cert.clone()),
        client_key: identity.then(|| files.client_key.clone()),
        ..TlsConfig::default()
    };
    config.client().unwrap().expect("client TLS configured")
}

/// One health check over a fresh connection; a refused handshake shows up at connect (TLS 1.2, or the client's
/// own verification) or on the first call (TLS 1.3 servers reject a client certificate after the client is done).
async fn check(url: String, tls: Option<ClientTlsConfig>) -> Result<ServingStatus, String> {
    let mut endpoint =
        Endpoint::from_shared(url).unwrap().connect_timeout(Duration::from_secs(5)).timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| courier_kit::tls::error_chain(&e))?;
    }
    let channel: Channel = endpoint.connect().await.map_err(|e| courier_kit::tls::error_chain(&e))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest { service: String::new() })
        .await
        .map_err(|status| format!("{status:?}"))?;
    Ok(response.into_inner().status())
}

#[tokio::test]
async fn a_tls_server_answers_a_client_that_trusts_the_dev_ca() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs(dir.path());
    let server = start(server_tls(&files, false)).await;
    let status = check(format!("https://{}", server.addr), Some(client_tls(&files, false))).await;
    assert_eq!(status, Ok(ServingStatus::Serving));
    // The certificate names localhost too.
    let by_name = check(format!("https://localhost:{}", server.addr.port()), Some(client_tls(&files, false))).await;
    assert_eq!(by_name, Ok(ServingStatus::Serving));
}

#[tokio::test]
async fn a_plaintext_client_cannot_call_a_tls_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(server_tls(&certs(dir.path()), false)).await;
    let outcome = check(format!("http://{}", server.addr), None).await;
    assert!(outcome.is_err(), "plaintext got an answer from a TLS port: {outcome:?}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_servers_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let server = start(server_tls(&certs(dir.path()), false)).await;
    let stranger = certs(other.path());
    let outcome = check(format!("https://{}", server.addr), Some(client_tls(&stranger, false))).await;
    let error = outcome.expect_err("a certificate from an unknown CA was accepted");
    assert!(error.contains("UnknownIssuer") || error.contains("invalid peer certificate"), "{error}");
}

#[tokio::test]
async fn mtls_refuses_a_client_without_a_certificate_and_accepts_the_dev_client_cert() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs(dir.path());
    let server = start(server_tls(&files, true)).await;
    let url = format!("https://{}", server.addr);

    let anonymous = check(url.clone(), Some(client_tls(&files, false))).await;
    assert!(anonymous.is_err(), "mTLS answered a client without a certificate: {anonymous:?}");

    // A certificate signed by another CA is no better than none.
    let other = tempfile::tempdir().unwrap();
    let stranger = certs(other.path());
    let foreign = tonic::transport::Identity::from_pem(
        std::fs::read(&stranger.client_cert).unwrap(),
        std::fs::read(&stranger.client_key).unwrap(),
    );
    let foreign_tls = client_tls(&files, false).identity(foreign);
    assert!(
        check(url.clone(), Some(foreign_tls)).await.is_err(),
        "a client certificate from an unknown CA was accepted"
    );

    assert_eq!(check(url, Some(client_tls(&files, true))).await, Ok(ServingStatus::Serving));
}

#[tokio::test]
async fn the_resilient_channel_calls_an_mtls_server_by_its_certificate_name() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs(dir.path());
    let server = start(server_tls(&files, true)).await;
    // The URL names an IP; `domain` makes the client verify the name in the certificate instead.
    let mut config = TlsConfig {
        ca: Some(files.ca.clone()),
        client_cert: Some(files.client_cert.clone()),
        client_key: Some(files.client_key.clone()),
        domain: Some("localhost".into()),
        ..TlsConfig::default()
    };
    let channel = ResilientChannel::builder("tls-upstream")
        .endpoint(format!("https://{}", server.addr))
        .health_check(false)
        .tls(config.client().unwrap())
        .build()
        .unwrap();
    let response = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);

    // Without the identity, the same server refuses the call.
    config.client_cert = None;
    config.client_key = None;
    let anonymous = ResilientChannel::builder("tls-upstream")
        .endpoint(format!("https://{}", server.addr))
        .health_check(false)
        .tls(config.client().unwrap())
        .build()
        .unwrap();
    let refused = HealthClient::new(anonymous).check(HealthCheckRequest { service: String::new() }).await;
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn the_resilient_channel_refuses_urls_whose_scheme_contradicts_its_tls() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs(dir.path());
    let plaintext_url = ResilientChannel::builder("users")
        .endpoint("http://127.0.0.1:1")
        .tls(Some(client_tls(&files, false)))
        .build()
        .unwrap_err()
        .to_string();
    assert!(plaintext_url.contains("must be https://"), "{plaintext_url}");
    let no_tls = ResilientChannel::builder("users").endpoint("https://127.0.0.1:1").build().unwrap_err().to_string();
    assert!(no_tls.contains("tls.ca"), "{no_tls}");
}

#[test]
fn a_key_that_does_not_parse_is_refused_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let files = certs(dir.path());
    std::fs::write(&files.server_key, "not a key").unwrap();
    let error = server_tls(&files, false).server().unwrap_err().to_string();
    assert!(error.contains("invalid TLS certificate or key"), "{error}");
}
