//! Idempotency records: the first response to a key, returned again for the same request.
//!
//! `begin` inserts a placeholder for the key. A concurrent request with the same key blocks on the
//! key's unique index until the first commits (then it reads the stored response) or rolls back
//! (then it proceeds as the first). So concurrent use of one key never produces two effects.
//! Failed operations roll back with their savepoint and store nothing: a retry after a failure
//! (say, after topping up a wallet) runs again.

use serde::{Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::types::{IdempotencyKey, LedgerError};

/// How long records are kept before `purge_idempotency_records` may remove them. The API promises
/// at least 24 hours; a week covers a client that retries after a long outage.
pub const IDEMPOTENCY_RETENTION_SECONDS: i64 = 7 * 24 * 3_600;
const _: () = assert!(IDEMPOTENCY_RETENTION_SECONDS >= 24 * 3_600);

/// What a request is, for comparing two uses of one key: the operation's name and its fields.
pub(crate) fn request_hash(
    operation: &str,
    request: &impl Serialize,
) -> Result<Vec<u8>, LedgerError> {
    let mut hasher = Sha256::new();
    hasher.update(operation.as_bytes());
    hasher.update([0]);
    hasher.update(serde_json::to_vec(request)?);
    Ok(hasher.finalize().to_vec())
}

/// Claims `key` for this request, or returns the stored response of its first use.
///
/// # Errors
/// [`LedgerError::IdempotencyKeyReused`] when the key was first used for a different request.
pub(crate) async fn begin<R: DeserializeOwned>(
    conn: &mut PgConnection,
    operation: &str,
    key: &IdempotencyKey,
    request: &impl Serialize,
) -> Result<Option<R>, LedgerError> {
    let hash = request_hash(operation, request)?;
    let claimed = sqlx::query(
        "INSERT INTO ledger_idempotency (key, request_hash, response) VALUES ($1, $2, 'null') \
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(key.as_str())
    .bind(&hash)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if claimed {
        return Ok(None);
    }
    let (stored_hash, response): (Vec<u8>, serde_json::Value) =
        sqlx::query_as("SELECT request_hash, response FROM ledger_idempotency WHERE key = $1")
            .bind(key.as_str())
            .fetch_one(&mut *conn)
            .await?;
    if stored_hash != hash {
        return Err(LedgerError::IdempotencyKeyReused);
    }
    Ok(Some(serde_json::from_value(response)?))
}

/// Stores the response of the request that claimed `key`.
pub(crate) async fn finish(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    response: &impl Serialize,
) -> Result<(), LedgerError> {
    sqlx::query("UPDATE ledger_idempotency SET response = $2 WHERE key = $1")
        .bind(key.as_str())
        .bind(serde_json::to_value(response)?)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Removes records older than the retention, at most `batch` of them (a bounded statement keeps
/// the purge from holding locks for long). Returns how many it removed.
///
/// # Errors
/// When Postgres fails.
pub async fn purge_idempotency_records(
    conn: &mut PgConnection,
    batch: i64,
) -> Result<u64, LedgerError> {
    let removed = sqlx::query(
        "DELETE FROM ledger_idempotency WHERE key IN ( \
             SELECT key FROM ledger_idempotency \
             WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)",
    )
    .bind(IDEMPOTENCY_RETENTION_SECONDS as f64)
    .bind(batch)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(removed)
}
