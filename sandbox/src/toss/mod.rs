//! Toss Payments core API v1, stateful, with fault injection and webhook delivery.
//!
//! # Toss API (as `api.tosspayments.com`, Basic auth `test_sk_…:`)
//! - `POST /v1/payments/confirm` `{paymentKey, orderId, amount}` → Payment.
//! - `GET /v1/payments/{paymentKey}`, `GET /v1/payments/orders/{orderId}` → Payment.
//! - `POST /v1/payments/{paymentKey}/cancel` `{cancelReason, cancelAmount?, taxFreeAmount?,
//!   currency?, refundReceiveAccount?}` → Payment.
//!
//! Errors are the status plus `{"code", "message"}` (Korean). `Idempotency-Key` (≤ 300 chars) on
//! the POSTs replays the first response (scope: key, secret key, path, method; the body is not
//! compared) and answers `409 IDEMPOTENT_REQUEST_PROCESSING` while the first still runs.
//! `TossPayments-Test-Code: CODE` makes any of them return that error and change nothing.
//! Order of checks: authentication, `Idempotency-Key` format, test code, idempotency, fault, then
//! the operation.
//!
//! # Control plane (not Toss: no auth, JSON, for tests and the dev UI)
//! Errors use Toss's shape (`400 INVALID_REQUEST` with a message saying what is wrong).
//! - `POST /sandbox/toss/pay` `{orderId, amount, orderName?, method?: "CARD"|"VIRTUAL_ACCOUNT"}`
//!   → `201 {paymentKey, orderId, amount}`: the customer approved in the widget; the payment is
//!   `IN_PROGRESS` until confirmed (within 10 minutes). Paying an order again supersedes an
//!   unconfirmed payment (the old key becomes `EXPIRED`); once confirmed, `400 DUPLICATED_ORDER_ID`.
//! - `GET /sandbox/toss/payments/{paymentKey}` → Payment (`404 NOT_FOUND_PAYMENT`).
//! - `POST /sandbox/toss/payments/{paymentKey}/deposit` → Payment: the customer paid into the
//!   virtual account; `WAITING_FOR_DEPOSIT` becomes `DONE`; webhooks `DEPOSIT_CALLBACK`
//!   `{createdAt, secret, status, transactionKey, orderId}` and `PAYMENT_STATUS_CHANGED`.
//! - `POST /sandbox/toss/payments/{paymentKey}/console-cancel` `{cancelAmount?, cancelReason?}` →
//!   Payment: a cancel by the merchant in Toss's console (no auth, no idempotency, not held to the
//!   one-second rule); webhook `PAYMENT_STATUS_CHANGED` (and `DEPOSIT_CALLBACK` for a virtual
//!   account).
//! - `PUT /sandbox/toss/webhook` `{url: string|null, retryUnitMs?: 1..=60000 (default 60000),
//!   duplicates?: 0..=10 (default 0), shuffle?: bool (default false)}` → the configuration;
//!   `GET` returns it. Fields left out take their defaults.
//! - `POST /sandbox/toss/webhook/send` `{eventType, data}` → `202 {eventType, createdAt}`:
//!   delivers an arbitrary event (forge, replay, reorder) like any other.
//! - `GET /sandbox/toss/webhook/deliveries` → `[{eventType, orderId, status, attempt, at}]`, one
//!   per attempt, oldest first (`status` null when the receiver was unreachable or slow).
//! - `POST /sandbox/toss/faults` `{operation: "confirm"|"cancel"|"get"|"any", kind:
//!   "latency"|"error"|"hang"|"approve_then_drop"|"approve_authorised_amount"|
//!   "approve_authorised_amount_then_drop", latencyMs?, status?, code?, count? (default 1)}`
//!   → `201 {rules: [...]}`; `GET` lists the rules; `DELETE` clears them (`204`).
//!   `approve_then_drop` executes the call and never answers. The `approve_authorised_amount`
//!   kinds (confirm only) approve the amount the customer authorised in the widget whatever the
//!   confirm names — the real Toss refuses that, the sandbox does it so a client can prove it
//!   never keeps another amount than its order's — and answer (or, `…_then_drop`, never answer).
//! - `GET /sandbox/toss/stats` → `{confirms_executed, cancels_executed, console_cancels_executed,
//!   reads, payments}` (`reads`: payment reads answered, `GET /v1/payments/…`).
//! - `POST /sandbox/toss/reset` → `204`: forgets payments, idempotency records, faults, the
//!   delivery log and pending retries; keeps the webhook configuration.
//!
//! # Environment
//! `SANDBOX_TOSS_WEBHOOK_URL` and `SANDBOX_TOSS_WEBHOOK_RETRY_UNIT_MS` set the initial webhook
//! configuration (an unparsable value is logged and ignored).

