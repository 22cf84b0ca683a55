//! Probes of the stores the core depends on, each bounded by a timeout so a hung store makes the
//! report say "down" instead of making the caller wait.

use std::{collections::HashSet, time::Duration};

use nene_domain::{health::PartStatus, limits::HEALTH_PROBE_TIMEOUT_MS};
use sqlx::PgPool;

use crate::shutdown::Shutdown;

const PROBE_TIMEOUT: Duration = Duration::from_millis(HEALTH_PROBE_TIMEOUT_MS);

/// How long `/readyz` waits for Postgres. Kubernetes gives a probe 1 s by default
/// (`timeoutSeconds`); answering 503 within half of it means a slow database is reported as
/// "not ready" rather than as a probe that timed out.
pub const READINESS_DATABASE_TIMEOUT: Duration = Duration::from_millis(500);
const _: () = assert!(READINESS_DATABASE_TIMEOUT.as_millis() < 1_000);

/// The readiness check that failed; its name is all `/readyz` says (no internal detail).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotReady {
    /// The process received SIGTERM: it finishes what it has and takes nothing new.
    Draining,
    /// Postgres did not answer within [`READINESS_DATABASE_TIMEOUT`].
    Database,
    /// A migration this binary embeds is not applied (successfully) to the database.
    Migrations,
}

impl NotReady {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            NotReady::Draining => "draining",
            NotReady::Database => "database",
            NotReady::Migrations => "migrations",
        }
    }
}

/// Whether this process should receive traffic: not draining, Postgres answering, and every
/// migration the binary embeds applied. A database *ahead* of the binary (a newer release's
/// migrations applied during a rolling deploy) is ready: migrations only add.
///
/// One statement does both database checks: reading `_sqlx_migrations` is the ping.
///
/// # Errors
/// The first check that failed.
#[tracing::instrument(skip_all)]
pub async fn readiness(db: &PgPool, shutdown: &Shutdown) -> Result<(), NotReady> {
    if shutdown.is_draining() {
        return Err(NotReady::Draining);
    }
    let applied =
        sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(db);
    let applied: HashSet<i64> =
        match tokio::time::timeout(READINESS_DATABASE_TIMEOUT, applied).await {
            Ok(Ok(versions)) => versions.into_iter().collect(),
            // No migrations table at all: an empty database, not an unreachable one.
            Ok(Err(sqlx::Error::Database(error))) if error.code().as_deref() == Some("42P01") => {
                return Err(NotReady::Migrations);
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "readiness: the database did not answer");
                return Err(NotReady::Database);
            }
            Err(_) => {
                tracing::warn!("readiness: the database timed out");
                return Err(NotReady::Database);
            }
        };
    let missing = crate::MIGRATOR
        .iter()
        .filter(|migration| !migration.migration_type.is_down_migration())
        .find(|migration| !applied.contains(&migration.version));
    match missing {
        Some(migration) => {
            tracing::warn!(
                version = migration.version,
                "readiness: a migration of this binary is not applied"
            );
            Err(NotReady::Migrations)
        }
        None => Ok(()),
    }
}

#[tracing::instrument(skip_all)]
pub async fn probe_database(db: &PgPool) -> PartStatus {
    let probe = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(db);
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(1)) => PartStatus::Ok,
        Ok(Ok(_)) => PartStatus::Down,
        Ok(Err(error)) => {
            tracing::warn!(%error, "database probe failed");
            PartStatus::Down
        }
        Err(_) => {
            tracing::warn!("database probe timed out");
            PartStatus::Down
        }
    }
}

#[tracing::instrument(skip_all)]
pub async fn probe_redis(redis: Option<&redis::Client>) -> PartStatus {
    let Some(client) = redis else {
        return PartStatus::Disabled;
    };
    let probe = async {
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(pong)) if pong == "PONG" => PartStatus::Ok,
        Ok(Ok(_)) => PartStatus::Down,
        Ok(Err(error)) => {
            tracing::warn!(%error, "redis probe failed");
            PartStatus::Down
        }
        Err(_) => {
            tracing::warn!("redis probe timed out");
            PartStatus::Down
        }
    }
}
