//! Toss's API over HTTP: authentication, `Idempotency-Key`, `TossPayments-Test-Code` and injected
//! faults around the [`PaymentBook`](super::payment::PaymentBook) operations.
//!
//! A request without faults takes the core mutex once (twice with an idempotency key: once to
//! claim the key, once to execute and record the response) and never holds it across an await.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::HeaderMap,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use crate::clock;
use serde_json::Value;

use super::{
    Change, Core, HANG_DURATION, Toss, authenticate,
    error::{self, TossError},
    faults::{FaultKind, Operation},
    idempotency::{
        Begin, IDEMPOTENCY_KEY_CHARS_MAX, IdempotencyStore, Scope, StoredResponse, Ticket,
    },
    payment::{AmountCheck, CancelOrigin, CancelRequest, Confirmation, Payment},
    payment_json, webhooks_after,
};

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub const TEST_CODE_HEADER: &str = "tosspayments-test-code";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfirmBody {
    payment_key: String,
    order_id: String,
    amount: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CancelBody {
    cancel_reason: String,
    cancel_amount: Option<i64>,
    tax_free_amount: Option<i64>,
    currency: Option<String>,
    refund_receive_account: Option<Value>,
}

/// Parses a JSON body, answering `INVALID_REQUEST` as Toss does for a malformed one.
pub(super) fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, TossError> {
    serde_json::from_slice(body)
        .map_err(|error| TossError::invalid_request(format!("잘못된 요청입니다. ({error})")))
}

/// `POST /v1/payments/confirm`.
pub(super) async fn confirm(State(toss): State<Toss>, headers: HeaderMap, body: Bytes) -> Response {
    let request = json_body::<ConfirmBody>(&body).and_then(|body| {
        Confirmation::parse(&body.payment_key, &body.order_id, body.amount).map_err(TossError::from)
    });
    let path = "/v1/payments/confirm".to_owned();
    toss.post(&headers, path, Operation::Confirm, move |core, run| {
        let payment = core
            .book
            .confirm_checking(&request?, run.now_ms, run.amount_check)?;
        Ok((payment, Change::Approved))
    })
    .await
}

/// `POST /v1/payments/{paymentKey}/cancel`.
pub(super) async fn cancel(
    State(toss): State<Toss>,
    Path(payment_key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = json_body::<CancelBody>(&body).and_then(|body| {
        CancelRequest::parse(
            &body.cancel_reason,
            body.cancel_amount,
            body.tax_free_amount,
            body.currency.as_deref(),
            body.refund_receive_account,
        )
        .map_err(TossError::from)
    });
    let path = format!("/v1/payments/{payment_key}/cancel");
    toss.post(&headers, path, Operation::Cancel, move |core, run| {
        let payment = core
            .book
            .cancel(&payment_key, request?, CancelOrigin::Api, run.now_ms)?;
        Ok((payment, Change::Canceled))
    })
    .await
}

/// `GET /v1/payments/{paymentKey}`.
pub(super) async fn get_payment(
    State(toss): State<Toss>,
    Path(payment_key): Path<String>,
    headers: HeaderMap,
) -> Response {
    toss.get(&headers, |core| core.book.get(&payment_key).cloned())
        .await
}

/// `GET /v1/payments/orders/{orderId}`.
pub(super) async fn get_by_order(
    State(toss): State<Toss>,
    Path(order_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    toss.get(&headers, |core| core.book.get_by_order(&order_id).cloned())
        .await
}

/// `Idempotency-Key`, if sent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, TossError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .filter(|key| !key.is_empty() && key.chars().count() <= IDEMPOTENCY_KEY_CHARS_MAX)
        .map(|key| Some(key.to_owned()))
        .ok_or_else(|| {
            TossError::invalid_request(
                "Idempotency-Key는 1자 이상 300자 이하의 문자열이어야 합니다.",
            )
        })
}

/// The error `TossPayments-Test-Code` asks for, if any.
fn test_code(headers: &HeaderMap) -> Option<TossError> {
    let value = headers.get(TEST_CODE_HEADER)?;
    Some(match value.to_str() {
        Ok(code) if !code.trim().is_empty() => TossError::named(code.trim()),
        _ => TossError::invalid_request("TossPayments-Test-Code 헤더 값이 올바르지 않습니다."),
    })
}

/// What to do after consulting the faults.
enum Proceed {
    Normally,
    /// Execute, then never answer.
    ThenDrop,
    /// Execute without the confirm's amount check, then answer unless `drop_reply`.
    SkippingAmountCheck {
        drop_reply: bool,
    },
    /// Answer this without executing.
    Stop(Response),
    /// Never answer, without executing.
    Hang,
}

/// Keeps an idempotency key claimed while its request runs; releases it if the request ends
/// without executing, including when the client goes away and the handler is dropped.
struct Claim {
    toss: Toss,
    scope: Scope,
    ticket: Option<Ticket>,
}

impl Claim {
    fn complete(&mut self, store: &mut IdempotencyStore, response: StoredResponse) {
        if let Some(ticket) = self.ticket.take() {
            store.complete(&self.scope, ticket, response);
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.toss.lock().idempotency.abandon(&self.scope, ticket);
        }
    }
}

/// How one execution of a state-changing call runs.
#[derive(Debug, Clone, Copy)]
struct Run {
    now_ms: i64,
    /// Toss always enforces it; only a fault skips it.
    amount_check: AmountCheck,
}

async fn hang() -> Response {
    tokio::time::sleep(HANG_DURATION).await;
    TossError::from(error::FAILED_INTERNAL_SYSTEM_PROCESSING).into_response()
}

impl Toss {
    async fn consult_faults(&self, operation: Operation) -> Proceed {
        let fault = self.lock().faults.take(operation);
        match fault {
            None => Proceed::Normally,
            Some(FaultKind::Latency { ms }) => {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                Proceed::Normally
            }
            Some(FaultKind::Error(error)) => Proceed::Stop(error.into_response()),
            Some(FaultKind::Hang) => Proceed::Hang,
            Some(FaultKind::ApproveThenDrop) => Proceed::ThenDrop,
            Some(FaultKind::ApproveAuthorisedAmount { drop_reply }) => {
                Proceed::SkippingAmountCheck { drop_reply }
            }
        }
    }

    /// A state-changing Toss call: `execute` runs under the core mutex and its response is kept
    /// for replays under the `Idempotency-Key`, if one was sent.
    async fn post(
        &self,
        headers: &HeaderMap,
        path: String,
        operation: Operation,
        execute: impl FnOnce(&mut Core, Run) -> Result<(Payment, Change), TossError>,
    ) -> Response {
        let secret_key = match authenticate(headers) {
            Ok(secret_key) => secret_key,
            Err(error) => return error.into_response(),
        };
        let key = match idempotency_key(headers) {
            Ok(key) => key,
            Err(error) => return error.into_response(),
        };
        if let Some(error) = test_code(headers) {
            return error.into_response();
        }
        let mut claim = None;
        if let Some(key) = key {
            let scope = Scope {
                key,
                secret_key,
                method: "POST".to_owned(),
                path,
            };
            let begun = self
                .lock()
                .idempotency
                .begin(scope.clone(), clock::now_ms());
            match begun {
                Begin::Replay(response) => return response.into_response(),
                Begin::InProgress => {
                    return TossError::from(error::IDEMPOTENT_REQUEST_PROCESSING).into_response();
                }
                Begin::Started(ticket) => {
                    claim = Some(Claim {
                        toss: self.clone(),
                        scope,
                        ticket: Some(ticket),
                    });
                }
            }
        }
        let (drop_reply, amount_check) = match self.consult_faults(operation).await {
            Proceed::Normally => (false, AmountCheck::Enforced),
            Proceed::ThenDrop => (true, AmountCheck::Enforced),
            Proceed::SkippingAmountCheck { drop_reply } => (drop_reply, AmountCheck::Skipped),
            Proceed::Stop(response) => return response,
            Proceed::Hang => {
                drop(claim);
                return hang().await;
            }
        };
        let (response, events) = {
            let mut core = self.lock();
            let now_ms = clock::now_ms();
            let run = Run {
                now_ms,
                amount_check,
            };
            let outcome = execute(&mut core, run).and_then(|(payment, change)| {
                let data = payment_json(&payment)?;
                let events = webhooks_after(change, &payment, &data, now_ms);
                Ok((data, events))
            });
            let (response, events) = match outcome {
                Ok((data, events)) => (
                    StoredResponse {
                        status: axum::http::StatusCode::OK,
                        body: data,
                    },
                    events,
                ),
                Err(error) => (StoredResponse::from(error), Vec::new()),
            };
            if let Some(claim) = &mut claim {
                claim.complete(&mut core.idempotency, response.clone());
            }
            (response, events)
        };
        for event in events {
            self.webhooks.emit(event);
        }
        if drop_reply {
            return hang().await;
        }
        response.into_response()
    }

    /// A read: faults apply, state does not change.
    async fn get(
        &self,
        headers: &HeaderMap,
        lookup: impl FnOnce(&Core) -> Option<Payment>,
    ) -> Response {
        if let Err(error) = authenticate(headers) {
            return error.into_response();
        }
        if let Some(error) = test_code(headers) {
            return error.into_response();
        }
        let drop_reply = match self.consult_faults(Operation::Get).await {
            Proceed::Normally | Proceed::SkippingAmountCheck { .. } => false,
            Proceed::ThenDrop => true,
            Proceed::Stop(response) => return response,
            Proceed::Hang => return hang().await,
        };
        let payment = {
            let mut core = self.lock();
            core.book.count_read();
            lookup(&core)
        };
        if drop_reply {
            return hang().await;
        }
        match payment {
            Some(payment) => Json(payment).into_response(),
            None => TossError::from(error::NOT_FOUND_PAYMENT).into_response(),
        }
    }
}
