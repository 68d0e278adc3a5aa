//! Authentication and authorization as a client meets them, over TLS on loopback against real `courier`
//! processes: bearer JWTs checked against a JWKS file (rotated while serving) or a development secret, mTLS
//! service identities, per-method scopes with default deny, and the audit log.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use courier_kit::tls::dev::DevCerts;
use courier_proto::payments::v1::payment_service_client::PaymentServiceClient;
use courier_proto::users::v1::user_service_client::UserServiceClient;
use courier_proto::users::v1::{CreateUserRequest, ListUsersRequest};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use tonic::transport::Channel;
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_courier");
const ISSUER: &str = "https://issuer.courier.test";
const AUDIENCE: &str = "courier";

/// A `courier` process; killed on drop. Its stderr (where logs, the audit lines among them, go) is collected.
struct Server {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// `courier <args> --config CONFIG --data-dir DIR --log info`, started once it printed its address.
    fn start(args: &[&str], config: &Path, data_dir: &Path) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(config)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--log", "info"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let addr = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("courier: listening on ").map(str::to_owned));
        std::thread::spawn(move || lines.for_each(drop));
        let Some(addr) = addr else {
            let _ = child.wait();
            panic!("the server did not start: {}", stderr.lock().unwrap());
        };
        Self { child, addr, stderr }
    }

    /// Waits (up to 10 s) until a stderr line contains every one of `parts`, and returns it.
    fn wait_for_log(&self, parts: &[&str]) -> String {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let found =
                self.stderr.lock().unwrap().lines().find(|l| parts.iter().all(|p| l.contains(p))).map(str::to_owned);
            if let Some(line) = found {
                return line;
            }
            assert!(Instant::now() < until, "no log line with {parts:?} in:\n{}", self.stderr.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Certificates from `courier dev certs`' generator, written to `dir`.
struct Certs {
    files: courier_kit::tls::dev::DevCertFiles,
}

impl Certs {
    fn new(dir: &Path) -> Self {
        Self { files: DevCerts::generate().unwrap().write(&dir.join("certs"), false).unwrap() }
    }

    /// The `[tls]` table: server TLS, mutual when `mutual`; outbound calls trust the same CA.
    fn table(&self, mutual: bool) -> String {
        let f = &self.files;
        let mut table = format!(
            "[tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\nclient_cert = {:?}\nclient_key = {:?}\n",
            f.server_cert, f.server_key, f.ca, f.client_cert, f.client_key
        );
        if mutual {
            table.push_str(&format!("client_ca = {:?}\n", f.ca));
        }
        table
    }

    /// A TLS channel to `addr`, with the client certificate when `identity`.
    async fn channel(&self, addr: &str, identity: bool) -> Channel {
        let f = &self.files;
        let identity =
            identity.then(|| (std::fs::read(&f.client_cert).unwrap(), std::fs::read(&f.client_key).unwrap()));
        let tls = courier_kit::tls::client_config(std::fs::read(&f.ca).unwrap(), identity, None);
        Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(tls).unwrap().connect().await.unwrap()
    }
}

/// A signing key and its public half as a JWK.
struct SigningKey {
    algorithm: Algorithm,
    kid: String,
    key: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    /// An Ed25519 key (rcgen); its JWK is `OKP` with the raw public key as `x`.
    fn ed25519(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let jwk =
            json!({"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": kid, "x": b64url(pair.public_key_raw())});
        Self::new(Algorithm::EdDSA, kid, EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).unwrap(), jwk)
    }

    /// A P-256 key (rcgen); its JWK is `EC` with the uncompressed point's coordinates.
    fn p256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw(); // 0x04 || x || y
        let (x, y) = (b64url(&point[1..33]), b64url(&point[33..65]));
        let jwk = json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": kid, "x": x, "y": y});
        Self::new(Algorithm::ES256, kid, EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(), jwk)
    }

    /// A 2048-bit RSA key (the `rsa` crate); its JWK is `RSA` with the modulus and exponent.
    fn rsa(kid: &str) -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let (n, e) = (b64url(&key.n().to_bytes_be()), b64url(&key.e().to_bytes_be()));
        let jwk = json!({"kty": "RSA", "alg": "RS256", "kid": kid, "n": n, "e": e});
        let pem = key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
        Self::new(Algorithm::RS256, kid, EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(), jwk)
    }

    fn new(algorithm: Algorithm, kid: &str, key: EncodingKey, jwk: serde_json::Value) -> Self {
        Self { algorithm, kid: kid.to_owned(), key, jwk: serde_json::from_value(jwk).unwrap() }
    }

    fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Valid claims for `sub` with `scope` (space-separated).
