//! Buying points (API.md "Wallet and payments") and Toss's webhooks. The edge only authenticates
//! and forwards: orders, amounts and Toss are the core's business, and a webhook is handed to the
//! core durably before Toss hears "200".

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use bytes::Bytes;
use nene_domain::{ErrorCode, payments::OrderId};

use crate::{
    auth::{PayingUser, User},
    core_client,
    error::{ApiError, ApiJson},
    platform::ObjectName,
    router::{AppState, RequestId, idempotency_key},
};

/// Public path Toss posts its webhooks to.
pub const PATH_TOSS_WEBHOOK: &str = "/webhooks/toss";
/// The core's path for the webhook hand-off.
const CORE_PATH_TOSS_WEBHOOK: &str = "/internal/v1/webhooks/toss";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/payments/orders", post(create_order))
        .route("/v1/payments/confirm", post(confirm))
        .route("/v1/payments/{order_id}", get(payment))
        .route("/v1/payments/{order_id}/refund", post(refund))
        .route(PATH_TOSS_WEBHOOK, post(toss_webhook))
}

type JsonAnswer = (StatusCode, axum::Json<serde_json::Value>);

fn to_bytes(value: &serde_json::Value) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|_| ApiError::new(ErrorCode::Internal))
}

fn parse_order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|_| ApiError::new(ErrorCode::NotFound))
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
}

/// The user's cached balance is stale once points moved outside their `Wallet` object.
async fn forget_cached_balance(state: &AppState, user: &str) {
    if let Some(objects) = &state.rooms {
        let request = crate::platform::OutboundRequest {
            method: http::Method::POST,
            url: "https://wallet/balance/forget".to_owned(),
            headers: Vec::new(),
            body: Bytes::new(),
            timeout_ms: nene_domain::limits::CORE_TIMEOUT_MS,
        };
        // Best effort: the cache also expires on its own within seconds.
        let _ = objects.send(ObjectName::Wallet(user), request).await;
    }
}

/// `POST /v1/payments/orders {amount}` → 201 with the server-fixed orderId and amount.
async fn create_order(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    PayingUser(user): PayingUser,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<JsonAnswer, ApiError> {
    let (code, order) = core_client::call_json_with_status(
        &state,
        http::Method::POST,
        "/internal/v1/payments/orders",
        Some(&user),
        to_bytes(&body)?,
        &request_id,
    )
    .await?;
    Ok((status(code), axum::Json(order)))
}

/// `POST /v1/payments/confirm {payment_key, order_id, amount}` → 200 when Toss's answer is in,
/// 202 while it is not known yet.
async fn confirm(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    PayingUser(user): PayingUser,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<JsonAnswer, ApiError> {
    let (code, payment) = core_client::call_json_with_status(
        &state,
        http::Method::POST,
        "/internal/v1/payments/confirm",
        Some(&user),
        to_bytes(&body)?,
        &request_id,
    )
    .await?;
    forget_cached_balance(&state, &user).await;
    Ok((status(code), axum::Json(payment)))
}

/// `GET /v1/payments/{order_id}`: a payment's state (a 202 confirm is followed up here).
async fn payment(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    User(user): User,
    Path(order_id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let order_id = parse_order_id(&order_id)?;
    let payment = core_client::call_json(
        &state,
        http::Method::GET,
        &format!("/internal/v1/payments/{order_id}"),
        Some(&user),
        Bytes::new(),
        &request_id,
    )
    .await?;
    Ok(axum::Json(payment))
}

/// `POST /v1/payments/{order_id}/refund`: the payment's unused points back to the card.
async fn refund(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    PayingUser(user): PayingUser,
    Path(order_id): Path<String>,
    headers: http::HeaderMap,
) -> Result<JsonAnswer, ApiError> {
    let order_id = parse_order_id(&order_id)?;
    // The key travels in the signed body, so nothing between us and the core can change it.
    let body = serde_json::json!({ "idempotency_key": idempotency_key(&headers)? });
    let (code, refund) = core_client::call_json_with_status(
        &state,
        http::Method::POST,
        &format!("/internal/v1/payments/{order_id}/refund"),
        Some(&user),
        to_bytes(&body)?,
        &request_id,
    )
    .await?;
    forget_cached_balance(&state, &user).await;
    Ok((status(code), axum::Json(refund)))
}

/// `POST /webhooks/toss` (public): hands the raw body to the core, which stores it before
/// answering; then 200. The webhook is not trusted — the core re-fetches the payment from Toss
/// before acting. If the hand-off fails, Toss hears an error and delivers again later.
async fn toss_webhook(
    State(state): State<AppState>,
    axum::Extension(RequestId(request_id)): axum::Extension<RequestId>,
    body: Bytes,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let _: serde_json::Value = core_client::call_json(
        &state,
        http::Method::POST,
        CORE_PATH_TOSS_WEBHOOK,
        None,
        body,
        &request_id,
    )
    .await?;
    Ok(axum::Json(serde_json::json!({ "received": true })))
}
