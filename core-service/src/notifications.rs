//! Notifications as rows: written in the same transaction as the event that causes them, so an
//! event and its notification exist together or not at all (docs/design.md §5). Postgres has every
//! notification and its history (PENDING → SENT, or FAILED after retries); Redis holds only the
//! schedule, and losing it loses nothing (docs/decisions/0009-notifications.md).
//!
//! - [`enqueue_in_tx`] / [`enqueue_at_in_tx`]: queue one, in the caller's transaction;
//! - [`dispatcher`]: the feed into Redis, claims, sends, retries, the Postgres fallback;
//! - [`fcm`]: the FCM HTTP v1 client; [`message`]: what is sent per platform;
//!   [`outcome`]: what FCM's answers mean and what SENT means for several devices;
//! - [`schedule`]: the Redis sorted sets and their Lua scripts; [`history`]: the user's list.

pub mod dispatcher;
pub mod fcm;
pub mod history;
pub mod message;
pub mod metrics;
pub mod outcome;
pub mod schedule;
pub mod start;

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// What happened, for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotificationKind {
    PointsCredited,
    PaymentCanceled,
    RefundDone,
    ChallengeCanceled,
    ProofReminder,
    /// An admin canceled or refunded a shop order.
    ShopOrderCanceled,
}

impl NotificationKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            NotificationKind::PointsCredited => "points_credited",
            NotificationKind::PaymentCanceled => "payment_canceled",
            NotificationKind::RefundDone => "refund_done",
            NotificationKind::ChallengeCanceled => "challenge_canceled",
            NotificationKind::ProofReminder => "proof_reminder",
            NotificationKind::ShopOrderCanceled => "shop_order_canceled",
        }
    }
}

/// Queues a notification for `user`, due at once, unless one with `dedup_key` exists (a retried
/// transaction of the same event notifies once).
///
/// # Errors
/// When Postgres fails.
pub async fn enqueue_in_tx(
    conn: &mut PgConnection,
    user: &str,
    kind: NotificationKind,
    payload: &impl Serialize,
    dedup_key: &str,
) -> Result<(), sqlx::Error> {
    enqueue_at_in_tx(conn, user, kind, payload, dedup_key, None).await
}

/// [`enqueue_in_tx`] for a notification not to be sent before `not_before_unix_ms` (wall clock,
/// unix ms; `None` for at once): reminders. The row and its feed entry are written together, so
/// the dispatcher learns of it once the caller commits, whether or not Redis is up.
///
/// # Errors
/// When Postgres fails.
pub async fn enqueue_at_in_tx(
    conn: &mut PgConnection,
    user: &str,
    kind: NotificationKind,
    payload: &impl Serialize,
    dedup_key: &str,
    not_before_unix_ms: Option<i64>,
) -> Result<(), sqlx::Error> {
    let payload =
        serde_json::to_value(payload).map_err(|error| sqlx::Error::Encode(error.into()))?;
    sqlx::query(
        "WITH queued AS ( \
             INSERT INTO notifications (id, user_id, kind, payload, dedup_key, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, COALESCE(to_timestamp($6::int8 / 1000.0), now())) \
             ON CONFLICT (dedup_key) DO NOTHING RETURNING id) \
         INSERT INTO notification_feed (id) SELECT id FROM queued",
    )
    .bind(Uuid::now_v7())
    .bind(user)
    .bind(kind.as_str())
    .bind(payload)
    .bind(dedup_key)
    .bind(not_before_unix_ms)
    .execute(conn)
    .await?;
    Ok(())
}
