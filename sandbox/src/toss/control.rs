//! The sandbox's control plane under `/sandbox/toss/…`: what the Toss widget, the customer and
//! the merchant console do, webhook settings, fault rules and counters. Not part of Toss; no
//! authentication. The endpoints and their JSON are listed in the parent module's documentation.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::Deserialize;

use crate::clock;
use serde_json::{Value, json};

use super::{
    Change, Core, Toss,
    error::{self, TossError},
    faults::FaultSpec,
    http::json_body,
    payment::{
        Authorisation, CONSOLE_CANCEL_REASON_DEFAULT, CancelOrigin, CancelRequest, Payment,
        PaymentBook,
    },
    payment_json,
    webhook::{Event, WebhookConfig, WebhookConfigBody},
    webhooks_after,
};

/// A longer event type is a mistake.
const EVENT_TYPE_CHARS_MAX: usize = 64;

pub(super) fn routes() -> Router<Toss> {
    Router::new()
        .route("/sandbox/toss/pay", post(pay))
        .route("/sandbox/toss/payments/{payment_key}", get(payment))
        .route(
            "/sandbox/toss/payments/{payment_key}/deposit",
            post(deposit),
        )
        .route(
            "/sandbox/toss/payments/{payment_key}/console-cancel",
            post(console_cancel),
        )
        .route("/sandbox/toss/webhook", put(set_webhook).get(webhook))
        .route("/sandbox/toss/webhook/send", post(send_webhook))
        .route("/sandbox/toss/webhook/deliveries", get(deliveries))
        .route(
            "/sandbox/toss/faults",
            post(add_fault).get(faults).delete(clear_faults),
        )
        .route("/sandbox/toss/stats", get(stats))
        .route("/sandbox/toss/reset", post(reset))
}

/// A body that may be empty (meaning `{}`).
fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, TossError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        json_body(body)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PayBody {
    order_id: String,
    amount: i64,
    order_name: Option<String>,
    method: Option<String>,
}

/// The widget: the customer approved; the payment waits for the merchant's confirm.
async fn pay(State(toss): State<Toss>, body: Bytes) -> Response {
    let authorisation = json_body::<PayBody>(&body).and_then(|body| {
        Authorisation::parse(
            &body.order_id,
            body.amount,
            body.order_name.as_deref(),
            body.method.as_deref(),
        )
        .map_err(TossError::from)
    });
    let authorisation = match authorisation {
        Ok(authorisation) => authorisation,
        Err(error) => return error.into_response(),
    };
    let authorised = toss.lock().book.authorise(authorisation, clock::now_ms());
    match authorised {
        Ok(payment) => (
            StatusCode::CREATED,
            Json(json!({
                "paymentKey": payment.payment_key,
                "orderId": payment.order_id,
                "amount": payment.total_amount,
            })),
        )
            .into_response(),
        Err(error) => TossError::from(error).into_response(),
    }
}

async fn payment(State(toss): State<Toss>, Path(payment_key): Path<String>) -> Response {
    let payment = toss.lock().book.get(&payment_key).cloned();
    match payment {
        Some(payment) => Json(payment).into_response(),
        None => TossError::from(error::NOT_FOUND_PAYMENT).into_response(),
    }
}

