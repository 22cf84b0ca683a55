//! The change feed into a replica's index, and the rebuild from nothing.
//!
//! Triggers write a `search_changes` row in every transaction that changes what search shows. The
//! indexer reads the rows after its cursor — only of transactions older than every transaction
//! still running, in (transaction, id) order, so no row can appear behind the cursor later —
//! re-reads the entities they name (the row says *what* changed, Postgres says what it is now),
//! applies them and commits with the new cursor in the index's own commit: a restart resumes
//! where the index is, and a crash between the two re-applies, which changes nothing.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use nene_domain::states::ChallengeState;
use sqlx::{PgPool, Row};
use tokio_util::sync::CancellationToken;

use super::{ChallengeDoc, FeedCursor, SearchError, SearchIndex, Update, UserDoc};

/// How often the indexer looks for changes when it found none: well inside the one second within
/// which a write must be searchable (issue 17), for the cost of one indexed read per interval.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Most change rows applied in one commit: a burst (a join storm) is taken in a few commits of
/// bounded size, and a commit's entity re-read stays one short query per kind.
pub const FEED_BATCH_MAX: i64 = 1_000;
/// How long change rows are kept. A replica whose index is further behind than this may have
/// missed purged rows and rebuilds at start.
pub const FEED_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// How often the indexer purges rows older than [`FEED_RETENTION`], and how many at most at a
/// time (a short statement, repeated the next interval if more are due).
pub const PURGE_INTERVAL: Duration = Duration::from_secs(3_600);
pub const PURGE_BATCH_MAX: i64 = 10_000;
/// After an error (Postgres away, the disk full), the indexer waits this long before trying
/// again, rather than spin on it.
pub const ERROR_BACKOFF: Duration = Duration::from_secs(1);
/// A rebuild reads and stages documents in batches of this many rows.
pub const REBUILD_BATCH: i64 = 5_000;

const CHALLENGE_COLUMNS: &str = "id::text AS id, title, description, category, state, \
     entry_fee, floor(extract(epoch FROM starts_at))::int8 AS starts_at, participants, capacity, \
     floor(extract(epoch FROM created_at))::int8 AS created_at";
const USER_COLUMNS: &str =
    "id, nickname, bio, floor(extract(epoch FROM created_at))::int8 AS created_at";

fn challenge_doc(row: &sqlx::postgres::PgRow) -> Result<ChallengeDoc, sqlx::Error> {
    let count = |name: &str| -> Result<u64, sqlx::Error> {
        Ok(u64::try_from(row.try_get::<i64, _>(name)?).unwrap_or(0))
    };
    Ok(ChallengeDoc {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        category: row.try_get("category")?,
        state: row.try_get::<ChallengeState, _>("state")?,
        entry_fee: count("entry_fee")?,
        starts_at: row.try_get("starts_at")?,
        participants: u64::try_from(row.try_get::<i32, _>("participants")?).unwrap_or(0),
        capacity: u64::try_from(row.try_get::<i32, _>("capacity")?).unwrap_or(0),
        created_at: row.try_get("created_at")?,
    })
}

