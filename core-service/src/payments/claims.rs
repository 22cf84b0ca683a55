//! Claimed payment work that a stopping worker gives back. Every background pass (the outbox, the
//! reconciler, webhooks, refunds) claims a batch with a lease; one interrupted by a stop gives
//! back at once the rows it never started, so another replica takes them without waiting for the
//! lease.

use sqlx::{PgPool, types::time::OffsetDateTime};

/// Rows claimed per kind of work per pass: bounds one pass's duration and its share of the pool.
pub const WORK_BATCH_MAX: i64 = 100;

/// Claimed work a stopping worker never started.
#[derive(Debug)]
pub(super) enum Unstarted<'a> {
    /// Outbox rows: their claim counted an attempt, which is undone.
    Outbox(&'a [i64]),
    /// Stored webhooks: likewise.
    Webhooks(&'a [i64]),
    /// Refunds whose Toss answer was lost (the claim counts no attempt).
    Refunds(&'a [uuid::Uuid]),
    /// Payments the reconciler took, with the `updated_at` each had before (its claim).
    Reconciliations(&'a [(String, OffsetDateTime)]),
}

/// Gives back rows that one claim (`claimed_until`: the lease it set, one value for the whole
/// batch) took and the worker never started: due at once, as before the claim. A row whose lease
/// is no longer `claimed_until` was taken over or worked since, and is left alone.
///
/// # Errors
/// When Postgres fails (the rows then come back when their lease ends).
pub(super) async fn give_back(
    db: &PgPool,
    unstarted: Unstarted<'_>,
    claimed_until: OffsetDateTime,
) -> Result<u64, sqlx::Error> {
    let given = match unstarted {
        Unstarted::Outbox(ids) => sqlx::query(
            "UPDATE payment_outbox SET attempts = attempts - 1, next_attempt_at = now() \
                 WHERE id = ANY($1) AND completed_at IS NULL AND next_attempt_at = $2",
        )
        .bind(ids)
        .bind(claimed_until)
        .execute(db)
        .await?
        .rows_affected(),
        Unstarted::Webhooks(ids) => sqlx::query(
            "UPDATE toss_webhooks SET attempts = attempts - 1, next_attempt_at = now() \
                 WHERE id = ANY($1) AND processed_at IS NULL AND next_attempt_at = $2",
        )
        .bind(ids)
        .bind(claimed_until)
        .execute(db)
        .await?
        .rows_affected(),
        Unstarted::Refunds(ids) => sqlx::query(
            "UPDATE payment_refunds SET next_attempt_at = now() \
                 WHERE id = ANY($1) AND state = 'requested' AND next_attempt_at = $2",
        )
        .bind(ids)
        .bind(claimed_until)
        .execute(db)
        .await?
        .rows_affected(),
        Unstarted::Reconciliations(rows) => {
            let (orders, before): (Vec<&str>, Vec<OffsetDateTime>) = rows
                .iter()
                .map(|(order, before)| (order.as_str(), *before))
                .unzip();
            sqlx::query(
                "UPDATE payments p SET updated_at = g.prior \
                 FROM UNNEST($1::text[], $2::timestamptz[]) AS g(order_id, prior) \
                 WHERE p.order_id = g.order_id AND p.updated_at = $3",
            )
            .bind(&orders)
            .bind(&before)
            .bind(claimed_until)
            .execute(db)
            .await?
            .rows_affected()
        }
    };
    Ok(given)
}

/// Called when `stop` interrupted a batch: gives back what was not started and logs it.
pub(super) async fn give_back_logged(
    db: &PgPool,
    unstarted: Unstarted<'_>,
    claimed_until: OffsetDateTime,
) {
    let what = format!("{unstarted:?}");
    match give_back(db, unstarted, claimed_until).await {
        Ok(given) => tracing::info!(given, "stopping: unstarted payment work given back"),
        Err(error) => tracing::warn!(
            %error,
            what,
            "stopping: could not give back unstarted payment work; it returns when its lease ends"
        ),
    }
}
