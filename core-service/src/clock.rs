//! Time. Security checks read the real wall clock; business rules read the platform clock, which
//! is the wall clock plus the test-clock offset kept in Postgres (always 0 in production).

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::PgPool;

/// The real wall clock: request signatures, token expiry.
pub trait WallClock: Send + Sync {
    fn now_unix_seconds(&self) -> i64;
}

pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_unix_seconds(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
            })
    }
}

/// The platform's "now": wall clock plus the test-clock offset.
///
/// # Errors
/// When Postgres cannot be read.
pub async fn platform_now_unix_seconds(
    db: &PgPool,
    wall_clock: &dyn WallClock,
) -> Result<i64, sqlx::Error> {
    let offset: i64 = sqlx::query_scalar("SELECT offset_seconds FROM test_clock WHERE id")
        .fetch_one(db)
        .await?;
    Ok(wall_clock.now_unix_seconds().saturating_add(offset))
}
