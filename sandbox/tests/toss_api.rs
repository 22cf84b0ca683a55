//! The Toss stand-in over HTTP, in process: the API as a client sees it, the control plane as the
//! core's tests will drive it, and webhooks arriving at a real receiver on 127.0.0.1.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::app;

use std::{
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use axum::{Router, body::Body, extract::State, http::StatusCode, routing::post};
use base64::{Engine, engine::general_purpose::STANDARD};
use serde_json::{Value, json};

const SECRET_KEY: &str = "test_sk_zXLkKEypNArWmo50nX3lmeaxYG5R";

fn basic() -> String {
    format!("Basic {}", STANDARD.encode(format!("{SECRET_KEY}:")))
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut headers = headers.to_vec();
    let body = match body {
        Some(body) => {
            headers.push(("content-type", "application/json"));
            Body::from(body.to_string())
        }
        None => Body::empty(),
    };
    let answer = common::call(app, method, uri, &headers, body).await;
    (answer.status, answer.json)
}

/// A Toss API call with Basic auth and extra headers.
async fn toss(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (StatusCode, Value) {
    let auth = basic();
    let mut all = vec![("authorization", auth.as_str())];
    all.extend_from_slice(headers);
    call(app, method, uri, &all, body).await
}

/// `POST /v1/payments/confirm` with `body`, Basic auth and `headers`.
async fn confirm(app: &Router, headers: &[(&str, &str)], body: Value) -> (StatusCode, Value) {
    toss(app, "POST", "/v1/payments/confirm", headers, Some(body)).await
}

/// The widget approves `order_id` for `amount`; returns the paymentKey.
async fn pay(app: &Router, order_id: &str, amount: i64, method: &str) -> String {
    let body = json!({ "orderId": order_id, "amount": amount, "method": method });
    let (status, paid) = call(app, "POST", "/sandbox/toss/pay", &[], Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{paid}");
    assert_eq!(paid["orderId"], order_id);
    assert_eq!(paid["amount"], amount);
    paid["paymentKey"].as_str().unwrap_or_default().to_owned()
}

fn confirm_body(payment_key: &str, order_id: &str, amount: i64) -> Value {
    json!({ "paymentKey": payment_key, "orderId": order_id, "amount": amount })
}

async fn stats(app: &Router) -> Value {
    call(app, "GET", "/sandbox/toss/stats", &[], None).await.1
}

async fn add_fault(app: &Router, rule: Value) {
    let (status, body) = call(app, "POST", "/sandbox/toss/faults", &[], Some(rule)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn health_still_answers_ok() {
    let (status, body) = call(&app(), "GET", "/health", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn a_paid_order_is_confirmed_then_found_by_key_and_by_order_then_partially_cancelled() {
    let app = app();
    let key = pay(&app, "order-0001", 15_000, "CARD").await;
    let (status, before) = toss(&app, "GET", &format!("/v1/payments/{key}"), &[], None).await;
    assert_eq!(
        (status, before["status"].clone()),
        (StatusCode::OK, json!("IN_PROGRESS"))
    );
    assert!(before["approvedAt"].is_null());

    let (status, done) = confirm(&app, &[], confirm_body(&key, "order-0001", 15_000)).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "DONE");
    assert_eq!(done["method"], "카드");
    assert_eq!(done["totalAmount"], 15_000);
    assert_eq!(done["balanceAmount"], 15_000);
    assert!(
        done["approvedAt"]
            .as_str()
            .unwrap_or_default()
            .ends_with("+09:00")
    );
    assert!(done["lastTransactionKey"].is_string());

    let (_, by_key) = toss(&app, "GET", &format!("/v1/payments/{key}"), &[], None).await;
    let (_, by_order) = toss(&app, "GET", "/v1/payments/orders/order-0001", &[], None).await;
    assert_eq!(by_key, done);
    assert_eq!(by_order, done);

    let cancel = json!({ "cancelReason": "고객 변심", "cancelAmount": 5000 });
    let (status, canceled) = toss(
        &app,
        "POST",
        &format!("/v1/payments/{key}/cancel"),
        &[],
        Some(cancel),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{canceled}");
    assert_eq!(canceled["status"], "PARTIAL_CANCELED");
    assert_eq!(canceled["balanceAmount"], 10_000);
    assert_eq!(canceled["cancels"][0]["cancelAmount"], 5000);
    assert_eq!(canceled["cancels"][0]["refundableAmount"], 10_000);
    assert_eq!(
        canceled["lastTransactionKey"],
        canceled["cancels"][0]["transactionKey"]
    );

    assert_eq!(
        stats(&app).await,
        json!({"confirms_executed": 1, "cancels_executed": 1, "console_cancels_executed": 0,
               "reads": 3, "payments": 1})
    );
}

#[tokio::test]
async fn toss_errors_have_the_status_and_code_toss_uses() {
    let app = app();
    let (status, body) = call(&app, "GET", "/v1/payments/nope", &[], None).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("UNAUTHORIZED_KEY"))
    );

    let (status, body) = toss(&app, "GET", "/v1/payments/nope", &[], None).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND_PAYMENT"))
    );
    assert!(body["message"].is_string());

    let (status, body) = confirm(&app, &[], confirm_body("nope", "order-0001", 1000)).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND_PAYMENT_SESSION"))
    );

    let key = pay(&app, "order-0001", 1000, "CARD").await;
    let fractional = json!({ "paymentKey": key, "orderId": "order-0001", "amount": 1000.5 });
    let (status, body) = confirm(&app, &[], fractional).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_REQUEST"))
    );

    let (status, body) = confirm(&app, &[], confirm_body(&key, "order-0001", 999)).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_REQUEST"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("amount")
    );

    let long_key = "k".repeat(301);
    let (status, body) = confirm(
        &app,
        &[("idempotency-key", &long_key)],
        confirm_body(&key, "order-0001", 1000),
    )
    .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_REQUEST"))
    );

    let (status, _) = confirm(&app, &[], confirm_body(&key, "order-0001", 1000)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = confirm(&app, &[], confirm_body(&key, "order-0001", 1000)).await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("ALREADY_PROCESSED_PAYMENT"))
    );

    let cancel = |amount: i64| json!({ "cancelReason": "테스트", "cancelAmount": amount });
    let (status, body) = toss(
        &app,
        "POST",
        &format!("/v1/payments/{key}/cancel"),
        &[],
        Some(cancel(1001)),
    )
    .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::FORBIDDEN, json!("NOT_CANCELABLE_AMOUNT"))
    );
    let (status, _) = toss(
        &app,
        "POST",
        &format!("/v1/payments/{key}/cancel"),
        &[],
        Some(cancel(100)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = toss(
        &app,
        "POST",
        &format!("/v1/payments/{key}/cancel"),
        &[],
        Some(cancel(100)),
    )
    .await;
    assert_eq!(
        (status, body["code"].clone()),
        (
            StatusCode::FORBIDDEN,
            json!("FORBIDDEN_CONSECUTIVE_REQUEST")
        )
    );

    let (status, body) = call(
        &app,
        "POST",
        "/sandbox/toss/pay",
        &[],
        Some(json!({"orderId": "order-0001", "amount": 1000})),
    )
    .await;
    assert_eq!(
        (status, body["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("DUPLICATED_ORDER_ID"))
    );
    let (status, _) = call(
        &app,
        "POST",
        "/sandbox/toss/pay",
        &[],
        Some(json!({"orderId": "bad", "amount": 1000})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_test_code_header_returns_that_error_and_changes_nothing() {
    let app = app();
    let key = pay(&app, "order-0001", 1000, "CARD").await;
    let body = confirm_body(&key, "order-0001", 1000);
    let headers = [
        ("tosspayments-test-code", "REJECT_CARD_PAYMENT"),
        ("idempotency-key", "k-1"),
    ];
    let (status, error) = confirm(&app, &headers, body.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(error["code"], "REJECT_CARD_PAYMENT");
    assert_eq!(
        error["message"],
        "한도초과 혹은 잔액부족으로 결제에 실패했습니다."
    );

    let (status, error) = toss(
        &app,
        "GET",
        &format!("/v1/payments/{key}"),
        &[("tosspayments-test-code", "SOMETHING_ELSE")],
        None,
    )
    .await;
    assert_eq!(
        (status, error["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("SOMETHING_ELSE"))
    );

    let (_, payment) = toss(&app, "GET", &format!("/v1/payments/{key}"), &[], None).await;
    assert_eq!(payment["status"], "IN_PROGRESS");
    assert_eq!(stats(&app).await["confirms_executed"], 0);

    // Nothing was recorded under the key either: it now executes.
    let (status, done) = confirm(&app, &[("idempotency-key", "k-1")], body).await;
    assert_eq!(
        (status, done["status"].clone()),
        (StatusCode::OK, json!("DONE"))
    );
}

#[tokio::test]
async fn a_replayed_idempotency_key_returns_the_first_response_without_executing_again() {
    let app = app();
    let key = pay(&app, "order-0001", 1000, "CARD").await;
    let headers = [("idempotency-key", "confirm-order-0001")];
    let (first_status, first) =
        confirm(&app, &headers, confirm_body(&key, "order-0001", 1000)).await;
    assert_eq!(first_status, StatusCode::OK);
    // The body is not compared: a different one still gets the first response.
    let (status, replay) = confirm(&app, &headers, json!({})).await;
    assert_eq!((status, &replay), (first_status, &first));
    assert_eq!(stats(&app).await["confirms_executed"], 1);

    // An error response is replayed too.
    let cancel_path = format!("/v1/payments/{key}/cancel");
    let too_much = json!({ "cancelReason": "x", "cancelAmount": 5000 });
    let cancel_headers = [("idempotency-key", "cancel-1")];
    let (status, error) = toss(&app, "POST", &cancel_path, &cancel_headers, Some(too_much)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let fine = json!({ "cancelReason": "x" });
    let (status, replay) = toss(
        &app,
        "POST",
        &cancel_path,
        &cancel_headers,
        Some(fine.clone()),
    )
    .await;
    assert_eq!((status, replay), (StatusCode::FORBIDDEN, error));
    let (status, _) = toss(
        &app,
        "POST",
        &cancel_path,
        &[("idempotency-key", "cancel-2")],
        Some(fine),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats(&app).await["cancels_executed"], 1);
}

#[tokio::test]
async fn a_duplicate_arriving_while_the_first_runs_is_told_the_request_is_processing() {
    let app = app();
    let key = pay(&app, "order-0001", 1000, "CARD").await;
    add_fault(
        &app,
        json!({ "operation": "confirm", "kind": "latency", "latencyMs": 300 }),
    )
    .await;
    let body = confirm_body(&key, "order-0001", 1000);
    let first = tokio::spawn({
        let (app, body) = (app.clone(), body.clone());
        async move { confirm(&app, &[("idempotency-key", "same")], body).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, error) = confirm(&app, &[("idempotency-key", "same")], body).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error["code"], "IDEMPOTENT_REQUEST_PROCESSING");
    let (status, done) = first.await.unwrap();
    assert_eq!(
        (status, done["status"].clone()),
        (StatusCode::OK, json!("DONE"))
    );
}

#[tokio::test]
async fn approve_then_drop_leaves_the_client_without_an_answer_but_the_payment_approved() {
    let app = app();
    let key = pay(&app, "order-0001", 1000, "CARD").await;
    add_fault(
        &app,
        json!({ "operation": "confirm", "kind": "approve_then_drop" }),
    )
    .await;
    let body = confirm_body(&key, "order-0001", 1000);
    let headers = [("idempotency-key", "confirm-1")];
    let timed_out = tokio::time::timeout(
        Duration::from_millis(300),
        confirm(&app, &headers, body.clone()),
    )
    .await;
    assert!(timed_out.is_err(), "the sandbox answered: {timed_out:?}");

    let (_, payment) = call(
        &app,
        "GET",
        &format!("/sandbox/toss/payments/{key}"),
        &[],
        None,
    )
    .await;
    assert_eq!(payment["status"], "DONE");
    // The client's retry with the same key gets the approval, without a second execution.
    let (status, replay) = confirm(&app, &headers, body).await;
    assert_eq!(
        (status, replay["status"].clone()),
        (StatusCode::OK, json!("DONE"))
    );
    assert_eq!(replay, payment);
    assert_eq!(stats(&app).await["confirms_executed"], 1);
}

#[tokio::test]
async fn a_hang_or_an_injected_error_changes_nothing_and_frees_the_idempotency_key() {
    let app = app();
    let key = pay(&app, "order-0001", 1000, "CARD").await;
    let body = confirm_body(&key, "order-0001", 1000);
    let headers = [("idempotency-key", "confirm-1")];

    add_fault(&app, json!({ "operation": "confirm", "kind": "hang" })).await;
    let timed_out = tokio::time::timeout(
        Duration::from_millis(200),
        confirm(&app, &headers, body.clone()),
    )
    .await;
    assert!(timed_out.is_err());

    add_fault(
        &app,
        json!({ "operation": "any", "kind": "error", "status": 503, "code": "PROVIDER_ERROR" }),
    )
    .await;
    let (status, error) = confirm(&app, &headers, body.clone()).await;
    assert_eq!(
        (status, error["code"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("PROVIDER_ERROR"))
    );
    assert_eq!(stats(&app).await["confirms_executed"], 0);

    let (status, done) = confirm(&app, &headers, body).await;
    assert_eq!(
        (status, done["status"].clone()),
        (StatusCode::OK, json!("DONE"))
    );
}

#[tokio::test]
async fn faults_are_listed_and_cleared_and_a_reset_forgets_everything_but_the_webhook() {
    let app = app();
    let key = pay(&app, "order-0001", 1000, "CARD").await;
    add_fault(
        &app,
        json!({ "operation": "get", "kind": "latency", "latencyMs": 10, "count": 3 }),
    )
    .await;
    let (_, listed) = call(&app, "GET", "/sandbox/toss/faults", &[], None).await;
    assert_eq!(listed["rules"][0]["count"], 3);
    let (status, _) = call(&app, "DELETE", "/sandbox/toss/faults", &[], None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, listed) = call(&app, "GET", "/sandbox/toss/faults", &[], None).await;
    assert_eq!(listed["rules"], json!([]));

    let webhook = json!({ "url": "http://127.0.0.1:9/toss", "retryUnitMs": 10 });
    let (status, config) = call(&app, "PUT", "/sandbox/toss/webhook", &[], Some(webhook)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        config,
        json!({ "url": "http://127.0.0.1:9/toss", "retryUnitMs": 10, "duplicates": 0, "shuffle": false })
    );
    add_fault(&app, json!({ "operation": "confirm", "kind": "hang" })).await;

    let (status, _) = call(&app, "POST", "/sandbox/toss/reset", &[], None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(
        &app,
        "GET",
        &format!("/sandbox/toss/payments/{key}"),
        &[],
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(stats(&app).await["payments"], 0);
    let (_, listed) = call(&app, "GET", "/sandbox/toss/faults", &[], None).await;
    assert_eq!(listed["rules"], json!([]));
    let (_, kept) = call(&app, "GET", "/sandbox/toss/webhook", &[], None).await;
    assert_eq!(kept, config);
}

/// A webhook receiver on 127.0.0.1:0 that acknowledges everything and keeps what arrived.
async fn receiver() -> (Arc<Mutex<Vec<Value>>>, String) {
    async fn receive(
        State(seen): State<Arc<Mutex<Vec<Value>>>>,
        axum::Json(event): axum::Json<Value>,
    ) -> StatusCode {
        seen.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(event);
        StatusCode::OK
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/toss", post(receive))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await;
    let listener = listener.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (seen, format!("http://{address}/toss"))
}

async fn received(seen: &Arc<Mutex<Vec<Value>>>, count: usize) -> Vec<Value> {
    for _ in 0..300 {
        let events = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        if events.len() >= count {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

#[tokio::test]
async fn a_virtual_account_payment_sends_its_webhooks_and_the_deposit_callback_carries_its_secret()
{
    let app = app();
    let (seen, url) = receiver().await;
    let (status, _) = call(
        &app,
        "PUT",
        "/sandbox/toss/webhook",
        &[],
        Some(json!({ "url": url, "retryUnitMs": 10 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let key = pay(&app, "order-va-01", 30_000, "VIRTUAL_ACCOUNT").await;
    let (status, waiting) = confirm(&app, &[], confirm_body(&key, "order-va-01", 30_000)).await;
    assert_eq!(
        (status, waiting["status"].clone()),
        (StatusCode::OK, json!("WAITING_FOR_DEPOSIT"))
    );
    assert_eq!(waiting["method"], "가상계좌");
    let secret = waiting["secret"].as_str().unwrap_or_default().to_owned();
    assert!(!secret.is_empty());
    let events = received(&seen, 1).await;
    assert_eq!(events[0]["eventType"], "PAYMENT_STATUS_CHANGED");
    assert_eq!(events[0]["data"], waiting);

    let (status, done) = call(
        &app,
        "POST",
        &format!("/sandbox/toss/payments/{key}/deposit"),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (status, done["status"].clone()),
        (StatusCode::OK, json!("DONE"))
    );
    let events = received(&seen, 3).await;
    let callback = events
        .iter()
        .find(|event| event["eventType"] == "DEPOSIT_CALLBACK");
    let callback = callback.unwrap_or_else(|| unreachable!("{events:?}"));
    assert_eq!(callback["data"]["secret"], secret.as_str());
    assert_eq!(callback["data"]["status"], "DONE");
    assert_eq!(callback["data"]["orderId"], "order-va-01");
    assert_eq!(
        callback["data"]["transactionKey"],
        done["lastTransactionKey"]
    );

    let (_, deliveries) = call(&app, "GET", "/sandbox/toss/webhook/deliveries", &[], None).await;
    let deliveries = deliveries.as_array().cloned().unwrap_or_default();
    assert_eq!(deliveries.len(), 3);
    assert!(
        deliveries
            .iter()
            .all(|d| d["status"] == 200 && d["attempt"] == 1 && d["orderId"] == "order-va-01")
    );
}

#[tokio::test]
async fn a_console_cancel_and_a_forged_event_reach_the_webhook() {
    let app = app();
    let (seen, url) = receiver().await;
    call(
        &app,
        "PUT",
        "/sandbox/toss/webhook",
        &[],
        Some(json!({ "url": url })),
    )
    .await;
    let key = pay(&app, "order-0001", 1000, "CARD").await;
    confirm(&app, &[], confirm_body(&key, "order-0001", 1000)).await;

    let (status, canceled) = call(
        &app,
        "POST",
        &format!("/sandbox/toss/payments/{key}/console-cancel"),
        &[],
        None,
    )
    .await;
    assert_eq!(
        (status, canceled["status"].clone()),
        (StatusCode::OK, json!("CANCELED"))
    );
    let (status, error) = toss(
        &app,
        "POST",
        &format!("/v1/payments/{key}/cancel"),
        &[],
        Some(json!({ "cancelReason": "x" })),
    )
    .await;
    assert_eq!(
        (status, error["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("ALREADY_CANCELED_PAYMENT"))
    );
    assert_eq!(stats(&app).await["console_cancels_executed"], 1);
    assert_eq!(stats(&app).await["cancels_executed"], 0);

    let forged = json!({ "eventType": "PAYMENT_STATUS_CHANGED", "data": { "orderId": "order-0001", "status": "DONE" } });
    let (status, accepted) = call(
        &app,
        "POST",
        "/sandbox/toss/webhook/send",
        &[],
        Some(forged),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(accepted["createdAt"].is_string());

    let events = received(&seen, 3).await;
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .any(|event| event["data"]["status"] == "CANCELED")
    );
    assert!(
        events
            .iter()
            .any(|event| event["data"] == json!({ "orderId": "order-0001", "status": "DONE" }))
    );
}

#[tokio::test]
async fn a_confirm_without_faults_takes_well_under_a_millisecond_of_sandbox_time() {
    let app = app();
    let orders = 200;
    let mut keys = Vec::new();
    for index in 0..orders {
        keys.push(pay(&app, &format!("order-{index:04}"), 1000, "CARD").await);
    }
    let started = Instant::now();
    for (index, key) in keys.iter().enumerate() {
        let (status, _) = confirm(
            &app,
            &[],
            confirm_body(key, &format!("order-{index:04}"), 1000),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let each = started.elapsed() / orders;
    // Generous for a debug build on a busy machine; a stray sleep would blow it.
    assert!(each < Duration::from_millis(5), "{each:?} per confirm");
}

#[tokio::test]
async fn an_amount_fault_approves_what_the_customer_authorised_whatever_the_confirm_names() {
    let app = app();
    let key = pay(&app, "order-amount-1", 50_000, "CARD").await;
    // Toss itself refuses a confirm whose amount is not the authorised one.
    let body = confirm_body(&key, "order-amount-1", 1_000);
    let (status, refused) = confirm(&app, &[], body.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    add_fault(
        &app,
        json!({"operation": "confirm", "kind": "approve_authorised_amount"}),
    )
    .await;
    let (status, approved) = confirm(&app, &[], body).await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(
        (&approved["status"], &approved["totalAmount"]),
        (&json!("DONE"), &json!(50_000))
    );
    // The fault is used up: the next confirm is checked again (and finds it confirmed).
    let again = confirm_body(&key, "order-amount-1", 1_000);
    let (status, _) = confirm(&app, &[], again).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(stats(&app).await["confirms_executed"], 1);
}
