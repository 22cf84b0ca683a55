//! Notifications as rows: written in the same transaction as the event that causes them, so an
//! event and its notification exist together or not at all (DESIGN.md §5). Delivery is the
//! dispatcher's business.

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
}

impl NotificationKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            NotificationKind::PointsCredited => "points_credited",
            NotificationKind::PaymentCanceled => "payment_canceled",
            NotificationKind::RefundDone => "refund_done",
            NotificationKind::ChallengeCanceled => "challenge_canceled",
        }
    }
}

/// Queues a notification for `user` unless one with `dedup_key` exists (a retried transaction
/// of the same event notifies once).
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
    let payload =
        serde_json::to_value(payload).map_err(|error| sqlx::Error::Encode(error.into()))?;
    sqlx::query(
        "INSERT INTO notifications (id, user_id, kind, payload, dedup_key) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (dedup_key) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(user)
    .bind(kind.as_str())
    .bind(payload)
    .bind(dedup_key)
    .execute(conn)
    .await?;
    Ok(())
}