pub mod auth;
mod control;
pub mod error;
pub mod faults;
mod http;
pub mod idempotency;
pub mod payment;
pub mod webhook;

use std::{
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};
use serde_json::Value;

pub use auth::{TEST_SECRET_KEY_PREFIX, authenticate};
pub use error::TossError;
pub use webhook::WebhookConfig;

use faults::Faults;
use idempotency::IdempotencyStore;
use payment::{Payment, PaymentBook};
use webhook::{Event, Webhooks};

/// Requests bodies are a few hundred bytes; a forged webhook carries one Payment (about 2 KB).
pub const BODY_BYTES_MAX: usize = 64 * 1024;
/// How long `hang` and `approve_then_drop` keep a request unanswered: longer than any client
/// timeout worth testing (Toss itself allows 60 s reads), bounded so the task ends.
pub const HANG_DURATION: Duration = Duration::from_secs(120);

/// The Toss stand-in's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TossConfig {
    pub webhook: WebhookConfig,
}

impl TossConfig {
    /// From `SANDBOX_TOSS_WEBHOOK_URL` and `SANDBOX_TOSS_WEBHOOK_RETRY_UNIT_MS`.
    pub fn from_env() -> Self {
        let webhook = WebhookConfig::from_vars(
            std::env::var("SANDBOX_TOSS_WEBHOOK_URL").ok().as_deref(),
            std::env::var("SANDBOX_TOSS_WEBHOOK_RETRY_UNIT_MS")
                .ok()
                .as_deref(),
        )
        .unwrap_or_else(|error| {
            tracing::error!(%error, "ignoring the Toss webhook settings");
            WebhookConfig::default()
        });
        Self { webhook }
    }
}

/// Everything the Toss API changes, behind one mutex held only for short, await-free sections.
#[derive(Debug, Default)]
struct Core {
    book: PaymentBook,
    idempotency: IdempotencyStore,
    faults: Faults,
}

/// The router's state: one per [`router_with`] call.
#[derive(Clone)]
struct Toss {
    core: Arc<Mutex<Core>>,
    webhooks: Webhooks,
}

impl Toss {
    fn new(config: TossConfig) -> Self {
        Self {
            core: Arc::new(Mutex::new(Core::default())),
            webhooks: Webhooks::new(config.webhook),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The Toss stand-in configured from the environment.
pub fn router() -> Router {
    router_with(TossConfig::from_env())
}

/// The Toss stand-in with its own, fresh state.
pub fn router_with(config: TossConfig) -> Router {
    Router::new()
        .route("/v1/payments/confirm", post(http::confirm))
        .route("/v1/payments/orders/{order_id}", get(http::get_by_order))
        .route("/v1/payments/{payment_key}", get(http::get_payment))
        .route("/v1/payments/{payment_key}/cancel", post(http::cancel))
        .merge(control::routes())
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(Toss::new(config))
}

/// What changed in a payment, for the webhooks it triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Confirm: `PAYMENT_STATUS_CHANGED`.
    Approved,
    /// Cancel: `PAYMENT_STATUS_CHANGED`, plus `DEPOSIT_CALLBACK` for a virtual account.
    Canceled,
    /// Deposit: `DEPOSIT_CALLBACK`, then `PAYMENT_STATUS_CHANGED`.
    Deposited,
}

/// The webhooks Toss sends after `change`; `data` is `payment` already serialised.
fn webhooks_after(change: Change, payment: &Payment, data: &Value, now_ms: i64) -> Vec<Event> {
    let status_changed = Event::new("PAYMENT_STATUS_CHANGED", data.clone(), now_ms);
    let deposit = || {
        payment::deposit_callback(payment, now_ms)
            .and_then(|callback| serde_json::to_value(callback).ok())
            .map(|callback| Event::new("DEPOSIT_CALLBACK", callback, now_ms))
    };
    match change {
        Change::Approved => vec![status_changed],
        Change::Canceled => std::iter::once(status_changed).chain(deposit()).collect(),
        Change::Deposited => deposit().into_iter().chain([status_changed]).collect(),
    }
}

/// Serialises a payment for a response and its webhooks.
fn payment_json(payment: &Payment) -> Result<Value, TossError> {
    serde_json::to_value(payment).map_err(|error| {
        tracing::error!(%error, "cannot serialise a payment");
        error::FAILED_INTERNAL_SYSTEM_PROCESSING.into()
    })
}
