//! Toss's webhooks at the door: a body is parsed into a typed [`TossEvent`] and stored only when it
//! names a payment of ours; everything else is answered 200 and forgotten (Toss redelivers
//! anything but a 200 for days, and a body that is not Toss's needs no second chance).
//!
//! What is stored is a hint, never a fact: the worker re-reads the payment from Toss by the key
//! *we* recorded and applies Toss's answer ([`super::worker`]). So a stored row needs no more
//! than the payment it names, and a payment needs at most one pending row: every further event
//! merges into it (and re-arms it, so a change that happened after the worker's read is read
//! again). Storage is one row per payment per read, whatever arrives.
//!
//! Shapes (Toss's, as the sandbox sends them: `sandbox/src/toss/webhook.rs`):
//! - `PAYMENT_STATUS_CHANGED`: `data` is the Payment object (`paymentKey`, `orderId`, `status`…);
//! - `DEPOSIT_CALLBACK`: `data` is `{createdAt, secret, status, transactionKey, orderId}`; the
//!   secret must be the one Toss gave us for the payment's virtual account;
//! - `CANCEL_STATUS_CHANGED`: `data` names the payment by `paymentKey` and/or `orderId`.

use nene_domain::payments::{OrderId, PaymentKey};
use serde::Deserialize;

use super::{PaymentError, PaymentRow, PaymentState, Payments};

/// Longest webhook body looked at: Toss's Payment object is a few KB. A longer body is not Toss's.
pub const WEBHOOK_BODY_BYTES_MAX: usize = 64 * 1024;
/// Longest `status` or `secret` we keep from an event (Toss's are tens of characters).
const EVENT_TEXT_LEN_MAX: usize = 100;

/// A Toss webhook, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TossEvent {
    PaymentStatusChanged {
        payment_key: PaymentKey,
        order_id: OrderId,
        status: String,
    },
    DepositCallback {
        order_id: OrderId,
        secret: String,
        status: String,
    },
    /// Names the payment by key, by order, or both.
    CancelStatusChanged {
        payment_key: Option<PaymentKey>,
        order_id: Option<OrderId>,
    },
}

/// Why a body is not a Toss event we act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotAnEvent {
    #[error("longer than any Toss event")]
    TooLarge,
    #[error("not a Toss event")]
    Malformed,
    #[error("an event type we do not act on")]
    OtherType,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    event_type: String,
    data: Data,
}

/// The fields of `data` any of the events may carry (the rest is ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    payment_key: Option<String>,
    order_id: Option<String>,
    status: Option<String>,
    secret: Option<String>,
}

/// A status or secret: Toss's are short printable ASCII (`DONE`, `ps_…`), so anything else
/// (control characters, NUL, which Postgres cannot store) is not Toss's.
fn text(value: Option<String>) -> Result<String, NotAnEvent> {
    value
        .filter(|text| {
            !text.is_empty()
                && text.len() <= EVENT_TEXT_LEN_MAX
                && text.bytes().all(|byte| byte.is_ascii_graphic())
        })
        .ok_or(NotAnEvent::Malformed)
}

impl TossEvent {
    /// # Errors
    /// [`NotAnEvent`]: too large, not JSON of a Toss event's shape, or a type we ignore.
    pub fn parse(body: &[u8]) -> Result<TossEvent, NotAnEvent> {
        if body.len() > WEBHOOK_BODY_BYTES_MAX {
            return Err(NotAnEvent::TooLarge);
        }
        let envelope: Envelope = serde_json::from_slice(body).map_err(|_| NotAnEvent::Malformed)?;
        let data = envelope.data;
        let order_id = data
            .order_id
            .map(|raw| OrderId::parse(&raw))
            .transpose()
            .map_err(|_| NotAnEvent::Malformed)?;
        let payment_key = data
            .payment_key
            .map(|raw| PaymentKey::parse(&raw))
            .transpose()
            .map_err(|_| NotAnEvent::Malformed)?;
        match envelope.event_type.as_str() {
            "PAYMENT_STATUS_CHANGED" => Ok(TossEvent::PaymentStatusChanged {
                payment_key: payment_key.ok_or(NotAnEvent::Malformed)?,
                order_id: order_id.ok_or(NotAnEvent::Malformed)?,
                status: text(data.status)?,
            }),
            "DEPOSIT_CALLBACK" => Ok(TossEvent::DepositCallback {
                order_id: order_id.ok_or(NotAnEvent::Malformed)?,
                secret: text(data.secret)?,
                status: text(data.status)?,
            }),
            "CANCEL_STATUS_CHANGED" if payment_key.is_some() || order_id.is_some() => {
                Ok(TossEvent::CancelStatusChanged {
                    payment_key,
                    order_id,
                })
            }
            "CANCEL_STATUS_CHANGED" => Err(NotAnEvent::Malformed),
            _ => Err(NotAnEvent::OtherType),
        }
    }