/// The customer pays into the virtual account.
async fn deposit(State(toss): State<Toss>, Path(payment_key): Path<String>) -> Response {
    toss.change(Change::Deposited, |core, now_ms| {
        core.book.deposit(&payment_key, now_ms)
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConsoleCancelBody {
    cancel_amount: Option<i64>,
    cancel_reason: Option<String>,
}

/// The merchant cancels in Toss's console.
async fn console_cancel(
    State(toss): State<Toss>,
    Path(payment_key): Path<String>,
    body: Bytes,
) -> Response {
    let request = optional_body::<ConsoleCancelBody>(&body).and_then(|body| {
        let reason = body
            .cancel_reason
            .as_deref()
            .unwrap_or(CONSOLE_CANCEL_REASON_DEFAULT);
        CancelRequest::parse(reason, body.cancel_amount, None, None, None).map_err(TossError::from)
    });
    let request = match request {
        Ok(request) => request,
        Err(error) => return error.into_response(),
    };
    toss.change(Change::Canceled, |core, now_ms| {
        core.book
            .cancel(&payment_key, request, CancelOrigin::Console, now_ms)
    })
}

async fn webhook(State(toss): State<Toss>) -> Json<WebhookConfig> {
    Json(toss.webhooks.config())
}

async fn set_webhook(State(toss): State<Toss>, body: Bytes) -> Response {
    let config = optional_body::<WebhookConfigBody>(&body)
        .and_then(|body| WebhookConfig::parse(body).map_err(TossError::invalid_request));
    match config {
        Ok(config) => {
            toss.webhooks.set_config(config.clone());
            Json(config).into_response()
        }
        Err(error) => error.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendBody {
    event_type: String,
    data: Value,
}

/// Delivers an arbitrary event, so a test can forge, replay or reorder exactly.
async fn send_webhook(State(toss): State<Toss>, body: Bytes) -> Response {
    let body = match json_body::<SendBody>(&body) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    if body.event_type.is_empty() || body.event_type.chars().count() > EVENT_TYPE_CHARS_MAX {
        return TossError::invalid_request("eventType must be 1 to 64 characters").into_response();
    }
    if toss.webhooks.config().url.is_none() {
        return TossError::invalid_request("no webhook url: PUT /sandbox/toss/webhook first")
            .into_response();
    }
    let event = Event::new(&body.event_type, body.data, clock::now_ms());
    let accepted = json!({ "eventType": event.event_type, "createdAt": event.created_at });
    toss.webhooks.emit(event);
    (StatusCode::ACCEPTED, Json(accepted)).into_response()
}

async fn deliveries(State(toss): State<Toss>) -> Response {
    Json(toss.webhooks.deliveries()).into_response()
}

async fn add_fault(State(toss): State<Toss>, body: Bytes) -> Response {
    let rule = json_body::<FaultSpec>(&body)
        .and_then(|spec| spec.into_rule().map_err(TossError::invalid_request));
    let rule = match rule {
        Ok(rule) => rule,
        Err(error) => return error.into_response(),
    };
    let mut core = toss.lock();
    match core.faults.add(rule) {
        Ok(()) => (StatusCode::CREATED, Json(core.faults.to_json())).into_response(),
        Err(message) => TossError::invalid_request(message).into_response(),
    }
}

async fn faults(State(toss): State<Toss>) -> Json<Value> {
    Json(toss.lock().faults.to_json())
}

async fn clear_faults(State(toss): State<Toss>) -> StatusCode {
    toss.lock().faults.clear();
    StatusCode::NO_CONTENT
}

async fn stats(State(toss): State<Toss>) -> Response {
    let stats = toss.lock().book.stats();
    Json(stats).into_response()
}

/// Forgets everything but the webhook configuration.
async fn reset(State(toss): State<Toss>) -> StatusCode {
    {
        let mut core = toss.lock();
        core.book = PaymentBook::default();
        core.idempotency.clear();
        core.faults.clear();
    }
    toss.webhooks.reset();
    StatusCode::NO_CONTENT
}

impl Toss {
    /// A control-plane change to a payment: answer it and send its webhooks.
    fn change(
        &self,
        change: Change,
        operation: impl FnOnce(&mut Core, i64) -> Result<Payment, super::payment::PaymentError>,
    ) -> Response {
        let outcome = {
            let mut core = self.lock();
            let now_ms = clock::now_ms();
            operation(&mut core, now_ms)
                .map_err(TossError::from)
                .and_then(|payment| {
                    let data = payment_json(&payment)?;
                    let events = webhooks_after(change, &payment, &data, now_ms);
                    Ok((data, events))
                })
        };
        match outcome {
            Ok((data, events)) => {
                for event in events {
                    self.webhooks.emit(event);
                }
                Json(data).into_response()
            }
            Err(error) => error.into_response(),
        }
    }
}
