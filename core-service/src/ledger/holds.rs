//! Holds: points reserved in a wallet (still in it, no longer available) until they are posted
//! (debited) or released — by the caller, or by their expiry.

use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use super::{
    idempotency,
    ops::{consume_lots, database_error, points, positive, require_not_wallet, wallet_exists},
    types::*,
};

/// Longest a hold may be set for: a hold exists to bridge a confirmation with a partner, which
/// takes seconds; a week is ample for any retry and keeps forgotten holds from locking points.
pub const HOLD_EXPIRY_SECONDS_MAX: i64 = 7 * 24 * 3_600;

/// # Errors
/// See [`hold_in_tx`].
pub async fn hold(db: &PgPool, request: &Hold) -> Result<HoldReceipt, LedgerError> {
    standalone!(db, hold_in_tx, request)
}

/// Reserves points of a wallet: they stay in the wallet but are no longer available.
///
/// # Errors
/// `InsufficientPoints` when the available balance is short; `InvalidRequest` for a zero amount or
/// an expiry outside 1 s – [`HOLD_EXPIRY_SECONDS_MAX`]; `NotFound`, `IdempotencyKeyReused`.
pub async fn hold_in_tx(
    conn: &mut PgConnection,
    request: &Hold,
) -> Result<HoldReceipt, LedgerError> {
    idempotent!(conn, "hold", request, |c| apply_hold(c, request))
}

async fn apply_hold(conn: &mut PgConnection, request: &Hold) -> Result<HoldReceipt, LedgerError> {
    let amount = positive(request.amount)?;
    if !(1..=HOLD_EXPIRY_SECONDS_MAX).contains(&request.expires_in_seconds) {
        return Err(LedgerError::InvalidRequest(
            "a hold expires within 1 s and 7 days",
        ));
    }
    let updated = sqlx::query(
        "UPDATE ledger_wallets SET held = held + $2 \
         WHERE account_id = $1 AND balance - held >= $2",
    )
    .bind(request.wallet)
    .bind(amount)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(if wallet_exists(conn, request.wallet).await? {
            LedgerError::InsufficientPoints
        } else {
            LedgerError::NotFound("wallet")
        });
    }
    let hold = HoldId(Uuid::now_v7());
    sqlx::query(
        "INSERT INTO ledger_holds (id, idempotency_key, wallet_id, amount, expires_at) \
         VALUES ($1, $2, $3, $4, platform_now() + make_interval(secs => $5))",
    )
    .bind(hold)
    .bind(request.key.as_str())
    .bind(request.wallet)
    .bind(amount)
    .bind(request.expires_in_seconds as f64)
    .execute(conn)
    .await
    .map_err(database_error)?;
    Ok(HoldReceipt {
        hold,
        wallet: request.wallet,
        amount: request.amount,
        state: HoldState::Pending,
        debit: None,
    })
}

/// A pending hold, locked for resolution.
struct LockedHold {
    wallet: AccountId,
    amount: i64,
}

async fn lock_pending_hold(
    conn: &mut PgConnection,
    hold: HoldId,
    refuse_expired: bool,
) -> Result<LockedHold, LedgerError> {
    let row: Option<(Uuid, i64, HoldState, bool)> = sqlx::query_as(
        "SELECT wallet_id, amount, state, expires_at <= platform_now() \
         FROM ledger_holds WHERE id = $1 FOR UPDATE",
    )
    .bind(hold)
    .fetch_optional(&mut *conn)
    .await?;
    let (wallet, amount, state, expired) = row.ok_or(LedgerError::NotFound("hold"))?;
    if state != HoldState::Pending {
        return Err(LedgerError::HoldNotPending(state));
    }
    if refuse_expired && expired {
        return Err(LedgerError::HoldExpired);
    }
    Ok(LockedHold {
        wallet: AccountId(wallet),
        amount,
    })
}

/// # Errors
/// See [`post_hold_in_tx`].
pub async fn post_hold(db: &PgPool, request: &PostHold) -> Result<HoldReceipt, LedgerError> {
    standalone!(db, post_hold_in_tx, request)
}

