//! docs/openapi.json, the OpenAPI 3.1 document of the REST routes (docs/rest.md), is what the contracts say now:
//! generated from the embedded descriptor set exactly as `courier up` serves it at `GET /openapi.json`, and this
//! test fails while the committed copy is stale.
//!
//! Regenerate: `COURIER_WRITE_OPENAPI=1 cargo test -p courier --test openapi`.

use std::path::PathBuf;

const REGENERATE: &str = "COURIER_WRITE_OPENAPI=1 cargo test -p courier --test openapi";
/// The services `courier up` serves.
const SERVICES: &[&str] =
    &["courier.users.v1.UserService", "courier.payments.v1.PaymentService", "courier.risk.v1.RiskService"];

/// The document as served, from the same descriptor set and services as `courier up`.
fn rendered() -> Vec<u8> {
    let sets = [courier_proto::FILE_DESCRIPTOR_SET];
    let rest = courier_kit::rest::Rest::from_descriptor_sets(&sets, SERVICES, 4 << 20).expect("the set decodes");
    rest.openapi_json().to_vec()
}

#[test]
fn docs_openapi_json_matches_the_contracts() {
    let rendered = rendered();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    if std::env::var_os("COURIER_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &rendered).expect("write docs/openapi.json");
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(committed == rendered, "docs/openapi.json is stale: run `{REGENERATE}`");
}

#[test]
fn every_route_is_an_operation_and_the_client_streams_are_not() {
    let document: serde_json::Value = serde_json::from_slice(&rendered()).unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().unwrap();
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(operations, 20, "4 users + 10 payments + 6 risk routes");
    let capture = &paths["/v1/authorizations/{authorization_id}:capture"]["post"];
    assert_eq!(capture["operationId"], "PaymentService_Capture");
    assert_eq!(capture["parameters"][0]["in"], "path");
    assert!(capture["summary"].as_str().unwrap().starts_with("Capture posts"), "{capture}");
    let text = document.to_string();
    assert!(!text.contains("AuthorizeStream_") && !text.contains("BatchCapture_"), "no REST form for client streams");
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["courier.payments.v1.Authorization"]["properties"]["amount"]["type"], "string", "int64");
    assert!(schemas["google.rpc.Status"]["properties"]["details"].is_object());
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let list = &paths["/v1/users"]["get"];
    let names: Vec<&str> = list["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["status", "pageSize", "pageToken"]);
    assert!(list["responses"]["200"]["content"]["application/x-ndjson"].is_object());
}
