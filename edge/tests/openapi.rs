//! `edge/openapi.json` kept honest where that is cheap: its error codes are exactly the domain's,
//! every error an operation lists is sent with that status, every body has a real schema, and the
//! statuses every route answers whatever it does (the input guard, the extractors, the core being
//! away) are listed on every operation they apply to. The router tests check the other direction
//! (every route is documented, every operation routed); the api_fuzz end-to-end suite checks the
//! running edge against the whole document.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use nene_domain::ErrorCode;
use serde_json::Value;

const OPENAPI: &str = include_str!("../openapi.json");
/// The one enum of error codes; its `as_str` names every variant (the match is exhaustive).
const ERROR_RS: &str = include_str!("../../domain/src/error.rs");

/// Codes no operation lists, and why.
const UNLISTED: [(ErrorCode, &str); 7] = [
    (ErrorCode::Internal, "500 is a bug of ours, never a promise"),
    (
        ErrorCode::MethodNotAllowed,
        "a method a path does not have: the document's preamble",
    ),
    (
        ErrorCode::SignatureInvalid,
        "only the core's push into a room, which is not public",
    ),
    // The shop's refusals: the core sends them; the edge's shop routes, which will list them,
    // are the next step of issue 18.
    (
        ErrorCode::SoldOut,
        "the shop's routes are not at the edge yet",
    ),
    (
        ErrorCode::PurchaseLimitReached,
        "the shop's routes are not at the edge yet",
    ),
    (
        ErrorCode::NotOnSale,
        "the shop's routes are not at the edge yet",
    ),
    (
        ErrorCode::OrderStateConflict,
        "the shop's routes are not at the edge yet",
    ),
];

fn doc() -> Value {
    serde_json::from_str(OPENAPI).expect("openapi.json")
}

/// Every code of `ErrorCode`, read from the exhaustive match of `as_str`.
fn all_codes() -> Vec<ErrorCode> {
    let start = ERROR_RS
        .find("pub const fn as_str")
        .expect("no as_str in error.rs");
    let body = &ERROR_RS[start..];
    let body = &body[..body.find("\n    }\n").unwrap_or(body.len())];
    let codes: Vec<ErrorCode> = body
        .split("=> \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|name| {
            serde_json::from_value(Value::String(name.to_owned()))
                .unwrap_or_else(|e| panic!("{name} is not an ErrorCode: {e}"))
        })
        .collect();
    assert!(codes.len() >= 38, "{} codes read", codes.len());
    codes
}

/// Follows a local `$ref` (`#/components/…`).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(pointer) => {
            let target = doc
                .pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{pointer} does not resolve"));
            resolve(doc, target)
        }
        None => value,
    }
}

struct Operation<'a> {
    label: String,
    operation: &'a Value,
    parameters: Vec<&'a Value>,
}

fn operations(doc: &Value) -> Vec<Operation<'_>> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let parameters = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|parameter| resolve(doc, parameter))
                .collect();
            all.push(Operation {
                label: format!("{} {path}", method.to_uppercase()),
                operation,
                parameters,
            });
        }
    }
    assert!(all.len() >= 28, "{} operations", all.len());
    all
}

