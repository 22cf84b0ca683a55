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

/// The value of header `name`, or empty when it is absent or not text.
fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn error_of(response: reqwest::Response) -> (u16, String, ErrorEnvelope) {
    let status = response.status().as_u16();
    let request_id = header(&response, "x-request-id");
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

/// A stand-in for the core that answers every search with [`SEARCH_PAGE`] and writes down each
/// search it is asked; revocation checks answer "not revoked", anything else 404.
struct CountingCore {
    url: String,
    searches: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

const SEARCH_PAGE: &str =
    r#"{"items":[{"id":"c-1","title":"Morning 아침 운동"}],"next_cursor":"20"}"#;

impl CountingCore {
    async fn start() -> CountingCore {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let searches = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&searches);
        let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
            let seen = std::sync::Arc::clone(&seen);
            async move {
                use axum::http::StatusCode;
                if uri.path() == "/internal/v1/auth/revoked" {
                    (StatusCode::OK, r#"{"revoked":false}"#)
                } else if uri.path().starts_with("/internal/v1/search") {
                    seen.lock().unwrap().push(uri.to_string());
                    (StatusCode::OK, SEARCH_PAGE)
                } else {
                    (StatusCode::NOT_FOUND, "{}")
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        CountingCore { url, searches }
    }

    fn searches(&self) -> usize {
        self.searches.lock().unwrap().len()
    }
}

/// `GET {edge}{path}` as user-1: the status, the `x-nene-cache` header and the body.
async fn search_through(edge: &str, path: &str, token: &str) -> (u16, String, String) {
    let response = client()
        .get(format!("{edge}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let cache = header(&response, "x-nene-cache");
    (status, cache, response.text().await.unwrap_or_default())
}

#[tokio::test]
async fn search_first_pages_come_from_the_workers_cache_and_a_hit_never_reaches_the_core() {
    let dir = scratch_dir("search_cache_workers");
    let core = CountingCore::start().await;
    let edge = Wrangler::start(&core.url, &dir.join("state"), &dir).await;
    let token = nene_e2e::token_for("user-1");

    let first = "/v1/search?q=Morning%20%20%EC%95%84%EC%B9%A8";
    let (status, how, body) = search_through(&edge.url, first, &token).await;
    assert_eq!(
        (status, how.as_str(), body.as_str()),
        (200, "miss", SEARCH_PAGE)
    );
    assert_eq!(core.searches(), 1);

    // The miss is stored after its response (waitUntil): the same query hits once it is there.
    let again = "/v1/search?q=MORNING%20%EC%95%84%EC%B9%A8&type=challenges";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, how, _) = search_through(&edge.url, again, &token).await;
        if how == "hit" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never a hit; last: {how}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let asked = core.searches();
    for _ in 0..20 {
        let (status, how, body) = search_through(&edge.url, again, &token).await;
        assert_eq!(
            (status, how.as_str(), body.as_str()),
            (200, "hit", SEARCH_PAGE)
        );
    }
    assert_eq!(core.searches(), asked, "a hit reached the core");

    // A deeper page goes to the core, every time.
    for expected in [asked + 1, asked + 2] {
        let (status, how, _) =
            search_through(&edge.url, "/v1/search?q=morning&cursor=20", &token).await;
        assert_eq!((status, how.as_str()), (200, ""));
        assert_eq!(core.searches(), expected);
    }

    // Without a valid token the cache answers nothing.
    let (status, how, _) = search_through(&edge.url, again, "not-a-token").await;
    assert_eq!((status, how.as_str()), (401, ""));
}
