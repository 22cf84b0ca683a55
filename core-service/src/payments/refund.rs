//! Refunds of unused charged points to the card: a partial cancel at Toss of exactly the charge's
//! unspent points.
//!
//! The points leave the wallet first (a withdrawal from the charge's own lot, with the refund row,
//! in one transaction), then Toss is asked with the refund's idempotency key. Toss's definite "no"
//! puts the points back into the same lot; an unknown outcome leaves the refund `requested` and the
//! worker asks again with the same key. So the user can never spend points whose money is on its
//! way back, and never loses points whose money stayed.

use serde::{Deserialize, Serialize};
use sqlx::types::time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{PaymentError, Payments, PointsState, lock_payment, points, toss::CancelAmount};
use crate::{
    ledger::{self, IdempotencyKey, LotId, LotWithdrawal, Refund, SystemAccount, TransferId},
    notifications::{self, NotificationKind},
    payments::toss::TossError,
};

/// Shown on the card statement and in Toss's console.
const REFUND_REASON: &str = "미사용 포인트 환불 (unused points refund)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "payment_refund_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RefundState {
    Requested,
    Done,
    Failed,
}

/// A refund, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RefundView {
    pub refund_id: Uuid,
    pub order_id: String,
    pub amount: i64,
    pub state: RefundState,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct RefundRow {
    id: Uuid,
    order_id: String,
    amount: i64,
    state: RefundState,
    withdrawal_transfer_id: Uuid,
}

impl RefundRow {
    fn view(&self) -> RefundView {
        RefundView {
            refund_id: self.id,
            order_id: self.order_id.clone(),
            amount: self.amount,
            state: self.state,
        }
    }
}

const REFUND_COLUMNS: &str = "id, order_id, amount, state, withdrawal_transfer_id";

/// Refunds the unused points of `user`'s payment of `order_id`. With `client_key`, a repeat
/// returns the first refund.
///
/// # Errors
/// `OrderNotFound`, `NothingToRefund`, `RefundInFlight`, `RefundRefused` (Toss said no; the points
/// are back), `Database`, `Ledger`.
#[tracing::instrument(skip(payments, client_key))]
pub async fn refund(
    payments: &Payments,
    user: &str,
    order_id: &str,
    client_key: Option<&str>,
) -> Result<RefundView, PaymentError> {
    let mut tx = payments.db.begin().await?;
    let row = lock_payment(&mut tx, order_id)
        .await?
        .filter(|row| row.user_id == user)
        .ok_or(PaymentError::OrderNotFound)?;
    if let Some(key) = client_key {
        let earlier: Option<RefundRow> = sqlx::query_as(&format!(
            "SELECT {REFUND_COLUMNS} FROM payment_refunds WHERE order_id = $1 AND client_key = $2"
        ))
        .bind(order_id)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(earlier) = earlier {
            return Ok(earlier.view());
        }
    }
    let in_flight: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM payment_refunds WHERE order_id = $1 AND state = 'requested')",
    )
    .bind(order_id)
    .fetch_one(&mut *tx)
    .await?;
    if in_flight {
        return Err(PaymentError::RefundInFlight);
    }
    let (PointsState::Credited, Some(lot)) = (row.points, row.charge_lot_id) else {
        return Err(PaymentError::NothingToRefund);
    };
    let standing = ledger::lot_standing_in_tx(&mut tx, LotId(lot)).await?;
    let not_yet_canceled = row.amount - row.canceled_accounted;
    let amount = standing.withdrawable.get().min(not_yet_canceled);
    if amount <= 0 {
        return Err(PaymentError::NothingToRefund);
    }
    let id = Uuid::now_v7();
    let withdrawal = ledger::withdraw_from_lot_in_tx(
        &mut tx,
        &LotWithdrawal {
            key: IdempotencyKey::parse(&format!("refund:{id}"))?,
            lot: LotId(lot),
            to: ledger::system_account(SystemAccount::PaymentClearing),
            amount: points(amount)?,
        },
    )
    .await?;
    sqlx::query(
        "INSERT INTO payment_refunds \
             (id, order_id, amount, client_key, withdrawal_transfer_id, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6::float8 / 1000))",
    )
    .bind(id)
    .bind(order_id)
    .bind(amount)
    .bind(client_key)
    .bind(withdrawal.transfer.0)
    .bind(super::lease_ms(payments))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE payments SET canceled_accounted = canceled_accounted + $2, updated_at = now() \
         WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(amount)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let refund = RefundRow {
        id,
        order_id: order_id.to_owned(),
        amount,
        state: RefundState::Requested,
        withdrawal_transfer_id: withdrawal.transfer.0,
    };
    ask_toss(payments, &row.payment_key, &row.user_id, refund).await
}

