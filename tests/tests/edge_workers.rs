//! The edge Worker and its Durable Objects inside the real runtime (`wrangler dev`, workerd),
//! in front of the real core on a fresh Postgres database.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use nene_domain::{
    ErrorCode,
    error::ErrorEnvelope,
    health::{PartStatus, PlatformHealth},
    limits::REQUEST_BODY_BYTES_MAX,
};
use nene_e2e::{Core, Wrangler, client, scratch_dir};
use serde_json::json;

async fn error_of(response: reqwest::Response) -> (u16, String, ErrorEnvelope) {
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.text().await.unwrap_or_default();
    let envelope = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("not an error envelope ({e}): {body}"));
    (status, request_id, envelope)
}

#[tokio::test]
async fn health_through_workerd_reports_every_part() {
    let dir = scratch_dir("health_workers");
    let core = Core::start(&dir).await;
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;

    let response = client()
        .get(format!("{}/v1/health", edge.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let report: PlatformHealth = response.json().await.unwrap();
    assert_eq!(report.runtime, "workers");
    assert_eq!(report.status, PartStatus::Ok);
    assert_eq!(report.edge, PartStatus::Ok);
    assert_eq!(report.core, PartStatus::Ok);
    assert_eq!(report.database, PartStatus::Ok);
    let expected_redis = if std::env::var("REDIS_URL").unwrap_or_default().is_empty() {
        PartStatus::Disabled
    } else {
        PartStatus::Ok
    };
    assert_eq!(report.redis, expected_redis);

    // The running Worker keeps edge/openapi.json's word on who needs a token: every operation
    // documented as needing one answers 401 without it, and no public one does.
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../edge/openapi.json")).unwrap();
    let mut checked = 0;
    for (template, item) in doc["paths"].as_object().into_iter().flatten() {
        let path = template
            .replace("{challenge_id}", "0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d")
            .replace("{proof_id}", "0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d")
            .replace("{order_id}", "nene_0190f5a27c1e7a4b")
            .replace("{provider}", "kakao")
            .replace("{device_id}", "phone-1");
        for (method, operation) in item.as_object().into_iter().flatten() {
            let public = operation["security"].as_array().is_some_and(Vec::is_empty);
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let mut request = client().request(method.clone(), format!("{}{path}", edge.url));
            if operation.get("requestBody").is_some() {
                request = request
                    .header("content-type", "application/json")
                    .body("{}");
            }
            let status = request.send().await.unwrap().status().as_u16();
            assert_eq!(status == 401, !public, "{method} {template}: {status}");
            checked += 1;
        }
    }
    assert!(checked >= 28, "{checked} operations");
}

#[tokio::test]
async fn health_is_a_503_json_error_when_the_core_is_down() {
    let dir = scratch_dir("health_core_down");
    let mut core = Core::start(&dir).await;
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    core.process.stop();

    let started = std::time::Instant::now();
    let response = client()
        .get(format!("{}/v1/health", edge.url))
        .send()
        .await
        .expect("the edge hung or failed instead of answering");
    let (status, request_id, envelope) = error_of(response).await;
    assert_eq!(status, 503);
    assert_eq!(envelope.error.code, ErrorCode::CoreUnavailable);
    assert_eq!(envelope.error.request_id, request_id);
    // Not a timed assertion on speed, only that the answer is not the client's own timeout.
    assert!(started.elapsed() < nene_e2e::REQUEST_TIMEOUT);
}

#[tokio::test]
async fn a_challenge_room_keeps_its_value_across_requests_and_a_wrangler_restart() {
    let dir = scratch_dir("room_persistence");
    let state = dir.join("state");
    let core = Core::start(&dir).await;
    let probe = |edge: &Wrangler, room: &str| format!("{}/v1/dev/rooms/{room}/probe", edge.url);

    let mut edge = Wrangler::start(&core.url, &state, &dir).await;
    for add in [2, 3] {
        let response = client()
            .post(probe(&edge, "room-a"))
            .json(&json!({ "add": add }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
    }
    // Another challenge has a room of its own.
    client()
        .post(probe(&edge, "room-b"))
        .json(&json!({ "add": 40 }))
        .send()
        .await
        .unwrap();
    edge.process.stop();
    drop(edge);

    let edge = Wrangler::start(&core.url, &state, &dir).await;
    let value = |room: &'static str| {
        let url = probe(&edge, room);
        async move {
            let body: serde_json::Value = client()
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["value"].as_i64()
        }
    };
    assert_eq!(value("room-a").await, Some(5));
    assert_eq!(value("room-b").await, Some(40));
    assert_eq!(value("room-c").await, Some(0));
}

#[tokio::test]
async fn errors_from_workerd_have_the_json_shape_with_a_request_id() {
    let dir = scratch_dir("error_shapes");
    let core = Core::start(&dir).await;
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    let http = client();
    let probe = format!("{}/v1/dev/rooms/room-a/probe", edge.url);

    let not_found = http
        .get(format!("{}/v1/no-such-thing", edge.url))
        .send()
        .await;
    let wrong_method = http.delete(format!("{}/v1/health", edge.url)).send().await;
    let bad_json = http
        .post(&probe)
        .header("content-type", "application/json")
        .body("{\"add\": ")
        .send()
        .await;
    let oversized = http
        .post(&probe)
        .header("content-type", "application/json")
        .body(format!(
            "{{\"add\": 1, \"pad\": \"{}\"}}",
            "x".repeat(REQUEST_BODY_BYTES_MAX)
        ))
        .send()
        .await;
    let cases = [
        (not_found, 404, ErrorCode::NotFound),
        (wrong_method, 405, ErrorCode::MethodNotAllowed),
        (bad_json, 400, ErrorCode::InvalidJson),
        (oversized, 413, ErrorCode::PayloadTooLarge),
    ];
    for (response, expected_status, expected_code) in cases {
        let (status, request_id, envelope) = error_of(response.unwrap()).await;
        assert_eq!(status, expected_status, "{envelope:?}");
        assert_eq!(envelope.error.code, expected_code);
        assert_eq!(envelope.error.request_id, request_id);
        assert_eq!(
            request_id.len(),
            32,
            "a request id is 16 random bytes in hex"
        );
    }
}
