//! In-process tests of the edge router with fakes for the host, the core and the rooms.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{NOW, SECRET, TOKEN_KEYS, bearer, config, fake_host, send};

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use axum::{body::Body, http::Request};
use bytes::Bytes;
use http_body_util::BodyExt;
use nene_domain::{
    ErrorCode,
    error::ErrorEnvelope,
    health::{PartStatus, PlatformHealth},
    limits::REQUEST_BODY_BYTES_MAX,
    signing::{HEADER_SIGNATURE, HEADER_TIMESTAMP, SignedParts, SigningSecret},
};
use nene_durable::protocol::{RoomRoute, WalletRoute};
use nene_edge::{
    client_address::ClientAddressRule,
    config::EdgeConfig,
    platform::{
        BoxFuture, OutboundRequest, OutboundResponse, Platform, Rooms, Transport, TransportError,
    },
};
use tower::ServiceExt;

/// RFC 7636 appendix B: this verifier's S256 challenge.
const RFC_7636_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const RFC_7636_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

/// A core that answers as configured; its revocation check (kept apart from `seen`) answers
/// `revoked`.
struct FakeCore {
    answer: Result<(u16, String), TransportError>,
    seen: Mutex<Vec<OutboundRequest>>,
    revoked: std::sync::atomic::AtomicBool,
    revocation_checks: AtomicU64,
}

impl Transport for FakeCore {
    fn send(
        &self,
        request: OutboundRequest,
    ) -> BoxFuture<Result<OutboundResponse, TransportError>> {
        if request.url.ends_with("/internal/v1/auth/revoked") {
            self.revocation_checks.fetch_add(1, Ordering::Relaxed);
            let body = format!("{{\"revoked\":{}}}", self.revoked.load(Ordering::Relaxed));
            return Box::pin(async move {
                Ok(OutboundResponse {
                    status: 200,
                    body: Bytes::from(body),
                })
            });
        }
        self.seen
            .lock()
            .map(|mut seen| seen.push(request.clone()))
            .ok();
        let answer = self.answer.clone();
        Box::pin(async move {
            let (status, body) = answer?;
            Ok(OutboundResponse {
                status,
                body: Bytes::from(body),
            })
        })
    }
}

#[derive(Default)]
struct FakeRooms {
    value: Mutex<i64>,
    joins: Mutex<Vec<serde_json::Value>>,
    /// What a wallet answers a join (201 with counts when `None`).
    join_reply: Mutex<Option<(u16, String)>>,
    /// What a room answers `GET /roster` (not sealed when `None`).
    roster_reply: Mutex<Option<String>>,
    roster_calls: AtomicU64,
}

impl Rooms for FakeRooms {
    fn send(
        &self,
        _object: nene_edge::platform::ObjectName<'_>,
        request: OutboundRequest,
    ) -> BoxFuture<Result<OutboundResponse, TransportError>> {
        let path = request
            .url
            .trim_start_matches(nene_durable::protocol::OBJECT_URL_BASE)
            .to_owned();
        if path == RoomRoute::Close.path() {
            self.joins
                .lock()
                .map(|mut joins| joins.push(serde_json::json!({"closed": true})))
                .ok();
            return Box::pin(async {
                Ok(OutboundResponse {
                    status: 200,
                    body: Bytes::from_static(b"{\"closed\":true}"),
                })
            });
        }
        if path == WalletRoute::Join.path() {
            let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap_or_default();
            self.joins.lock().map(|mut joins| joins.push(body)).ok();
            let (status, body) = self
                .join_reply
                .lock()
                .ok()
                .and_then(|reply| reply.clone())
                .unwrap_or((201, "{\"participants\":1,\"capacity\":2}".to_owned()));
            return Box::pin(async move {
                Ok(OutboundResponse {
                    status,
                    body: Bytes::from(body),
                })
            });
        }
        if path.starts_with(&format!("{}?", RoomRoute::Counts.path())) {
            return Box::pin(async {
                Ok(OutboundResponse {
                    status: 200,
                    body: Bytes::from_static(b"{\"participants\":1,\"pending\":0,\"capacity\":2}"),
                })
            });
        }
        if path == RoomRoute::Roster.path() {
            self.roster_calls.fetch_add(1, Ordering::Relaxed);
            let body = self
                .roster_reply
                .lock()
                .ok()
                .and_then(|reply| reply.clone())
                .unwrap_or_else(|| "{\"sealed\":null}".to_owned());
            return Box::pin(async move {
                Ok(OutboundResponse {
                    status: 200,
                    body: Bytes::from(body),
                })
            });
        }
        let call =
            nene_durable::probe::ProbeCall::parse(request.method.as_str(), &path, &request.body);
        let answer = match call {
            Ok(nene_durable::probe::ProbeCall::AddToProbe(add)) => {
                let mut value = self.value.lock().unwrap_or_else(|e| e.into_inner());
                *value += add.add;
                (200, format!("{{\"value\":{}}}", *value))
            }
            Ok(nene_durable::probe::ProbeCall::ReadProbe) => {
                let value = self.value.lock().unwrap_or_else(|e| e.into_inner());
                (200, format!("{{\"value\":{}}}", *value))
            }
            Err(error) => (error.http_status(), error.to_string()),
        };
        Box::pin(async move {
            Ok(OutboundResponse {
                status: answer.0,
                body: Bytes::from(answer.1),
            })
        })
    }
}

fn healthy_core() -> Arc<FakeCore> {
    core_answering(Ok((
        200,
        r#"{"core":"ok","database":"ok","redis":"ok"}"#.to_owned(),
    )))
}

fn core_answering(answer: Result<(u16, String), TransportError>) -> Arc<FakeCore> {
    Arc::new(FakeCore {
        answer,
        seen: Mutex::new(Vec::new()),
        revoked: std::sync::atomic::AtomicBool::new(false),
        revocation_checks: AtomicU64::new(0),
    })
}

