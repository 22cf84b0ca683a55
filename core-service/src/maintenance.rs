//! The core's housekeeping loop: cancels shop orders past their deadline, releases holds past
//! their expiry and purges idempotency records,
//! expired sign-in rows and processed Toss webhooks past their retention. Safe with several
//! replicas running it at once (the hold sweep skips rows another replica has locked; the purges
//! delete by key), so every replica simply runs it.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::ledger::{purge_idempotency_records, release_expired_holds_in_tx};

/// How often the loop runs. Hold expiries are minutes to days; a minute's lateness in releasing
/// one only delays points becoming available again, never lets anything be spent twice (posting
/// an expired hold is refused on its own).
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);
/// Holds released per pass: one transaction each pass, short enough not to hold locks for long.
pub const EXPIRED_HOLDS_PER_PASS: i64 = 500;
/// Idempotency records purged per pass: one bounded DELETE.
pub const PURGED_RECORDS_PER_PASS: i64 = 5_000;

/// Runs one pass. Returns (holds released, records purged).
///
/// # Errors
/// When Postgres fails.
pub async fn run_once(db: &PgPool) -> Result<(u64, u64), crate::ledger::LedgerError> {
    // The shop's overdue tries first: their holds outlive their deadlines, so the shop returns
    // each try's unit and points together before the ledger's sweep could release the points
    // alone.
    match crate::shop::expire_overdue(db, crate::shop::EXPIRED_ORDERS_PER_PASS).await {
        Ok(expired) if expired > 0 => tracing::info!(expired, "overdue shop orders canceled"),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "shop order expiry failed"),
    }
    let mut tx = db.begin().await?;
    let released = release_expired_holds_in_tx(&mut tx, EXPIRED_HOLDS_PER_PASS).await?;
    tx.commit().await?;
    let mut conn = db.acquire().await?;
    let purged = purge_idempotency_records(&mut conn, PURGED_RECORDS_PER_PASS).await?;
    drop(conn);
    match crate::auth::purge_expired(db, PURGED_RECORDS_PER_PASS).await {
        Ok(removed) if removed > 0 => tracing::info!(removed, "expired sign-in rows purged"),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "sign-in purge failed"),
    }
    match crate::payments::worker::purge_processed_webhooks(db, PURGED_RECORDS_PER_PASS).await {
        Ok(removed) if removed > 0 => tracing::info!(removed, "processed webhooks purged"),
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "webhook purge failed"),
    }
    Ok((released, purged))
}

/// Runs until `stop` (a pass in hand finishes: three bounded statements), logging how each pass
/// and the loop ended.
pub async fn run(db: PgPool, stop: CancellationToken) {
    let mut interval = tokio::time::interval(MAINTENANCE_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = interval.tick() => {}
        }
        match run_once(&db).await {
            Ok((released, purged)) => {
                tracing::info!(released, purged, "maintenance pass done");
            }
            Err(error) => tracing::error!(%error, "maintenance pass failed"),
        }
    }
    tracing::info!("maintenance stopped");
}
