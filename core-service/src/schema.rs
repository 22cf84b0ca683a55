//! The schema's migrations as a deploy step of their own.
//!
//! A deploy runs `nene-core migrate` once, as the role that owns the schema, and then rolls the
//! service, which runs as a role that may read and write rows but not change tables. So the
//! service does not migrate at start outside dev mode (`CORE_MIGRATE_ON_START`); it checks instead
//! that every migration it was built with is applied, and refuses to start on a database that is
//! behind — an old schema under new code loses writes in ways no test sees.
//!
//! A database that is *ahead* (migrations this build does not know) is accepted with a warning:
//! during a rolling deploy the previous release keeps serving on the schema the new release just
//! migrated, which is why every migration must keep working for the release before it (add
//! columns and tables; drop them a release later).

use std::collections::HashSet;

use sqlx::{
    PgConnection,
    migrate::{Migrate, MigrateError},
};

pub use crate::MIGRATOR;

/// sqlx's bookkeeping table: one row per applied migration.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// One migration, as a person reads it in a deploy's log: `0005 payments`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationName {
    pub version: i64,
    pub description: String,
}

impl std::fmt::Display for MigrationName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04} {}", self.version, self.description)
    }
}

/// The newest migration this build carries (0 when it carries none).
#[must_use]
pub fn latest_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Applies every migration the database lacks, under sqlx's advisory lock (so two deploys that
/// race apply each migration once), and returns what it applied, oldest first. Applying to a
/// current database applies nothing and changes nothing. Runs on `conn` alone, which should be a
/// connection of its own: no pool's statement timeout may cut a migration short.
///
/// # Errors
/// When Postgres is unreachable, a migration fails (its transaction rolls back), an applied
/// migration differs from this build's copy, or the database carries migrations this build does
/// not know (an older build must not migrate a newer schema).
pub async fn apply(conn: &mut PgConnection) -> Result<Vec<MigrationName>, MigrateError> {
    // Held across the read of what is applied and the run, so "what I applied" is exact even when
    // another deploy migrates at the same moment. Postgres' advisory locks stack within a session:
    // the migrator's own lock and unlock inside this one are harmless.
    conn.lock().await?;
    let outcome = run_locked(conn).await;
    let unlocked = conn.unlock().await;
    let applied = outcome?;
    unlocked?;
    Ok(applied)
}

async fn run_locked(conn: &mut PgConnection) -> Result<Vec<MigrationName>, MigrateError> {
    let before = applied_versions(conn).await?;
    MIGRATOR.run(&mut *conn).await?;
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !before.contains(&m.version))
        .map(name_of)
        .collect())
}

/// Why a service that was told not to migrate refuses the database it found.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the database is behind this build: {} not applied (this build needs version {latest}); \
         run `nene-core migrate` as the schema's owner first",
        list(.missing)
    )]
    Behind {
        missing: Vec<MigrationName>,
        latest: i64,
    },
    #[error(
        "migration {0} failed part-way on this database; repair it by hand, then run `nene-core migrate`"
    )]
    Dirty(i64),
    #[error(
        "migration {0} on the database differs from this build's copy (migrations are never edited once applied)"
    )]
    Changed(i64),
    #[error("cannot read the applied migrations: {0}")]
    Database(#[from] sqlx::Error),
}

fn list(names: &[MigrationName]) -> String {
    names
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The schema is at least what this build needs. `ahead` names applied migrations this build
/// does not know (a newer release migrated; see the module's note on rolling deploys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaCurrent {
    pub ahead: Vec<i64>,
}

/// Checks, without changing anything (not even creating sqlx's table, which the service's role
/// may not be allowed to do), that every migration of this build is applied, unchanged and whole.
///
/// # Errors
/// [`SchemaError`] naming what is missing, broken or different.
pub async fn check_current(conn: &mut PgConnection) -> Result<SchemaCurrent, SchemaError> {
    let applied: Vec<(i64, bool, Vec<u8>)> = if table_exists(conn).await? {
        sqlx::query_as(&format!(
            "SELECT version, success, checksum FROM {MIGRATIONS_TABLE} ORDER BY version"
        ))
        .fetch_all(&mut *conn)
        .await?
    } else {
        Vec::new()
    };
    if let Some((version, _, _)) = applied.iter().find(|(_, success, _)| !success) {
        return Err(SchemaError::Dirty(*version));
    }
    let mut missing = Vec::new();
    for migration in MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        match applied.iter().find(|(v, _, _)| *v == migration.version) {
            Some((_, _, checksum)) if checksum.as_slice() != &*migration.checksum => {
                return Err(SchemaError::Changed(migration.version));
            }
            Some(_) => {}
            None => missing.push(name_of(migration)),
        }
    }
    if !missing.is_empty() {
        return Err(SchemaError::Behind {
            missing,
            latest: latest_version(),
        });
    }
    let ahead = applied
        .iter()
        .map(|(version, _, _)| *version)
        .filter(|version| !MIGRATOR.version_exists(*version))
        .collect();
    Ok(SchemaCurrent { ahead })
}

async fn table_exists(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(MIGRATIONS_TABLE)
        .fetch_one(conn)
        .await
}

async fn applied_versions(conn: &mut PgConnection) -> Result<HashSet<i64>, sqlx::Error> {
    if !table_exists(conn).await? {
        return Ok(HashSet::new());
    }
    sqlx::query_scalar(&format!("SELECT version FROM {MIGRATIONS_TABLE}"))
        .fetch_all(conn)
        .await
        .map(|versions| versions.into_iter().collect())
}

fn name_of(migration: &sqlx::migrate::Migration) -> MigrationName {
    MigrationName {
        version: migration.version,
        description: migration.description.to_string(),
    }
}