fn platform(core: Arc<FakeCore>, dev_mode: bool) -> Platform {
    Platform {
        config: config(dev_mode),
        host: fake_host(),
        transport: core,
        rooms: Some(Arc::new(FakeRooms::default())),
        cache: None,
        client_address: ClientAddressRule::Cloudflare,
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post_json(path: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(body.into())
        .unwrap()
}

fn error_of(body: &[u8]) -> ErrorEnvelope {
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "not an error envelope ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })
}

#[tokio::test]
async fn health_reports_every_part_when_the_core_is_up() {
    let (status, _, body) = send(platform(healthy_core(), false), get("/v1/health")).await;
    assert_eq!(status, 200);
    let report: PlatformHealth = serde_json::from_slice(&body).unwrap();
    assert_eq!(report.status, PartStatus::Ok);
    assert_eq!(report.edge, PartStatus::Ok);
    assert_eq!(report.core, PartStatus::Ok);
    assert_eq!(report.database, PartStatus::Ok);
    assert_eq!(report.redis, PartStatus::Ok);
    assert_eq!(report.runtime, "test");
}

#[tokio::test]
async fn the_edge_signs_its_call_to_the_core() {
    let core = healthy_core();
    send(platform(Arc::clone(&core), false), get("/v1/health")).await;
    let seen = core.seen.lock().map(|s| s.clone()).unwrap_or_default();
    let request = seen.first().expect("the core was not called");
    assert_eq!(request.url, "https://core.test/internal/v1/health");
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let timestamp: i64 = header(HEADER_TIMESTAMP).parse().unwrap_or_default();
    let secret = SigningSecret::parse(SECRET).unwrap();
    let parts = SignedParts {
        method: "GET",
        path_and_query: "/internal/v1/health",
        timestamp_unix_seconds: timestamp,
        user: "",
        body: b"",
    };
    assert_eq!(
        secret.verify(&parts, &header(HEADER_SIGNATURE), NOW),
        Ok(())
    );
}

#[tokio::test]
async fn health_is_503_with_the_report_when_the_database_is_down() {
    let core = core_answering(Ok((
        200,
        r#"{"core":"ok","database":"down","redis":"disabled"}"#.to_owned(),
    )));
    let (status, _, body) = send(platform(core, false), get("/v1/health")).await;
    assert_eq!(status, 503);
    let report: PlatformHealth = serde_json::from_slice(&body).unwrap();
    assert_eq!(report.database, PartStatus::Down);
    assert_eq!(report.redis, PartStatus::Disabled);
}

#[tokio::test]
async fn health_is_a_503_json_error_when_the_core_is_unreachable_or_slow() {
    for failure in [
        TransportError::Unreachable("connection refused".into()),
        TransportError::Timeout,
    ] {
        let (status, request_id, body) = send(
            platform(core_answering(Err(failure)), false),
            get("/v1/health"),
        )
        .await;
        assert_eq!(status, 503);
        let envelope = error_of(&body);
        assert_eq!(envelope.error.code, ErrorCode::CoreUnavailable);
        assert_eq!(envelope.error.request_id, request_id);
        assert!(!request_id.is_empty());
    }
}

#[tokio::test]
async fn a_core_that_answers_500_is_reported_as_unavailable_without_its_detail() {
    let core = core_answering(Ok((500, "panic at src/db.rs:12".to_owned())));
    let (status, _, body) = send(platform(core, false), get("/v1/health")).await;
    assert_eq!(status, 503);
    assert!(!String::from_utf8_lossy(&body).contains("src/db.rs"));
    assert_eq!(error_of(&body).error.code, ErrorCode::CoreUnavailable);
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404_with_the_request_id() {
    let (status, request_id, body) =
        send(platform(healthy_core(), false), get("/v1/nothing-here")).await;
    assert_eq!(status, 404);
    let envelope = error_of(&body);
    assert_eq!(envelope.error.code, ErrorCode::NotFound);
    assert_eq!(envelope.error.request_id, request_id);
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405() {
    let request = Request::delete("/v1/health").body(Body::empty()).unwrap();
    let (status, _, body) = send(platform(healthy_core(), false), request).await;
    assert_eq!(status, 405);
    assert_eq!(error_of(&body).error.code, ErrorCode::MethodNotAllowed);
}

#[tokio::test]
async fn malformed_json_is_a_json_400() {
    let (status, _, body) = send(
        platform(healthy_core(), true),
        post_json("/v1/dev/rooms/room-1/probe", "{\"add\": "),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body).error.code, ErrorCode::InvalidJson);
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_json_413() {
    let padding = "x".repeat(REQUEST_BODY_BYTES_MAX + 1);
    let (status, _, body) = send(
        platform(healthy_core(), true),
        post_json(
            "/v1/dev/rooms/room-1/probe",
            format!("{{\"add\": 1, \"pad\": \"{padding}\"}}"),
        ),
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(error_of(&body).error.code, ErrorCode::PayloadTooLarge);
}

#[tokio::test]
async fn the_room_probe_keeps_its_value_across_requests() {
    let platform = platform(healthy_core(), true);
    let (status, _, _) = send(
        platform.clone(),
        post_json("/v1/dev/rooms/room-1/probe", "{\"add\": 2}"),
    )
    .await;
    assert_eq!(status, 200);
    let (_, _, body) = send(
        platform.clone(),
        post_json("/v1/dev/rooms/room-1/probe", "{\"add\": 3}"),
    )
    .await;
    assert_eq!(body, Bytes::from_static(b"{\"value\":5}"));
}

#[tokio::test]
async fn a_probe_step_out_of_range_is_a_422() {
    let (status, _, body) = send(
        platform(healthy_core(), true),
        post_json("/v1/dev/rooms/room-1/probe", "{\"add\": 0}"),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(error_of(&body).error.code, ErrorCode::ValidationFailed);
}

#[tokio::test]
async fn dev_routes_do_not_exist_outside_dev_mode() {
    let (status, _, body) = send(
        platform(healthy_core(), false),
        get("/v1/dev/rooms/room-1/probe"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(error_of(&body).error.code, ErrorCode::NotFound);
}

/// Sends `request` to what a host serves with the variables `vars`, and returns the status, the
/// error code if any, and what the host logged.
async fn served_with(
    vars: &[(&str, &str)],
    core: Arc<FakeCore>,
    request: Request<Body>,
) -> (u16, Option<ErrorCode>, Vec<String>) {
    let logged = Mutex::new(Vec::new());
    let app = nene_edge::router::configured_router(
        |name| {
            vars.iter()
                .find(|(var, _)| *var == name)
                .map(|(_, value)| (*value).to_owned())
        },
        |config| Platform {
            config,
            host: fake_host(),
            transport: core,
            rooms: Some(Arc::new(FakeRooms::default())),
            cache: None,
            client_address: ClientAddressRule::Cloudflare,
        },
        |line| {
            logged
                .lock()
                .map(|mut l| l.push(line.to_owned()))
                .unwrap_or(())
        },
    );
    let response = app
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .unwrap_or_default();
    let code = serde_json::from_slice::<ErrorEnvelope>(&body)
        .ok()
        .map(|envelope| envelope.error.code);
    (status, code, logged.into_inner().unwrap_or_default())
}

#[tokio::test]
async fn a_production_edge_with_the_dev_secret_answers_every_request_503_and_logs_the_variable() {
    let vars = [
        ("CORE_URL", "https://core.test"),
        (
            "CORE_SIGNING_SECRET",
            "dev-only-signing-secret-0123456789abcdef",
        ),
        ("ACCESS_TOKEN_KEYS", TOKEN_KEYS),
    ];
    let token = nene_domain::access_token::TokenKeys::parse(TOKEN_KEYS)
        .and_then(|keys| keys.issue("user-1", "jti-1", NOW))
        .unwrap();
    let join = Request::post("/v1/challenges/ch-1/join")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    for request in [get("/v1/health"), join, get("/no/such/route")] {
        let core = healthy_core();
        let (status, code, logged) = served_with(&vars, Arc::clone(&core), request).await;
        assert_eq!(status, 503);
        assert_eq!(code, Some(ErrorCode::CoreUnavailable));
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert!(
            logged[0].contains("CORE_SIGNING_SECRET"),
            "the log names the variable: {logged:?}"
        );
        assert!(
            core.seen
                .lock()
                .map(|seen| seen.is_empty())
                .unwrap_or(false),
            "nothing is served with a bad configuration"
        );
    }
}

#[tokio::test]
async fn a_production_edge_calling_the_core_over_http_answers_503_and_logs_core_url() {
    let vars = [
        ("CORE_URL", "http://core.test"),
        ("CORE_SIGNING_SECRET", SECRET),
        ("ACCESS_TOKEN_KEYS", TOKEN_KEYS),
        ("NENE_ENV", "production"),
    ];
    let (status, code, logged) = served_with(&vars, healthy_core(), get("/v1/health")).await;
    assert_eq!((status, code), (503, Some(ErrorCode::CoreUnavailable)));
    assert!(
        logged.iter().any(|line| line.contains("CORE_URL")),
        "{logged:?}"
    );
}

#[tokio::test]
async fn a_valid_configuration_is_served() {
    let vars = [
        ("CORE_URL", "https://core.test"),
        ("CORE_SIGNING_SECRET", SECRET),
        ("ACCESS_TOKEN_KEYS", TOKEN_KEYS),
    ];
    let (status, _, logged) = served_with(&vars, healthy_core(), get("/v1/health")).await;
    assert_eq!(status, 200);
    assert!(logged.is_empty());
}

#[test]
fn a_config_without_a_long_enough_secret_is_refused() {
    let result = EdgeConfig::from_lookup(|name| match name {
        "CORE_URL" => Some("https://core.test".to_owned()),
        "CORE_SIGNING_SECRET" => Some("short".to_owned()),
        "ACCESS_TOKEN_KEYS" => Some(TOKEN_KEYS.to_owned()),
        _ => None,
    });
    assert!(result.is_err());
}

#[tokio::test]
async fn joining_without_a_valid_access_token_is_401_before_anything_is_called() {
    let core = healthy_core();
    let forged =
        nene_domain::access_token::TokenKeys::parse("k1:someone-elses-key-someone-elses-key-00")
            .and_then(|keys| keys.issue("user-1", "j", NOW))
            .unwrap();
    for authorization in [
        None,
        Some("Bearer not-a-jwt".to_owned()),
        Some(format!("Bearer {forged}")),
    ] {
        let mut request = Request::post("/v1/challenges/0190f5a2-0000-7000-8000-000000000001/join");
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let request = request.body(Body::empty()).unwrap();
        let (status, _, body) = send(platform(Arc::clone(&core), false), request).await;
        assert_eq!(status, 401, "{authorization:?}");
        assert_eq!(error_of(&body).error.code, ErrorCode::Unauthorized);
    }
    assert!(
        core.seen.lock().map(|s| s.is_empty()).unwrap_or(false),
        "the core was called"
    );
}

#[tokio::test]
async fn a_join_with_a_valid_token_is_forwarded_to_the_users_wallet_as_that_user() {
    let token = nene_domain::access_token::TokenKeys::parse(TOKEN_KEYS)
        .and_then(|keys| keys.issue("user-7", "j", NOW))
        .unwrap();
    let request = Request::post("/v1/challenges/0190f5a2-0000-7000-8000-000000000001/join")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let rooms = Arc::new(FakeRooms::default());
    let mut platform = platform(healthy_core(), false);
    platform.rooms = Some(Arc::clone(&rooms) as Arc<dyn Rooms>);
    let (status, _, body) = send(platform, request).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let joins = rooms.joins.lock().map(|j| j.clone()).unwrap_or_default();
    assert_eq!(
        joins,
        vec![
            serde_json::json!({"challenge": "0190f5a2-0000-7000-8000-000000000001", "user": "user-7", "idempotency_key": null, "session": "j"})
        ]
    );
}

fn full_reply() -> (u16, String) {
    let envelope = ErrorEnvelope::new(
        ErrorCode::ChallengeFull,
        ErrorCode::ChallengeFull.default_message(),
        "",
    );
    (409, serde_json::to_string(&envelope).unwrap())
}

fn join_request(challenge: &str, user: &str) -> Request<Body> {
    Request::post(format!("/v1/challenges/{challenge}/join"))
        .header("authorization", bearer(user))
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_sealed_full_room_refuses_outsiders_at_the_edge_and_sends_its_participants_the_whole_way()
{
    // Each test has its own challenge: the roster cache lives as long as the isolate (the process).
    let challenge = "0190f5a2-0000-7000-8000-000000000002";
    let core = healthy_core();
    let rooms = Arc::new(FakeRooms::default());
    *rooms.join_reply.lock().unwrap_or_else(|e| e.into_inner()) = Some(full_reply());
    *rooms.roster_reply.lock().unwrap_or_else(|e| e.into_inner()) =
        Some(r#"{"sealed":{"refusal":"full","participants":["user-in"]}}"#.to_owned());
    let platform = || {
        let mut platform = platform(Arc::clone(&core), false);
        platform.rooms = Some(Arc::clone(&rooms) as Arc<dyn Rooms>);
        platform
    };
    let joins = || rooms.joins.lock().map(|j| j.len()).unwrap_or(0);

    // The first refusal comes from the room, through the wallet; the edge then asks for the roster.
    let (status, _, body) = send(platform(), join_request(challenge, "user-a")).await;
    assert_eq!(status, 409);
    assert_eq!(error_of(&body).error.code, ErrorCode::ChallengeFull);
    assert_eq!(
        (joins(), rooms.roster_calls.load(Ordering::Relaxed)),
        (1, 1)
    );

    for user in ["user-b", "user-c", "user-a"] {
        let (status, _, body) = send(platform(), join_request(challenge, user)).await;
        assert_eq!(status, 409);
        assert_eq!(error_of(&body).error.code, ErrorCode::ChallengeFull);
    }
    assert_eq!(joins(), 1, "outsiders were answered at the edge");
    assert_eq!(rooms.roster_calls.load(Ordering::Relaxed), 1);

    // A participant's retry reaches their wallet, which replays their first answer.
    *rooms.join_reply.lock().unwrap_or_else(|e| e.into_inner()) =
        Some((201, r#"{"participants":100,"capacity":100}"#.to_owned()));
    let (status, _, _) = send(platform(), join_request(challenge, "user-in")).await;
    assert_eq!(status, 201);
    assert_eq!(joins(), 2);
    assert_eq!(
        core.revocation_checks.load(Ordering::Relaxed),
        0,
        "a join never waits on the core at the edge: the core checks the session it carries"
    );
}

#[tokio::test]
async fn a_room_that_is_full_but_not_sealed_keeps_answering_every_join_itself() {
    let challenge = "0190f5a2-0000-7000-8000-000000000003";
    let rooms = Arc::new(FakeRooms::default());
    *rooms.join_reply.lock().unwrap_or_else(|e| e.into_inner()) = Some(full_reply());
    let core = healthy_core();
    for user in ["user-a", "user-b", "user-c"] {
        let mut platform = platform(Arc::clone(&core), false);
        platform.rooms = Some(Arc::clone(&rooms) as Arc<dyn Rooms>);
        let (status, _, _) = send(platform, join_request(challenge, user)).await;
        assert_eq!(status, 409);
    }
    assert_eq!(rooms.joins.lock().map(|j| j.len()).unwrap_or(0), 3);
    assert_eq!(
        rooms.roster_calls.load(Ordering::Relaxed),
        1,
        "asked once, then not again within the interval"
    );
}

#[tokio::test]
async fn without_rooms_a_join_goes_to_the_core_with_its_session_for_the_revocation_check() {
    let core = core_answering(Ok((201, r#"{"participants":1}"#.to_owned())));
    let mut platform = platform(Arc::clone(&core), false);
    platform.rooms = None;
    let (status, _, _) = send(
        platform,
        join_request("0190f5a2-0000-7000-8000-000000000004", "user-9"),
    )
    .await;
    assert_eq!(status, 201);
    let seen = core.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0]
            .url
            .ends_with("/internal/v1/challenges/0190f5a2-0000-7000-8000-000000000004/join")
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&seen[0].body).ok(),
        Some(serde_json::json!({ "session": "j" }))
    );
    assert_eq!(core.revocation_checks.load(Ordering::Relaxed), 0);
}

fn header_of<'a>(request: &'a OutboundRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

#[tokio::test]
async fn a_toss_webhook_is_handed_to_the_core_byte_for_byte_and_then_acknowledged() {
    let core = core_answering(Ok((200, r#"{"accepted":true}"#.to_owned())));
    let body = r#"{"eventType":"PAYMENT_STATUS_CHANGED","data":{"orderId":"nene_1"}}"#;
    let (status, _, _) = send(
        platform(Arc::clone(&core), false),
        post_json("/webhooks/toss", body),
    )
    .await;
    assert_eq!(status, 200);
    let seen = core.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].url.ends_with("/internal/v1/webhooks/toss"));
    assert_eq!(seen[0].body, Bytes::from(body));
    assert!(header_of(&seen[0], HEADER_SIGNATURE).is_some(), "signed");
    assert_eq!(header_of(&seen[0], "x-nene-user"), None, "as no user");
}

#[tokio::test]
async fn a_webhook_the_core_could_not_store_is_not_acknowledged_so_toss_retries() {
    for answer in [Err(TransportError::Timeout), Ok((500, "{}".to_owned()))] {
        let (status, _, body) = send(
            platform(core_answering(answer), false),
            post_json("/webhooks/toss", r#"{"eventType":"X"}"#),
        )
        .await;
        assert_ne!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
}

#[tokio::test]
async fn a_confirm_whose_outcome_is_unknown_keeps_the_cores_202() {
    let core = core_answering(Ok((
        202,
        r#"{"order_id":"nene_1","status":"confirming","amount":1000,"points":"none","canceled_amount":0}"#
            .to_owned(),
    )));
    let request = Request::post("/v1/payments/confirm")
        .header("authorization", bearer("user-9"))
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"payment_key":"pk","order_id":"nene_1","amount":1000}"#,
        ))
        .unwrap();
    let (status, _, body) = send(platform(Arc::clone(&core), false), request).await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let seen = core.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(header_of(&seen[0], "x-nene-user"), Some("user-9"));
}

#[tokio::test]
async fn a_refunds_idempotency_key_travels_inside_the_signed_body() {
    let core = core_answering(Ok((200, r#"{"state":"done"}"#.to_owned())));
    let request = Request::post("/v1/payments/nene_order_1/refund")
        .header("authorization", bearer("user-9"))
        .header("idempotency-key", "refund-once")
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(platform(Arc::clone(&core), false), request).await;
    assert_eq!(status, 200);
    let seen = core.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        seen[0]
            .url
            .ends_with("/internal/v1/payments/nene_order_1/refund")
    );
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap_or_default();
    assert_eq!(body["idempotency_key"], "refund-once");
    let bad_order = Request::post("/v1/payments/..%2F/refund")
        .header("authorization", bearer("user-9"))
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(platform(healthy_core(), false), bad_order).await;
    assert_eq!(
        status, 404,
        "an order id outside Toss's format never reaches the core"
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_where_money_moves() {
    let core = core_answering(Ok((201, r#"{"order_id":"nene_1"}"#.to_owned())));
    core.revoked.store(true, Ordering::Relaxed);
    let request = Request::post("/v1/payments/orders")
        .header("authorization", bearer("user-revoked"))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"amount":10000}"#))
        .unwrap();
    let (status, _, body) = send(platform(Arc::clone(&core), false), request).await;
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    assert!(
        core.seen.lock().map(|s| s.is_empty()).unwrap_or(false),
        "the order was never forwarded"
    );
}

#[tokio::test]
async fn money_routes_ask_about_revocation_every_time_and_other_routes_reuse_the_answer() {
    let core = core_answering(Ok((201, r#"{"order_id":"nene_1"}"#.to_owned())));
    let token = bearer("user-cached");
    for _ in 0..3 {
        let request = Request::post("/v1/payments/orders")
            .header("authorization", &token)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"amount":10000}"#))
            .unwrap();
        send(platform(Arc::clone(&core), false), request).await;
    }
    assert_eq!(core.revocation_checks.load(Ordering::Relaxed), 3);
    let token = nene_domain::access_token::TokenKeys::parse(TOKEN_KEYS)
        .and_then(|keys| keys.issue("user-cached", "another-jti", NOW))
        .unwrap();
    for _ in 0..3 {
        let request = Request::get("/v1/wallet")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        send(platform(Arc::clone(&core), false), request).await;
    }
    assert_eq!(
        core.revocation_checks.load(Ordering::Relaxed),
        4,
        "one check for three reads within a minute"
    );
}

#[tokio::test]
async fn a_partners_failure_reported_by_the_core_reaches_the_client_as_that_502() {
    let envelope = r#"{"error":{"code":"PROVIDER_UNAVAILABLE","message":"x","request_id":"r"}}"#;
    let body = r#"{"code":"c","state":"s","code_verifier":"v"}"#;
    let callback = || {
        Request::post("/v1/auth/google/callback")
            .header("content-type", "application/json")
            .header("cf-connecting-ip", "203.0.113.7")
            .body(Body::from(body))
            .unwrap()
    };
    let (status, _, answer) = send(
        platform(core_answering(Ok((502, envelope.to_owned()))), false),
        callback(),
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(error_of(&answer).error.code, ErrorCode::ProviderUnavailable);
    let (status, _, answer) = send(
        platform(
            core_answering(Ok((502, "<html>bad gateway</html>".to_owned()))),
            false,
        ),
        callback(),
    )
    .await;
    assert_eq!(status, 503, "a proxy's 502 is the core being unavailable");
    assert_eq!(error_of(&answer).error.code, ErrorCode::CoreUnavailable);
}

fn signed_close(path: &str, secret: &str, timestamp: i64) -> Request<Body> {
    let signature = SigningSecret::parse(secret)
        .map(|secret| {
            secret.sign(&SignedParts {
                method: "POST",
                path_and_query: path,
                timestamp_unix_seconds: timestamp,
                user: "",
                body: b"",
            })
        })
        .unwrap();
    Request::post(path)
        .header(HEADER_TIMESTAMP, timestamp.to_string())
        .header(HEADER_SIGNATURE, signature)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn only_the_cores_signature_closes_a_room() {
    let path = "/internal/rooms/0190a5f2-7c3e-7000-8000-000000000001/close";
    for (secret, timestamp) in [
        ("another-secret-another-secret-another!", NOW),
        (SECRET, NOW - 3_600),
    ] {
        let rooms = Arc::new(FakeRooms::default());
        let mut platform = platform(healthy_core(), false);
        platform.rooms = Some(Arc::clone(&rooms) as Arc<dyn Rooms>);
        let (status, _, _) = send(platform, signed_close(path, secret, timestamp)).await;
        assert_eq!(status, 401);
        assert!(rooms.joins.lock().map(|j| j.is_empty()).unwrap_or(false));
    }
    let rooms = Arc::new(FakeRooms::default());
    let mut platform = platform(healthy_core(), false);
    platform.rooms = Some(Arc::clone(&rooms) as Arc<dyn Rooms>);
    let (status, _, body) = send(platform, signed_close(path, SECRET, NOW)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(rooms.joins.lock().map(|j| j.len()).unwrap_or(0), 1);
}

#[tokio::test]
async fn the_core_hears_each_call_under_the_request_id_the_client_was_answered_with() {
    let authed = |method: &str, path: &str, body: &'static str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", bearer("user-7"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let challenge = "0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d";
    let requests = [
        get("/v1/health"),
        authed("GET", "/v1/me", ""),
        authed("GET", "/v1/notifications?limit=5", ""),
        authed("GET", &format!("/v1/challenges/{challenge}/me"), ""),
        authed("POST", "/v1/payments/orders", r#"{"amount":1000}"#),
        authed("DELETE", "/v1/me/devices/phone-1", ""),
        post_json("/webhooks/toss", r#"{"eventType":"X"}"#),
    ];
    for request in requests {
        let path = request.uri().to_string();
        let core = healthy_core();
        let (_, request_id, _) = send(platform(Arc::clone(&core), false), request).await;
        let seen = core.seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen.len(), 1, "{path}: one call to the core");
        assert!(!request_id.is_empty(), "{path}: the client has an id");
        assert_eq!(
            header_of(&seen[0], "x-request-id"),
            Some(request_id.as_str()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn after_a_logout_the_families_tokens_are_refused_here_at_once_not_a_minute_later() {
    let core = core_answering(Ok((200, r#"{"id":"user-out"}"#.to_owned())));
    let token = |jti: &str| {
        nene_domain::access_token::TokenKeys::parse(TOKEN_KEYS)
            .and_then(|keys| keys.issue("user-out", jti, NOW))
            .map(|token| format!("Bearer {token}"))
            .unwrap()
    };
    let (phone, laptop, other_family) = (
        token("family-out.phone"),
        token("family-out.laptop"),
        token("family-kept.tablet"),
    );
    let me = |bearer: &str| {
        Request::get("/v1/me")
            .header("authorization", bearer)
            .body(Body::empty())
            .unwrap()
    };
    for bearer in [&phone, &laptop, &other_family] {
        let (status, _, _) = send(platform(Arc::clone(&core), false), me(bearer)).await;
        assert_eq!(status, 200, "signed in: the answer is now cached");
    }
    let logout = Request::post("/v1/auth/logout")
        .header("authorization", &phone)
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = send(platform(Arc::clone(&core), false), logout).await;
    assert_eq!(status, 204);
    // The core has recorded the family's revocation; its other isolates may not know yet.
    core.revoked.store(true, Ordering::Relaxed);
    for bearer in [&phone, &laptop] {
        let (status, _, _) = send(platform(Arc::clone(&core), false), me(bearer)).await;
        assert_eq!(status, 401, "a token of the logged-out family");
    }
    let checks = core.revocation_checks.load(Ordering::Relaxed);
    let (status, _, _) = send(platform(Arc::clone(&core), false), me(&other_family)).await;
    assert_eq!(status, 200, "another family's cached answer stands");
    assert_eq!(core.revocation_checks.load(Ordering::Relaxed), checks);
}

#[tokio::test]
async fn a_malformed_challenge_or_proof_id_is_a_404_before_the_core_or_a_room_is_asked() {
    let core = healthy_core();
    let rooms = Arc::new(FakeRooms::default());
    let platform = || {
        let mut platform = platform(Arc::clone(&core), false);
        platform.rooms = Some(Arc::clone(&rooms) as Arc<dyn Rooms>);
        platform
    };
    for id in [
        "not-a-uuid",
        "0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6",
        "0190f5a27-c1e-7a4b-9c3d-1e2f3a4b5c6d",
        "0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6g",
        "0190f5a2_7c1e_7a4b_9c3d_1e2f3a4b5c6d",
    ] {
        for (method, path) in [
            ("GET", format!("/v1/challenges/{id}")),
            ("POST", format!("/v1/challenges/{id}/join")),
            ("GET", format!("/v1/challenges/{id}/me")),
            ("GET", format!("/v1/challenges/{id}/proofs")),
            ("POST", format!("/v1/proofs/{id}/report")),
        ] {
            let request = Request::builder()
                .method(method)
                .uri(&path)
                .header("authorization", bearer("user-5"))
                .header("content-type", "application/json")
                .body(Body::from(r#"{"reason":"x"}"#))
                .unwrap();
            let (status, _, body) = send(platform(), request).await;
            assert_eq!(status, 404, "{method} {path}");
            assert_eq!(error_of(&body).error.code, ErrorCode::NotFound);
        }
    }
    assert!(
        core.seen.lock().map(|s| s.is_empty()).unwrap_or(false),
        "the core was asked"
    );
    assert!(
        rooms.joins.lock().map(|j| j.is_empty()).unwrap_or(false),
        "a room was asked"
    );
}

#[tokio::test]
async fn the_cores_message_reaches_the_client_for_bad_input_and_only_for_bad_input() {
    let refusal = |code: ErrorCode, message: &str| {
        let envelope = ErrorEnvelope::new(code, message, "core-request");
        let status = code.http_status();
        core_answering(Ok((status, serde_json::to_string(&envelope).unwrap())))
    };
    let patch_me = || {
        Request::patch("/v1/me")
            .header("authorization", bearer("user-msg"))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"nickname":"x"}"#))
            .unwrap()
    };
    let nickname = "nickname: a nickname is 2–20 letters at line 1 column 16";
    let (status, _, body) = send(
        platform(refusal(ErrorCode::InvalidJson, nickname), false),
        patch_me(),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body).error.message, nickname);

    let (status, _, body) = send(
        platform(
            refusal(ErrorCode::NicknameTaken, "taken by user u_123"),
            false,
        ),
        patch_me(),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        error_of(&body).error.message,
        ErrorCode::NicknameTaken.default_message(),
        "a refusal that is not about the input's shape keeps the public wording"
    );
}

#[tokio::test]
async fn the_wallets_history_is_asked_of_the_core_with_only_a_cursor_and_a_limit() {
    let core = core_answering(Ok((200, r#"{"items":[],"next_cursor":null}"#.to_owned())));
    let entries = |query: &str| {
        Request::get(format!("/v1/wallet/entries{query}"))
            .header("authorization", bearer("user-ledger"))
            .body(Body::empty())
            .unwrap()
    };
    let (status, _, body) = send(
        platform(Arc::clone(&core), false),
        entries("?limit=20&cursor=1234"),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let seen = core.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        seen[0]
            .url
            .ends_with("/internal/v1/me/wallet/entries?cursor=1234&limit=20"),
        "{}",
        seen[0].url
    );
    assert_eq!(header_of(&seen[0], "x-nene-user"), Some("user-ledger"));
    for bad in ["?account=someone-else", "?cursor=abc", "?limit=20&limit=30"] {
        let (status, _, _) = send(platform(Arc::clone(&core), false), entries(bad)).await;
        assert_eq!(status, 400, "{bad}");
    }
    assert_eq!(
        core.seen.lock().map(|s| s.len()).unwrap_or(0),
        1,
        "bad queries never reach the core"
    );
}

#[tokio::test]
async fn the_reviewers_queue_is_asked_of_the_core_as_the_signed_user_with_only_a_cursor_and_a_limit()
 {
    let core = core_answering(Ok((200, r#"{"items":[],"next_cursor":null}"#.to_owned())));
    let queue = |query: &str| {
        Request::get(format!("/v1/admin/proofs/queue{query}"))
            .header("authorization", bearer("reviewer-1"))
            .body(Body::empty())
            .unwrap()
    };
    let cursor = "0190f5a27c1e7a4b9c3d1e2f3a4b5c6d";
    let (status, _, body) = send(
        platform(Arc::clone(&core), false),
        queue(&format!("?limit=20&cursor={cursor}")),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let seen = core.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(
        seen[0].url.ends_with(&format!(
            "/internal/v1/admin/proofs/queue?cursor={cursor}&limit=20"
        )),
        "{}",
        seen[0].url
    );
    // The core decides who is a reviewer, by the user the edge signs for.
    assert_eq!(header_of(&seen[0], "x-nene-user"), Some("reviewer-1"));
    for bad in ["?challenge=x", "?cursor=../x", "?limit=1&limit=2"] {
        let (status, _, _) = send(platform(Arc::clone(&core), false), queue(bad)).await;
        assert_eq!(status, 400, "{bad}");
    }
    assert_eq!(
        core.seen.lock().map(|s| s.len()).unwrap_or(0),
        1,
        "bad queries never reach the core"
    );
}

/// The machine-readable contract, `edge/openapi.json` (with docs/api.md, the API's word).
const OPENAPI: &str = include_str!("../openapi.json");

/// `path` with every `{name}` replaced by `{}`.
fn template_shape(path: &str) -> String {
    let mut shape = String::with_capacity(path.len());
    let mut in_name = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_name = true;
                shape.push_str("{}");
            }
            '}' => in_name = false,
            _ if in_name => {}
            _ => shape.push(c),
        }
    }
    shape
}

/// A value of the right shape for a path parameter, so a handler's own parsing passes.
fn sample(parameter: &str) -> &'static str {
    match parameter {
        "challenge_id" | "proof_id" => "0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d",
        "order_id" => "nene_0190f5a27c1e7a4b",
        "provider" => "kakao",
        _ => "phone-1",
    }
}

fn documented_operations() -> Vec<(String, String, bool, bool)> {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            let public = operation["security"].as_array().is_some_and(Vec::is_empty);
            let has_body = operation.get("requestBody").is_some();
            operations.push((method.to_uppercase(), path.clone(), public, has_body));
        }
    }
    operations
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_asks_for_a_token_exactly_when_documented() {
    let operations = documented_operations();
    assert!(operations.len() >= 28, "{} operations", operations.len());
    for (method, template, public, has_body) in operations {
        let mut path = template.clone();
        while let Some(start) = path.find('{') {
            let end = path[start..]
                .find('}')
                .map_or(path.len(), |end| start + end);
            let value = sample(&path[start + 1..end]);
            path.replace_range(start..=end, value);
        }
        if template.ends_with("/start") {
            path.push_str("?redirect_uri=http%3A%2F%2F127.0.0.1%3A8787%2Fauth%2Fdone");
            path.push_str(&format!(
                "&code_challenge={RFC_7636_CHALLENGE}&code_challenge_method=S256"
            ));
        }
        let request = |token: Option<String>| {
            let mut request = Request::builder()
                .method(method.as_str())
                .uri(&path)
                .header("content-type", "application/json")
                .header("cf-connecting-ip", "203.0.113.7");
            if let Some(token) = token {
                request = request.header("authorization", token);
            }
            request
                .body(Body::from(if has_body { "{}" } else { "" }))
                .unwrap()
        };
        let (anonymous, _, body) = send(platform(healthy_core(), true), request(None)).await;
        if public {
            assert_ne!(
                anonymous,
                401,
                "{method} {template} is public: {}",
                String::from_utf8_lossy(&body)
            );
        } else {
            assert_eq!(anonymous, 401, "{method} {template} needs a token");
        }
        let (status, _, body) = send(
            platform(healthy_core(), true),
            request(Some(bearer("user-contract"))),
        )
        .await;
        assert!(
            status != 404 && status != 405,
            "{method} {template}: {status} {}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[test]
fn every_public_route_of_the_router_is_documented() {
    let documented: Vec<String> = documented_operations()
        .iter()
        .map(|(_, path, _, _)| template_shape(path))
        .collect();
    let sources = [
        include_str!("../src/router.rs"),
        include_str!("../src/health.rs"),
        include_str!("../src/challenges.rs"),
        include_str!("../src/joins.rs"),
        include_str!("../src/wallet.rs"),
        include_str!("../src/login.rs"),
        include_str!("../src/payments.rs"),
        include_str!("../src/notifications.rs"),
        include_str!("../src/search.rs"),
        include_str!("../src/probe.rs"),
    ];
    let mut routes: Vec<String> = sources
        .iter()
        .flat_map(|source| source.split(".route(").skip(1))
        .filter_map(|call| {
            let literal = call.trim_start().strip_prefix('"')?;
            literal.split('"').next().map(str::to_owned)
        })
        .collect();
    routes.push(nene_edge::payments::PATH_TOSS_WEBHOOK.to_owned());
    let public: Vec<&String> = routes
        .iter()
        .filter(|route| route.starts_with("/v1/") || route.starts_with("/webhooks/"))
        // The room probe is plumbing of the local stack, not part of the contract.
        .filter(|route| !route.starts_with("/v1/dev/rooms/"))
        .collect();
    assert!(public.len() >= 20, "{public:?}");
    for route in public {
        assert!(
            documented.contains(&template_shape(route)),
            "{route} is routed but not in edge/openapi.json"
        );
    }
}

/// A token for `user` in the test key, as an `authorization` header value.
fn authorized(mut request: Request<Body>, user: &str) -> Request<Body> {
    let value = bearer(user).parse().expect("header");
    request.headers_mut().insert("authorization", value);
    request
}

#[tokio::test]
async fn a_nul_character_in_any_json_body_is_a_422_naming_the_field_and_nobody_is_asked() {
    let cases = [
        (
            "/v1/challenges",
            r#"{"title":"run\u0000","entry_fee":1000}"#,
            "title",
        ),
        (
            "/v1/challenges",
            r#"{"title":"run","proof":{"time_zone":"Asia/Seoul\u0000"}}"#,
            "proof.time_zone",
        ),
        (
            "/v1/auth/kakao/callback",
            r#"{"code":"c","state":"\u0000"}"#,
            "state",
        ),
        (
            "/webhooks/toss",
            r#"{"eventType":"PAYMENT_STATUS\u0000CHANGED","data":{}}"#,
            "eventType",
        ),
    ];
    for (path, body, field) in cases {
        let core = healthy_core();
        let request = authorized(post_json(path, body), "user-1");
        let (status, request_id, answer) = send(platform(Arc::clone(&core), false), request).await;
        assert_eq!(status, 422, "{path}: {}", String::from_utf8_lossy(&answer));
        let envelope = error_of(&answer);
        assert_eq!(envelope.error.code, ErrorCode::ValidationFailed);
        assert!(
            envelope.error.message.contains(&format!("`{field}`")),
            "{path}: {}",
            envelope.error.message
        );
        assert_eq!(envelope.error.request_id, request_id);
        let seen = core.seen.lock().map(|s| s.len()).unwrap_or_default();
        assert_eq!(seen, 0, "{path}: the core was asked");
    }
}

#[tokio::test]
async fn a_device_token_with_a_nul_is_refused_on_a_put_too() {
    let core = healthy_core();
    let request = Request::put("/v1/me/devices/phone-1")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"platform":"web","token":"t\u0000"}"#))
        .unwrap();
    let (status, _, answer) = send(
        platform(Arc::clone(&core), false),
        authorized(request, "user-1"),
    )
    .await;
    assert_eq!(status, 422);
    assert!(error_of(&answer).error.message.contains("`token`"));
}

#[tokio::test]
async fn a_nul_in_a_query_parameter_is_a_422_naming_it_and_in_a_path_a_404() {
    let core = healthy_core();
    let (status, _, answer) = send(
        platform(Arc::clone(&core), false),
        authorized(get("/v1/challenges?state=RECRUITING&q=run%00"), "user-1"),
    )
    .await;
    assert_eq!(status, 422);
    assert!(error_of(&answer).error.message.contains("`q`"));
    let (status, _, answer) = send(
        platform(Arc::clone(&core), false),
        authorized(get("/v1/notifications%00"), "user-1"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(error_of(&answer).error.code, ErrorCode::NotFound);
    let seen = core.seen.lock().map(|s| s.len()).unwrap_or_default();
    assert_eq!(seen, 0, "the core was asked");
}

#[tokio::test]
async fn an_escaped_backslash_before_u0000_is_ordinary_text_and_goes_through() {
    let core = core_answering(Ok((200, r#"{"accepted":true}"#.to_owned())));
    let body = r#"{"eventType":"PAYMENT_STATUS_CHANGED","data":{"orderId":"a\\u0000"}}"#;
    let (status, _, _) = send(
        platform(Arc::clone(&core), false),
        post_json("/webhooks/toss", body),
    )
    .await;
    assert_eq!(status, 200);
    let seen = core.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen[0].body, Bytes::from(body), "byte for byte");
}

#[tokio::test]
async fn an_oversized_webhook_body_is_a_json_413_whatever_its_content_type() {
    let body = vec![b'x'; 2 * 1024 * 1024];
    for content_type in ["application/json", "text/plain"] {
        let request = Request::post("/webhooks/toss")
            .header("content-type", content_type)
            .body(Body::from(body.clone()))
            .unwrap();
        let (status, request_id, answer) = send(platform(healthy_core(), false), request).await;
        assert_eq!(status, 413, "{content_type}");
        let envelope = error_of(&answer);
        assert_eq!(envelope.error.code, ErrorCode::PayloadTooLarge);
        assert_eq!(envelope.error.request_id, request_id);
    }
}

#[tokio::test]
async fn a_challenges_detail_carries_its_proof_rates_under_live_and_nowhere_else() {
    let id = "0190f5a2-0000-7000-8000-000000000009";
    let detail = format!(
        r#"{{"id":"{id}","participants":1,"capacity":2,"proof_rate_today":5000,"success_rate":10000}}"#
    );
    for with_rooms in [true, false] {
        let mut platform = platform(core_answering(Ok((200, detail.clone()))), false);
        if !with_rooms {
            platform.rooms = None;
        }
        let request = authorized(get(&format!("/v1/challenges/{id}")), "user-1");
        let (status, _, body) = send(platform, request).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(answer["live"]["proof_rate_today"], 5000, "{answer}");
        assert_eq!(answer["live"]["success_rate"], 10000, "{answer}");
        assert_eq!(answer["live"]["participants"], 1, "{answer}");
        for rate in ["proof_rate_today", "success_rate"] {
            assert!(answer.get(rate).is_none(), "rooms {with_rooms}: {answer}");
        }
    }
}

/// A request body that records whether it was read to its end.
fn tracked_body(consumed: &Arc<std::sync::atomic::AtomicBool>) -> Body {
    use futures::StreamExt;
    let flag = Arc::clone(consumed);
    let chunks = futures::stream::iter([
        Ok::<_, std::io::Error>(Bytes::from_static(b"{\"refresh_token\":")),
        Ok(Bytes::from_static(b"\"t\"}")),
    ])
    .chain(futures::stream::poll_fn(move |_| {
        flag.store(true, Ordering::SeqCst);
        std::task::Poll::Ready(None)
    }));
    Body::from_stream(chunks)
}

#[tokio::test]
async fn every_body_is_read_to_its_end_before_any_answer() {
    // An answer over an unread body left it on the keep-alive connection, and under wrangler
    // dev the next request there sometimes failed with a 500.
    let cases = [
        ("POST", "/v1/auth/refresh", "text/plain", 415),
        ("GET", "/v1/wallet", "text/plain", 401),
        ("DELETE", "/v1/wallet", "application/octet-stream", 405),
        ("POST", "/v1/nowhere%00", "text/plain", 404),
        ("GET", "/v1/notifications?q=%00", "text/plain", 422),
    ];
    for (method, path, content_type, expected) in cases {
        let consumed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", content_type)
            .body(tracked_body(&consumed))
            .unwrap();
        let (status, _, body) = send(platform(healthy_core(), false), request).await;
        assert_eq!(status, expected, "{method} {path}");
        error_of(&body);
        assert!(
            consumed.load(Ordering::SeqCst),
            "{method} {path}: answered {status} over an unread body"
        );
    }
}

// Sign-in: the client's PKCE binding and the client address the rate limit counts.

fn started() -> Arc<FakeCore> {
    core_answering(Ok((
        200,
        r#"{"authorize_url":"https://kauth.kakao.com/oauth/authorize?x=1"}"#.to_owned(),
    )))
}

fn start_request(query: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request = Request::get(format!("/v1/auth/kakao/start?{query}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::empty()).unwrap()
}

const REDIRECT_QUERY: &str = "redirect_uri=nene%3A%2F%2Fauth%2Fcallback";

fn s256_query() -> String {
    format!("{REDIRECT_QUERY}&code_challenge={RFC_7636_CHALLENGE}&code_challenge_method=S256")
}

/// The bodies the core was sent, as JSON.
fn core_bodies(core: &FakeCore) -> Vec<serde_json::Value> {
    core.seen
        .lock()
        .map(|seen| {
            seen.iter()
                .map(|request| serde_json::from_slice(&request.body).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_login_start_forwards_the_clients_s256_challenge_and_address_to_the_core() {
    let core = started();
    let (status, _, body) = send(
        platform(Arc::clone(&core), false),
        start_request(&s256_query(), &[("cf-connecting-ip", "203.0.113.7")]),
    )
    .await;
    assert_eq!(status, 302, "{}", String::from_utf8_lossy(&body));
    let bodies = core_bodies(&core);
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["code_challenge"], RFC_7636_CHALLENGE);
    assert_eq!(bodies[0]["redirect_uri"], "nene://auth/callback");
    assert_eq!(bodies[0]["client_ip"], "203.0.113.7");
}

#[tokio::test]
async fn a_login_start_without_an_s256_challenge_is_refused_naming_the_parameter() {
    let address = [("cf-connecting-ip", "203.0.113.7")];
    for (query, status, code, names) in [
        (
            format!("{REDIRECT_QUERY}&code_challenge_method=S256"),
            400,
            ErrorCode::BadRequest,
            "code_challenge",
        ),
        (
            format!("{REDIRECT_QUERY}&code_challenge={RFC_7636_CHALLENGE}"),
            400,
            ErrorCode::BadRequest,
            "code_challenge_method",
        ),
        (
            format!(
                "{REDIRECT_QUERY}&code_challenge={RFC_7636_VERIFIER}&code_challenge_method=plain"
            ),
            422,
            ErrorCode::ValidationFailed,
            "code_challenge_method",
        ),
        (
            format!("{REDIRECT_QUERY}&code_challenge=too-short&code_challenge_method=S256"),
            422,
            ErrorCode::ValidationFailed,
            "code_challenge",
        ),
        (
            // Standard base64 (`+`, encoded), not base64url.
            format!(
                "{REDIRECT_QUERY}&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw%2BcM\
                 &code_challenge_method=S256"
            ),
            422,
            ErrorCode::ValidationFailed,
            "code_challenge",
        ),
        (
            format!("code_challenge={RFC_7636_CHALLENGE}&code_challenge_method=S256"),
            400,
            ErrorCode::BadRequest,
            "redirect_uri",
        ),
    ] {
        let core = started();
        let (answered, _, body) = send(
            platform(Arc::clone(&core), false),
            start_request(&query, &address),
        )
        .await;
        let envelope = error_of(&body);
        assert_eq!((answered, envelope.error.code), (status, code), "{query}");
        assert!(
            envelope.error.message.contains(names),
            "{query}: {}",
            envelope.error.message
        );
        assert!(core_bodies(&core).is_empty(), "{query}: the core was asked");
    }
}

fn callback_request(body: &'static str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut request =
        Request::post("/v1/auth/kakao/callback").header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.body(Body::from(body)).unwrap()
}

#[tokio::test]
async fn a_login_callback_forwards_the_clients_verifier_and_an_absent_one_as_absent() {
    let session = r#"{"user":{"id":"u_1","nickname":"네네000001","is_new":true},"family":"0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d","refresh_token":"r","refresh_expires_in":1}"#;
    let address = [("cf-connecting-ip", "203.0.113.7")];
    let core = core_answering(Ok((200, session.to_owned())));
    let (status, _, body) = send(
        platform(Arc::clone(&core), false),
        callback_request(
            r#"{"code":"c","state":"s","code_verifier":"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"}"#,
            &address,
        ),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let keys: Vec<&str> = answer
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "refresh_token",
            "token_type",
            "user"
        ]
    );
    assert_eq!(answer["refresh_token"], "r");
    assert_eq!(
        answer["user"],
        serde_json::json!({"id": "u_1", "nickname": "네네000001", "is_new": true}),
        "the core's user, as it is"
    );
    let bodies = core_bodies(&core);
    assert_eq!(bodies[0]["code_verifier"], RFC_7636_VERIFIER);
    assert_eq!(bodies[0]["client_ip"], "203.0.113.7");
    // Without a verifier the callback still reaches the core, which spends the state and refuses.
    let refused = r#"{"error":{"code":"LOGIN_STATE_INVALID","message":"m","request_id":"r"}}"#;
    let core = core_answering(Ok((401, refused.to_owned())));
    let (status, _, body) = send(
        platform(Arc::clone(&core), false),
        callback_request(r#"{"code":"c","state":"s"}"#, &address),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(error_of(&body).error.code, ErrorCode::LoginStateInvalid);
    let bodies = core_bodies(&core);
    assert_eq!(bodies.len(), 1);
    assert_eq!(bodies[0]["code_verifier"], serde_json::Value::Null);
}

/// The `client_ip` the core was sent for one login start with `headers` on `rule`'s host, or the
/// error code when the edge refused it (and asked the core nothing).
async fn counted_as(
    rule: ClientAddressRule,
    headers: &[(&str, &str)],
) -> Result<String, ErrorCode> {
    let core = started();
    let mut platform = platform(Arc::clone(&core), false);
    platform.client_address = rule;
    let (status, _, body) = send(platform, start_request(&s256_query(), headers)).await;
    if status == 302 {
        let bodies = core_bodies(&core);
        Ok(bodies[0]["client_ip"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    } else {
        assert!(
            core_bodies(&core).is_empty(),
            "refused, yet the core was asked"
        );
        Err(error_of(&body).error.code)
    }
}

#[tokio::test]
async fn on_workers_logins_are_counted_by_cf_connecting_ip_alone() {
    let workers = || ClientAddressRule::Cloudflare;
    assert_eq!(
        counted_as(
            workers(),
            &[
                ("cf-connecting-ip", "203.0.113.7"),
                ("x-forwarded-for", "198.51.100.1"),
            ]
        )
        .await,
        Ok("203.0.113.7".to_owned())
    );
    // A client-set header is no address: without Cloudflare's, the login is refused, not counted
    // in a bucket every such request would share.
    for headers in [
        &[("x-forwarded-for", "198.51.100.1")][..],
        &[("x-real-ip", "198.51.100.1")][..],
        &[][..],
    ] {
        assert_eq!(
            counted_as(workers(), headers).await,
            Err(ErrorCode::BadRequest),
            "{headers:?}"
        );
    }
}

#[tokio::test]
async fn on_spin_logins_are_counted_by_the_connection_or_the_configured_proxy_header() {
    let connection = || ClientAddressRule::Spin {
        trusted_header: None,
    };
    assert_eq!(
        counted_as(
            connection(),
            &[
                ("x-forwarded-for", "198.51.100.1"),
                ("spin-client-addr", "203.0.113.7:50123"),
            ]
        )
        .await,
        Ok("203.0.113.7".to_owned())
    );
    // A client's own spin-client-addr precedes Spin's; Spin's is the one counted.
    assert_eq!(
        counted_as(
            connection(),
            &[
                ("spin-client-addr", "198.51.100.1:1"),
                ("spin-client-addr", "203.0.113.7:50123"),
            ]
        )
        .await,
        Ok("203.0.113.7".to_owned())
    );
    for headers in [
        &[("x-forwarded-for", "198.51.100.1")][..],
        &[("cf-connecting-ip", "198.51.100.1")][..],
        &[][..],
    ] {
        assert_eq!(
            counted_as(connection(), headers).await,
            Err(ErrorCode::BadRequest),
            "{headers:?}"
        );
    }
    let behind_proxy = || ClientAddressRule::Spin {
        trusted_header: Some(http::HeaderName::from_static("x-real-ip")),
    };
    assert_eq!(
        counted_as(
            behind_proxy(),
            &[
                ("x-real-ip", "2001:db8:1:2::42"),
                ("spin-client-addr", "10.0.0.2:443"),
            ]
        )
        .await,
        Ok("2001:db8:1:2::/64".to_owned())
    );
    // The proxy's connection is shared by every client behind it: never a bucket.
    assert_eq!(
        counted_as(behind_proxy(), &[("spin-client-addr", "10.0.0.2:443")]).await,
        Err(ErrorCode::BadRequest)
    );
}

#[test]
fn the_trusted_proxy_header_is_read_from_the_configuration_and_must_be_a_header_name() {
    let read = |value: Option<&str>| {
        EdgeConfig::from_lookup(|name| match name {
            "CORE_URL" => Some("http://core.test".to_owned()),
            "CORE_SIGNING_SECRET" => Some(SECRET.to_owned()),
            "ACCESS_TOKEN_KEYS" => Some(TOKEN_KEYS.to_owned()),
            "TRUSTED_CLIENT_IP_HEADER" => value.map(str::to_owned),
            "NENE_ENV" => Some("dev".to_owned()),
            _ => None,
        })
        .map(|config| config.trusted_client_ip_header)
    };
    assert_eq!(read(None), Ok(None));
    assert_eq!(read(Some("")), Ok(None));
    assert_eq!(
        read(Some("X-Real-IP")),
        Ok(Some(http::HeaderName::from_static("x-real-ip")))
    );
    assert_eq!(
        read(Some("not a header")),
        Err(nene_edge::config::ConfigError::InvalidTrustedHeader)
    );
}

#[tokio::test]
async fn a_search_is_forwarded_with_its_filters_and_a_bad_query_never_reaches_the_core() {
    let core = core_answering(Ok((200, r#"{"items":[],"next_cursor":null}"#.to_owned())));
    let path = "/v1/search?q=%EC%95%84%EC%B9%A8%20%EC%9A%B4%EB%8F%99&type=challenges&fee_max=5000";
    let (status, _, body) = send(
        platform(Arc::clone(&core), false),
        authorized(get(path), "user-3"),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let seen = core.seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].url.ends_with(
            "/internal/v1/search?q=%EC%95%84%EC%B9%A8%20%EC%9A%B4%EB%8F%99&type=challenges&fee_max=5000"
        ),
        "{}",
        seen[0].url
    );

    for (query, message) in [
        ("", "the query is empty"),
        ("q=%20%20", "the query is empty"),
        ("q=a%09b", "the query contains a control character"),
        (
            &format!("q={}", "a".repeat(101)),
            "the query is longer than 100 characters",
        ),
    ] {
        for route in ["/v1/search", "/v1/search/suggest"] {
            let (status, _, body) = send(
                platform(Arc::clone(&core), false),
                authorized(get(&format!("{route}?{query}")), "user-3"),
            )
            .await;
            assert_eq!(status, 422, "{route}?{query}");
            let error = error_of(&body).error;
            assert_eq!(error.code, ErrorCode::ValidationFailed);
            assert_eq!(error.message, message);
        }
    }
    assert_eq!(
        core.seen.lock().map(|s| s.len()).unwrap_or(0),
        1,
        "the core was asked"
    );
}
