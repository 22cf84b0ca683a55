//! The internal API on a real Postgres (a fresh database per test): the signature is required and
//! checked, and the health report tells the truth about each store.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::redis_url;

use std::sync::Arc;

use axum::{body::Body, http::Request};
use http_body_util::BodyExt;
use nene_core::{AppState, clock::WallClock, http::router};
use nene_domain::{
    ErrorCode,
    error::ErrorEnvelope,
    health::{CoreHealth, PartStatus},
    signing::{
        HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER, SIGNATURE_WINDOW_SECONDS, SignedParts,
        SigningSecret,
    },
};
use sqlx::PgPool;
use tower::ServiceExt;

const SECRET: &str = "core-test-secret-core-test-secret-0123";
const NOW: i64 = 1_790_000_000;

struct FixedClock;

impl WallClock for FixedClock {
    fn now_unix_seconds(&self) -> i64 {
        NOW
    }
}

fn secret() -> SigningSecret {
    SigningSecret::parse(SECRET).unwrap()
}

fn state(db: PgPool, redis_url: Option<&str>) -> AppState {
    AppState {
        redis: redis_url.map(|url| redis::Client::open(url).unwrap()),
        ..AppState::offline(db, secret(), Arc::new(FixedClock)).unwrap()
    }
}

fn signed(
    method: &str,
    path: &str,
    timestamp: i64,
    user: &str,
    body: &'static [u8],
) -> Request<Body> {
    let signature = secret().sign(&SignedParts {
        method,
        path_and_query: path,
        timestamp_unix_seconds: timestamp,
        user,
        body,
    });
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HEADER_TIMESTAMP, timestamp.to_string())
        .header(HEADER_SIGNATURE, signature);
    if !user.is_empty() {
        request = request.header(HEADER_USER, user);
    }
    request.body(Body::from(body)).unwrap()
}

async fn send(state: AppState, request: Request<Body>) -> (u16, bytes::Bytes) {
    let response = router(state)
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (status, body)
}

fn assert_refused(status: u16, body: &[u8]) {
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(body));
    let envelope: ErrorEnvelope = serde_json::from_slice(body).unwrap();
    assert_eq!(envelope.error.code, ErrorCode::SignatureInvalid);
    assert!(!envelope.error.request_id.is_empty());
}

#[sqlx::test(migrations = "./migrations")]
async fn a_signed_health_request_reports_the_database_and_redis_up(db: PgPool) {
    let (status, body) = send(
        state(db, Some(&redis_url())),
        signed("GET", "/internal/v1/health", NOW, "", b""),
    )
    .await;
    assert_eq!(status, 200);
    let health: CoreHealth = serde_json::from_slice(&body).unwrap();
    assert_eq!(health.core, PartStatus::Ok);
    assert_eq!(health.database, PartStatus::Ok);
    assert_eq!(health.redis, PartStatus::Ok);
    // A fresh platform's clock offset is zero: platform time is the wall clock.
    assert_eq!(health.platform_time_unix_seconds, Some(NOW));
}

#[sqlx::test(migrations = "./migrations")]
async fn redis_not_configured_is_reported_disabled(db: PgPool) {
    let (_, body) = send(
        state(db, None),
        signed("GET", "/internal/v1/health", NOW, "", b""),
    )
    .await;
    let health: CoreHealth = serde_json::from_slice(&body).unwrap();
    assert_eq!(health.redis, PartStatus::Disabled);
}

#[sqlx::test(migrations = "./migrations")]
async fn redis_unreachable_is_reported_down_without_failing_the_report(db: PgPool) {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let (status, body) = send(
        state(db, Some("redis://127.0.0.1:1")),
        signed("GET", "/internal/v1/health", NOW, "", b""),
    )
    .await;
    assert_eq!(status, 200);
    let health: CoreHealth = serde_json::from_slice(&body).unwrap();
    assert_eq!(health.redis, PartStatus::Down);
    assert_eq!(health.database, PartStatus::Ok);
}