/// Asks Toss to cancel the refund's amount and records a definite answer.
async fn ask_toss(
    payments: &Payments,
    payment_key: &str,
    user: &str,
    refund: RefundRow,
) -> Result<RefundView, PaymentError> {
    let answer = payments
        .toss
        .cancel(
            payment_key,
            CancelAmount::Part(refund.amount),
            REFUND_REASON,
            &format!("refund:{}", refund.id),
        )
        .await;
    match answer {
        Ok(_) => {
            let mut tx = payments.db.begin().await?;
            let updated = sqlx::query(
                "UPDATE payment_refunds SET state = 'done', resolved_at = now() \
                 WHERE id = $1 AND state = 'requested'",
            )
            .bind(refund.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 1 {
                notifications::enqueue_in_tx(
                    &mut tx,
                    user,
                    NotificationKind::RefundDone,
                    &serde_json::json!({ "order_id": refund.order_id, "amount": refund.amount }),
                    &format!("refund-done:{}", refund.id),
                )
                .await?;
            }
            tx.commit().await?;
            Ok(RefundView {
                state: RefundState::Done,
                ..refund.view()
            })
        }
        Err(TossError::Refused { code, message, .. }) => {
            tracing::warn!(%code, %message, refund = %refund.id, "toss refused the refund");
            undo(payments, &refund, &code).await?;
            Err(PaymentError::RefundRefused(code))
        }
        Err(TossError::Unknown(reason)) => {
            tracing::warn!(%reason, refund = %refund.id, "refund outcome unknown; will ask again");
            let attempts: i32 = sqlx::query_scalar(
                "UPDATE payment_refunds SET attempts = attempts + 1 WHERE id = $1 RETURNING attempts",
            )
            .bind(refund.id)
            .fetch_one(&payments.db)
            .await?;
            sqlx::query(
                "UPDATE payment_refunds \
                 SET next_attempt_at = now() + make_interval(secs => $2::float8 / 1000) WHERE id = $1",
            )
            .bind(refund.id)
            .bind(super::retry_delay_ms(payments, attempts))
            .execute(&payments.db)
            .await?;
            Ok(refund.view())
        }
    }
}

/// Toss definitely did not cancel: the points go back into the lot they came from.
async fn undo(payments: &Payments, refund: &RefundRow, code: &str) -> Result<(), PaymentError> {
    let mut tx = payments.db.begin().await?;
    let _payment = lock_payment(&mut tx, &refund.order_id).await?;
    let updated = sqlx::query(
        "UPDATE payment_refunds SET state = 'failed', failure_code = $2, resolved_at = now() \
         WHERE id = $1 AND state = 'requested'",
    )
    .bind(refund.id)
    .bind(code)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 1 {
        ledger::refund_in_tx(
            &mut tx,
            &Refund {
                key: IdempotencyKey::parse(&format!("refund-undo:{}", refund.id))?,
                debit: TransferId(refund.withdrawal_transfer_id),
                amount: points(refund.amount)?,
            },
        )
        .await?;
        sqlx::query(
            "UPDATE payments SET canceled_accounted = canceled_accounted - $2, updated_at = now() \
             WHERE order_id = $1",
        )
        .bind(&refund.order_id)
        .bind(refund.amount)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Asks Toss again about refunds whose answer was lost, with the same idempotency key.
///
/// # Errors
/// When Postgres fails.
pub async fn resolve_once(
    payments: &Payments,
    stop: &CancellationToken,
) -> Result<u64, PaymentError> {
    let due: Vec<(Uuid, String, String, String, i64, Uuid, OffsetDateTime)> = sqlx::query_as(
        "UPDATE payment_refunds r SET next_attempt_at = now() + make_interval(secs => $2::float8 / 1000) \
         FROM payments p \
         WHERE r.id IN (SELECT id FROM payment_refunds WHERE state = 'requested' \
                        AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1 \
                        FOR UPDATE SKIP LOCKED) \
           AND p.order_id = r.order_id \
         RETURNING r.id, r.order_id, p.payment_key, p.user_id, r.amount, \
                   r.withdrawal_transfer_id, r.next_attempt_at",
    )
    .bind(super::claims::WORK_BATCH_MAX)
    .bind(super::lease_ms(payments))
    .fetch_all(&payments.db)
    .await?;
    let mut done = 0;
    for (index, row) in due.iter().enumerate() {
        if stop.is_cancelled() {
            let ids: Vec<Uuid> = due[index..].iter().map(|row| row.0).collect();
            super::claims::give_back_logged(
                &payments.db,
                super::claims::Unstarted::Refunds(&ids),
                row.6,
            )
            .await;
            break;
        }
        let (id, order_id, payment_key, user, amount, withdrawal_transfer_id, _) = row.clone();
        let refund = RefundRow {
            id,
            order_id,
            amount,
            state: RefundState::Requested,
            withdrawal_transfer_id,
        };
        match ask_toss(payments, &payment_key, &user, refund).await {
            Ok(view) if view.state == RefundState::Requested => {}
            Ok(_) | Err(PaymentError::RefundRefused(_)) => done += 1,
            Err(error) => tracing::warn!(%error, %id, "refund resolution failed"),
        }
    }
    Ok(done)
}
