//! The core's Postgres pool as its configuration builds it (`DbSettings::pool_options`): every
//! connection carries the statement timeout, and a statement past it is cancelled.

// Helpers outside the #[test] functions unwrap too (clippy.toml covers only those functions).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use nene_core::config::DbSettings;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

fn settings(statement_timeout_ms: u64) -> DbSettings {
    DbSettings {
        pool_connections: 8,
        acquire_timeout: Duration::from_secs(3),
        statement_timeout: Duration::from_millis(statement_timeout_ms),
    }
}

#[sqlx::test(migrations = false)]
async fn every_connection_of_the_pool_carries_the_statement_timeout(
    _default: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = settings(1_500)
        .pool_options()
        .connect_with(options)
        .await
        .unwrap();
    // Several connections at once, so more than the first is looked at.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut connection = pool.acquire().await.unwrap();
        let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(&mut *connection)
            .await
            .unwrap();
        assert_eq!(timeout, "1500ms");
        held.push(connection);
    }
}

#[sqlx::test(migrations = false)]
async fn a_statement_past_the_timeout_is_cancelled(
    _default: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = settings(1_000)
        .pool_options()
        .connect_with(options)
        .await
        .unwrap();
    let error = sqlx::query("SELECT pg_sleep(30)")
        .execute(&pool)
        .await
        .expect_err("a 30 s statement ran under a 1 s timeout");
    let code = error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|code| code.into_owned());
    // 57014: query_canceled, what Postgres answers when statement_timeout fires.
    assert_eq!(code.as_deref(), Some("57014"), "{error}");
}
