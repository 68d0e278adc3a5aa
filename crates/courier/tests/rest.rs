//! REST/JSON on the gRPC port (docs/rest.md), as a plain HTTP client meets it: the real `curl` binary against a
//! real `courier up`, over HTTP/1.1 on the same port gRPC clients use. Every route's happy path, each error
//! mapping that can be provoked from outside, tenant isolation, Idempotency-Key replay (and agreement with the
//! same call over gRPC), and a 10,000-user NDJSON stream.

use std::path::Path;
use std::process::Command;

use courier_proto::payments::v1 as pb;
use courier_tests::process::CourierProcess;
use futures::StreamExt;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_courier");

/// One HTTP answer.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }

    /// The NDJSON lines, parsed.
    fn lines(&self) -> Vec<Value> {
        self.body.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
        })
    }

    /// Asserts the status and that the body is a JSON google.rpc.Status with `code`; returns it.
    fn error(&self, http: u16, code: i64) -> Value {
        assert_eq!(self.status, http, "{self:?}");
        let status = self.json();
        assert_eq!(status["code"], code, "{self:?}");
        assert!(status["message"].is_string() && status["details"].is_array(), "{self:?}");
        assert_eq!(self.header("content-type").as_deref(), Some("application/json"), "{self:?}");
        status
    }

    /// The field of the first BadRequest field violation.
    fn violated_field(&self) -> String {
        let status = self.json();
        let details = status["details"].as_array().unwrap();
        let bad = details.iter().find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest");
        let bad = bad.unwrap_or_else(|| panic!("no BadRequest: {self:?}"));
        bad["fieldViolations"][0]["field"].as_str().unwrap().to_owned()
    }
}

/// A REST client of one server: curl with a token (or none).
#[derive(Clone)]
struct Rest {
    base: String,
    token: Option<String>,
}

impl Rest {
    fn new(server: &CourierProcess) -> Self {
        let token = std::fs::read_to_string(server.data_dir.join("token")).ok().map(|t| t.trim().to_owned());
        Self { base: format!("http://{}", server.addr), token }
    }

    fn with_token(&self, token: Option<&str>) -> Self {
        Self { base: self.base.clone(), token: token.map(str::to_owned) }
    }

    /// `curl -X METHOD URL` with `body` (JSON) and extra `-H` headers.
    fn call(&self, method: &str, path: &str, body: Option<&str>, headers: &[&str]) -> Answer {
        let mut command = Command::new("curl");
        command.args(["-sS", "--max-time", "60", "-D", "-", "-X", method]);
        if let Some(token) = &self.token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        for header in headers {
            command.args(["-H", header]);
        }
        if let Some(body) = body {
            command.args(["-H", "Content-Type: application/json", "--data-binary", body]);
        }
        command.arg(format!("{}{path}", self.base));
        let output = command.output().expect("run curl");
        assert!(output.status.success(), "curl {method} {path}: {}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8(output.stdout).expect("UTF-8");
        let (headers, body) = text.split_once("\r\n\r\n").expect("a complete HTTP answer");
        let status = headers.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
        Answer { status, headers: headers.to_owned(), body: body.to_owned() }
    }

    fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, &[])
    }

    fn post(&self, path: &str, body: Value) -> Answer {
        self.call("POST", path, Some(&body.to_string()), &[])
    }

    fn patch(&self, path: &str, body: Value) -> Answer {
        self.call("PATCH", path, Some(&body.to_string()), &[])
    }

    /// A 200 answer's JSON.
    fn ok(answer: Answer) -> Value {
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.json()
    }
}

/// Asserts that the curl binary is here. These tests are the REST edge's proof: without curl they must fail,
/// never pass having checked nothing.
fn require_curl() {
    let found = Command::new("curl").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "the REST tests run the real curl binary, which is not installed: apt-get install curl");
}

