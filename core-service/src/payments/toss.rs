//! The Toss Payments core API v1 client: typed requests and responses, Basic authentication with
//! the secret key, an `Idempotency-Key` on every mutating call, and retries only where Toss says
//! they are safe (reads, and the outcome-unknown failures of keyed calls, repeated with the same
//! key by our own reconciler and resolvers rather than in a tight loop here).

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

use crate::tls::{ClientError, HttpVersions, TransportFailure, Trust};

/// Toss's production base URL. Tests and the local stack point at the sandbox instead.
pub const TOSS_API_URL_DEFAULT: &str = "https://api.tosspayments.com";
/// How long one call may take before its outcome counts as unknown. Toss answers confirms in
/// well under a second; ten covers a slow card network without leaving a user staring.
pub const TOSS_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Reads are repeated this many times in all on an outcome-unknown failure (they change nothing).
pub const TOSS_READ_ATTEMPTS_MAX: u32 = 3;
/// Pause between read attempts: short, the caller is usually a background task or a user waiting.
pub const TOSS_READ_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Toss keeps idempotency keys to 300 characters.
pub const TOSS_IDEMPOTENCY_KEY_LEN_MAX: usize = 300;

/// A payment's status at Toss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TossStatus {
    Ready,
    InProgress,
    WaitingForDeposit,
    Done,
    Canceled,
    PartialCanceled,
    Aborted,
    Expired,
}

impl TossStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            TossStatus::Ready => "READY",
            TossStatus::InProgress => "IN_PROGRESS",
            TossStatus::WaitingForDeposit => "WAITING_FOR_DEPOSIT",
            TossStatus::Done => "DONE",
            TossStatus::Canceled => "CANCELED",
            TossStatus::PartialCanceled => "PARTIAL_CANCELED",
            TossStatus::Aborted => "ABORTED",
            TossStatus::Expired => "EXPIRED",
        }
    }
}

/// The fields of Toss's Payment object we act on (the rest is ignored, so fields Toss adds later
/// do not break us).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TossPayment {
    pub payment_key: String,
    pub order_id: String,
    pub status: TossStatus,
    /// Never changes after approval.
    pub total_amount: i64,
    /// What can still be canceled.
    pub balance_amount: i64,
    #[serde(default)]
    pub method: Option<String>,
    /// A virtual account's secret: deposit callbacks must carry it.
    #[serde(default)]
    pub secret: Option<String>,
}

impl TossPayment {
    /// How much of the payment has been canceled at Toss.
    #[must_use]
    pub fn canceled_amount(&self) -> i64 {
        self.total_amount.saturating_sub(self.balance_amount).max(0)
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfirmBody<'a> {
    payment_key: &'a str,
    order_id: &'a str,
    amount: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CancelBody<'a> {
    cancel_reason: &'a str,
    /// Left out, Toss cancels the whole balance.
    #[serde(skip_serializing_if = "Option::is_none")]
    cancel_amount: Option<i64>,
}

/// How much a cancel takes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelAmount {
    /// This much (a partial cancel when less than the balance).
    Part(i64),
    /// Whatever the payment still holds at Toss, whatever it was approved for.
    Balance,
}

#[derive(Debug, Deserialize)]
struct TossErrorBody {
    code: String,
    #[serde(default)]
    message: String,
}

/// How a call to Toss failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TossError {
    /// Toss answered with a definite refusal: nothing happened.
    #[error("toss refused ({status} {code}): {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// We do not know whether Toss acted: a timeout, a dropped connection, a 5xx, or a code Toss
    /// documents as temporary. Ask Toss (or repeat with the same idempotency key) to find out.
    #[error("toss outcome unknown: {0}")]
    Unknown(String),
}

impl TossError {
    /// The Toss error code of a refusal.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        match self {
            TossError::Refused { code, .. } => Some(code),
            TossError::Unknown(_) => None,
        }
    }
}