    /// Toss's name of the event.
    #[must_use]
    pub fn event_type(&self) -> &'static str {
        match self {
            TossEvent::PaymentStatusChanged { .. } => "PAYMENT_STATUS_CHANGED",
            TossEvent::DepositCallback { .. } => "DEPOSIT_CALLBACK",
            TossEvent::CancelStatusChanged { .. } => "CANCEL_STATUS_CHANGED",
        }
    }

    fn order_id(&self) -> Option<&OrderId> {
        match self {
            TossEvent::PaymentStatusChanged { order_id, .. }
            | TossEvent::DepositCallback { order_id, .. } => Some(order_id),
            TossEvent::CancelStatusChanged { order_id, .. } => order_id.as_ref(),
        }
    }

    fn payment_key(&self) -> Option<&PaymentKey> {
        match self {
            TossEvent::PaymentStatusChanged { payment_key, .. } => Some(payment_key),
            TossEvent::CancelStatusChanged { payment_key, .. } => payment_key.as_ref(),
            TossEvent::DepositCallback { .. } => None,
        }
    }

    /// What is kept of the event for operators: its type, what it names and its status. Never
    /// the deposit secret.
    fn stored_form(&self) -> serde_json::Value {
        let status = match self {
            TossEvent::PaymentStatusChanged { status, .. }
            | TossEvent::DepositCallback { status, .. } => Some(status.as_str()),
            TossEvent::CancelStatusChanged { .. } => None,
        };
        serde_json::json!({
            "eventType": self.event_type(),
            "orderId": self.order_id().map(OrderId::as_str),
            "paymentKey": self.payment_key().map(PaymentKey::as_str),
            "status": status,
        })
    }

    /// Whether the event is about `row`, one of our payments: every id it carries is the
    /// payment's, and a deposit callback carries the payment's secret (or the payment is still
    /// confirming, so we do not know the secret yet, and the worker's read of Toss decides).
    fn is_about(&self, row: &PaymentRow) -> bool {
        let order_matches = self
            .order_id()
            .is_none_or(|order_id| order_id.as_str() == row.order_id);
        let key_matches = self
            .payment_key()
            .is_none_or(|key| key.as_str() == row.payment_key);
        let secret_matches = match self {
            TossEvent::DepositCallback { secret, .. } => match row.deposit_secret.as_deref() {
                Some(expected) => constant_time_equal(secret, expected),
                None => row.state == PaymentState::Confirming,
            },
            _ => true,
        };
        order_matches && key_matches && secret_matches
    }
}

/// What became of a webhook. Every outcome is answered 200: Toss need not deliver it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored for the worker.
    Stored,
    /// The payment already had a pending webhook: merged into it.
    Merged,
    /// Not stored: not a Toss event, or about no payment of ours.
    Ignored(&'static str),
}

/// Looks at a webhook body and stores it if it names one of our payments (the durable hand-off:
/// the edge answers Toss only after this returns).
///
/// # Errors
/// `Database` when Postgres fails (the edge then answers 5xx and Toss delivers again).
pub async fn accept(payments: &Payments, body: &[u8]) -> Result<Accepted, PaymentError> {
    let event = match TossEvent::parse(body) {
        Ok(event) => event,
        Err(NotAnEvent::TooLarge) => return Ok(Accepted::Ignored("too large")),
        Err(NotAnEvent::Malformed) => return Ok(Accepted::Ignored("not a Toss event")),
        Err(NotAnEvent::OtherType) => return Ok(Accepted::Ignored("an event type we ignore")),
    };
    let row: Option<PaymentRow> = sqlx::query_as(&format!(
        "SELECT {} FROM payments WHERE order_id = $1 OR payment_key = $2 LIMIT 1",
        super::PAYMENT_COLUMNS
    ))
    .bind(event.order_id().map(OrderId::as_str))
    .bind(event.payment_key().map(PaymentKey::as_str))
    .fetch_optional(&payments.db)
    .await?;
    let Some(row) = row.filter(|row| event.is_about(row)) else {
        return Ok(Accepted::Ignored("names no payment of ours"));
    };
    let inserted: bool = sqlx::query_scalar(
        "INSERT INTO toss_webhooks (order_id, event_type, body) VALUES ($1, $2, $3) \
         ON CONFLICT (order_id) WHERE processed_at IS NULL \
         DO UPDATE SET rearmed = true, event_type = EXCLUDED.event_type, body = EXCLUDED.body \
         RETURNING xmax = 0",
    )
    .bind(&row.order_id)
    .bind(event.event_type())
    .bind(event.stored_form())
    .fetch_one(&payments.db)
    .await?;
    payments.wake.notify_one();
    Ok(if inserted {
        Accepted::Stored
    } else {
        Accepted::Merged
    })
}