#[tokio::test]
async fn a_database_that_is_down_is_reported_down() {
    let db = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(300))
        .connect_lazy("postgres://postgres@127.0.0.1:1/nowhere")
        .unwrap();
    let (status, body) = send(
        state(db, None),
        signed("GET", "/internal/v1/health", NOW, "", b""),
    )
    .await;
    assert_eq!(status, 200);
    let health: CoreHealth = serde_json::from_slice(&body).unwrap();
    assert_eq!(health.database, PartStatus::Down);
    assert_eq!(health.platform_time_unix_seconds, None);
}

#[sqlx::test(migrations = "./migrations")]
async fn an_unsigned_request_is_refused(db: PgPool) {
    let request = Request::get("/internal/v1/health")
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(state(db, None), request).await;
    assert_refused(status, &body);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_stale_request_is_refused(db: PgPool) {
    let stale = NOW - SIGNATURE_WINDOW_SECONDS - 1;
    let (status, body) = send(
        state(db, None),
        signed("GET", "/internal/v1/health", stale, "", b""),
    )
    .await;
    assert_refused(status, &body);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_request_from_the_future_beyond_the_window_is_refused(db: PgPool) {
    let future = NOW + SIGNATURE_WINDOW_SECONDS + 1;
    let (status, body) = send(
        state(db, None),
        signed("GET", "/internal/v1/health", future, "", b""),
    )
    .await;
    assert_refused(status, &body);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_request_with_a_tampered_path_user_or_signature_is_refused(db: PgPool) {
    // Signed for one path, sent to another.
    let mut request = signed("GET", "/internal/v1/health?a=1", NOW, "", b"");
    *request.uri_mut() = "/internal/v1/health?a=2".parse().unwrap();
    let (status, body) = send(state(db.clone(), None), request).await;
    assert_refused(status, &body);

    // Signed for one user, the header changed to another.
    let mut request = signed("GET", "/internal/v1/health", NOW, "user-1", b"");
    request
        .headers_mut()
        .insert(HEADER_USER, "user-2".parse().unwrap());
    let (status, body) = send(state(db.clone(), None), request).await;
    assert_refused(status, &body);

    // A signature that is not hex at all.
    let mut request = signed("GET", "/internal/v1/health", NOW, "", b"");
    request
        .headers_mut()
        .insert(HEADER_SIGNATURE, "zz".parse().unwrap());
    let (status, body) = send(state(db, None), request).await;
    assert_refused(status, &body);
}

#[sqlx::test(migrations = "./migrations")]
async fn a_request_with_a_tampered_body_is_refused(db: PgPool) {
    let signature = secret().sign(&SignedParts {
        method: "POST",
        path_and_query: "/internal/v1/health",
        timestamp_unix_seconds: NOW,
        user: "",
        body: b"{\"amount\":1000}",
    });
    let request = Request::post("/internal/v1/health")
        .header(HEADER_TIMESTAMP, NOW.to_string())
        .header(HEADER_SIGNATURE, signature)
        .body(Body::from("{\"amount\":9000}"))
        .unwrap();
    let (status, body) = send(state(db, None), request).await;
    // The route has no POST, but the signature is checked first: a forged request learns nothing.
    assert_refused(status, &body);
}

#[sqlx::test(migrations = "./migrations")]
async fn an_unknown_internal_path_is_a_json_404(db: PgPool) {
    let (status, body) = send(
        state(db, None),
        signed("GET", "/internal/v1/nothing", NOW, "", b""),
    )
    .await;
    assert_eq!(status, 404);
    let envelope: ErrorEnvelope = serde_json::from_slice(&body).unwrap();
    assert_eq!(envelope.error.code, ErrorCode::NotFound);
}

#[sqlx::test(migrations = "./migrations")]
async fn the_migrations_create_a_single_row_test_clock_at_zero(db: PgPool) {
    let offset: i64 = sqlx::query_scalar("SELECT offset_seconds FROM test_clock")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(offset, 0);
    let second_row = sqlx::query("INSERT INTO test_clock (id) VALUES (false)")
        .execute(&db)
        .await;
    assert!(second_row.is_err(), "the schema must refuse a second clock");
}

#[sqlx::test(migrations = "./migrations")]
async fn an_unsigned_request_to_an_unknown_internal_path_is_refused_not_404(db: PgPool) {
    let request = Request::get("/internal/v1/secret-route")
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(state(db, None), request).await;
    assert_refused(status, &body);
}

fn json_of(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// Credits `amount` points to `owner`'s wallet (created if missing) as a charge, through the
/// ledger's library function: the core has no HTTP route that mints points.
async fn fund(db: &PgPool, owner: &str, key: &str, amount: i64) -> nene_core::ledger::AccountId {
    use nene_core::ledger::{self, Credit, IdempotencyKey, LotSource, SystemAccount};
    let mut conn = db.acquire().await.unwrap();
    let wallet = ledger::ensure_wallet_in_tx(&mut conn, owner).await.unwrap();
    drop(conn);
    ledger::credit(
        db,
        &Credit {
            key: IdempotencyKey::parse(key).unwrap(),
            wallet,
            from: ledger::system_account(SystemAccount::PaymentClearing),
            amount: nene_domain::Points::new(amount).unwrap(),
            source: LotSource::Charge,
        },
    )
    .await
    .unwrap();
    wallet
}

/// The ledger's raw operations had HTTP routes reachable with the signing secret alone (a credit
/// minted points). They are gone from the router, in production and in dev mode alike.
#[sqlx::test(migrations = "./migrations")]
async fn the_ledgers_raw_operations_have_no_route(db: PgPool) {
    let wallet = "0190a5f2-7c3e-7b1a-9d2e-3f4a5b6c7d8e";
    for dev_mode in [false, true] {
        for (method, path) in [
            ("POST", "/internal/v1/ledger/wallets".to_owned()),
            ("POST", "/internal/v1/ledger/escrows".to_owned()),
            ("POST", "/internal/v1/ledger/credits".to_owned()),
            ("POST", "/internal/v1/ledger/debits".to_owned()),
            ("POST", "/internal/v1/ledger/transfers".to_owned()),
            ("POST", "/internal/v1/ledger/refunds".to_owned()),
            ("POST", "/internal/v1/ledger/holds".to_owned()),
            ("POST", format!("/internal/v1/ledger/holds/{wallet}/post")),
            (
                "POST",
                format!("/internal/v1/ledger/holds/{wallet}/release"),
            ),
            (
                "GET",
                format!("/internal/v1/ledger/wallets/{wallet}/balance"),
            ),
            (
                "GET",
                format!("/internal/v1/ledger/accounts/{wallet}/entries"),
            ),
            ("GET", "/internal/v1/ledger/check".to_owned()),
        ] {
            let mut state = state(db.clone(), None);
            state.dev_mode = dev_mode;
            let credit = serde_json::json!({
                "key": "mint:1", "wallet": wallet, "from": "00000000-0000-7000-8000-000000000001",
                "amount": 1_000_000, "source": "charge"
            });
            let (status, body) = send(state, signed_as("", method, &path, &credit)).await;
            assert_eq!(
                (status, json_of(&body)["error"]["code"].clone()),
                (404, "NOT_FOUND".into()),
                "{method} {path} (dev mode {dev_mode})"
            );
        }
    }
    let minted: i64 = sqlx::query_scalar("SELECT count(*) FROM ledger_transfers")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(minted, 0);
}

/// The list the core reports (`mounted_routes`) is what its router serves: every listed path
/// answers (a method it does not take is 405, not 404), and dev-only paths are 404 in production.
#[sqlx::test(migrations = "./migrations")]
async fn the_router_serves_exactly_the_routes_it_lists(db: PgPool) {
    let production = nene_core::http::mounted_routes(false);
    for dev_mode in [false, true] {
        for route in nene_domain::internal_api::ALL {
            let mut state = state(db.clone(), None);
            state.dev_mode = dev_mode;
            // Every segment filled with something well-formed; TRACE is no route's method.
            let call = route.call(&["0190a5f2-7c3e-7b1a-9d2e-3f4a5b6c7d8e"; 3]);
            let (status, body) = send(
                state,
                signed_as("", "TRACE", call.path_and_query(), &serde_json::Value::Null),
            )
            .await;
            let mounted = dev_mode || production.contains(route);
            assert_eq!(
                status,
                if mounted { 405 } else { 404 },
                "{} {} (dev mode {dev_mode}): {}",
                route.method.as_str(),
                route.path,
                String::from_utf8_lossy(&body)
            );
        }
    }
}

fn signed_as(user: &str, method: &str, path: &str, body: &serde_json::Value) -> Request<Body> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let signature = secret().sign(&SignedParts {
        method,
        path_and_query: path,
        timestamp_unix_seconds: NOW,
        user,
        body: &bytes,
    });
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HEADER_TIMESTAMP, NOW.to_string())
        .header(HEADER_SIGNATURE, signature)
        .header("content-type", "application/json");
    if !user.is_empty() {
        request = request.header(HEADER_USER, user);
    }
    request.body(Body::from(bytes)).unwrap()
}

#[sqlx::test(migrations = "./migrations")]
async fn the_join_endpoint_takes_the_signed_user_and_answers_with_the_public_codes(db: PgPool) {
    let new = serde_json::to_value(nene_core::challenges::NewChallengeWire::one_week(
        "Wake up at 6",
        1000,
        2,
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0)),
    ))
    .unwrap_or_default();
    let (status, body) = send(
        state(db.clone(), None),
        signed_as("", "POST", "/internal/v1/challenges", &new),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let id = json_of(&body)["id"].as_str().unwrap_or_default().to_owned();
    let join = format!("/internal/v1/challenges/{id}/join");

    let (status, body) = send(
        state(db.clone(), None),
        signed_as("user-1", "POST", &join, &serde_json::json!({})),
    )
    .await;
    assert_eq!(
        status,
        402,
        "no points yet: {}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(json_of(&body)["error"]["code"], "INSUFFICIENT_POINTS");

    fund(&db, "user-1", "charge:1", 1000).await;

    // A join carries the session it was made with; a revoked one moves nothing.
    sqlx::query(
        "INSERT INTO revoked_access_tokens (jti, expires_at) \
         VALUES ('signed-out', now() + interval '5 minutes')",
    )
    .execute(&db)
    .await
    .unwrap();
    for (session, expected) in [
        (
            serde_json::json!({ "session": "signed-out" }),
            (401, "UNAUTHORIZED"),
        ),
        (serde_json::json!({ "session": "" }), (400, "BAD_REQUEST")),
        (serde_json::json!({ "seat": 1 }), (400, "BAD_REQUEST")),
    ] {
        let (status, body) = send(
            state(db.clone(), None),
            signed_as("user-1", "POST", &join, &session),
        )
        .await;
        assert_eq!(
            (
                status,
                json_of(&body)["error"]["code"].as_str().unwrap_or("")
            ),
            expected,
            "{session}"
        );
    }

    let (status, body) = send(
        state(db.clone(), None),
        signed_as(
            "user-1",
            "POST",
            &join,
            &serde_json::json!({ "session": "signed-in" }),
        ),
    )
    .await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        json_of(&body)["participants"],
        1,
        "the refused joins took no seat and no points"
    );
    let (status, body) = send(
        state(db.clone(), None),
        signed_as("user-1", "POST", &join, &serde_json::json!({})),
    )
    .await;
    assert_eq!(
        (status, json_of(&body)["error"]["code"].clone()),
        (409, "ALREADY_JOINED".into())
    );
    let (status, body) = send(
        state(db.clone(), None),
        signed_as("", "POST", &join, &serde_json::json!({})),
    )
    .await;
    assert_eq!(
        (status, json_of(&body)["error"]["code"].clone()),
        (401, "UNAUTHORIZED".into())
    );

    let (status, body) = send(
        state(db, None),
        signed_as(
            "",
            "GET",
            &format!("/internal/v1/challenges/{id}"),
            &serde_json::json!(null),
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(json_of(&body)["participants"], 1);
}

#[sqlx::test(migrations = "./migrations")]
async fn every_route_of_a_user_refuses_a_request_signed_for_no_user(db: PgPool) {
    let challenge = "0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d";
    let proof = "0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6e";
    let routes = [
        ("GET", "/internal/v1/me".to_owned()),
        ("PATCH", "/internal/v1/me".to_owned()),
        ("DELETE", "/internal/v1/me/devices/phone-1".to_owned()),
        ("PUT", "/internal/v1/me/devices/phone-1".to_owned()),
        ("DELETE", "/internal/v1/me/devices/phone-1".to_owned()),
        ("POST", "/internal/v1/auth/logout".to_owned()),
        ("GET", "/internal/v1/me/wallet".to_owned()),
        ("GET", "/internal/v1/me/wallet/entries".to_owned()),
        ("GET", "/internal/v1/notifications".to_owned()),
        ("POST", "/internal/v1/payments/orders".to_owned()),
        ("POST", "/internal/v1/payments/confirm".to_owned()),
        ("GET", "/internal/v1/payments/nene_order_1".to_owned()),
        (
            "POST",
            "/internal/v1/payments/nene_order_1/refund".to_owned(),
        ),
        ("POST", format!("/internal/v1/challenges/{challenge}/join")),
        (
            "POST",
            format!("/internal/v1/challenges/{challenge}/proofs"),
        ),
        ("GET", format!("/internal/v1/challenges/{challenge}/me")),
        ("POST", format!("/internal/v1/proofs/{proof}/report")),
        ("POST", format!("/internal/v1/proofs/{proof}/appeal")),
        ("POST", format!("/internal/v1/admin/proofs/{proof}/review")),
        ("GET", "/internal/v1/admin/proofs/queue".to_owned()),
    ];
    for (method, path) in routes {
        let (status, body) = send(
            state(db.clone(), None),
            signed_as("", method, &path, &serde_json::json!({})),
        )
        .await;
        assert_eq!(
            (status, json_of(&body)["error"]["code"].clone()),
            (401, "UNAUTHORIZED".into()),
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_malformed_id_in_a_path_is_a_json_404_not_a_plain_text_400(db: PgPool) {
    for (method, path) in [
        ("GET", "/internal/v1/challenges/not-a-uuid"),
        ("POST", "/internal/v1/challenges/not-a-uuid/join"),
        (
            "GET",
            "/internal/v1/challenges/0190f5a27-c1e-7a4b-9c3d-1e2f3a4b5c6d/me",
        ),
        ("POST", "/internal/v1/proofs/not-a-uuid/report"),
    ] {
        let (status, body) = send(
            state(db.clone(), None),
            signed_as("user-1", method, path, &serde_json::json!({})),
        )
        .await;
        assert_eq!(
            (status, json_of(&body)["error"]["code"].clone()),
            (404, "NOT_FOUND".into()),
            "{method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn a_body_of_the_wrong_shape_is_refused_with_a_message_naming_what_is_wrong(db: PgPool) {
    let mut conn = db.acquire().await.unwrap();
    let user = nene_core::auth::users::find_or_create_in_tx(
        &mut conn,
        nene_core::auth::oauth::Provider::Kakao,
        "kakao-user-1",
    )
    .await
    .unwrap()
    .id;
    drop(conn);
    let (status, body) = send(
        state(db, None),
        signed_as(
            &user,
            "PATCH",
            "/internal/v1/me",
            &serde_json::json!({ "nickname": "x" }),
        ),
    )
    .await;
    let error = &json_of(&body)["error"];
    assert_eq!(
        (status, error["code"].as_str()),
        (400, Some("INVALID_JSON"))
    );
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("nickname") && message.contains("2–20"),
        "{message}"
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_users_ledger_history_comes_newest_first_a_page_at_a_time(db: PgPool) {
    let mut wallet = None;
    for (i, amount) in [1_000, 2_000, 3_000].into_iter().enumerate() {
        wallet = Some(fund(&db, "user-history", &format!("charge:h{i}"), amount).await);
    }
    let wallet = wallet.expect("funded");
    nene_core::ledger::debit(
        &db,
        &nene_core::ledger::Debit {
            key: nene_core::ledger::IdempotencyKey::parse("buy:h").unwrap(),
            wallet,
            to: nene_core::ledger::system_account(nene_core::ledger::SystemAccount::ShopSales),
            amount: nene_domain::Points::new(500).unwrap(),
        },
    )
    .await
    .unwrap();

    let page = |path: &str| {
        let db = db.clone();
        let path = path.to_owned();
        async move {
            let (status, body) = send(
                state(db, None),
                signed_as("user-history", "GET", &path, &serde_json::Value::Null),
            )
            .await;
            assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
            json_of(&body)
        }
    };
    let first = page("/internal/v1/me/wallet/entries?limit=3").await;
    let amounts = |page: &serde_json::Value| -> Vec<i64> {
        page["items"]
            .as_array()
            .map(|items| items.iter().filter_map(|e| e["amount"].as_i64()).collect())
            .unwrap_or_default()
    };
    assert_eq!(amounts(&first), vec![-500, 3_000, 2_000], "newest first");
    let cursor = first["next_cursor"].as_str().unwrap_or_default().to_owned();
    assert!(!cursor.is_empty(), "a next page");
    let second = page(&format!(
        "/internal/v1/me/wallet/entries?limit=3&cursor={cursor}"
    ))
    .await;
    assert_eq!(amounts(&second), vec![1_000]);
    assert!(second["next_cursor"].is_null(), "the last page");

    let (status, body) = send(
        state(db.clone(), None),
        signed_as(
            "user-without-points",
            "GET",
            "/internal/v1/me/wallet/entries",
            &serde_json::Value::Null,
        ),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        json_of(&body),
        serde_json::json!({"items": [], "next_cursor": null})
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn a_list_refuses_a_query_it_cannot_read_or_a_limit_out_of_range_in_json(db: PgPool) {
    for (path, expected) in [
        ("/internal/v1/challenges?limit=abc", (400, "BAD_REQUEST")),
        (
            "/internal/v1/challenges?limit=0",
            (422, "VALIDATION_FAILED"),
        ),
        (
            "/internal/v1/challenges?limit=101",
            (422, "VALIDATION_FAILED"),
        ),
        ("/internal/v1/challenges?limit=100", (200, "")),
        (
            "/internal/v1/me/wallet/entries?limit=abc",
            (400, "BAD_REQUEST"),
        ),
    ] {
        let (status, body) = send(
            state(db.clone(), None),
            signed_as("user-lists", "GET", path, &serde_json::Value::Null),
        )
        .await;
        let json = json_of(&body);
        assert_eq!(
            (status, json["error"]["code"].as_str().unwrap_or("")),
            expected,
            "{path}: {json}"
        );
        if status == 400 {
            let message = json["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains("limit"), "{path}: {message}");
        }
    }
}

// --- the orchestrator's probes ------------------------------------------------------------------

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// `(status, body as JSON)` of an unsigned `GET /readyz`.
async fn readiness(state: AppState) -> (u16, serde_json::Value) {
    let (status, body) = send(state, get("/readyz")).await;
    (status, json_of(&body))
}

#[sqlx::test(migrations = "./migrations")]
async fn readiness_is_200_without_a_signature_on_a_current_database(db: PgPool) {
    let (status, body) = readiness(state(db, None)).await;
    assert_eq!(
        (status, body),
        (200, serde_json::json!({ "status": "ready" }))
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn readiness_is_503_naming_the_migrations_when_the_database_is_behind_the_binary(db: PgPool) {
    // The newest migration this binary embeds is not applied.
    sqlx::query(
        "DELETE FROM _sqlx_migrations WHERE version = (SELECT max(version) FROM _sqlx_migrations)",
    )
    .execute(&db)
    .await
    .unwrap();
    let (status, body) = readiness(state(db.clone(), None)).await;
    assert_eq!(
        (status, body),
        (
            503,
            serde_json::json!({ "status": "not_ready", "failed": "migrations" })
        )
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn readiness_counts_a_failed_migration_as_not_applied(db: PgPool) {
    sqlx::query("UPDATE _sqlx_migrations SET success = false WHERE version = (SELECT min(version) FROM _sqlx_migrations)")
        .execute(&db)
        .await
        .unwrap();
    let (status, body) = readiness(state(db, None)).await;
    assert_eq!((status, body["failed"].as_str()), (503, Some("migrations")));
}

#[sqlx::test(migrations = false)]
async fn readiness_is_503_naming_the_migrations_on_an_empty_database(db: PgPool) {
    let (status, body) = readiness(state(db, None)).await;
    assert_eq!((status, body["failed"].as_str()), (503, Some("migrations")));
}

#[tokio::test]
async fn readiness_is_503_naming_the_database_when_postgres_does_not_answer() {
    let db = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(300))
        .connect_lazy("postgres://postgres@127.0.0.1:1/nowhere")
        .unwrap();
    let (status, body) = readiness(state(db, None)).await;
    assert_eq!(
        (status, body),
        (
            503,
            serde_json::json!({ "status": "not_ready", "failed": "database" })
        )
    );
}

#[sqlx::test(migrations = "./migrations")]
async fn once_draining_readiness_is_503_liveness_200_and_other_requests_are_refused(db: PgPool) {
    let draining = state(db, None);
    draining.shutdown.begin();
    let (status, body) = readiness(draining.clone()).await;
    assert_eq!(
        (status, body),
        (
            503,
            serde_json::json!({ "status": "not_ready", "failed": "draining" })
        )
    );
    let (status, body) = send(draining.clone(), get("/healthz")).await;
    assert_eq!((status, &body[..]), (200, &b"ok"[..]));
    // A signed request that arrives during the drain is refused before anything runs: 503, try
    // again (elsewhere), and the connection is not kept for another.
    let response = router(draining)
        .oneshot(signed("GET", "/internal/v1/health", NOW, "", b""))
        .await
        .unwrap_or_else(|never| match never {});
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response
            .headers()
            .get("connection")
            .and_then(|v| v.to_str().ok()),
        Some("close")
    );
    assert!(response.headers().contains_key("retry-after"));
    let body = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let envelope: ErrorEnvelope = serde_json::from_slice(&body).unwrap();
    assert_eq!(envelope.error.code, ErrorCode::CoreUnavailable);
}

/// Toss redelivers anything but a 200 for days: a body that is not an event about one of our
/// payments is answered 200, and nothing is stored.
#[sqlx::test(migrations = "./migrations")]
async fn a_webhook_about_no_payment_of_ours_is_answered_200_and_not_stored(db: PgPool) {
    let path = nene_domain::internal_api::TOSS_WEBHOOK.path;
    for body in [
        &b"not json at all"[..],
        br#"{"eventType":"PAYMENT_STATUS_CHANGED","createdAt":"2026-11-29T12:00:00.000",
            "data":{"paymentKey":"tsb_x","orderId":"nene_not_ours","status":"DONE"}}"#,
    ] {
        let (status, answer) =
            send(state(db.clone(), None), signed("POST", path, NOW, "", body)).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        assert_eq!(json_of(&answer)["stored"], false);
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM toss_webhooks")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

#[sqlx::test(migrations = "./migrations")]
async fn text_with_a_nul_character_is_a_422_naming_the_field_on_every_signed_route(db: PgPool) {
    let cases: [(&str, &str, &'static [u8], &str); 3] = [
        (
            "POST",
            "/internal/v1/webhooks/toss",
            br#"{"eventType":"PAYMENT_STATUS_CHANGED\u0000","data":{}}"#,
            "eventType",
        ),
        (
            "PATCH",
            "/internal/v1/me",
            br#"{"nickname":"\u0000\u0000"}"#,
            "nickname",
        ),
        ("GET", "/internal/v1/challenges?q=run%00", b"", "q"),
    ];
    for (method, path, body, field) in cases {
        let (status, answer) = send(
            state(db.clone(), None),
            signed(method, path, NOW, "user-1", body),
        )
        .await;
        let error = &json_of(&answer)["error"];
        assert_eq!(
            (status, error["code"].as_str()),
            (422, Some("VALIDATION_FAILED")),
            "{method} {path}"
        );
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(&format!("`{field}`")), "{message}");
    }
}

#[sqlx::test(migrations = "./migrations")]
async fn the_reviewers_queue_is_a_403_for_anyone_but_a_reviewer_and_a_page_for_one(db: PgPool) {
    let with_reviewer = || {
        let mut state = state(db.clone(), None);
        state.reviewers = vec!["reviewer-1".to_owned()];
        state
    };
    let path = "/internal/v1/admin/proofs/queue?limit=10";
    let (status, body) = send(
        with_reviewer(),
        signed_as("participant-1", "GET", path, &serde_json::Value::Null),
    )
    .await;
    assert_eq!(
        (status, json_of(&body)["error"]["code"].clone()),
        (403, "FORBIDDEN".into())
    );
    let (status, body) = send(
        with_reviewer(),
        signed_as("reviewer-1", "GET", path, &serde_json::Value::Null),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        json_of(&body),
        serde_json::json!({"items": [], "next_cursor": null})
    );
    let (status, body) = send(
        with_reviewer(),
        signed_as(
            "reviewer-1",
            "GET",
            "/internal/v1/admin/proofs/queue?limit=101",
            &serde_json::Value::Null,
        ),
    )
    .await;
    assert_eq!(
        (status, json_of(&body)["error"]["code"].clone()),
        (422, "VALIDATION_FAILED".into())
    );
}

/// The search routes answer from the replica's index: a page of hits and suggestions, a bad
/// query as 422 with the rule as its message, and 503 on a replica without an index.
#[sqlx::test(migrations = "./migrations")]
async fn search_and_suggest_answer_from_the_index_and_refuse_a_bad_query(db: PgPool) {
    use nene_core::search::{
        SearchIndex, feed,
        tantivy_index::{IndexLocation, TantivyIndex},
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let wire = nene_core::challenges::NewChallengeWire::one_week(
        "아침운동 30일",
        10_000,
        100,
        i64::try_from(now).unwrap(),
    );
    let new = nene_core::challenges::NewChallenge::parse(&wire).unwrap();
    let created = nene_core::challenges::create(&db, Some("creator"), &new)
        .await
        .unwrap();
    let index: Arc<dyn SearchIndex> = Arc::new(TantivyIndex::open(&IndexLocation::Memory).unwrap());
    feed::rebuild(&db, &index).await.unwrap();
    let with_index = || {
        let mut state = state(db.clone(), None);
        state.search = Some(Arc::clone(&index));
        state
    };

    let path = "/internal/v1/search?q=%EC%95%84%EC%B9%A8%20%EC%9A%B4%EB%8F%99"; // 아침 운동
    let (status, body) = send(with_index(), signed("GET", path, NOW, "u1", b"")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["items"][0]["id"], created.id.to_string());
    let highlighted = page["items"][0]["title_highlighted"].as_str().unwrap();
    assert!(highlighted.starts_with("<b>아침"), "{highlighted}");

    let path = "/internal/v1/search/suggest?q=%EC%95%84"; // 아
    let (status, body) = send(with_index(), signed("GET", path, NOW, "u1", b"")).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let suggestions: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(suggestions["items"][0]["text"], "아침운동 30일");

    let path = "/internal/v1/search?q=%20%20";
    let (status, body) = send(with_index(), signed("GET", path, NOW, "u1", b"")).await;
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    let envelope: ErrorEnvelope = serde_json::from_slice(&body).unwrap();
    assert_eq!(envelope.error.code, ErrorCode::ValidationFailed);
    assert_eq!(envelope.error.message, "the query is empty");

    let path = "/internal/v1/search?q=run";
    let (status, _) = send(state(db.clone(), None), signed("GET", path, NOW, "u1", b"")).await;
    assert_eq!(status, 503);
}
