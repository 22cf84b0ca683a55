//! The payments' internal HTTP API: orders, confirm, a payment's state, refunds, the webhook
//! hand-off from the edge, and (dev mode only) fault injection.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
};
use nene_domain::{ErrorCode, internal_api as api};
use serde::Deserialize;

use super::{CoreJson, Mounted, error::CoreApiError, signature::SignedIn};
use crate::{
    AppState,
    payments::{
        self, ConfirmRequest, Order, PaymentError, PaymentState, PaymentView,
        refund::{RefundState, RefundView},
        webhook::{self, Accepted},
    },
};

pub(super) fn mount(mounted: Mounted) -> Mounted {
    mounted
        .at(api::PAYMENT_ORDER, create_order)
        .at(api::PAYMENT_CONFIRM, confirm)
        .at(api::PAYMENT, payment)
        .at(api::PAYMENT_REFUND, refund)
        .at(api::TOSS_WEBHOOK, webhook)
        // Dev only (skipped outside dev mode).
        .at(api::DEV_FAULTS, set_faults)
}

impl From<PaymentError> for CoreApiError {
    fn from(error: PaymentError) -> Self {
        match error {
            PaymentError::Database(error) => CoreApiError::Database(error),
            PaymentError::Ledger(error) => CoreApiError::Ledger(error),
            other => {
                if other.code() == ErrorCode::UpstreamError {
                    tracing::warn!(error = %other, "payment partner failed");
                }
                CoreApiError::Client(other.code())
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct NewOrder {
    amount: i64,
}

async fn create_order(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CoreJson(new): CoreJson<NewOrder>,
) -> Result<(StatusCode, Json<Order>), CoreApiError> {
    let order = payments::create_order(&state.db, &user, new.amount).await?;
    Ok((StatusCode::CREATED, Json(order)))
}

/// 200 once Toss's answer is recorded; 202 while the outcome is still unknown (the reconciler
/// settles it; asking again with the same body is safe).
async fn confirm(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    CoreJson(request): CoreJson<ConfirmRequest>,
) -> Result<(StatusCode, Json<PaymentView>), CoreApiError> {
    let view = payments::confirm(&state.payments, &user, &request).await?;
    let status = if view.status == PaymentState::Confirming {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

async fn payment(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    Path(order_id): Path<String>,
) -> Result<Json<PaymentView>, CoreApiError> {
    Ok(Json(
        payments::get_payment(&state.db, &user, &order_id).await?,
    ))
}

async fn refund(
    State(state): State<Arc<AppState>>,
    SignedIn(user): SignedIn,
    Path(order_id): Path<String>,
    CoreJson(body): CoreJson<api::RefundBody>,
) -> Result<(StatusCode, Json<RefundView>), CoreApiError> {
    let view = payments::refund::refund(
        &state.payments,
        &user,
        &order_id,
        body.idempotency_key.as_ref().map(|key| key.as_str()),
    )
    .await?;
    let status = if view.state == RefundState::Requested {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// Stores the webhook if it names one of our payments, and answers 200 either way (Toss
/// redelivers anything else for days); the worker reads Toss and applies what it says. Only a
/// failure to store is an error, so that Toss does deliver again.
async fn webhook(
    State(state): State<Arc<AppState>>,
    body: Bytes,
) -> Result<Json<serde_json::Value>, CoreApiError> {
    let answer = match webhook::accept(&state.payments, &body).await? {
        Accepted::Stored => serde_json::json!({ "accepted": true, "stored": true }),
        Accepted::Merged => {
            serde_json::json!({ "accepted": true, "stored": false, "merged": true })
        }
        Accepted::Ignored(reason) => {
            tracing::debug!(reason, "webhook not stored");
            serde_json::json!({ "accepted": true, "stored": false, "ignored": reason })
        }
    };
    Ok(Json(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Faults {
    #[serde(default)]
    credit_failures: Option<u32>,
    #[serde(default)]
    join_failures: Option<u32>,
}

/// `POST /internal/v1/dev/faults` (dev mode only): sets the fault counters given.
async fn set_faults(
    State(state): State<Arc<AppState>>,
    CoreJson(faults): CoreJson<Faults>,
) -> Json<serde_json::Value> {
    use std::sync::atomic::Ordering;
    let counters = &state.payments.faults;
    if let Some(n) = faults.credit_failures {
        counters.credit_failures.store(n, Ordering::SeqCst);
    }
    if let Some(n) = faults.join_failures {
        counters.join_failures.store(n, Ordering::SeqCst);
    }
    Json(serde_json::json!({
        "credit_failures": counters.credit_failures.load(Ordering::SeqCst),
        "join_failures": counters.join_failures.load(Ordering::SeqCst),
    }))
}