/// Turns `amount` (at most what is held) of a pending hold into a debit to `to`, oldest lots
/// first; the rest of the hold is released. A hold is posted or released at most once.
///
/// # Errors
/// `ExceedsHold`, `HoldExpired`, `HoldNotPending`, `NotFound`, `InvalidRequest`,
/// `IdempotencyKeyReused`.
pub async fn post_hold_in_tx(
    conn: &mut PgConnection,
    request: &PostHold,
) -> Result<HoldReceipt, LedgerError> {
    idempotent!(conn, "post_hold", request, |c| apply_post_hold(c, request))
}

async fn apply_post_hold(
    conn: &mut PgConnection,
    request: &PostHold,
) -> Result<HoldReceipt, LedgerError> {
    let amount = positive(request.amount)?;
    require_not_wallet(conn, request.to).await?;
    let hold = lock_pending_hold(conn, request.hold, true).await?;
    if amount > hold.amount {
        return Err(LedgerError::ExceedsHold);
    }
    let balance: i64 = sqlx::query_scalar(
        "UPDATE ledger_wallets SET balance = balance - $2, held = held - $3 \
         WHERE account_id = $1 RETURNING balance",
    )
    .bind(hold.wallet)
    .bind(amount)
    .bind(hold.amount)
    .fetch_one(&mut *conn)
    .await?;
    let debit = consume_lots(
        conn,
        &request.key,
        hold.wallet,
        request.to,
        amount,
        balance,
        Some(request.hold),
    )
    .await?;
    sqlx::query(
        "UPDATE ledger_holds SET state = 'posted', posted_amount = $2, resolved_at = now() \
         WHERE id = $1",
    )
    .bind(request.hold)
    .bind(amount)
    .execute(conn)
    .await?;
    Ok(HoldReceipt {
        hold: request.hold,
        wallet: hold.wallet,
        amount: points(hold.amount)?,
        state: HoldState::Posted,
        debit: Some(debit),
    })
}

/// # Errors
/// See [`release_hold_in_tx`].
pub async fn release_hold(db: &PgPool, request: &ReleaseHold) -> Result<HoldReceipt, LedgerError> {
    standalone!(db, release_hold_in_tx, request)
}

/// Releases a pending hold (expired or not): its points become available again.
///
/// # Errors
/// `HoldNotPending`, `NotFound`, `IdempotencyKeyReused`.
pub async fn release_hold_in_tx(
    conn: &mut PgConnection,
    request: &ReleaseHold,
) -> Result<HoldReceipt, LedgerError> {
    idempotent!(conn, "release_hold", request, |c| apply_release(
        c,
        request.hold
    ))
}

async fn apply_release(
    conn: &mut PgConnection,
    hold_id: HoldId,
) -> Result<HoldReceipt, LedgerError> {
    let hold = lock_pending_hold(conn, hold_id, false).await?;
    sqlx::query("UPDATE ledger_wallets SET held = held - $2 WHERE account_id = $1")
        .bind(hold.wallet)
        .bind(hold.amount)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE ledger_holds SET state = 'released', resolved_at = now() WHERE id = $1")
        .bind(hold_id)
        .execute(conn)
        .await?;
    Ok(HoldReceipt {
        hold: hold_id,
        wallet: hold.wallet,
        amount: points(hold.amount)?,
        state: HoldState::Released,
        debit: None,
    })
}

/// Releases up to `batch` pending holds whose expiry has passed (by the platform clock), each in
/// its own savepoint, skipping holds another worker has locked. Returns how many it released.
///
/// # Errors
/// When Postgres fails.
pub async fn release_expired_holds_in_tx(
    conn: &mut PgConnection,
    batch: i64,
) -> Result<u64, LedgerError> {
    let expired: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ledger_holds WHERE state = 'pending' AND expires_at <= platform_now() \
         ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(batch)
    .fetch_all(&mut *conn)
    .await?;
    let mut released = 0;
    for hold in expired {
        apply_release(conn, HoldId(hold)).await?;
        released += 1;
    }
    Ok(released)
}