fn claims(sub: &str, scope: &str) -> serde_json::Value {
    json!({"sub": sub, "scope": scope, "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "nbf": now() - 1, "exp": now() + 600})
}

/// Writes a JWKS file holding `keys`, atomically (a reader never sees half a file).
fn write_jwks(path: &Path, keys: &[&SigningKey]) {
    let set = JwkSet { keys: keys.iter().map(|k| k.jwk.clone()).collect() };
    write_atomically(path, &serde_json::to_vec_pretty(&set).unwrap());
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// The status of ListUsers with `authorization` (the whole header value) or none.
async fn list_users(channel: &Channel, authorization: Option<&str>) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(ListUsersRequest::default());
    if let Some(value) = authorization {
        request.metadata_mut().insert("authorization", value.parse().unwrap());
    }
    let mut stream = UserServiceClient::new(channel.clone()).list_users(request).await?.into_inner();
    while stream.message().await?.is_some() {}
    Ok(())
}

/// A users server on TLS with `[auth]` reading `jwks`.
struct JwksSetup {
    _dir: tempfile::TempDir,
    certs: Certs,
    jwks: PathBuf,
    server: Server,
}

fn jwks_setup(keys: &[&SigningKey]) -> JwksSetup {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(dir.path());
    let jwks = dir.path().join("jwks.json");
    write_jwks(&jwks, keys);
    let config = dir.path().join("courier.toml");
    let auth = format!("[auth]\njwks_file = {jwks:?}\nissuer = {ISSUER:?}\naudience = {AUDIENCE:?}\nleeway = \"5s\"\n");
    std::fs::write(&config, format!("{}\n{auth}", certs.table(false))).unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&["serve", "users"], &config, &data);
    JwksSetup { _dir: dir, certs, jwks, server }
}

#[tokio::test]
async fn every_bad_token_is_unauthenticated_and_never_echoed() {
    let (ed, es, rs) = (SigningKey::ed25519("ed-1"), SigningKey::p256("es-1"), SigningKey::rsa("rs-1"));
    let setup = jwks_setup(&[&ed, &es, &rs]);
    let channel = setup.certs.channel(&setup.server.addr, false).await;

    // Every key type verifies a good token.
    for key in [&ed, &es, &rs] {
        let token = key.sign(&claims("merchant_1", "users:read"));
        list_users(&channel, Some(&format!("Bearer {token}"))).await.unwrap();
    }

    let good = claims("merchant_1", "users:read");
    let with = |field: &str, value: serde_json::Value| {
        let mut claims = good.clone();
        claims[field] = value;
        claims
    };
    let b64 = |v: &serde_json::Value| b64url(v.to_string().as_bytes());
    let other = SigningKey::ed25519("ed-1"); // same kid, different key: the signature cannot verify
    let jwks_bytes = std::fs::read(&setup.jwks).unwrap();
    let hs256_with_public_key = jsonwebtoken::encode(
        &Header { kid: Some("ed-1".into()), ..Header::new(Algorithm::HS256) },
        &good,
        &EncodingKey::from_secret(&jwks_bytes),
    )
    .unwrap();
    // The classic confusion: the RSA public key, as published, used as an HMAC secret, with the RSA key's kid.
    let rsa_public = serde_json::to_vec(&rs.jwk).unwrap();
    let hs256_with_rsa_modulus = jsonwebtoken::encode(
        &Header { kid: Some("rs-1".into()), ..Header::new(Algorithm::HS256) },
        &good,
        &EncodingKey::from_secret(&rsa_public),
    )
    .unwrap();
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "missing bearer token"),
        ("not bearer", Some("Basic dXNlcjpwYXNz".into()), "malformed"),
        ("not a JWT", Some("Bearer not.a.jwt".into()), "malformed"),
        ("expired", Some(format!("Bearer {}", ed.sign(&with("exp", json!(now() - 60))))), "expired"),
        ("not yet valid", Some(format!("Bearer {}", ed.sign(&with("nbf", json!(now() + 600))))), "not yet valid"),
        ("wrong issuer", Some(format!("Bearer {}", ed.sign(&with("iss", json!("https://evil.test"))))), "issuer"),
        ("wrong audience", Some(format!("Bearer {}", ed.sign(&with("aud", json!("someone-else"))))), "audience"),
        ("bad signature", Some(format!("Bearer {}", other.sign(&good))), "signature"),
        (
            "alg none",
            Some(format!("Bearer {}.{}.", b64(&json!({"alg": "none", "typ": "JWT"})), b64(&good))),
            "algorithm",
        ),
        ("HS256 against public keys", Some(format!("Bearer {hs256_with_public_key}")), "algorithm"),
        ("HS256 against the RS256 key", Some(format!("Bearer {hs256_with_rsa_modulus}")), "algorithm"),
    ];
    for (case, authorization, reason) in cases {
        let status = list_users(&channel, authorization.as_deref()).await.expect_err(case);
        assert_eq!(status.code(), Code::Unauthenticated, "{case}: {status:?}");
        assert!(status.message().contains(reason), "{case}: {:?}", status.message());
        if let Some(value) = &authorization {
            let token = value.split_once(' ').map_or(value.as_str(), |(_, t)| t);
            assert!(!status.message().contains(token), "{case}: the token was echoed");
        }
    }
    // The token never reaches the logs either.
    let logs = setup.server.stderr.lock().unwrap().clone();
    assert!(!logs.contains(&hs256_with_public_key), "a token was logged");

    // Health stays open, without a token or with a bad one.
    for token in [None, Some("expired.or.forged")] {
        let mut request = tonic::Request::new(tonic_health::pb::HealthCheckRequest { service: String::new() });
        if let Some(token) = token {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        let health = tonic_health::pb::health_client::HealthClient::new(channel.clone()).check(request).await.unwrap();
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        assert_eq!(health.into_inner().status, serving);
    }
}

