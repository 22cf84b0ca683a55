//! The payment path's background work, run from Postgres at our own pace:
//! - the outbox: credit each done payment's points (with retries), or cancel at Toss a charge that
//!   can never be credited;
//! - the reconciler: ask Toss about payments whose confirm outcome is unknown;
//! - webhooks: verify each stored webhook by re-fetching the payment, then apply it;
//! - refunds whose Toss answer was lost: ask again with the same key.
//!
//! Every piece of work is claimed with a lease (`FOR UPDATE SKIP LOCKED`, then `next_attempt_at`
//! moved past the lease) and committed in its own transaction, so several core instances can run
//! this loop at once: each row is worked by one of them at a time, and a crashed claimant's rows
//! come back when the lease ends.
//!
//! Stopping (SIGTERM): the loop claims nothing more, finishes the item in hand, and gives back at
//! once the rows of its batch it has not started (their lease and attempt undone), so another
//! replica takes them without waiting for the lease. An item whose Toss call was under way when
//! the process had to go keeps its lease: only the lease's end guarantees that call is over.

use std::time::Duration;

use sqlx::{PgPool, types::time::OffsetDateTime};
use tokio_util::sync::CancellationToken;

pub use super::claims::WORK_BATCH_MAX;
use super::{
    Applied, PaymentError, PaymentRow, PaymentState, Payments, PointsState, apply_toss_state,
    claims::{Unstarted, give_back_logged},
    confirm_key,
    credit::{complete, credit_charge, give_up_crediting},
    lease_ms, lock_payment, refund, retry_delay_ms,
    toss::{CancelAmount, TossError, TossStatus},
};
use crate::notifications::{self, NotificationKind};

/// How often the loop looks for due work when nobody woke it.
pub const WORKER_INTERVAL: Duration = Duration::from_millis(250);
/// Webhooks are given up after this many attempts (about a day with the default delays); the
/// reconciler and Toss's own redeliveries still cover the payment.
pub const WEBHOOK_ATTEMPTS_MAX: i32 = 30;
/// A payment Toss has authorised but not confirmed is confirmed again at most this many times;
/// after that the authorisation lapses at Toss and no money is taken.
pub const CONFIRM_ATTEMPTS_MAX: i32 = 10;
/// Virtual-account payments waiting for a deposit are looked up this often in case the deposit
/// callback never arrives.
pub const DEPOSIT_POLL_INTERVAL: Duration = Duration::from_secs(600);

/// Runs the payment work until `stop`, logging each pass that did something or failed, and how
/// the loop ended.
pub async fn run(payments: Payments, stop: CancellationToken) {
    while !stop.is_cancelled() {
        match run_once_until(&payments, &stop).await {
            Ok(done) if done > 0 => tracing::info!(done, "payment work pass"),
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "payment work pass failed"),
        }
        tokio::select! {
            () = stop.cancelled() => {}
            _ = tokio::time::timeout(WORKER_INTERVAL, payments.wake.notified()) => {}
        }
    }
    tracing::info!(
        "payment worker stopped: its item in hand finished, unstarted claims given back"
    );
}

/// One pass of every kind of work. Returns how many items it finished.
///
/// # Errors
/// When Postgres fails.
pub async fn run_once(payments: &Payments) -> Result<u64, PaymentError> {
    run_once_until(payments, &CancellationToken::new()).await
}

/// [`run_once`], stopping between items once `stop` is cancelled: the item in hand finishes, the
/// rest of each claimed batch is given back (`claims::give_back`) and no further kind is claimed.
///
/// # Errors
/// When Postgres fails.
pub async fn run_once_until(
    payments: &Payments,
    stop: &CancellationToken,
) -> Result<u64, PaymentError> {
    let mut done = outbox_once(payments, stop).await?;
    if !stop.is_cancelled() {
        done += webhooks_once(payments, stop).await?;
    }
    if !stop.is_cancelled() {
        done += reconcile_once(payments, stop).await?;
    }
    if !stop.is_cancelled() {
        done += refund::resolve_once(payments, stop).await?;
    }
    Ok(done)
}

