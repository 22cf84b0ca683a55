//! Buying points (docs/design.md §3) and Toss's webhooks. The edge only authenticates
//! and forwards: orders, amounts and Toss are the core's business, and a webhook is handed to the
//! core durably before Toss hears "200".

use axum::{
    Router,
    extract::{Path, State},
    routing::{get, post},
};
use bytes::Bytes;
use nene_domain::{ErrorCode, internal_api, payments::OrderId};
use nene_durable::protocol::WalletRoute;

use crate::{
    auth::{PayingUser, User},
    core_client::{Core, Forwarded, json_body},
    error::{ApiError, ApiJson},
    input::idempotency_key,
    objects::object_request,
    platform::{AppState, ObjectName},
};

/// Public path Toss posts its webhooks to.
pub const PATH_TOSS_WEBHOOK: &str = "/webhooks/toss";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/payments/orders", post(create_order))
        .route("/v1/payments/confirm", post(confirm))
        .route("/v1/payments/{order_id}", get(payment))
        .route("/v1/payments/{order_id}/refund", post(refund))
        .route(PATH_TOSS_WEBHOOK, post(toss_webhook))
}

fn parse_order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|_| ApiError::new(ErrorCode::NotFound))
}

/// The user's cached balance is stale once points moved outside their `Wallet` object.
async fn forget_cached_balance(state: &AppState, user: &str) {
    if let Some(objects) = &state.rooms {
        let route = WalletRoute::ForgetBalance;
        let mut request = object_request(route.method(), route.path(), Bytes::new());
        request.timeout_ms = nene_domain::limits::CORE_TIMEOUT_MS;
        // Best effort: the cache also expires on its own within seconds.
        let _ = objects.send(ObjectName::Wallet(user), request).await;
    }
}

/// `POST /v1/payments/orders {amount}` → 201 with the server-fixed orderId and amount.
async fn create_order(
    core: Core,
    PayingUser(user): PayingUser,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Forwarded, ApiError> {
    let call = internal_api::PAYMENT_ORDER.call(&[]);
    core.forward(call, Some(&user), json_body(&body)?).await
}

/// `POST /v1/payments/confirm {payment_key, order_id, amount}` → 200 when Toss's answer is in,
/// 202 while it is not known yet.
async fn confirm(
    State(state): State<AppState>,
    core: Core,
    PayingUser(user): PayingUser,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> Result<Forwarded, ApiError> {
    let call = internal_api::PAYMENT_CONFIRM.call(&[]);
    let confirmed = core.forward(call, Some(&user), json_body(&body)?).await?;
    forget_cached_balance(&state, &user).await;
    Ok(confirmed)
}

/// `GET /v1/payments/{order_id}`: a payment's state (a 202 confirm is followed up here).
async fn payment(
    core: Core,
    User(user): User,
    Path(order_id): Path<String>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let order_id = parse_order_id(&order_id)?;
    let call = internal_api::PAYMENT.call(&[order_id.as_str()]);
    let payment = core.json(call, Some(&user), Bytes::new()).await?;
    Ok(axum::Json(payment))
}

/// `POST /v1/payments/{order_id}/refund`: the payment's unused points back to the card.
async fn refund(
    State(state): State<AppState>,
    core: Core,
    PayingUser(user): PayingUser,
    Path(order_id): Path<String>,
    headers: http::HeaderMap,
) -> Result<Forwarded, ApiError> {
    let order_id = parse_order_id(&order_id)?;
    let call = internal_api::PAYMENT_REFUND.call(&[order_id.as_str()]);
    // The key travels in the signed body, so nothing between us and the core can change it.
    let body = internal_api::RefundBody {
        idempotency_key: idempotency_key(&headers)?,
    };
    let refunded = core.forward(call, Some(&user), json_body(&body)?).await?;
    forget_cached_balance(&state, &user).await;
    Ok(refunded)
}

/// `POST /webhooks/toss` (public): hands the raw body to the core, which stores it before
/// answering if it is a Toss event naming one of our payments (and forgets anything else); then
/// 200. The webhook is not trusted — the core re-reads the payment from Toss before acting. If the
/// hand-off fails, Toss hears an error and delivers again later.
async fn toss_webhook(core: Core, body: Bytes) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let call = internal_api::TOSS_WEBHOOK.call(&[]);
    let _: serde_json::Value = core.json(call, None, body).await?;
    Ok(axum::Json(serde_json::json!({ "received": true })))
}