/// The error codes a response promises: the `code` enum of its envelope schema (`allOf` of the
/// envelope and the restriction), or `None` when the body is not an error envelope at all.
fn listed_codes(doc: &Value, response: &Value) -> Option<Vec<String>> {
    let schema = resolve(doc, &response["content"]["application/json"]["schema"]);
    let parts = schema["allOf"].as_array()?;
    let envelope = parts
        .iter()
        .any(|part| part["$ref"] == "#/components/schemas/ErrorEnvelope");
    let codes = parts
        .iter()
        .find_map(|part| part.pointer("/properties/error/properties/code/enum"))?;
    envelope.then(|| {
        codes
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

/// Every error response of every operation: (operation, status, its codes).
fn error_responses(doc: &Value) -> Vec<(String, u16, Vec<String>)> {
    let mut all = Vec::new();
    for op in operations(doc) {
        for (status, response) in op.operation["responses"].as_object().into_iter().flatten() {
            let status: u16 = status
                .parse()
                .unwrap_or_else(|_| panic!("{}: status {status} is not a number", op.label));
            if status < 400 {
                continue;
            }
            let response = resolve(doc, response);
            let codes = listed_codes(doc, response).or_else(|| {
                // The one exception: health's 503 is its report or the envelope.
                response["content"]["application/json"]["schema"]["oneOf"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|schema| listed_codes(doc, &serde_json::json!({"content": {"application/json": {"schema": schema}}})))
            });
            let codes = codes.unwrap_or_else(|| {
                panic!(
                    "{} {status}: not the error envelope with its codes",
                    op.label
                )
            });
            all.push((op.label.clone(), status, codes));
        }
    }
    all
}

#[test]
fn the_documents_error_codes_are_exactly_the_domains() {
    let doc = doc();
    let documented: BTreeSet<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect();
    let domain: BTreeSet<String> = all_codes()
        .into_iter()
        .map(|code| code.as_str().to_owned())
        .collect();
    assert_eq!(documented, domain);
}

#[test]
fn every_error_an_operation_lists_is_sent_with_that_status_and_every_code_is_listed() {
    let doc = doc();
    let mut listed: BTreeMap<String, u16> = BTreeMap::new();
    for (operation, status, codes) in error_responses(&doc) {
        assert!(!codes.is_empty(), "{operation} {status}: no codes");
        for name in codes {
            let code: ErrorCode = serde_json::from_value(Value::String(name.clone()))
                .unwrap_or_else(|e| panic!("{operation} {status}: {name}: {e}"));
            assert_eq!(
                code.http_status(),
                status,
                "{operation}: {name} is sent with {}, not {status}",
                code.http_status()
            );
            listed.insert(name, status);
        }
    }
    for code in all_codes() {
        let unlisted = UNLISTED.iter().any(|(skip, _)| *skip == code);
        assert_eq!(
            listed.contains_key(code.as_str()),
            !unlisted,
            "{}: listed by an operation exactly when it is not in UNLISTED",
            code.as_str()
        );
    }
}

#[test]
fn every_request_and_response_body_has_a_schema_that_says_something() {
    let doc = doc();
    // A schema says something when it (or what it refers to) names properties, items, a type
    // other than a bare object, or combines schemas that do.
    fn says_something(doc: &Value, schema: &Value) -> bool {
        let schema = resolve(doc, schema);
        let combined = ["allOf", "oneOf", "anyOf"].iter().any(|key| {
            schema[key]
                .as_array()
                .is_some_and(|parts| parts.iter().all(|part| says_something(doc, part)))
        });
        combined
            || schema.get("properties").is_some()
            || schema.get("items").is_some()
            || schema.get("const").is_some()
            || schema["type"].as_str().is_some_and(|kind| kind != "object")
    }
    for op in operations(&doc) {
        if let Some(body) = op.operation.get("requestBody") {
            let schema = &resolve(&doc, body)["content"]["application/json"]["schema"];
            assert!(
                says_something(&doc, schema),
                "{}: the request body has no real schema",
                op.label
            );
        }
        for (status, response) in op.operation["responses"].as_object().into_iter().flatten() {
            let response = resolve(&doc, response);
            let content = &response["content"];
            match status.as_str() {
                "204" | "302" => assert!(content.is_null(), "{} {status} has a body", op.label),
                _ => assert!(
                    says_something(&doc, &content["application/json"]["schema"]),
                    "{} {status}: no real schema",
                    op.label
                ),
            }
        }
    }
}

#[test]
fn the_statuses_every_route_can_answer_are_listed_where_they_apply() {
    let doc = doc();
    let statuses = |op: &Operation<'_>| -> BTreeSet<String> {
        op.operation["responses"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(status, _)| status.clone())
            .collect()
    };
    for op in operations(&doc) {
        let has = statuses(&op);
        let secured = !op.operation["security"]
            .as_array()
            .is_some_and(Vec::is_empty);
        let mut expected: Vec<(&str, &str)> = Vec::new();
        if secured {
            expected.push(("401", "a token is needed"));
        }
        if op.label != "GET /v1/health" || secured {
            // Every route but health's own report asks the core (health answers 503 its way).
            expected.push(("503", "the core may be away"));
        }
        if op.operation.get("requestBody").is_some() {
            // The input guard: a JSON body over the limit, a NUL in a string.
            expected.push(("413", "a body over 64 KiB"));
            expected.push(("422", "a NUL in a JSON string"));
            if op.label != "POST /webhooks/toss" {
                // ApiJson: malformed JSON and other media types (the webhook takes raw bytes).
                expected.push(("400", "malformed JSON"));
                expected.push(("415", "not application/json"));
            }
        }
        for parameter in &op.parameters {
            match parameter["in"].as_str() {
                Some("path") => expected.push(("404", "a path parameter outside its shape")),
                Some("query") => expected.push(("422", "a NUL in a query parameter")),
                _ => {}
            }
        }
        for (status, why) in expected {
            assert!(
                has.contains(status),
                "{}: {status} missing ({why})",
                op.label
            );
        }
    }
}

#[test]
fn every_reference_in_the_document_resolves() {
    fn walk(doc: &Value, value: &Value, at: &str) {
        match value {
            Value::Object(map) => {
                if let Some(pointer) = map.get("$ref").and_then(Value::as_str) {
                    assert!(
                        doc.pointer(pointer.trim_start_matches('#')).is_some(),
                        "{at}: {pointer} does not resolve"
                    );
                }
                for (key, child) in map {
                    walk(doc, child, &format!("{at}/{key}"));
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    walk(doc, child, &format!("{at}/{index}"));
                }
            }
            _ => {}
        }
    }
    let doc = doc();
    walk(&doc, &doc, "");
}