/// Codes Toss sends with a 4xx that still mean "try again": the outcome is not final (or, for a
/// too-quick second cancel, the request was not processed and may simply be sent again).
const TEMPORARY_CODES: [&str; 3] = [
    "PROVIDER_ERROR",
    "IDEMPOTENT_REQUEST_PROCESSING",
    "FORBIDDEN_CONSECUTIVE_REQUEST",
];

fn classify(status: u16, body: &[u8]) -> TossError {
    let parsed: Option<TossErrorBody> = serde_json::from_slice(body).ok();
    let (code, message) = parsed.map_or_else(
        || ("UNKNOWN".to_owned(), String::new()),
        |body| (body.code, body.message),
    );
    if status >= 500 || TEMPORARY_CODES.contains(&code.as_str()) {
        TossError::Unknown(format!("{status} {code}"))
    } else {
        TossError::Refused {
            status,
            code,
            message,
        }
    }
}

/// Toss settings. `Debug` leaves the secret key out.
#[derive(Clone)]
pub struct TossConfig {
    pub base_url: String,
    pub secret_key: String,
    pub timeout: Duration,
    /// Whom the client trusts over HTTPS.
    pub tls: Trust,
}

impl std::fmt::Debug for TossConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TossConfig")
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

/// A Toss API client. Cheap to clone. `Debug` leaves the credentials out.
#[derive(Clone)]
pub struct TossClient {
    http: reqwest::Client,
    base_url: String,
    authorization: String,
}

impl std::fmt::Debug for TossClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TossClient")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl TossClient {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: &TossConfig) -> Result<Self, ClientError> {
        let http = config
            .tls
            .http(HttpVersions::Http1)?
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()?;
        Ok(TossClient {
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            // The trailing colon: Basic credentials of "key:" with an empty password.
            authorization: format!(
                "Basic {}",
                STANDARD.encode(format!("{}:", config.secret_key))
            ),
        })
    }

    /// `POST /v1/payments/confirm`. Safe to repeat with the same `idempotency_key`.
    ///
    /// # Errors
    /// [`TossError`].
    #[tracing::instrument(skip(self), fields(order_id))]
    pub async fn confirm(
        &self,
        payment_key: &str,
        order_id: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> Result<TossPayment, TossError> {
        let body = ConfirmBody {
            payment_key,
            order_id,
            amount,
        };
        self.post("/v1/payments/confirm", &body, idempotency_key)
            .await
    }

    /// `POST /v1/payments/{paymentKey}/cancel` for `amount`. Safe to repeat with the same
    /// `idempotency_key`.
    ///
    /// # Errors
    /// [`TossError`].
    #[tracing::instrument(skip(self))]
    pub async fn cancel(
        &self,
        payment_key: &str,
        amount: CancelAmount,
        reason: &str,
        idempotency_key: &str,
    ) -> Result<TossPayment, TossError> {
        let body = CancelBody {
            cancel_reason: reason,
            cancel_amount: match amount {
                CancelAmount::Part(amount) => Some(amount),
                CancelAmount::Balance => None,
            },
        };
        let path = format!("/v1/payments/{}/cancel", path_segment(payment_key));
        self.post(&path, &body, idempotency_key).await
    }

    /// `GET /v1/payments/orders/{orderId}`; `Ok(None)` when Toss has no such payment.
    ///
    /// # Errors
    /// [`TossError`] after [`TOSS_READ_ATTEMPTS_MAX`] attempts.
    pub async fn payment_by_order(&self, order_id: &str) -> Result<Option<TossPayment>, TossError> {
        self.get(
            &format!("/v1/payments/orders/{}", path_segment(order_id)),
            TOSS_READ_ATTEMPTS_MAX,
        )
        .await
    }

    /// `GET /v1/payments/{paymentKey}`; `Ok(None)` when Toss has no such payment.
    ///
    /// # Errors
    /// [`TossError`] after [`TOSS_READ_ATTEMPTS_MAX`] attempts.
    pub async fn payment(&self, payment_key: &str) -> Result<Option<TossPayment>, TossError> {
        self.get(
            &format!("/v1/payments/{}", path_segment(payment_key)),
            TOSS_READ_ATTEMPTS_MAX,
        )
        .await
    }

    /// [`TossClient::payment`] with one attempt only: for callers that retry on their own
    /// schedule and promise at most one read per interval (the webhook worker).
    ///
    /// # Errors
    /// [`TossError`].
    pub async fn payment_read_once(
        &self,
        payment_key: &str,
    ) -> Result<Option<TossPayment>, TossError> {
        self.get(&format!("/v1/payments/{}", path_segment(payment_key)), 1)
            .await
    }

    async fn get(&self, path: &str, attempts: u32) -> Result<Option<TossPayment>, TossError> {
        let mut attempt = 1;
        loop {
            let outcome = self
                .send(self.http.get(format!("{}{path}", self.base_url)))
                .await;
            match outcome {
                Err(TossError::Refused { status: 404, .. }) => return Ok(None),
                Err(TossError::Unknown(reason)) if attempt < attempts => {
                    tracing::warn!(%reason, attempt, path, "toss read failed; retrying");
                    attempt += 1;
                    tokio::time::sleep(TOSS_READ_RETRY_DELAY).await;
                }
                other => return other.map(Some),
            }
        }
    }

    async fn post(
        &self,
        path: &str,
        body: &impl Serialize,
        idempotency_key: &str,
    ) -> Result<TossPayment, TossError> {
        debug_assert!(idempotency_key.len() <= TOSS_IDEMPOTENCY_KEY_LEN_MAX);
        let request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("Idempotency-Key", idempotency_key)
            .json(body);
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<TossPayment, TossError> {
        let response = request
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .header(reqwest::header::ACCEPT_LANGUAGE, "en-US")
            .send()
            .await
            .map_err(|error| transport_failed(&error))?;
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|error| transport_failed(&error))?;
        if (200..300).contains(&status) {
            serde_json::from_slice(&body)
                .map_err(|error| TossError::Unknown(format!("unreadable payment: {error}")))
        } else {
            Err(classify(status, &body))
        }
    }
}