#[tokio::test]
async fn a_missing_scope_or_a_method_without_a_rule_is_permission_denied_and_audited() {
    let ed = SigningKey::ed25519("ed-1");
    let setup = jwks_setup(&[&ed]);
    let channel = setup.certs.channel(&setup.server.addr, false).await;
    let reader = ed.sign(&claims("merchant_reader", "users:read"));

    let create = CreateUserRequest { name: "Ada".into(), email: "ada@example.com".into() };
    let status =
        UserServiceClient::new(channel.clone()).create_user(with_token(create.clone(), &reader)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("users:write"), "{status:?}");
    let line = setup.server.wait_for_log(&["audit", "CreateUser", "merchant_reader"]);
    assert!(line.contains("denied") && line.contains("PermissionDenied"), "{line}");

    // PaymentService is not served here, so it has no rule: denied before routing, whatever the scopes.
    let everything = ed.sign(&claims("merchant_reader", "users:read users:write accounts:read"));
    let request =
        with_token(courier_proto::payments::v1::GetAccountRequest { account_id: "acc_x".into() }, &everything);
    let status = PaymentServiceClient::new(channel.clone()).get_account(request).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(status.message().contains("no access rule"), "{status:?}");

    // An unauthenticated call is audited too.
    let _ = list_users(&channel, None).await;
    setup.server.wait_for_log(&["audit", "ListUsers", "unauthenticated"]);

    // With the scope, it works.
    let writer = ed.sign(&claims("merchant_writer", "users:write"));
    UserServiceClient::new(channel).create_user(with_token(create, &writer)).await.unwrap();
    // The log names the new user by a masked email only.
    setup.server.wait_for_log(&["user created", "a***@example.com"]);
    assert!(!setup.server.stderr.lock().unwrap().contains("ada@example.com"), "a full email was logged");
}