fn constant_time_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0_u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &serde_json::Value) -> Result<TossEvent, NotAnEvent> {
        TossEvent::parse(&serde_json::to_vec(value).unwrap_or_default())
    }

    #[test]
    fn a_payment_status_change_names_its_payment_key_order_and_status() {
        let event = parse(&serde_json::json!({
            "eventType": "PAYMENT_STATUS_CHANGED", "createdAt": "2026-01-02T14:46:59.65327",
            "data": { "paymentKey": "tsb_1", "orderId": "nene_0001", "status": "DONE",
                      "totalAmount": 1000, "whatever": [1, 2] }
        }));
        assert!(
            matches!(&event, Ok(TossEvent::PaymentStatusChanged { payment_key, order_id, status })
                if payment_key.as_str() == "tsb_1" && order_id.as_str() == "nene_0001"
                    && status == "DONE"),
            "{event:?}"
        );
    }

    #[test]
    fn deposit_callbacks_need_a_secret_and_cancel_changes_need_a_payment() {
        let deposit = parse(&serde_json::json!({ "eventType": "DEPOSIT_CALLBACK",
            "data": { "orderId": "nene_0001", "secret": "ps_1", "status": "DONE" } }));
        assert!(matches!(deposit, Ok(TossEvent::DepositCallback { .. })));
        let no_secret = parse(&serde_json::json!({ "eventType": "DEPOSIT_CALLBACK",
            "data": { "orderId": "nene_0001", "status": "DONE" } }));
        assert_eq!(no_secret, Err(NotAnEvent::Malformed));
        let cancel = parse(&serde_json::json!({ "eventType": "CANCEL_STATUS_CHANGED",
            "data": { "paymentKey": "tsb_1" } }));
        assert!(matches!(cancel, Ok(TossEvent::CancelStatusChanged { .. })));
        let naming_nothing = parse(&serde_json::json!({ "eventType": "CANCEL_STATUS_CHANGED",
            "data": { "status": "DONE" } }));
        assert_eq!(naming_nothing, Err(NotAnEvent::Malformed));
    }

    #[test]
    fn anything_else_is_not_an_event_we_act_on() {
        for junk in [
            &b"not json"[..],
            b"{}",
            b"[]",
            br#"{"eventType": "PAYMENT_STATUS_CHANGED"}"#,
            br#"{"eventType": "PAYMENT_STATUS_CHANGED", "data": {"orderId": "nene_0001"}}"#,
            br#"{"eventType": "PAYMENT_STATUS_CHANGED", "data": {"orderId": "no spaces!",
                 "paymentKey": "k", "status": "DONE"}}"#,
            br#"{"eventType": "PAYMENT_STATUS_CHANGED", "data": {"orderId": "nene_0001",
                 "paymentKey": "k", "status": "DO\u0000NE"}}"#,
            br#"{"eventType": "DEPOSIT_CALLBACK", "data": {"orderId": "nene_0001",
                 "secret": "ps 1", "status": "DONE"}}"#,
        ] {
            assert_eq!(
                TossEvent::parse(junk),
                Err(NotAnEvent::Malformed),
                "{}",
                String::from_utf8_lossy(junk)
            );
        }
        let payout = parse(&serde_json::json!({ "eventType": "PAYOUT_STATUS_CHANGED",
            "data": { "orderId": "nene_0001" } }));
        assert_eq!(payout, Err(NotAnEvent::OtherType));
        let huge = vec![b' '; WEBHOOK_BODY_BYTES_MAX + 1];
        assert_eq!(TossEvent::parse(&huge), Err(NotAnEvent::TooLarge));
    }

    #[test]
    fn secrets_compare_equal_only_when_identical() {
        assert!(constant_time_equal("abc", "abc"));
        assert!(!constant_time_equal("abc", "abd"));
        assert!(!constant_time_equal("abc", "abcd"));
    }
}