/// `courier up` in a fresh data dir (development auth: its token in the data dir).
fn up(dir: &Path, env: &[(&str, &str)]) -> CourierProcess {
    let data = dir.join("courier-data");
    let data = data.to_str().unwrap();
    CourierProcess::start_with_env(
        BIN,
        &["up", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", data],
        env,
    )
}

/// [`up`] with `config` written to a `--config` file.
fn up_with_config(dir: &Path, config: &str, env: &[(&str, &str)]) -> CourierProcess {
    let file = dir.join("courier.toml");
    std::fs::write(&file, config).unwrap();
    let data = dir.join("courier-data");
    let args = ["up", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", data.to_str().unwrap()];
    CourierProcess::start_with_env(BIN, &[&args[..], &["--config", file.to_str().unwrap()]].concat(), env)
}

/// `courier dev token` signed with the data dir's development secret.
fn dev_token(server: &CourierProcess, subject: &str, scopes: &str) -> String {
    let output = Command::new(BIN)
        .args(["dev", "token", "--ttl", "10m", "--subject", subject, "--scopes", scopes, "--secret-file"])
        .arg(server.data_dir.join("dev-secret"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn key() -> String {
    courier_tests::payments::key()
}

fn new_user(rest: &Rest) -> Value {
    let email = format!("{}@example.com", key());
    Rest::ok(rest.post("/v1/users", json!({"name": "Ada", "email": email})))["user"].clone()
}

/// A user's USD account credited with `funds` minor units, through REST.
fn funded_account(rest: &Rest, funds: i64) -> String {
    let user = new_user(rest);
    let account = Rest::ok(rest.post("/v1/accounts", json!({"ownerUserId": user["id"], "currency": "USD"})));
    let id = account["account"]["id"].as_str().unwrap().to_owned();
    let credit = json!({"amount": funds.to_string(), "currency": "USD", "idempotencyKey": key()});
    Rest::ok(rest.post(&format!("/v1/accounts/{id}:credit"), credit));
    id
}

/// The development token acts for every merchant, so it names one; a merchant's own token need not.
const MERCHANT: &str = "m_test";

fn authorize(rest: &Rest, account: &str, amount: i64) -> Value {
    authorize_for(rest, Some(MERCHANT), account, amount)
}

fn authorize_for(rest: &Rest, merchant: Option<&str>, account: &str, amount: i64) -> Value {
    let mut request =
        json!({"accountId": account, "amount": amount.to_string(), "currency": "USD", "idempotencyKey": key()});
    if let Some(merchant) = merchant {
        request["merchantId"] = json!(merchant);
    }
    Rest::ok(rest.post("/v1/authorizations", request))["authorization"].clone()
}

#[tokio::test]
async fn every_route_answers_its_happy_path_in_canonical_json() {
    require_curl();
    let dir = tempfile::tempdir().unwrap();
    let server = up(dir.path(), &[]);
    let rest = Rest::new(&server);

    // Users: create (the README's call, as printed), get, update status, list.
    let created = rest.call("POST", "/v1/users", Some(r#"{"name":"Ada","email":"ada@example.com"}"#), &[]);
    let user = Rest::ok(created)["user"].clone();
    let id = user["id"].as_str().unwrap();
    assert!(id.starts_with("usr_"), "{user}");
    assert_eq!(user["status"], "USER_STATUS_ACTIVE", "enums by name");
    assert!(user["createdAt"].as_str().unwrap().ends_with('Z'), "timestamps in RFC 3339: {user}");
    assert_eq!(Rest::ok(rest.get(&format!("/v1/users/{id}")))["user"], user);
    // HTTP/2 without TLS (prior knowledge) is REST too: told apart from gRPC by the content type alone.
    let h2 = rest.call("GET", &format!("/v1/users/{id}"), None, &[]);
    let output = Command::new("curl")
        .args([
            "-sS",
            "--http2-prior-knowledge",
            "-H",
            &format!("Authorization: Bearer {}", rest.token.as_ref().unwrap()),
        ])
        .arg(format!("{}/v1/users/{id}", rest.base))
        .output()
        .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&output.stdout).unwrap(), h2.json());
    let suspended = rest.patch(&format!("/v1/users/{id}/status"), json!({"status": "USER_STATUS_SUSPENDED"}));
    assert_eq!(Rest::ok(suspended)["user"]["status"], "USER_STATUS_SUSPENDED");
    // Original proto field names are accepted too; a path variable wins over the body.
    let active =
        rest.patch(&format!("/v1/users/{id}/status"), json!({"id": "usr_other", "status": "USER_STATUS_ACTIVE"}));
    assert_eq!(Rest::ok(active)["user"]["id"], id);
    let other = new_user(&rest);
    let listed = rest.get("/v1/users?pageSize=1");
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.header("content-type").as_deref(), Some("application/x-ndjson"));
    let lines = listed.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["user"]["id"], id);
    let token = lines[0]["resumeToken"].as_str().unwrap();
    let rest_of = rest.get(&format!("/v1/users?page_token={token}&status=USER_STATUS_ACTIVE")).lines();
    assert_eq!(rest_of.iter().map(|l| l["user"]["id"].clone()).collect::<Vec<_>>(), vec![other["id"].clone()]);

    // Accounts: open, credit, get, freeze and reactivate. int64 amounts are strings; every field is present.
    let account = funded_account(&rest, 10_000);
    let got = Rest::ok(rest.get(&format!("/v1/accounts/{account}")))["account"].clone();
    assert_eq!((got["postedBalance"].clone(), got["heldAmount"].clone()), (json!("10000"), json!("0")), "{got}");
    assert_eq!(got["creditLimit"], "0", "defaults are written out");
    let frozen = rest.patch(&format!("/v1/accounts/{account}/status"), json!({"status": "ACCOUNT_STATUS_FROZEN"}));
    assert_eq!(Rest::ok(frozen)["account"]["status"], "ACCOUNT_STATUS_FROZEN");
    let active = rest.patch(&format!("/v1/accounts/{account}/status"), json!({"status": "ACCOUNT_STATUS_ACTIVE"}));
    assert_eq!(Rest::ok(active)["account"]["status"], "ACCOUNT_STATUS_ACTIVE");

    // Authorizations: authorize, capture, void, get, list.
    let held = authorize(&rest, &account, 1_000);
    assert_eq!(
        (held["decision"].as_str(), held["status"].as_str()),
        (Some("DECISION_APPROVED"), Some("AUTHORIZATION_STATUS_HELD"))
    );
    let held_id = held["id"].as_str().unwrap();
    let capture = json!({"amount": "600", "idempotencyKey": key()});
    let captured =
        Rest::ok(rest.post(&format!("/v1/authorizations/{held_id}:capture"), capture))["authorization"].clone();
    assert_eq!(
        (captured["status"].as_str(), captured["capturedAmount"].as_str()),
        (Some("AUTHORIZATION_STATUS_CAPTURED"), Some("600"))
    );
    let second = authorize(&rest, &account, 500);
    let second_id = second["id"].as_str().unwrap();
    let voided = rest.post(&format!("/v1/authorizations/{second_id}:void"), json!({"idempotencyKey": key()}));
    assert_eq!(Rest::ok(voided)["authorization"]["status"], "AUTHORIZATION_STATUS_VOIDED");
    let got = Rest::ok(rest.get(&format!("/v1/authorizations/{held_id}")))["authorization"].clone();
    assert_eq!(got, captured);
    let listed = rest.get(&format!("/v1/authorizations?accountId={account}")).lines();
    let ids: Vec<&str> = listed.iter().map(|l| l["authorization"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![held_id, second_id]);
    let since = "2000-01-01T00:00:00Z";
    let captured_only = rest.get(&format!(
        "/v1/authorizations?accountId={account}&status=AUTHORIZATION_STATUS_CAPTURED&createdFrom={since}"
    ));
    assert_eq!(captured_only.lines().len(), 1, "{captured_only:?}");

    // Events: a live feed; the caller's deadline ends it, after the backlog, with one final error line.
    let events =
        rest.call("GET", &format!("/v1/events?accountId={account}&fromSequence=1"), None, &["X-Request-Timeout: 1s"]);
    assert_eq!(events.status, 200, "{events:?}");
    let lines = events.lines();
    let (last, backlog) = lines.split_last().unwrap();
    let types: Vec<&str> = backlog.iter().map(|l| l["event"]["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "EVENT_TYPE_ACCOUNT_OPENED",
            "EVENT_TYPE_CREDITED",
            "EVENT_TYPE_ACCOUNT_STATUS_CHANGED",
            "EVENT_TYPE_ACCOUNT_STATUS_CHANGED",
            "EVENT_TYPE_AUTHORIZED",
            "EVENT_TYPE_CAPTURED",
            "EVENT_TYPE_AUTHORIZED",
            "EVENT_TYPE_VOIDED"
        ]
    );
    assert_eq!(last["error"]["code"], 4, "DEADLINE_EXCEEDED ends the stream: {last}");

    // Risk: score, rule set, rollout, reload, stats.
    let score = json!({"accountId": account, "merchantId": "m_1", "amount": "100", "currency": "USD"});
    let scored = Rest::ok(rest.post("/v1/risk:score", score));
    assert_eq!(scored["decision"], "RISK_DECISION_ALLOW", "{scored}");
    let rule_set = Rest::ok(rest.get("/v1/risk/rule-set"));
    let version = rule_set["ruleSet"]["version"].as_str().unwrap().to_owned();
    assert_eq!(Rest::ok(rest.get(&format!("/v1/risk/rule-set?version={version}")))["ruleSet"]["version"], version);
    let rollout = rest.post("/v1/risk/rollout", json!({"version": version, "mode": "ROLLOUT_MODE_ENFORCE"}));
    assert_eq!(Rest::ok(rollout)["rollout"]["activeVersion"], version);
    let reloaded = rest.post("/v1/risk/rules:reload", json!({}));
    assert!(reloaded.status == 200 || reloaded.error(400, 9)["message"].is_string(), "{reloaded:?}");
    let stats = Rest::ok(rest.get("/v1/risk/rollout/stats"));
    assert!(stats["evaluations"].as_str().unwrap().parse::<i64>().is_ok(), "int64 as a string: {stats}");

    // The OpenAPI document, served without a token, is the committed docs/openapi.json.
    let openapi = rest.with_token(None).get("/openapi.json");
    assert_eq!(openapi.status, 200, "{openapi:?}");
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json")).unwrap();
    assert_eq!(openapi.body, committed);

    drop(server);
    let data = dir.path().join("courier-data");
    courier_tests::process::ledger_check(BIN, &["--data-dir", data.to_str().unwrap()]);
}

#[tokio::test]
async fn mistakes_and_refusals_are_json_statuses_with_grpc_gateways_http_codes() {
    require_curl();
    let dir = tempfile::tempdir().unwrap();
    let server = up(dir.path(), &[("COURIER_SERVER__MAX_RECV_MESSAGE_BYTES", "65536")]);
    let rest = Rest::new(&server);

    // The request itself: unknown field, wrong type, not JSON, not an object, bad query parameter.
    let unknown = rest.post("/v1/users", json!({"name": "Ada", "emial": "ada@example.com"}));
    unknown.error(400, 3);
    assert_eq!(unknown.violated_field(), "emial");
    let account = funded_account(&rest, 10_000);
    let wrong =
        rest.post("/v1/authorizations", json!({"accountId": account, "merchantId": MERCHANT, "amount": "lots"}));
    wrong.error(400, 3);
    assert_eq!(wrong.violated_field(), "amount");
    let nested = rest.post("/v1/authorizations", json!({"accountId": account, "metadata": {"k": 1}}));
    nested.error(400, 3);
    assert!(nested.violated_field().starts_with("metadata"), "{nested:?}");
    let bad_enum = rest.patch(&format!("/v1/accounts/{account}/status"), json!({"status": "ACCOUNT_STATUS_MELTED"}));
    bad_enum.error(400, 3);
    assert_eq!(bad_enum.violated_field(), "status");
    rest.call("POST", "/v1/users", Some(r#"{"name": "Ada", "#), &[]).error(400, 3);
    rest.call("POST", "/v1/users", Some("[1, 2]"), &[]).error(400, 3);
    let query = rest.get("/v1/users?colour=blue");
    query.error(400, 3);
    assert_eq!(query.violated_field(), "colour");
    rest.call("GET", "/v1/users/x", None, &["X-Request-Timeout: soon"]).error(400, 3);
    // The service's own validation: every bad field listed.
    let invalid = rest.post("/v1/users", json!({"name": "", "email": "nope"}));
    invalid.error(400, 3);
    assert_eq!(invalid.json()["details"][0]["fieldViolations"].as_array().unwrap().len(), 2, "{invalid:?}");
    // A body over the receive limit.
    let huge = json!({"name": "Ada", "email": "x".repeat(70_000)});
    rest.post("/v1/users", huge).error(429, 8);

    // Authentication and scopes.
    let anonymous = rest.with_token(None).post("/v1/users", json!({"name": "Ada", "email": "a@example.com"}));
    anonymous.error(401, 16);
    assert_eq!(anonymous.header("www-authenticate").as_deref(), Some("Bearer"));
    rest.with_token(Some("not-a-jwt")).get("/v1/users/usr_x").error(401, 16);
    let reader = dev_token(&server, "reader", "users:read");
    rest.with_token(Some(&reader)).post("/v1/users", json!({"name": "Ada", "email": "r@example.com"})).error(403, 7);
    let merchant = dev_token(&server, "merchant_b", "payments:authorize");
    let someone_else = json!({"accountId": account, "merchantId": "merchant_a", "amount": "5", "currency": "USD", "idempotencyKey": key()});
    rest.with_token(Some(&merchant)).post("/v1/authorizations", someone_else).error(403, 7);

    // The service's answers: NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION (with its ErrorInfo), deadlines.
    let missing = rest.get("/v1/users/usr_01900000000070008000000000000000");
    missing.error(404, 5);
    assert_eq!(missing.json()["details"][0]["@type"], "type.googleapis.com/google.rpc.ResourceInfo", "{missing:?}");
    let email = format!("{}@example.com", key());
    Rest::ok(rest.post("/v1/users", json!({"name": "Ada", "email": email})));
    rest.post("/v1/users", json!({"name": "Ada", "email": email})).error(409, 6);
    let held = authorize(&rest, &account, 100);
    let id = held["id"].as_str().unwrap();
    Rest::ok(rest.post(&format!("/v1/authorizations/{id}:void"), json!({"idempotencyKey": key()})));
    let late = rest.post(&format!("/v1/authorizations/{id}:capture"), json!({"idempotencyKey": key()}));
    let status = late.error(400, 9);
    assert_eq!(status["details"][0]["@type"], "type.googleapis.com/google.rpc.ErrorInfo", "{late:?}");
    let request = json!({"accountId": account, "merchantId": MERCHANT, "amount": "5", "currency": "USD", "idempotencyKey": key()});
    // Below Authorize's 2 ms minimum budget: refused at once.
    rest.call("POST", "/v1/authorizations", Some(&request.to_string()), &["X-Request-Timeout: 1ms"]).error(504, 4);
    rest.call("POST", "/v1/authorizations", Some(&request.to_string()), &["grpc-timeout: 1m"]).error(504, 4);

    // The edge's own: unknown path, wrong method, a verb that is not the route's.
    rest.get("/v1/nothing").error(404, 5);
    rest.get("/courier.users.v1.UserService/GetUser").error(404, 5);
    let wrong_method = rest.call("DELETE", "/v1/users", None, &[]);
    wrong_method.error(405, 12);
    assert_eq!(wrong_method.header("allow").as_deref(), Some("POST, GET"));
    rest.get(&format!("/v1/authorizations/{id}:capture")).error(405, 12);
    rest.post(&format!("/v1/authorizations/{id}:refund"), json!({})).error(404, 5);
}

#[tokio::test]
async fn another_merchants_authorization_is_not_found_over_rest() {
    require_curl();
    let dir = tempfile::tempdir().unwrap();
    let server = up(dir.path(), &[]);
    let operator = Rest::new(&server);
    let account = funded_account(&operator, 10_000);
    let scopes = "payments:authorize,payments:capture,payments:read";
    let alice = operator.with_token(Some(&dev_token(&server, "merchant_a", scopes)));
    let mallory = operator.with_token(Some(&dev_token(&server, "merchant_b", scopes)));

    let held = authorize_for(&alice, None, &account, 1_000);
    assert_eq!(held["merchantId"], "merchant_a", "the token's merchant");
    let id = held["id"].as_str().unwrap();
    mallory.get(&format!("/v1/authorizations/{id}")).error(404, 5);
    mallory.post(&format!("/v1/authorizations/{id}:capture"), json!({"idempotencyKey": key()})).error(404, 5);
    mallory.post(&format!("/v1/authorizations/{id}:void"), json!({"idempotencyKey": key()})).error(404, 5);
    assert!(mallory.get("/v1/authorizations").lines().is_empty(), "mallory lists none of alice's");
    mallory.get("/v1/authorizations?merchantId=merchant_a").error(403, 7);
    assert_eq!(alice.get("/v1/authorizations").lines().len(), 1);
    let after = Rest::ok(alice.get(&format!("/v1/authorizations/{id}")))["authorization"].clone();
    assert_eq!(after["status"], "AUTHORIZATION_STATUS_HELD", "nothing moved");
}

#[tokio::test]
async fn an_idempotency_key_header_replays_the_stored_authorization() {
    require_curl();
    let dir = tempfile::tempdir().unwrap();
    let server = up(dir.path(), &[]);
    let rest = Rest::new(&server);
    let account = funded_account(&rest, 10_000);
    let body = json!({"accountId": account, "merchantId": MERCHANT, "amount": "700", "currency": "USD"}).to_string();
    let header = format!("Idempotency-Key: {}", key());

    let first = Rest::ok(rest.call("POST", "/v1/authorizations", Some(&body), &[&header]))["authorization"].clone();
    let again = Rest::ok(rest.call("POST", "/v1/authorizations", Some(&body), &[&header]))["authorization"].clone();
    assert_eq!(first, again, "the replay is the stored result");
    // The same key in the body and the header agrees; a different one is refused.
    let key_value = header.trim_start_matches("Idempotency-Key: ");
    let both = json!({"accountId": account, "merchantId": MERCHANT, "amount": "700", "currency": "USD", "idempotencyKey": key_value});
    let same = Rest::ok(rest.call("POST", "/v1/authorizations", Some(&both.to_string()), &[&header]));
    assert_eq!(same["authorization"], first);
    let other = json!({"accountId": account, "merchantId": MERCHANT, "amount": "700", "currency": "USD", "idempotencyKey": key()});
    let refused = rest.call("POST", "/v1/authorizations", Some(&other.to_string()), &[&header]);
    refused.error(400, 3);
    assert_eq!(refused.violated_field(), "idempotency_key");
    // The same key with another request is ALREADY_EXISTS (IDEMPOTENCY_KEY_REUSED).
    let changed = json!({"accountId": account, "merchantId": MERCHANT, "amount": "701", "currency": "USD"}).to_string();
    let reused = rest.call("POST", "/v1/authorizations", Some(&changed), &[&header]);
    assert_eq!(reused.error(409, 6)["details"][0]["reason"], "IDEMPOTENCY_KEY_REUSED", "{reused:?}");
    // One hold only.
    let got = Rest::ok(rest.get(&format!("/v1/accounts/{account}")))["account"].clone();
    assert_eq!(got["heldAmount"], "700");
}

#[tokio::test]
async fn the_same_authorize_over_grpc_and_rest_with_one_key_is_one_stored_result() {
    require_curl();
    let dir = tempfile::tempdir().unwrap();
    let server = up(dir.path(), &[]);
    let rest = Rest::new(&server);
    let account = funded_account(&rest, 10_000);
    let mut payments = server.payments();

    for grpc_first in [true, false] {
        let key = key();
        let request = pb::AuthorizeRequest {
            idempotency_key: key.clone(),
            account_id: account.clone(),
            merchant_id: MERCHANT.into(),
            amount: 1_234,
            currency: "USD".into(),
            description: "same call, two protocols".into(),
            metadata: [("order".to_owned(), "o-1".to_owned())].into(),
        };
        let body = json!({
            "idempotencyKey": key, "accountId": account, "merchantId": MERCHANT, "amount": "1234", "currency": "USD",
            "description": "same call, two protocols", "metadata": {"order": "o-1"}
        });
        let (grpc, json) = if grpc_first {
            let grpc = payments.authorize(request.clone()).await.unwrap().into_inner();
            (grpc, Rest::ok(rest.post("/v1/authorizations", body)))
        } else {
            let json = Rest::ok(rest.post("/v1/authorizations", body));
            (payments.authorize(request.clone()).await.unwrap().into_inner(), json)
        };
        let grpc = grpc.authorization.unwrap();
        let json = &json["authorization"];
        assert_eq!(json["id"], grpc.id, "one stored authorization (gRPC first: {grpc_first})");
        assert_eq!(json["amount"], grpc.amount.to_string());
        assert_eq!(json["heldAmount"], grpc.held_amount.to_string());
        assert_eq!(json["availableAfter"], grpc.available_after.to_string());
        assert_eq!(json["status"], grpc.status().as_str_name());
        assert_eq!(json["responseCode"], grpc.response_code);
        assert_eq!(json["metadata"]["order"], "o-1");
        let created = grpc.created_at.unwrap();
        let rfc3339 = json["createdAt"].as_str().unwrap();
        let parsed = humantime::parse_rfc3339(rfc3339).unwrap();
        let since = parsed.duration_since(std::time::UNIX_EPOCH).unwrap();
        assert_eq!((since.as_secs() as i64, since.subsec_nanos() as i32), (created.seconds, created.nanos));
    }
    let held = Rest::ok(rest.get(&format!("/v1/accounts/{account}")))["account"]["heldAmount"].clone();
    assert_eq!(held, "2468", "two authorizations, not four");
}

#[tokio::test]
async fn ten_thousand_users_stream_as_ndjson_as_they_are_read() {
    require_curl();
    const USERS: usize = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let server = up(dir.path(), &[]);
    let users = server.users();
    let creates = futures::stream::iter(0..USERS).map(|i| {
        let mut users = users.clone();
        async move {
            let request = courier_proto::users::v1::CreateUserRequest {
                name: format!("User {i}"),
                email: format!("user{i}@example.com"),
            };
            users.create_user(request).await.expect("create user");
        }
    });
    creates.buffer_unordered(32).collect::<Vec<()>>().await;

    let rest = Rest::new(&server);
    let before = peak_rss_kib(server.pid());
    let listed = tokio::task::spawn_blocking(move || rest.get("/v1/users")).await.unwrap();
    assert_eq!(listed.status, 200);
    // Streamed, not collected: no length known up front.
    assert_eq!(listed.header("transfer-encoding").as_deref(), Some("chunked"), "{}", listed.headers);
    let lines = listed.lines();
    assert_eq!(lines.len(), USERS);
    let ids: Vec<&str> = lines.iter().map(|l| l["user"]["id"].as_str().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in id order");
    assert!(lines.iter().all(|l| l.get("error").is_none()));
    let grown = peak_rss_kib(server.pid()).saturating_sub(before);
    eprintln!(
        "streaming {USERS} users as NDJSON ({} bytes) grew the server's peak RSS by {grown} KiB",
        listed.body.len()
    );
    assert!(grown < 64 * 1024, "the server's peak memory grew {grown} KiB while streaming");
}

/// The process's peak resident set (VmHWM), in KiB; 0 where /proc is not there.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn serve_no_rest_refuses_json_and_without_grpc_web_speaks_http2_only() {
    require_curl();
    let http1 = |addr: &str| {
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{addr}/v1/users/usr_x"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    // Without REST and gRPC-Web, HTTP/1.1 is not spoken at all: curl's request gets no HTTP answer.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("courier-data");
    let args = ["serve", "users", "--no-rest", "--no-grpc-web", "--listen", "127.0.0.1:0", "--data-dir"];
    let server = CourierProcess::start(BIN, &[&args[..], &[data.to_str().unwrap()]].concat());
    assert_eq!(http1(&server.addr), "000");
    drop(server);

    // Without REST only, HTTP/1.1 stays for browsers' gRPC-Web, and JSON is refused as not gRPC, 415.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("courier-data");
    let server = CourierProcess::start(
        BIN,
        &["serve", "users", "--no-rest", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()],
    );
    assert_eq!(http1(&server.addr), "415");
    // Over HTTP/2 a JSON request is refused as before, 415.
    let output = Command::new("curl")
        .args(["-sS", "--http2-prior-knowledge", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("http://{}/v1/users/usr_x", server.addr))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout), "415", "{output:?}");
}

#[tokio::test]
async fn a_rest_call_is_traced_and_access_logged_as_its_grpc_method() {
    require_curl();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("courier-data");
    let args = ["up", "--listen", "127.0.0.1:0", "--admin-listen", "off", "--data-dir", data.to_str().unwrap()];
    let server = CourierProcess::start_logged(BIN, &args, &[], "info");
    let rest = Rest::new(&server);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("traceparent: 00-{trace}-00f067aa0ba902b7-01");
    let answer = rest.call("GET", "/v1/users/usr_01900000000070008000000000000000", None, &[&traceparent]);
    answer.error(404, 5);
    let logs = server.logs.as_ref().unwrap();
    let line = logs.wait_for(std::time::Duration::from_secs(10), "the access log line", |line| {
        line.contains("UserService/GetUser") && line.contains("code=\"NOT_FOUND\"")
    });
    assert!(line.contains(trace), "the caller's trace id: {line}");
}

#[tokio::test]
async fn a_rest_callers_deadline_is_bounded_by_the_methods_default() {
    require_curl();
    use std::time::{Duration, Instant};
    // A feed of events runs past any deadline by its nature: each call below ends when its deadline does.
    let config = "[server.deadlines.methods]\n\"/courier.payments.v1.PaymentService/WatchEvents\" = \"1s\"\n";
    let dir = tempfile::tempdir().unwrap();
    let server = up_with_config(dir.path(), config, &[]);
    let rest = Rest::new(&server);
    let watch = |header: &str| {
        let started = Instant::now();
        let events = rest.call("GET", "/v1/events", None, &[header]);
        assert_eq!(events.status, 200, "{events:?}");
        assert_eq!(events.lines().last().unwrap()["error"]["code"], 4, "DEADLINE_EXCEEDED ends it: {events:?}");
        started.elapsed()
    };

    // An hour asked for, in either header: the method's 1 s applies.
    for header in ["X-Request-Timeout: 1h", "grpc-timeout: 1H"] {
        let lasted = watch(header);
        assert!(lasted >= Duration::from_millis(950), "{header}: ended after {lasted:?}, before the 1 s default");
        assert!(lasted < Duration::from_secs(10), "{header}: ended after {lasted:?}, the 1 s default did not bound it");
    }
    // Below the default, the caller's own deadline stands.
    let lasted = watch("X-Request-Timeout: 300ms");
    assert!(lasted < Duration::from_millis(950), "ended after {lasted:?}");

    // A gRPC caller's deadline is its own, above the default too.
    let mut request = tonic::Request::new(pb::WatchEventsRequest::default());
    request.set_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let mut events = server.payments().watch_events(request).await.unwrap().into_inner();
    let status = loop {
        match events.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the feed ended without a status"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(1950), "gRPC's 2 s were cut to {:?}", started.elapsed());
}

/// `courier up` with its admin port (metrics) and its log captured at `info` (the access log).
fn up_observed(dir: &Path, env: &[(&str, &str)]) -> CourierProcess {
    let data = dir.join("courier-data");
    let args = ["up", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()];
    CourierProcess::start_logged(BIN, &args, env, "info")
}

/// A REST request written by hand on its own connection, its body held back: what a slow or stalled client
/// does, and curl cannot.
struct SlowRequest {
    stream: tokio::net::TcpStream,
}

impl SlowRequest {
    /// Sends `POST path` announcing `body` (`Content-Length`), with only its first `sent` bytes.
    async fn start(rest: &Rest, path: &str, headers: &[&str], body: &str, sent: usize) -> Self {
        use tokio::io::AsyncWriteExt;
        let addr = rest.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut head = format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        if let Some(token) = &rest.token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for header in headers {
            head.push_str(&format!("{header}\r\n"));
        }
        head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body.as_bytes()[..sent]).await.unwrap();
        Self { stream }
    }

    /// Sends more of the body.
    async fn send(&mut self, more: &str) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(more.as_bytes()).await.unwrap();
    }

    /// The answer (the server closes the connection after it: `Connection: close`), within 30 s.
    async fn answer(mut self) -> Answer {
        use tokio::io::AsyncReadExt;
        let mut bytes = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(30), self.stream.read_to_end(&mut bytes));
        read.await.expect("an answer within 30 s").unwrap();
        let text = String::from_utf8(bytes).expect("UTF-8");
        let (headers, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no complete answer: {text:?}"));
        let status = headers.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
        Answer { status, headers: headers.to_owned(), body: body.to_owned() }
    }
}

/// Waits (up to 10 s) until the admin port reports `calls` of `method` in flight.
async fn wait_in_flight(admin: &str, method: &str, calls: f64) {
    let started = std::time::Instant::now();
    loop {
        let samples = courier_tests::metrics::scrape(admin).await;
        let in_flight = courier_tests::metrics::value(&samples, "courier_rpc_server_in_flight", &[("method", method)]);
        if in_flight == calls {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{in_flight} calls of {method} in flight, not {calls}: the REST requests never reached the layers"
        );
        // Polling the exposition: the process tells no one when a call starts.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

const CREATE_USER: &str = "/courier.users.v1.UserService/CreateUser";

#[tokio::test]
async fn refusals_at_the_rest_edge_are_access_logged_and_counted_like_any_call() {
    require_curl();
    let dir = tempfile::tempdir().unwrap();
    let server = up_observed(dir.path(), &[("COURIER_SERVER__MAX_RECV_MESSAGE_BYTES", "65536")]);
    let rest = Rest::new(&server);
    let admin = server.admin.clone().expect("courier up printed its admin address");

    // No route, a route's path with the wrong method: no method to name.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("traceparent: 00-{trace}-00f067aa0ba902b7-01");
    rest.call("GET", "/v1/nothing", None, &[&traceparent]).error(404, 5);
    rest.get("/v1/also-nothing/at-all").error(404, 5);
    rest.call("DELETE", "/v1/users", None, &[]).error(405, 12);
    // A route, refused for what was sent: not JSON, an unknown field, too large, a bad X-Request-Timeout, an
    // Idempotency-Key header that the body contradicts.
    rest.call("POST", "/v1/users", Some(r#"{"name": "Ada", "#), &[]).error(400, 3);
    rest.post("/v1/users", json!({"name": "Ada", "emial": "ada@example.com"})).error(400, 3);
    rest.post("/v1/users", json!({"name": "Ada", "email": "x".repeat(70_000)})).error(429, 8);
    rest.call("GET", "/v1/users/usr_x", None, &["X-Request-Timeout: soon"]).error(400, 3);
    let body =
        json!({"accountId": "acc_x", "merchantId": MERCHANT, "amount": "1", "currency": "USD", "idempotencyKey": "k1"});
    rest.call("POST", "/v1/authorizations", Some(&body.to_string()), &["Idempotency-Key: k2"]).error(400, 3);

    let samples = courier_tests::metrics::scrape(&admin).await;
    let calls = |method: &str, code: &str| {
        courier_tests::metrics::value(&samples, "courier_rpc_server_calls_total", &[("method", method), ("code", code)])
    };
    assert_eq!(calls("/unknown", "NOT_FOUND"), 2.0);
    assert_eq!(calls("/unknown", "UNIMPLEMENTED"), 1.0);
    assert_eq!(calls(CREATE_USER, "INVALID_ARGUMENT"), 2.0);
    assert_eq!(calls(CREATE_USER, "RESOURCE_EXHAUSTED"), 1.0);
    assert_eq!(calls("/courier.users.v1.UserService/GetUser", "INVALID_ARGUMENT"), 1.0);
    assert_eq!(calls("/courier.payments.v1.PaymentService/Authorize", "INVALID_ARGUMENT"), 1.0);
    // Label values are gRPC method paths or `/unknown`: never a request's own path.
    for sample in samples.iter().filter(|s| s.name.starts_with("courier_rpc_server_")) {
        let method = &sample.labels["method"];
        assert!(method == "/unknown" || method.starts_with("/courier.") || method.starts_with("/grpc."), "{sample:?}");
    }

    let logs = server.logs.as_ref().unwrap();
    let logged = |method: &str, code: &str| {
        let (method, code) = (format!("method=\"{method}\""), format!("code=\"{code}\""));
        logs.wait_for(std::time::Duration::from_secs(10), &format!("{method} {code}"), |line| {
            line.contains("courier::rpc") && line.contains(&method) && line.contains(&code)
        })
    };
    assert!(logged("/unknown", "NOT_FOUND").contains(trace), "the caller's trace id");
    logged("/unknown", "UNIMPLEMENTED");
    logged(CREATE_USER, "INVALID_ARGUMENT");
    logged(CREATE_USER, "RESOURCE_EXHAUSTED");
    logged("/courier.payments.v1.PaymentService/Authorize", "INVALID_ARGUMENT");
}

#[tokio::test]
async fn slow_rest_bodies_hold_their_concurrency_permit_while_they_are_read() {
    require_curl();
    let dir = tempfile::tempdir().unwrap();
    let server = up_observed(dir.path(), &[("COURIER_SERVER__MAX_CONCURRENT_CALLS", "2")]);
    let rest = Rest::new(&server);
    let admin = server.admin.clone().expect("courier up printed its admin address");

    // Two clients send half a body each and stop: both calls are admitted, and wait on their bodies.
    let bodies: Vec<String> = (0..2)
        .map(|i| json!({"name": "Slow", "email": format!("slow{i}-{}@example.com", key())}).to_string())
        .collect();
    let mut slow = Vec::new();
    for body in &bodies {
        slow.push(SlowRequest::start(&rest, "/v1/users", &[], body, body.len() / 2).await);
    }
    wait_in_flight(&admin, CREATE_USER, 2.0).await;

    // The limit is reached: a third call is refused at once, with pushback, instead of reading its body.
    let refused = rest.post("/v1/users", json!({"name": "Ada", "email": format!("{}@example.com", key())}));
    refused.error(429, 8);
    assert!(refused.header("retry-after").is_some(), "{refused:?}");

    // The slow clients finish their bodies and are served; their permits are given back.
    for (mut request, body) in slow.into_iter().zip(&bodies) {
        request.send(&body[body.len() / 2..]).await;
        let user = Rest::ok(request.answer().await)["user"].clone();
        assert_eq!(user["name"], "Slow", "{user}");
    }
    wait_in_flight(&admin, CREATE_USER, 0.0).await;
    new_user(&rest);
}

#[tokio::test]
async fn a_stalled_rest_body_is_cut_at_the_methods_default_deadline() {
    require_curl();
    let dir = tempfile::tempdir().unwrap();
    let server = up_observed(dir.path(), &[("COURIER_SERVER__DEADLINES__DEFAULT", "500ms")]);
    let rest = Rest::new(&server);
    let body = json!({"name": "Stalled", "email": "stalled@example.com"}).to_string();

    // An hour asked for, half a body sent, then nothing: the 500 ms default ends the call, and frees its permit.
    let started = std::time::Instant::now();
    let stalled = SlowRequest::start(&rest, "/v1/users", &["X-Request-Timeout: 1h"], &body, body.len() / 2).await;
    let answer = stalled.answer().await;
    let lasted = started.elapsed();
    answer.error(504, 4);
    assert!(lasted >= std::time::Duration::from_millis(450), "answered after {lasted:?}, before the default");
    assert!(lasted < std::time::Duration::from_secs(10), "answered after {lasted:?}: the default did not bound it");
    let admin = server.admin.clone().expect("courier up printed its admin address");
    wait_in_flight(&admin, CREATE_USER, 0.0).await;
}