/// A call that got no answer: its outcome is unknown. A TLS failure means the request never left,
/// but it is still left to the reconciler like any other unknown outcome (one rule, no guessing);
/// it is logged as an error because it will not pass by itself: the certificate Toss presented
/// is not one we trust (`EXTRA_CA_FILE`, a proxy, the clock?).
fn transport_failed(error: &reqwest::Error) -> TossError {
    let failure = TransportFailure::of(error);
    if failure.is_tls() {
        tracing::error!(%failure, "the TLS handshake with Toss failed");
    }
    TossError::Unknown(failure.to_string())
}

/// Keys and order ids are `[A-Za-z0-9_-]`-like; anything else is percent-encoded so it cannot
/// change the path.
fn path_segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_5xx_or_a_temporary_code_is_an_unknown_outcome_and_a_4xx_a_refusal() {
        let body = br#"{"code":"FAILED_INTERNAL_SYSTEM_PROCESSING","message":"x"}"#;
        assert!(matches!(classify(500, body), TossError::Unknown(_)));
        let body = br#"{"code":"PROVIDER_ERROR","message":"x"}"#;
        assert!(matches!(classify(400, body), TossError::Unknown(_)));
        let body = br#"{"code":"REJECT_CARD_PAYMENT","message":"limit"}"#;
        assert_eq!(
            classify(403, body).code(),
            Some("REJECT_CARD_PAYMENT"),
            "a card refusal is final"
        );
        assert!(matches!(classify(502, b"<html>"), TossError::Unknown(_)));
    }

    #[test]
    fn path_segments_cannot_escape_their_place() {
        assert_eq!(path_segment("order_1-A"), "order_1-A");
        assert_eq!(path_segment("../x?y"), "..%2Fx%3Fy");
    }

    #[test]
    fn the_canceled_amount_is_what_the_balance_lost() {
        let payment = TossPayment {
            payment_key: "k".into(),
            order_id: "order1".into(),
            status: TossStatus::PartialCanceled,
            total_amount: 10_000,
            balance_amount: 4_000,
            method: None,
            secret: None,
        };
        assert_eq!(payment.canceled_amount(), 6_000);
    }
}