// --- outbox ----------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::Type)]
#[sqlx(type_name = "payment_outbox_kind", rename_all = "snake_case")]
enum OutboxKind {
    CreditCharge,
    Compensate,
}

/// Credits a just-confirmed payment's points at once, if its outbox row is free; on any failure
/// the row stays for the worker.
pub async fn credit_charge_now(payments: &Payments, order_id: &str) {
    let claimed: Result<Option<(i64, i32)>, sqlx::Error> = sqlx::query_as(
        "UPDATE payment_outbox SET attempts = attempts + 1, \
             next_attempt_at = now() + make_interval(secs => $2::float8 / 1000) \
         WHERE id = (SELECT id FROM payment_outbox WHERE order_id = $1 AND kind = 'credit_charge' \
                     AND completed_at IS NULL AND next_attempt_at <= now() \
                     FOR UPDATE SKIP LOCKED) \
         RETURNING id, attempts",
    )
    .bind(order_id)
    .bind(lease_ms(payments))
    .fetch_optional(&payments.db)
    .await;
    match claimed {
        Ok(Some((id, attempts))) => {
            work_outbox_row(payments, id, order_id, OutboxKind::CreditCharge, attempts).await;
        }
        Ok(None) => {}
        Err(error) => tracing::warn!(%error, order_id, "could not claim the charge credit"),
    }
}

async fn outbox_once(payments: &Payments, stop: &CancellationToken) -> Result<u64, PaymentError> {
    let rows: Vec<(i64, String, OutboxKind, i32, OffsetDateTime)> = sqlx::query_as(
        "UPDATE payment_outbox SET attempts = attempts + 1, \
             next_attempt_at = now() + make_interval(secs => $2::float8 / 1000) \
         WHERE id IN (SELECT id FROM payment_outbox WHERE completed_at IS NULL \
                      AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1 \
                      FOR UPDATE SKIP LOCKED) \
         RETURNING id, order_id, kind, attempts, next_attempt_at",
    )
    .bind(WORK_BATCH_MAX)
    .bind(lease_ms(payments))
    .fetch_all(&payments.db)
    .await?;
    let mut done = 0;
    for (index, (id, order_id, kind, attempts, _)) in rows.iter().enumerate() {
        if stop.is_cancelled() {
            let ids: Vec<i64> = rows[index..].iter().map(|row| row.0).collect();
            give_back_logged(&payments.db, Unstarted::Outbox(&ids), rows[index].4).await;
            break;
        }
        if work_outbox_row(payments, *id, order_id, *kind, *attempts).await {
            done += 1;
        }
    }
    Ok(done)
}

/// Works one claimed outbox row; returns whether it is complete.
async fn work_outbox_row(
    payments: &Payments,
    id: i64,
    order_id: &str,
    kind: OutboxKind,
    attempts: i32,
) -> bool {
    let outcome = match kind {
        OutboxKind::CreditCharge => credit_charge(payments, id, order_id).await,
        OutboxKind::Compensate => compensate(payments, id, order_id).await,
    };
    match outcome {
        Ok(()) => true,
        Err(error) => {
            let give_up = kind == OutboxKind::CreditCharge
                && u32::try_from(attempts).unwrap_or(u32::MAX)
                    >= payments.settings.credit_attempts_max;
            tracing::warn!(%error, order_id, attempts, give_up, ?kind, "outbox work failed");
            let recorded = if give_up {
                give_up_crediting(&payments.db, id, order_id, &error.to_string()).await
            } else {
                retry_later(payments, "payment_outbox", id, attempts, &error.to_string()).await
            };
            if let Err(error) = recorded {
                tracing::error!(%error, order_id, "could not record an outbox failure");
            }
            false
        }
    }
}

async fn retry_later(
    payments: &Payments,
    table: &'static str,
    id: i64,
    attempts: i32,
    error: &str,
) -> Result<(), sqlx::Error> {
    let column = if table == "toss_webhooks" {
        "outcome"
    } else {
        "last_error"
    };
    sqlx::query(&format!(
        "UPDATE {table} SET {column} = $2, \
             next_attempt_at = now() + make_interval(secs => $3::float8 / 1000) WHERE id = $1"
    ))
    .bind(id)
    .bind(error)
    .bind(retry_delay_ms(payments, attempts))
    .execute(&payments.db)
    .await?;
    Ok(())
}