#[tokio::test]
async fn a_rotated_jwks_file_is_picked_up_without_restart_and_a_broken_one_is_ignored() {
    let (old, new) = (SigningKey::ed25519("2026-01"), SigningKey::p256("2026-02"));
    let setup = jwks_setup(&[&old]);
    let channel = setup.certs.channel(&setup.server.addr, false).await;
    let (old_token, new_token) = (old.sign(&claims("m", "users:read")), new.sign(&claims("m", "users:read")));
    let bearer = |t: &str| format!("Bearer {t}");

    list_users(&channel, Some(&bearer(&old_token))).await.unwrap();
    let status = list_users(&channel, Some(&bearer(&new_token))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // Rotate: the new key in, the old one out.
    write_jwks(&setup.jwks, &[&new]);
    let until = Instant::now() + Duration::from_secs(10);
    while list_users(&channel, Some(&bearer(&new_token))).await.is_err() {
        assert!(Instant::now() < until, "the rotated key was never accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = list_users(&channel, Some(&bearer(&old_token))).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "the retired key still verifies");

    // A broken file keeps the last good keys: every call succeeds until the server has seen (and reported) it.
    write_atomically(&setup.jwks, b"{ not json");
    let until = Instant::now() + Duration::from_secs(10);
    while !setup.server.stderr.lock().unwrap().contains("keeping the last good keys") {
        list_users(&channel, Some(&bearer(&new_token))).await.unwrap();
        assert!(Instant::now() < until, "the broken file was never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    list_users(&channel, Some(&bearer(&new_token))).await.unwrap();
}

#[tokio::test]
async fn an_mtls_service_identity_gets_its_mapped_scopes_and_an_unknown_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(dir.path());
    let start = |identity: &str, name: &str| {
        let config = dir.path().join(format!("{name}.toml"));
        let auth = format!("[auth.services]\n{identity:?} = [\"users:read\"]\n");
        std::fs::write(&config, format!("{}\n{auth}", certs.table(true))).unwrap();
        Server::start(&["serve", "users"], &config, &dir.path().join(name))
    };
    // The dev client certificate is spiffe://courier/payments.
    let known = start("spiffe://courier/payments", "known");
    let channel = certs.channel(&known.addr, true).await;
    list_users(&channel, None).await.unwrap();
    let create = CreateUserRequest { name: "Ada".into(), email: "ada@example.com".into() };
    let status = UserServiceClient::new(channel).create_user(create).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    known.wait_for_log(&["audit", "spiffe://courier/payments", "CreateUser"]);

    let unknown = start("spiffe://courier/someone-else", "unknown");
    let channel = certs.channel(&unknown.addr, true).await;
    let status = list_users(&channel, None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(status.message().contains("unknown service identity"), "{status:?}");
}

/// `courier dev token --secret-file SECRET --subject SUBJECT --scopes SCOPES`.
fn dev_token(secret: &Path, subject: &str, scopes: &str) -> String {
    dev_token_with(secret, &["--subject", subject, "--scopes", scopes])
}

/// `courier dev token --secret-file SECRET ARGS...`.
fn dev_token_with(secret: &Path, args: &[&str]) -> String {
    let output = Command::new(BIN)
        .args(["dev", "token", "--ttl", "10m"])
        .args(args)
        .arg("--secret-file")
        .arg(secret)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

/// `courier up` on TLS with `[auth] secret_file` (development tokens).
struct UpSetup {
    dir: tempfile::TempDir,
    certs: Certs,
    secret: PathBuf,
    server: Server,
}

fn up_with_secret() -> UpSetup {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(dir.path());
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n").unwrap();
    let config = dir.path().join("courier.toml");
    std::fs::write(&config, format!("{}\n[auth]\nsecret_file = {secret:?}\n", certs.table(false))).unwrap();
    let server = Server::start(&["up", "--admin-listen", "off"], &config, &dir.path().join("data"));
    UpSetup { dir, certs, secret, server }
}

#[tokio::test]
async fn a_merchant_never_sees_nor_moves_another_merchants_authorizations() {
    use courier_proto::payments::v1 as pb;
    use courier_tests::payments::{authorize_request, capture_request, key, void_request};

    let setup = up_with_secret();
    let channel = setup.certs.channel(&setup.server.addr, false).await;
    let operator = dev_token(&setup.secret, "ops", "users:write,accounts:write,accounts:read");
    let alice = dev_token(&setup.secret, "merchant_a", "payments:authorize,payments:capture,payments:read");
    let mallory = dev_token(&setup.secret, "merchant_b", "payments:authorize,payments:capture,payments:read");
    let payments = || PaymentServiceClient::new(channel.clone());

    // Opening an account makes payments ask UserService, with its own token, over TLS.
    let create = CreateUserRequest { name: "Holder".into(), email: "holder@example.com".into() };
    let user = UserServiceClient::new(channel.clone()).create_user(with_token(create, &operator)).await.unwrap();
    let open = pb::OpenAccountRequest {
        owner_user_id: user.into_inner().user.unwrap().id,
        currency: "USD".into(),
        credit_limit: 0,
    };
    let account = payments().open_account(with_token(open, &operator)).await.unwrap().into_inner().account.unwrap();
    let credit = pb::CreditAccountRequest {
        account_id: account.id.clone(),
        amount: 10_000,
        currency: "USD".into(),
        idempotency_key: key(),
    };
    payments().credit_account(with_token(credit, &operator)).await.unwrap();

    // Alice authorizes with an empty merchant_id: the token's merchant is used.
    let mut request = authorize_request(&account.id, 1_000);
    request.merchant_id = String::new();
    let held = payments().authorize(with_token(request, &alice)).await.unwrap().into_inner().authorization.unwrap();
    assert_eq!(held.merchant_id, "merchant_a");
    assert_eq!(held.status(), pb::AuthorizationStatus::Held);

    // Naming another merchant in the body is refused.
    let mut request = authorize_request(&account.id, 1_000);
    request.merchant_id = "merchant_a".into();
    let status = payments().authorize(with_token(request, &mallory)).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");

    // Mallory cannot tell Alice's authorization from one that does not exist.
    let id = held.id.clone();
    let get = pb::GetAuthorizationRequest { authorization_id: id.clone() };
    let status = payments().get_authorization(with_token(get.clone(), &mallory)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "get: {status:?}");
    let status = payments().capture(with_token(capture_request(&id, 0), &mallory)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "capture: {status:?}");
    let status = payments().void(with_token(void_request(&id), &mallory)).await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound, "void: {status:?}");
    let batch = futures::stream::iter([pb::BatchCaptureRequest { capture: Some(capture_request(&id, 0)) }]);
    let summary = payments().batch_capture(with_token(batch, &mallory)).await.unwrap().into_inner();
    assert_eq!((summary.captured, summary.failed), (0, 1));
    assert_eq!(summary.failures[0].error.as_ref().unwrap().code, Code::NotFound as i32);
    let list = |token: &str, merchant: &str| {
        let request = pb::ListAuthorizationsRequest { merchant_id: merchant.into(), ..Default::default() };
        let mut client = payments();
        let request = with_token(request, token);
        async move {
            let mut stream = client.list_authorizations(request).await?.into_inner();
            let mut ids = Vec::new();
            while let Some(item) = stream.message().await? {
                ids.push(item.authorization.unwrap().id);
            }
            Ok::<_, tonic::Status>(ids)
        }
    };
    assert_eq!(list(&mallory, "").await.unwrap(), Vec::<String>::new(), "mallory's own list is empty");
    assert_eq!(list(&mallory, "merchant_a").await.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(list(&alice, "").await.unwrap(), vec![id.clone()]);
    // A back-office token (merchants:any) sees every merchant's.
    let back_office = dev_token(&setup.secret, "support", "payments:read,merchants:any");
    assert_eq!(list(&back_office, "merchant_a").await.unwrap(), vec![id.clone()]);
    // A till's token acts for the merchant named by --merchant, not for its subject.
    let till = dev_token_with(
        &setup.secret,
        &["--subject", "till_7", "--merchant", "merchant_a", "--scopes", "payments:read"],
    );
    assert_eq!(list(&till, "").await.unwrap(), vec![id.clone()], "the till sees merchant_a's");
    assert_eq!(list(&till, "merchant_b").await.unwrap_err().code(), Code::PermissionDenied);

    // Nothing moved: the hold is intact and the ledger balances.
    let get = payments().get_authorization(with_token(get, &alice)).await.unwrap().into_inner();
    assert_eq!(get.authorization.unwrap().status(), pb::AuthorizationStatus::Held);
    let read = pb::GetAccountRequest { account_id: account.id.clone() };
    let after = payments().get_account(with_token(read, &operator)).await.unwrap().into_inner().account.unwrap();
    assert_eq!((after.posted_balance, after.held_amount, after.available_amount), (10_000, 1_000, 9_000));
    // The refusals and the money-moving calls are in the audit log; an admitted call's line carries the status
    // the handler answered, written when the call ended.
    let held = setup.server.wait_for_log(&["audit", "PaymentService/Authorize", "merchant_a", "allowed"]);
    assert!(held.contains("code=Ok"), "{held}");
    let other_merchant = setup.server.wait_for_log(&["audit", "PaymentService/Capture", "merchant_b", "allowed"]);
    assert!(other_merchant.contains("code=NotFound"), "{other_merchant}");
    let named_a = setup.server.wait_for_log(&["audit", "PaymentService/Authorize", "merchant_b", "allowed"]);
    assert!(named_a.contains("code=PermissionDenied"), "{named_a}");
    drop(setup.server);
    let data = setup.dir.path().join("data");
    courier_tests::process::ledger_check(BIN, &["--data-dir", data.to_str().unwrap()]);
}

#[test]
fn the_cli_sends_a_dev_token_and_is_refused_without_one() {
    let setup = up_with_secret();
    let url = format!("https://{}", setup.server.addr);
    let ca = setup.certs.files.ca.to_str().unwrap().to_owned();
    let cli = |extra: &[&str]| {
        Command::new(BIN)
            .args(["users", "list", "--server", &url, "--ca", &ca, "--timeout", "5s"])
            .args(extra)
            .env_remove("COURIER_TOKEN")
            .current_dir(setup.dir.path())
            .output()
            .unwrap()
    };
    let refused = cli(&[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("UNAUTHENTICATED"), "{refused:?}");
    let token = dev_token(&setup.secret, "ops", "users:read");
    let listed = cli(&["--token", &token]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
}

#[test]
fn every_address_without_auth_is_refused_unless_no_auth() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["serve", "users", "--listen", "0.0.0.0:0", "--allow-insecure", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("refusing to serve without authentication") && message.contains("--no-auth"), "{message}");
}

#[test]
fn up_has_dev_auth_by_default_with_a_private_secret_and_token_that_the_cli_picks_up() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let data = dir.path().join("courier-data");
    let server = Server::start(&["up", "--admin-listen", "off"], &config, &data);
    for file in ["dev-secret", "token"] {
        let mode = std::fs::metadata(data.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let secret = std::fs::read(data.join("dev-secret")).unwrap();
    let url = format!("http://{}", server.addr);
    let cli = |cwd: &Path, extra: &[&str], env: Option<&Path>| {
        let mut command = Command::new(BIN);
        command
            .args(["users", "create", "--name", "Ada", "--email", "ada@example.com", "--server", &url])
            .args(extra)
            .env_remove("COURIER_TOKEN")
            .env_remove("COURIER_DATA_DIR")
            .current_dir(cwd);
        if let Some(data) = env {
            command.env("COURIER_DATA_DIR", data);
        }
        command.output().unwrap()
    };
    // From the directory `up` ran in, the CLI finds ./courier-data/token; from elsewhere it needs --data-dir or
    // COURIER_DATA_DIR, and without either it has no token.
    let created = cli(dir.path(), &[], None);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let elsewhere = tempfile::tempdir().unwrap();
    let refused = cli(elsewhere.path(), &[], None);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("UNAUTHENTICATED"), "{refused:?}");
    server.wait_for_log(&["audit", "unauthenticated", "CreateUser"]);
    let flag = cli(elsewhere.path(), &["--data-dir", data.to_str().unwrap()], None);
    // Same e-mail again: ALREADY_EXISTS means the call got past authentication.
    assert!(String::from_utf8_lossy(&flag.stderr).contains("ALREADY_EXISTS"), "{flag:?}");
    let env = cli(elsewhere.path(), &[], Some(&data));
    assert!(String::from_utf8_lossy(&env.stderr).contains("ALREADY_EXISTS"), "{env:?}");
    drop(server);

    // The secret is made once: a restart keeps it (tokens already handed out stay valid). `--dev-auth`, the
    // flag that used to turn this on, is still accepted.
    let again = Server::start(&["up", "--dev-auth", "--admin-listen", "off"], &config, &data);
    assert_eq!(std::fs::read(data.join("dev-secret")).unwrap(), secret);
    drop(again);
}

#[test]
fn the_cli_example_up_prints_works_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("elsewhere");
    let mut server = Guard(
        Command::new(BIN)
            .args(["up", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--log", "warn", "--data-dir"])
            .arg(&data)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let startup: Vec<String> =
        lines.by_ref().map_while(Result::ok).take_while(|l| !l.starts_with("courier: the CLI reads")).collect();
    std::thread::spawn(move || lines.for_each(drop));
    // The example names the data dir (not the CLI's default), and the token's file is named.
    let example = startup.iter().find_map(|l| l.strip_prefix("courier: try `")).expect("an example");
    let example = example.trim_end_matches('`');
    assert!(example.contains(&format!("--data-dir {}", data.display())), "{example}");
    assert!(startup.iter().any(|l| l.contains(&data.join("token").display().to_string())), "{startup:?}");
    // Run as printed, from another directory, with no token in the environment.
    let args: Vec<&str> = example.split_whitespace().skip(1).collect();
    let output = Command::new(BIN)
        .args(&args)
        .env_remove("COURIER_TOKEN")
        .env_remove("COURIER_DATA_DIR")
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{example}: {}", String::from_utf8_lossy(&output.stderr));
}

/// Kills the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn up_no_auth_serves_without_tokens_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("empty.toml");
    std::fs::write(&config, "").unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&["up", "--no-auth", "--admin-listen", "off"], &config, &data);
    assert!(!data.join("token").exists(), "--no-auth wrote a token");
    let listed = Command::new(BIN)
        .args(["users", "list", "--server", &format!("http://{}", server.addr), "--data-dir"])
        .arg(&data)
        .env_remove("COURIER_TOKEN")
        .output()
        .unwrap();
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    drop(server);

    // Reachable from other hosts, turning authentication off takes --allow-insecure as well.
    let refused = Command::new(BIN)
        .args(["up", "--no-auth", "--listen", "0.0.0.0:0", "--admin-listen", "off", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("courier up --no-auth") && message.contains("--allow-insecure"), "{message}");
}

#[tokio::test]
async fn a_subject_over_its_rate_limit_gets_resource_exhausted_and_others_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::new(dir.path());
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210").unwrap();
    let config = dir.path().join("courier.toml");
    let auth = format!("[auth]\nsecret_file = {secret:?}\n[auth.rate_limit]\nper_second = 1\nburst = 2\n");
    std::fs::write(&config, format!("{}\n{auth}", certs.table(false))).unwrap();
    let server = Server::start(&["serve", "users"], &config, &dir.path().join("data"));
    let channel = certs.channel(&server.addr, false).await;
    let (noisy, quiet) = (dev_token(&secret, "noisy", "users:read"), dev_token(&secret, "quiet", "users:read"));

    // The burst passes; well before the bucket refills (one per second) a call is refused.
    list_users(&channel, Some(&format!("Bearer {noisy}"))).await.unwrap();
    list_users(&channel, Some(&format!("Bearer {noisy}"))).await.unwrap();
    let mut refused = None;
    for _ in 0..5 {
        if let Err(status) = list_users(&channel, Some(&format!("Bearer {noisy}"))).await {
            refused = Some(status);
            break;
        }
    }
    let status = refused.expect("never limited");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    // Another subject has its own bucket.
    list_users(&channel, Some(&format!("Bearer {quiet}"))).await.unwrap();
    server.wait_for_log(&["audit", "noisy", "limited"]);
}
