//! Crediting a confirmed payment's points: the `charge` lot, the payment's new state and the
//! user's notification, in one transaction with whatever holds the payment's row — the confirm
//! itself (the usual case, [`credit_at_confirm`]) or the outbox worker (a credit that failed
//! there, retried). A charge that can never be credited is given up and cancelled at Toss.

use sqlx::{PgConnection, PgPool};

use super::{PaymentError, PaymentRow, Payments, PointsState, lock_payment};
use crate::{
    ledger::{self, Credit, IdempotencyKey, LotSource, SystemAccount},
    notifications::{self, NotificationKind},
};

/// The confirm's credit, in the confirm's own transaction (which holds the payment's row), so the
/// usual answer is "credited" after two commits in all (the claim, this). A failing credit rolls
/// back only its savepoint: the payment stays recorded as done with its outbox row, and the worker
/// retries the credit.
///
/// # Errors
/// `Database` when the transaction itself fails (a failed credit is not an error here).
pub(super) async fn credit_at_confirm(
    tx: &mut PgConnection,
    payments: &Payments,
    order_id: &str,
) -> Result<(), PaymentError> {
    let row = lock_payment(&mut *tx, order_id)
        .await?
        .ok_or(PaymentError::OrderNotFound)?;
    let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
    match credit_pending_in_tx(&mut savepoint, payments, &row).await {
        Ok(true) => {
            savepoint.commit().await?;
            sqlx::query(
                "UPDATE payment_outbox SET completed_at = now(), attempts = attempts + 1 \
                 WHERE order_id = $1 AND kind = 'credit_charge' AND completed_at IS NULL",
            )
            .bind(order_id)
            .execute(&mut *tx)
            .await?;
        }
        Ok(false) => savepoint.commit().await?,
        Err(error) => {
            tracing::warn!(%error, "crediting at confirm failed; the outbox retries it");
            savepoint.rollback().await?;
            sqlx::query(
                "UPDATE payment_outbox SET attempts = attempts + 1, last_error = $2 \
                 WHERE order_id = $1 AND kind = 'credit_charge' AND completed_at IS NULL",
            )
            .bind(order_id)
            .bind(error.to_string())
            .execute(&mut *tx)
            .await?;
            payments.wake.notify_one();
        }
    }
    Ok(())
}

/// Credits the payment's points as a `charge` lot, in one transaction with the payment's new
/// state, the outbox row's completion and the user's notification.
pub(super) async fn credit_charge(
    payments: &Payments,
    id: i64,
    order_id: &str,
) -> Result<(), PaymentError> {
    let mut tx = payments.db.begin().await?;
    let row = lock_payment(&mut tx, order_id)
        .await?
        .ok_or(PaymentError::OrderNotFound)?;
    credit_pending_in_tx(&mut tx, payments, &row).await?;
    complete(&mut tx, id).await?;
    tx.commit().await?;
    // A cancel that arrived before the credit was deferred: its webhook is retried on its own.
    Ok(())
}

/// Credits a `pending` payment's points (the caller holds the payment's row lock): the lot, the
/// payment's new state and the user's notification. Does nothing for any other payment.
///
/// # Errors
/// `Ledger` or `Database` (the caller's transaction or savepoint must then roll back).
pub(super) async fn credit_pending_in_tx(
    conn: &mut PgConnection,
    payments: &Payments,
    row: &PaymentRow,
) -> Result<bool, PaymentError> {
    if row.points != PointsState::Pending {
        return Ok(false);
    }
    if payments.faults.take_credit_failure() {
        return Err(PaymentError::Ledger(ledger::LedgerError::Inconsistent(
            "injected credit failure (dev mode)",
        )));
    }
    let order_id = &row.order_id;
    let wallet = ledger::ensure_wallet_in_tx(conn, &row.user_id).await?;
    let receipt = ledger::credit_in_tx(
        conn,
        &Credit {
            key: IdempotencyKey::parse(&format!("charge:{order_id}"))?,
            wallet,
            from: ledger::system_account(SystemAccount::PaymentClearing),
            amount: super::points(row.amount)?,
            source: LotSource::Charge,
        },
    )
    .await?;
    let lot = receipt
        .lot
        .ok_or(ledger::LedgerError::Inconsistent("a credit made no lot"))?;
    sqlx::query(
        "UPDATE payments SET points = 'credited', charge_lot_id = $2, updated_at = now() \
         WHERE order_id = $1",
    )
    .bind(order_id)
    .bind(lot.0)
    .execute(&mut *conn)
    .await?;
    notifications::enqueue_in_tx(
        conn,
        &row.user_id,
        NotificationKind::PointsCredited,
        &serde_json::json!({ "order_id": order_id, "points": row.amount }),
        &format!("points-credited:{order_id}"),
    )
    .await?;
    Ok(true)
}

pub(super) async fn complete(conn: &mut PgConnection, id: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payment_outbox SET completed_at = now(), last_error = NULL WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The charge could never be credited: stop trying and give the money back instead.
pub(super) async fn give_up_crediting(
    db: &PgPool,
    id: i64,
    order_id: &str,
    error: &str,
) -> Result<(), sqlx::Error> {
    tracing::error!(
        order_id,
        error,
        "a charge could not be credited: compensating at Toss"
    );
    let mut tx = db.begin().await?;
    sqlx::query("UPDATE payment_outbox SET completed_at = now(), last_error = $2 WHERE id = $1")
        .bind(id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO payment_outbox (order_id, kind) VALUES ($1, 'compensate') \
         ON CONFLICT ON CONSTRAINT payment_outbox_once DO NOTHING",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