/// Cancels at Toss the whole of a payment whose points could never be credited (or that Toss
/// approved for another amount than its order's), and tells the user. The cancel names no amount:
/// Toss gives back whatever the payment holds, so nothing of the customer's stays charged even
/// when Toss's amount is not ours.
async fn compensate(payments: &Payments, id: i64, order_id: &str) -> Result<(), PaymentError> {
    let row: PaymentRow = {
        let mut tx = payments.db.begin().await?;
        let row = lock_payment(&mut tx, order_id)
            .await?
            .ok_or(PaymentError::OrderNotFound)?;
        tx.commit().await?;
        row
    };
    if row.points == PointsState::Credited {
        // The credit went through after all (a retry raced the give-up): nothing to give back.
        let mut tx = payments.db.begin().await?;
        complete(&mut tx, id).await?;
        tx.commit().await?;
        return Ok(());
    }
    let amount_mismatch: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM payment_flags \
                        WHERE order_id = $1 AND kind = 'amount_mismatch')",
    )
    .bind(order_id)
    .fetch_one(&payments.db)
    .await?;
    let (reason, cancel_reason) = if amount_mismatch {
        (
            "amount_mismatch",
            "주문 금액과 결제 금액이 달라 결제를 취소합니다 (the amount is not the order's)",
        )
    } else {
        (
            "points_could_not_be_credited",
            "포인트 적립 실패로 결제를 취소합니다 (points could not be credited)",
        )
    };
    let answer = payments
        .toss
        .cancel(
            &row.payment_key,
            CancelAmount::Balance,
            cancel_reason,
            &format!("compensate:{order_id}"),
        )
        .await;
    let canceled_amount = match answer {
        Ok(canceled) => canceled.canceled_amount(),
        Err(TossError::Refused { code, .. }) if code == "ALREADY_CANCELED_PAYMENT" => row.amount,
        Err(error) => return Err(error.into()),
    };
    let mut tx = payments.db.begin().await?;
    sqlx::query(
        "UPDATE payments SET points = 'compensated', canceled_accounted = amount, \
             toss_status = 'CANCELED', updated_at = now() \
         WHERE order_id = $1 AND points IN ('pending', 'none')",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?;
    notifications::enqueue_in_tx(
        &mut tx,
        &row.user_id,
        NotificationKind::PaymentCanceled,
        &serde_json::json!({
            "order_id": order_id,
            "canceled_amount": canceled_amount,
            "reason": reason,
        }),
        &format!("payment-compensated:{order_id}"),
    )
    .await?;
    complete(&mut tx, id).await?;
    tx.commit().await?;
    Ok(())
}

// --- reconciler ------------------------------------------------------------------------------

/// Asks Toss about payments whose confirm outcome has been unknown for longer than a lease, and
/// about virtual accounts still waiting for their deposit.
async fn reconcile_once(
    payments: &Payments,
    stop: &CancellationToken,
) -> Result<u64, PaymentError> {
    // The claim is `updated_at = now()`; the value before it is kept, to be restored if a stopping
    // worker gives the row back unstarted.
    let stale: Vec<ClaimedStale> = sqlx::query_as(
        "UPDATE payments p SET updated_at = now() \
             FROM (SELECT order_id, updated_at FROM payments \
                 WHERE (state = 'confirming' \
                        AND updated_at < now() - make_interval(secs => $2::float8 / 1000)) \
                    OR (state = 'waiting_for_deposit' \
                        AND updated_at < now() - make_interval(secs => $3::float8)) \
                 ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED) AS prior \
             WHERE p.order_id = prior.order_id \
             RETURNING p.order_id, p.payment_key, p.amount, p.confirm_attempts, p.state, \
                 prior.updated_at, p.updated_at",
    )
    .bind(WORK_BATCH_MAX)
    .bind(lease_ms(payments))
    .bind(DEPOSIT_POLL_INTERVAL.as_secs_f64())
    .fetch_all(&payments.db)
    .await?;
    let mut done = 0;
    for (index, (order_id, payment_key, amount, attempts, state, _, _)) in stale.iter().enumerate()
    {
        if stop.is_cancelled() {
            let rows: Vec<(String, OffsetDateTime)> = stale[index..]
                .iter()
                .map(|row| (row.0.clone(), row.5))
                .collect();
            give_back_logged(
                &payments.db,
                Unstarted::Reconciliations(&rows),
                stale[index].6,
            )
            .await;
            break;
        }
        let stale = Stale {
            order_id,
            payment_key,
            amount: *amount,
            attempts: *attempts,
            state: *state,
        };
        match reconcile(payments, &stale).await {
            Ok(true) => done += 1,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, order_id, "reconciliation failed; will retry"),
        }
    }
    Ok(done)
}