fn user_doc(row: &sqlx::postgres::PgRow) -> Result<UserDoc, sqlx::Error> {
    Ok(UserDoc {
        id: row.try_get("id")?,
        nickname: row.try_get("nickname")?,
        bio: row.try_get("bio")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The feed's horizon now: every change of a transaction before it is committed (or never will
/// be), and every later one is at or after it.
async fn horizon(db: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::int8")
        .fetch_one(db)
        .await
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// Runs blocking index work off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SearchError> + Send + 'static,
) -> Result<T, SearchError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| SearchError::Index(e.to_string()))?
}

/// Rebuilds `index` from Postgres: every challenge and person, committed at a cursor from before
/// the read began, so the feed then re-applies whatever changed during it. Returns the number of
/// documents.
///
/// # Errors
/// [`SearchError`] from Postgres or the index (the index keeps its last commit).
pub async fn rebuild(db: &PgPool, index: &Arc<dyn SearchIndex>) -> Result<u64, SearchError> {
    let start = FeedCursor {
        txid: horizon(db).await?,
        id: 0,
        at: unix_now(),
    };
    let clearing = Arc::clone(index);
    blocking(move || clearing.stage_clear()).await?;
    let mut documents = 0_u64;
    // Keyset pages by id: each a short statement, none holding a snapshot for the whole rebuild.
    for (table, columns, kind) in [
        ("challenges", CHALLENGE_COLUMNS, "challenge"),
        ("users", USER_COLUMNS, "user"),
    ] {
        let mut after = String::new();
        loop {
            let rows = sqlx::query(&format!(
                "SELECT {columns} FROM {table} WHERE id::text > $1 ORDER BY id::text LIMIT $2"
            ))
            .bind(&after)
            .bind(REBUILD_BATCH)
            .fetch_all(db)
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("id")?;
            let updates = rows
                .iter()
                .map(|row| {
                    Ok(if kind == "challenge" {
                        let doc = challenge_doc(row)?;
                        Update::Challenge {
                            id: doc.id.clone(),
                            doc: Some(doc),
                        }
                    } else {
                        let doc = user_doc(row)?;
                        Update::User {
                            id: doc.id.clone(),
                            doc: Some(doc),
                        }
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            documents += updates.len() as u64;
            let staging = Arc::clone(index);
            blocking(move || staging.stage(&updates)).await?;
        }
    }
    let committing = Arc::clone(index);
    blocking(move || committing.commit(start)).await?;
    Ok(documents)
}

/// Applies the next batch of changes after the index's cursor; how many change rows it read.
///
/// # Errors
/// [`SearchError`] from Postgres or the index (nothing is committed; the next step retries).
pub async fn step(db: &PgPool, index: &Arc<dyn SearchIndex>) -> Result<usize, SearchError> {
    let cursor = index.cursor().unwrap_or(FeedCursor {
        txid: 0,
        id: 0,
        at: 0,
    });
    let rows = sqlx::query(
        "SELECT id, kind, entity_id, txid::text::int8 AS txid, \
                floor(extract(epoch FROM at))::int8 AS at \
         FROM search_changes \
         WHERE (txid, id) > ($1::text::xid8, $2) \
           AND txid < pg_snapshot_xmin(pg_current_snapshot()) \
         ORDER BY txid, id LIMIT $3",
    )
    .bind(cursor.txid.to_string())
    .bind(cursor.id)
    .bind(FEED_BATCH_MAX)
    .fetch_all(db)
    .await?;
    let Some(last) = rows.last() else {
        return Ok(0);
    };
    let next = FeedCursor {
        txid: last.try_get("txid")?,
        id: last.try_get("id")?,
        at: last.try_get("at")?,
    };
    let mut challenges = BTreeSet::new();
    let mut users = BTreeSet::new();
    for row in &rows {
        let id: String = row.try_get("entity_id")?;
        match row.try_get::<&str, _>("kind")? {
            "challenge" => challenges.insert(id),
            "user" => users.insert(id),
            // Products: indexed when the shop lands.
            _ => false,
        };
    }
    let updates = load(db, challenges, users).await?;
    let applying = Arc::clone(index);
    blocking(move || {
        applying.stage(&updates)?;
        applying.commit(next)
    })
    .await?;
    Ok(rows.len())
}

/// What `challenges` and `users` are now: a document each, or gone.
async fn load(
    db: &PgPool,
    challenges: BTreeSet<String>,
    users: BTreeSet<String>,
) -> Result<Vec<Update>, SearchError> {
    let mut updates = Vec::with_capacity(challenges.len() + users.len());
    if !challenges.is_empty() {
        let ids: Vec<String> = challenges.iter().cloned().collect();
        let rows = sqlx::query(&format!(
            "SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id::text = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(db)
        .await?;
        let mut found = std::collections::HashMap::new();
        for row in &rows {
            let doc = challenge_doc(row)?;
            found.insert(doc.id.clone(), doc);
        }
        for id in challenges {
            let doc = found.remove(&id);
            updates.push(Update::Challenge { id, doc });
        }
    }
    if !users.is_empty() {
        let ids: Vec<String> = users.iter().cloned().collect();
        let rows = sqlx::query(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(db)
        .await?;
        let mut found = std::collections::HashMap::new();
        for row in &rows {
            let doc = user_doc(row)?;
            found.insert(doc.id.clone(), doc);
        }
        for id in users {
            let doc = found.remove(&id);
            updates.push(Update::User { id, doc });
        }
    }
    Ok(updates)
}

/// Deletes up to [`PURGE_BATCH_MAX`] change rows older than [`FEED_RETENTION`]; how many.
///
/// # Errors
/// When Postgres fails.
pub async fn purge(db: &PgPool) -> Result<u64, sqlx::Error> {
    let retention_seconds = i64::try_from(FEED_RETENTION.as_secs()).unwrap_or(i64::MAX);
    let purged = sqlx::query(
        "DELETE FROM search_changes WHERE id IN ( \
             SELECT id FROM search_changes \
             WHERE at < now() - make_interval(secs => $1) LIMIT $2)",
    )
    .bind(retention_seconds as f64)
    .bind(PURGE_BATCH_MAX)
    .execute(db)
    .await?;
    Ok(purged.rows_affected())
}

/// Whether `index` must be rebuilt before the feed can keep it: it has no cursor (new, or of an
/// older schema), or its feed position is older than the feed's retention.
#[must_use]
pub fn needs_rebuild(index: &dyn SearchIndex) -> bool {
    let retention = i64::try_from(FEED_RETENTION.as_secs()).unwrap_or(i64::MAX);
    index
        .cursor()
        .is_none_or(|cursor| cursor.at < unix_now().saturating_sub(retention))
}

/// The indexer: rebuilds first if the index needs it, then applies the feed every
/// [`POLL_INTERVAL`] (at once again while batches come full), purges old rows every
/// [`PURGE_INTERVAL`], until `stop`.
pub async fn run(db: PgPool, index: Arc<dyn SearchIndex>, stop: CancellationToken) {
    while needs_rebuild(index.as_ref()) && !stop.is_cancelled() {
        match rebuild(&db, &index).await {
            Ok(documents) => tracing::info!(documents, "search index rebuilt"),
            Err(error) => {
                tracing::warn!(%error, "search index rebuild failed; retrying");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ERROR_BACKOFF) => {}
                }
            }
        }
    }
    let mut next_purge = tokio::time::Instant::now();
    while !stop.is_cancelled() {
        if tokio::time::Instant::now() >= next_purge {
            match purge(&db).await {
                Ok(purged) if purged > 0 => tracing::info!(purged, "search changes purged"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "search changes purge failed"),
            }
            next_purge += PURGE_INTERVAL;
        }
        let pause = match step(&db, &index).await {
            Ok(read) if read as i64 >= FEED_BATCH_MAX => Duration::ZERO,
            Ok(_) => POLL_INTERVAL,
            Err(error) => {
                tracing::warn!(%error, "search indexer step failed");
                ERROR_BACKOFF
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