/// A row of the reconciler's claim: order, payment key, amount, confirm attempts, state, the
/// `updated_at` before the claim and the one the claim set (its lease).
type ClaimedStale = (
    String,
    String,
    i64,
    i32,
    PaymentState,
    OffsetDateTime,
    OffsetDateTime,
);

/// A payment the reconciler claimed.
struct Stale<'a> {
    order_id: &'a str,
    payment_key: &'a str,
    /// The order's amount: the only amount we ever confirm.
    amount: i64,
    attempts: i32,
    state: PaymentState,
}

async fn reconcile(payments: &Payments, stale: &Stale<'_>) -> Result<bool, PaymentError> {
    let Stale {
        order_id,
        payment_key,
        amount,
        attempts,
        state,
    } = *stale;
    let found = payments.toss.payment_by_order(order_id).await?;
    let Some(toss_payment) = found else {
        if state == PaymentState::Confirming {
            // Toss has no payment for this order at all: nothing was taken.
            tracing::info!(order_id, "toss has no such payment: the confirm failed");
            sqlx::query!(
                "UPDATE payments SET state = 'failed', failure_code = 'NOT_FOUND_PAYMENT' \
                 WHERE order_id = $1 AND state = 'confirming'",
                order_id,
            )
            .execute(&payments.db)
            .await?;
            return Ok(true);
        }
        return Ok(false);
    };
    let authorised_only = matches!(
        toss_payment.status,
        TossStatus::Ready | TossStatus::InProgress
    );
    if authorised_only && state == PaymentState::Confirming {
        if attempts >= CONFIRM_ATTEMPTS_MAX {
            sqlx::query!(
                "UPDATE payments SET state = 'failed', failure_code = 'CONFIRM_ATTEMPTS_EXHAUSTED' \
                 WHERE order_id = $1 AND state = 'confirming'",
                order_id,
            )
            .execute(&payments.db)
            .await?;
            return Ok(true);
        }
        if toss_payment.total_amount != amount {
            // The customer authorised another amount than the order's (the widget runs in their
            // browser). Confirming Toss's amount would charge it for the order's points; ours
            // would be refused. Nothing is charged until a confirm: do not confirm at all.
            refuse_authorised_amount(payments, order_id, toss_payment.total_amount, amount).await?;
            return Ok(true);
        }
        // Our confirm never reached Toss: send it again, with the same key and the order's amount.
        sqlx::query(
            "UPDATE payments SET confirm_attempts = confirm_attempts + 1 WHERE order_id = $1",
        )
        .bind(order_id)
        .execute(&payments.db)
        .await?;
        let answer = payments
            .toss
            .confirm(payment_key, order_id, amount, &confirm_key(order_id))
            .await;
        return match answer {
            Ok(confirmed) => apply_locked(payments, order_id, &confirmed).await,
            Err(TossError::Refused { code, .. }) if code != "ALREADY_PROCESSED_PAYMENT" => {
                sqlx::query!(
                    "UPDATE payments SET state = 'failed', failure_code = $2 \
                     WHERE order_id = $1 AND state = 'confirming'",
                    order_id,
                    code,
                )
                .execute(&payments.db)
                .await?;
                Ok(true)
            }
            Err(_) => Ok(false),
        };
    }
    apply_locked(payments, order_id, &toss_payment).await
}

/// A payment Toss authorised for `authorised` while its order is for `ordered`: failed without a
/// confirm (so nothing is ever charged), flagged for an operator, logged.
async fn refuse_authorised_amount(
    payments: &Payments,
    order_id: &str,
    authorised: i64,
    ordered: i64,
) -> Result<(), PaymentError> {
    tracing::error!(
        order_id,
        authorised,
        ordered,
        "toss authorised another amount than the order: not confirmed, flagged"
    );
    let mut tx = payments.db.begin().await?;
    let failed = sqlx::query(
        "UPDATE payments SET state = 'failed', failure_code = 'AMOUNT_MISMATCH', \
             updated_at = now() \
         WHERE order_id = $1 AND state = 'confirming'",
    )
    .bind(order_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if failed == 1 {
        super::flag_amount_mismatch(
            &mut tx,
            order_id,
            authorised,
            "Toss authorised another amount than the order's: not confirmed",
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Applies Toss's view under the payment's lock, then credits at once if that made it due.
async fn apply_locked(
    payments: &Payments,
    order_id: &str,
    toss_payment: &super::toss::TossPayment,
) -> Result<bool, PaymentError> {
    let mut tx = payments.db.begin().await?;
    let Some(row) = lock_payment(&mut tx, order_id).await? else {
        return Ok(false);
    };
    let applied = apply_toss_state(&mut tx, &row, toss_payment).await?;
    tx.commit().await?;
    credit_charge_now(payments, order_id).await;
    Ok(applied == Applied::Changed)
}

// --- webhooks --------------------------------------------------------------------------------

/// Webhooks make us read a payment from Toss at most once per this interval, however many name
/// it. Toss sends a handful of events per change; a flood of replayed or forged ones (anyone who
/// knows their own order id can send them) must not become a flood of reads, which Toss limits
/// per merchant. A webhook's effect waits at most this long, and nobody waits on it: the confirm
/// answers the user itself.
pub const WEBHOOK_READ_INTERVAL: Duration = Duration::from_secs(5);
/// Processed webhooks are kept this long for operators (longer than Toss's whole redelivery
/// schedule of about four days), then the maintenance loop deletes them.
pub const WEBHOOK_RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

const _: () = assert!(WEBHOOK_READ_INTERVAL.as_secs() < WEBHOOK_RETENTION.as_secs());

/// Works stored webhooks. A webhook is only a hint (it was checked at the door to name one of our
/// payments, see [`super::webhook`]): the payment is read from Toss by the payment key we
/// recorded, and Toss's answer is applied. Forged, replayed or reordered webhooks therefore change
/// nothing that Toss's own state does not.
///
/// The claim takes a row only if its payment was not read for a webhook within
/// [`WEBHOOK_READ_INTERVAL`], and records the read in the same statement: with one pending row
/// per payment, that bounds the reads per payment across every replica.
async fn webhooks_once(payments: &Payments, stop: &CancellationToken) -> Result<u64, PaymentError> {
    let rows: Vec<(i64, String, i32, OffsetDateTime)> = sqlx::query_as(
        "WITH claimed AS ( \
             UPDATE toss_webhooks SET attempts = attempts + 1, rearmed = false, \
                 next_attempt_at = now() + make_interval(secs => $2::float8 / 1000) \
             WHERE id IN (SELECT w.id FROM toss_webhooks w JOIN payments p USING (order_id) \
                          WHERE w.processed_at IS NULL AND w.next_attempt_at <= now() \
                            AND (p.webhook_read_at IS NULL \
                                 OR p.webhook_read_at <= now() - make_interval(secs => $3)) \
                          ORDER BY w.id LIMIT $1 FOR UPDATE OF w SKIP LOCKED) \
             RETURNING id, order_id, attempts, next_attempt_at), \
         read AS ( \
             UPDATE payments p SET webhook_read_at = now() \
             FROM claimed WHERE p.order_id = claimed.order_id) \
         SELECT id, order_id::text, attempts, next_attempt_at FROM claimed",
    )
    .bind(WORK_BATCH_MAX)
    .bind(lease_ms(payments))
    .bind(WEBHOOK_READ_INTERVAL.as_secs_f64())
    .fetch_all(&payments.db)
    .await?;
    let mut done = 0;
    for (index, (id, order_id, attempts, _)) in rows.iter().enumerate() {
        if stop.is_cancelled() {
            // The payment's read is counted as done (`webhook_read_at`): the next claim of these
            // waits out WEBHOOK_READ_INTERVAL at most, far less than the lease.
            let ids: Vec<i64> = rows[index..].iter().map(|row| row.0).collect();
            give_back_logged(&payments.db, Unstarted::Webhooks(&ids), rows[index].3).await;
            break;
        }
        let (id, attempts) = (*id, *attempts);
        let outcome = apply_webhook(payments, order_id).await;
        let finished = match &outcome {
            Ok(WebhookOutcome::Retry(reason)) if attempts < WEBHOOK_ATTEMPTS_MAX => {
                retry_later(payments, "toss_webhooks", id, attempts, reason).await?;
                false
            }
            Err(error) if attempts < WEBHOOK_ATTEMPTS_MAX => {
                retry_later(payments, "toss_webhooks", id, attempts, &error.to_string()).await?;
                false
            }
            _ => true,
        };
        if finished {
            let label = match &outcome {
                Ok(outcome) => outcome.label().to_owned(),
                Err(error) => format!("gave up: {error}"),
            };
            if finish_webhook(&payments.db, id, &label).await? {
                done += 1;
            }
        }
    }
    Ok(done)
}

/// Marks a worked webhook processed, unless another event for its payment merged into it while
/// it was worked: then it stays pending for one more read (the claim waits out the interval).
/// Returns whether it is processed.
async fn finish_webhook(db: &PgPool, id: i64, label: &str) -> Result<bool, sqlx::Error> {
    let processed = sqlx::query(
        "UPDATE toss_webhooks SET processed_at = now(), outcome = $2 WHERE id = $1 AND NOT rearmed",
    )
    .bind(id)
    .bind(label)
    .execute(db)
    .await?
    .rows_affected()
        == 1;
    if !processed {
        sqlx::query!(
            "UPDATE toss_webhooks SET attempts = 0, outcome = $2, next_attempt_at = now() \
             WHERE id = $1",
            id,
            format!("{label}; rearmed by a later event"),
        )
        .execute(db)
        .await?;
    }
    Ok(processed)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum WebhookOutcome {
    Applied,
    Unchanged,
    Ignored(&'static str),
    Retry(&'static str),
}

impl WebhookOutcome {
    fn label(&self) -> &'static str {
        match self {
            WebhookOutcome::Applied => "applied",
            WebhookOutcome::Unchanged => "unchanged",
            WebhookOutcome::Ignored(reason) | WebhookOutcome::Retry(reason) => reason,
        }
    }
}

async fn apply_webhook(
    payments: &Payments,
    order_id: &str,
) -> Result<WebhookOutcome, PaymentError> {
    let payment_key: Option<String> =
        sqlx::query_scalar("SELECT payment_key FROM payments WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&payments.db)
            .await?;
    let Some(payment_key) = payment_key else {
        return Ok(WebhookOutcome::Ignored("ignored: unknown order"));
    };
    // One attempt: a failure is retried with this row's backoff, which the read interval bounds.
    let Some(toss_payment) = payments.toss.payment_read_once(&payment_key).await? else {
        return Ok(WebhookOutcome::Ignored("ignored: toss has no such payment"));
    };
    let mut tx = payments.db.begin().await?;
    let Some(row) = lock_payment(&mut tx, order_id).await? else {
        return Ok(WebhookOutcome::Ignored("ignored: unknown order"));
    };
    let applied = apply_toss_state(&mut tx, &row, &toss_payment).await?;
    tx.commit().await?;
    credit_charge_now(payments, order_id).await;
    Ok(match applied {
        Applied::Changed => WebhookOutcome::Applied,
        Applied::AmountMismatch => {
            WebhookOutcome::Ignored("flagged: toss's amount is not the order's")
        }
        Applied::Nothing => WebhookOutcome::Unchanged,
        Applied::Deferred => WebhookOutcome::Retry("deferred: points not credited yet"),
        Applied::Mismatch => WebhookOutcome::Ignored("ignored: toss names another payment"),
    })
}

/// Deletes up to `limit` webhooks processed more than [`WEBHOOK_RETENTION`] ago (the maintenance
/// loop's job). Pending ones are never deleted.
///
/// # Errors
/// When Postgres fails.
pub async fn purge_processed_webhooks(db: &PgPool, limit: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM toss_webhooks WHERE id IN ( \
             SELECT id FROM toss_webhooks \
             WHERE processed_at IS NOT NULL \
               AND processed_at < now() - make_interval(secs => $1) \
             ORDER BY processed_at LIMIT $2)",
    )
    .bind(WEBHOOK_RETENTION.as_secs_f64())
    .bind(limit)
    .execute(db)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payments::{PaymentSettings, claims::give_back, toss::TossConfig};

    fn payments(db: PgPool) -> Payments {
        Payments::new(
            db,
            &TossConfig {
                // Nothing listens on the discard port: nothing here may reach Toss.
                base_url: "http://127.0.0.1:9".to_owned(),
                secret_key: "test_sk_unused".to_owned(),
                timeout: Duration::from_secs(1),
                tls: crate::tls::Trust::public_roots(),
            },
            PaymentSettings::fast(),
        )
        .unwrap()
    }

    /// A payment whose confirm has been unknown for an hour; returns its `updated_at`.
    async fn payment_confirming_since_an_hour(
        db: &PgPool,
        order_id: &str,
    ) -> Result<OffsetDateTime, sqlx::Error> {
        sqlx::query(
            "INSERT INTO payment_orders (order_id, user_id, amount, order_name) \
             VALUES ($1, 'u', 10000, 'points')",
        )
        .bind(order_id)
        .execute(db)
        .await?;
        sqlx::query_scalar(
            "INSERT INTO payments (order_id, user_id, payment_key, amount, updated_at) \
             VALUES ($1, 'u', 'key_' || $1, 10000, now() - interval '1 hour') \
             RETURNING updated_at",
        )
        .bind(order_id)
        .fetch_one(db)
        .await
    }

    fn stopped() -> CancellationToken {
        let stop = CancellationToken::new();
        stop.cancel();
        stop
    }

    #[sqlx::test(migrations = "./migrations")]
    async fn a_stopping_reconciler_gives_a_payment_back_with_its_old_updated_at(db: PgPool) {
        let before = payment_confirming_since_an_hour(&db, "order_stale_1")
            .await
            .unwrap();
        let payments = payments(db.clone());
        assert_eq!(reconcile_once(&payments, &stopped()).await.unwrap(), 0);
        let after: OffsetDateTime =
            sqlx::query_scalar("SELECT updated_at FROM payments WHERE order_id = 'order_stale_1'")
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!(
            after, before,
            "due for the next reconciler at once, as before the claim"
        );
    }

    #[sqlx::test(migrations = "./migrations")]
    async fn a_stopping_worker_gives_a_webhook_back_unless_someone_else_holds_it(db: PgPool) {
        payment_confirming_since_an_hour(&db, "order_hooked_1")
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO toss_webhooks (order_id, event_type, body) \
             VALUES ('order_hooked_1', 'PAYMENT_STATUS_CHANGED', '{}')",
        )
        .execute(&db)
        .await
        .unwrap();
        let payments = payments(db.clone());
        assert_eq!(webhooks_once(&payments, &stopped()).await.unwrap(), 0);
        let (attempts, due): (i32, bool) =
            sqlx::query_as("SELECT attempts, next_attempt_at <= now() FROM toss_webhooks")
                .fetch_one(&db)
                .await
                .unwrap();
        assert_eq!((attempts, due), (0, true));
        // A give-back naming another lease than the row's (the row was taken over since) does
        // nothing.
        let id: i64 = sqlx::query_scalar("SELECT id FROM toss_webhooks")
            .fetch_one(&db)
            .await
            .unwrap();
        let another_lease = OffsetDateTime::UNIX_EPOCH;
        let given = give_back(&db, Unstarted::Webhooks(&[id]), another_lease)
            .await
            .unwrap();
        assert_eq!(given, 0);
    }
}
