//! The dispatcher: moves PENDING notifications to FCM and records what came of it.
//!
//! - **Feed.** A notification's row is written with a `notification_feed` row in the event's
//!   transaction. The feeder takes feed rows in id order, puts their ids into the Redis schedule
//!   and deletes them in one Postgres transaction (rolled back if Redis fails), so after commit
//!   every id reaches Redis without the event depending on Redis.
//! - **Claims.** Workers claim due ids from Redis with the claim script, lock those rows in
//!   Postgres (`FOR UPDATE SKIP LOCKED`), send one message per device with bounded concurrency,
//!   record the outcome and commit, then acknowledge the claims. The row lock is what makes a
//!   send exclusive: an id claimed twice (a visibility deadline passed, or Redis and the fallback
//!   both hold it) is sent by whoever locks it; the other skips it. A SENT or FAILED row is never
//!   sent again: the claim reads its state under the lock.
//! - **Fallback.** When Redis is not configured, not answering, or was lost, workers claim due
//!   rows straight from Postgres (`FOR UPDATE SKIP LOCKED`, ordered by `next_attempt_at`); the
//!   transaction is the lease (it ends on commit, or when a crashed worker's connection drops,
//!   or after [`BATCH_TRANSACTION_IDLE_MAX`]).
//! - **Rebuild.** A Redis without the schedule's `built` key (flushed, restarted empty, evicted)
//!   refuses every script; the dispatcher then copies every PENDING id into the feed and marks
//!   the schedule built. A periodic sweep re-feeds PENDING rows long overdue, in case Redis lost
//!   part of the schedule (a failover to a lagging replica) without losing the key.
//!
//! At least once: a worker that dies after FCM accepted a message and before its commit leaves
//! the row PENDING, and the message goes again. The notification's id travels in `data` (and in
//! each platform's collapse key), so the app shows it once.
//!
//! - **Stopping.** Told to stop (SIGTERM), workers claim nothing more; a batch in hand starts no
//!   new send, lets the sends in flight finish, records them, and gives back every notification
//!   it did not finish: PENDING as before (the attempt not counted, the devices it did reach
//!   recorded so they are not sent again), back in Redis' `due` at its time by the
//!   acknowledgement, or freed by the commit in the fallback — for another replica at once, not
//!   after a visibility deadline.

use std::{
    future::Future,
    sync::{Arc, LazyLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt;
use nene_domain::states::NotificationState;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    fcm::{FCM_SEND_TIMEOUT_DEFAULT, FcmClient},
    message::{self, DevicePlatform, Outgoing},
    metrics::Metrics,
    outcome::{self, ATTEMPTS_MAX, Backoff, Decision, DeviceOutcome},
    schedule::{Claim, RedisSchedule, SCRIPT_IDS_MAX, ScheduleError},
};

/// Ids claimed per batch: one Postgres round trip locks and loads them all, and at FCM's pace
/// (tens of thousands a second) a batch is tens of milliseconds of sending.
pub const CLAIM_BATCH_MAX: usize = 500;
/// Batches worked at once per dispatcher: while one waits on Postgres, the others send. Each
/// holds one pooled connection for its duration (the core's pool has 32).
pub const BATCHES_IN_FLIGHT: usize = 4;
/// Sends in flight per batch: with [`BATCHES_IN_FLIGHT`], 128 at once per core, enough to keep
/// FCM's tens-of-milliseconds round trips busy without a connection storm.
pub const SENDS_PER_BATCH_IN_FLIGHT: usize = 32;
/// Feed rows moved into Redis per transaction: one script call and one statement each.
pub const FEED_BATCH_MAX: usize = 2_000;
/// A claim nobody acknowledges comes back this long after it was made. Longer than the longest
/// batch (see [`BATCH_SECONDS_WORST`]), so a slow but living worker is not doubled up (and if it
/// were, the row lock would still keep the second claim from sending).
pub const VISIBILITY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(120);
/// How long a batch may take when every send times out: the batch's rounds of sends, each
/// bounded by FCM's send timeout.
pub const BATCH_SECONDS_WORST: u64 =
    CLAIM_BATCH_MAX.div_ceil(SENDS_PER_BATCH_IN_FLIGHT) as u64 * FCM_SEND_TIMEOUT_DEFAULT.as_secs();
/// A batch's transaction holds its row locks while it sends. Postgres ends it (and frees the
/// rows) if it sits idle this long: far beyond a living batch, soon enough for a hung one.
pub const BATCH_TRANSACTION_IDLE_MAX: Duration = Duration::from_secs(300);
/// Idle workers look for work this often: notifications are not a chat, a tenth of a second of
/// extra latency is unnoticeable, and an idle core asks Redis ten times a second per worker.
pub const IDLE_INTERVAL_DEFAULT: Duration = Duration::from_millis(100);
/// PENDING rows overdue by this much are fed again in case Redis lost them.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(600);
/// How often the overdue sweep runs, and how many rows it re-feeds at most per run.
pub const ORPHAN_SWEEP_INTERVAL: Duration = Duration::from_secs(60);
pub const ORPHAN_SWEEP_ROWS_MAX: i64 = 1_000;
/// Clocks of core replicas and Postgres differ by this much at most: a row due this much later
/// than a worker's clock says is sent anyway rather than bounced back to the schedule.
pub const CLOCK_SKEW_TOLERANCE_MS: i64 = 1_000;
/// One advisory lock key, so that one core instance rebuilds a lost schedule at a time.
const REBUILD_LOCK_KEY: i64 = 0x6e65_6e65_6e6f_7469; // "nenenoti"
/// Retries wait 5 s, 10 s, 20 s (plus up to 5 s of jitter): a blip in FCM is over, a dead token
/// is not retried anyway, and a notification fails within a minute when FCM is really down.
pub const RETRY_BASE_MS_DEFAULT: u64 = 5_000;
pub const RETRY_MAX_MS_DEFAULT: u64 = 300_000;
/// The default key prefix of the schedule in Redis.
pub const REDIS_PREFIX_DEFAULT: &str = "nene:notifications";

const _: () = assert!(CLAIM_BATCH_MAX <= SCRIPT_IDS_MAX);
const _: () = assert!(FEED_BATCH_MAX <= SCRIPT_IDS_MAX);
const _: () = assert!(VISIBILITY_TIMEOUT_DEFAULT.as_secs() > BATCH_SECONDS_WORST);
const _: () = assert!(BATCH_TRANSACTION_IDLE_MAX.as_secs() > BATCH_SECONDS_WORST);
const _: () = assert!(ORPHAN_GRACE.as_secs() > VISIBILITY_TIMEOUT_DEFAULT.as_secs());
const _: () = assert!(RETRY_BASE_MS_DEFAULT <= RETRY_MAX_MS_DEFAULT);

/// The dispatcher's knobs; [`DispatcherSettings::default`] is production's.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    pub claim_batch_max: usize,
    pub batches_in_flight: usize,
    pub sends_per_batch_in_flight: usize,
    pub visibility_timeout: Duration,
    pub idle_interval: Duration,
    pub backoff: Backoff,
    pub redis_prefix: String,
}

impl Default for DispatcherSettings {
    fn default() -> Self {
        Self {
            claim_batch_max: CLAIM_BATCH_MAX,
            batches_in_flight: BATCHES_IN_FLIGHT,
            sends_per_batch_in_flight: SENDS_PER_BATCH_IN_FLIGHT,
            visibility_timeout: VISIBILITY_TIMEOUT_DEFAULT,
            idle_interval: IDLE_INTERVAL_DEFAULT,
            backoff: Backoff {
                base_ms: RETRY_BASE_MS_DEFAULT,
                max_ms: RETRY_MAX_MS_DEFAULT,
            },
            redis_prefix: REDIS_PREFIX_DEFAULT.to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("schedule: {0}")]
    Schedule(#[from] ScheduleError),
}

/// Where a worker pass found its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Redis,
    Postgres,
}

/// What one worker pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub source: Source,
    /// Ids claimed (Redis) or rows locked (Postgres).
    pub claimed: usize,
    /// Notifications attempted (sent to their devices).
    pub attempted: usize,
    /// Notifications given back unfinished because the worker was stopping.
    pub given_back: usize,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

struct Inner {
    db: PgPool,
    fcm: FcmClient,
    schedule: Option<RedisSchedule>,
    settings: DispatcherSettings,
    metrics: Metrics,
}

/// The notification dispatcher of one core instance; cheap to clone. Several instances may run
/// against one Postgres and one Redis.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

/// A device as the dispatcher sends to it.
#[derive(Debug, Clone)]
struct Device {
    device_id: String,
    platform: DevicePlatform,
    token: String,
}

/// A locked PENDING-or-not row with the user's devices.
#[derive(Debug)]
struct Locked {
    id: Uuid,
    user_id: String,
    kind: String,
    payload: Value,
    state: NotificationState,
    attempts: i32,
    next_attempt_ms: i64,
    delivered: Vec<String>,
    devices: Vec<Device>,
}

/// A locked row as [`lock_and_load`] reads it: columns by name, the devices as three arrays in
/// one order.
#[derive(sqlx::FromRow)]
struct LockedRow {
    id: Uuid,
    user_id: String,
    kind: String,
    payload: Value,
    state: NotificationState,
    attempts: i32,
    next_attempt_ms: i64,
    delivered_devices: Vec<String>,
    device_ids: Vec<String>,
    platforms: Vec<DevicePlatform>,
    tokens: Vec<String>,
}

impl From<LockedRow> for Locked {
    fn from(row: LockedRow) -> Self {
        Locked {
            id: row.id,
            user_id: row.user_id,
            kind: row.kind,
            payload: row.payload,
            state: row.state,
            attempts: row.attempts,
            next_attempt_ms: row.next_attempt_ms,
            delivered: row.delivered_devices,
            devices: row
                .device_ids
                .into_iter()
                .zip(row.platforms)
                .zip(row.tokens)
                .map(|((device_id, platform), token)| Device {
                    device_id,
                    platform,
                    token,
                })
                .collect(),
        }
    }
}

/// Locks the rows `claim` selects (a `SELECT … FOR UPDATE SKIP LOCKED` of `notifications`) and
/// reads each with its user's devices as registered now, in one round trip. The claim is
/// materialized first, so devices are looked up (by user, through the primary key) only for rows
/// actually locked, never for rows skipped or for all of `user_devices`.
fn lock_and_load(claim: &str) -> String {
    format!(
        "WITH claimed AS MATERIALIZED ({claim}) \
         SELECT c.id, c.user_id, c.kind, c.payload, c.state, c.attempts, \
             (extract(epoch FROM c.next_attempt_at) * 1000)::int8 AS next_attempt_ms, \
             c.delivered_devices, coalesce(d.device_ids, '{{}}') AS device_ids, \
             coalesce(d.platforms, '{{}}') AS platforms, coalesce(d.tokens, '{{}}') AS tokens \
         FROM claimed c LEFT JOIN LATERAL ( \
             SELECT array_agg(device_id ORDER BY device_id) AS device_ids, \
                    array_agg(platform ORDER BY device_id) AS platforms, \
                    array_agg(token ORDER BY device_id) AS tokens \
             FROM user_devices WHERE user_id = c.user_id) d ON true"
    )
}

/// Locks the claimed ids' rows ($1: the ids), with their devices.
static LOCK_CLAIMED: LazyLock<String> = LazyLock::new(|| {
    lock_and_load("SELECT * FROM notifications WHERE id = ANY($1) FOR UPDATE SKIP LOCKED")
});

/// Locks up to $1 due PENDING rows, oldest due first, with their devices (the fallback's claim).
static LOCK_DUE: LazyLock<String> = LazyLock::new(|| {
    lock_and_load(
        "SELECT * FROM notifications WHERE state = 'pending' AND next_attempt_at <= now() \
         ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
});

/// What comes of one notification's attempt.
#[derive(Debug)]
enum Verdict {
    /// Every device was tried: what the rules decide.
    Decided(Decision),
    /// The worker stopped before trying every device: PENDING as before, due at `due_ms` (the
    /// attempt is not counted; the devices reached are recorded).
    GivenBack { due_ms: i64 },
}

/// One notification's result, ready to be written.
#[derive(Debug)]
struct Written {
    id: Uuid,
    verdict: Verdict,
    /// Devices that got it in this attempt.
    delivered_now: Vec<String>,
    /// (user, device, token) whose token FCM called dead.
    dead: Vec<(String, String, String)>,
}

impl Dispatcher {
    /// A dispatcher sending through `fcm`; with `redis`, scheduling through it.
    #[must_use]
    pub fn new(
        db: PgPool,
        fcm: FcmClient,
        redis: Option<redis::Client>,
        settings: DispatcherSettings,
    ) -> Self {
        assert!(
            (1..=SCRIPT_IDS_MAX).contains(&settings.claim_batch_max),
            "a claim batch must be 1 to {SCRIPT_IDS_MAX} ids"
        );
        assert!(settings.batches_in_flight > 0 && settings.sends_per_batch_in_flight > 0);
        let schedule = redis.map(|client| RedisSchedule::new(client, &settings.redis_prefix));
        Self {
            inner: Arc::new(Inner {
                db,
                fcm,
                schedule,
                settings,
                metrics: Metrics::default(),
            }),
        }
    }

    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    #[must_use]
    pub fn schedule(&self) -> Option<&RedisSchedule> {
        self.inner.schedule.as_ref()
    }

    #[must_use]
    pub fn settings(&self) -> &DispatcherSettings {
        &self.inner.settings
    }

    /// Runs the feeder and the workers until `stop` completes; then returns once the batches in
    /// hand have finished their sends in flight, recorded them and given back the rest (a batch
    /// is never cut off between its sends and its commit).
    pub async fn run_until(self, stop: impl Future<Output = ()> + Send) {
        let stopped = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        if self.inner.schedule.is_some() {
            let (dispatcher, stopped) = (self.clone(), stopped.clone());
            tasks.spawn(async move {
                dispatcher.feed_forever(stopped).await;
                0
            });
        }
        for _ in 0..self.inner.settings.batches_in_flight {
            let (dispatcher, stopped) = (self.clone(), stopped.clone());
            tasks.spawn(async move { dispatcher.work_forever(stopped).await });
        }
        stop.await;
        stopped.cancel();
        let mut given_back = 0;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(given) => given_back += given,
                Err(error) => tracing::error!(%error, "a notification worker failed"),
            }
        }
        tracing::info!(
            given_back,
            "notification dispatcher stopped: sends in flight recorded, unfinished ones given back"
        );
    }

    /// Runs until the process ends.
    pub async fn run_forever(self) {
        self.run_until(std::future::pending()).await;
    }

    async fn pause(&self, stopped: &CancellationToken) {
        let _ = tokio::time::timeout(self.inner.settings.idle_interval, stopped.cancelled()).await;
    }

    /// Works batches until `stopped`; returns how many notifications it gave back.
    async fn work_forever(self, stopped: CancellationToken) -> usize {
        let mut given_back = 0;
        while !stopped.is_cancelled() {
            match self.work_once_until(&stopped).await {
                // Work found: there may be more; look again at once.
                Ok(pass) if pass.claimed > 0 => given_back += pass.given_back,
                Ok(_) => self.pause(&stopped).await,
                Err(error) => {
                    tracing::error!(%error, "notification worker pass failed");
                    self.pause(&stopped).await;
                }
            }
        }
        given_back
    }

    async fn feed_forever(self, stopped: CancellationToken) {
        let mut last_sweep = Instant::now();
        while !stopped.is_cancelled() {
            if last_sweep.elapsed() >= ORPHAN_SWEEP_INTERVAL {
                last_sweep = Instant::now();
                match self.sweep_overdue().await {
                    Ok(0) => {}
                    Ok(count) => tracing::warn!(count, "re-fed overdue notifications"),
                    Err(error) => tracing::error!(%error, "overdue sweep failed"),
                }
            }
            match self.feed_once().await {
                Ok(count) if count >= FEED_BATCH_MAX => {}
                Ok(_) => self.pause(&stopped).await,
                Err(DispatchError::Schedule(_)) => self.pause(&stopped).await,
                Err(error) => {
                    tracing::error!(%error, "notification feed pass failed");
                    self.pause(&stopped).await;
                }
            }
        }
    }

    /// Moves up to [`FEED_BATCH_MAX`] fed ids into the Redis schedule (rebuilding it first if
    /// it was lost). Returns how many feed rows it took.
    ///
    /// # Errors
    /// Postgres or Redis failed; the feed rows then stay for the next pass.
    #[tracing::instrument(skip_all)]
    pub async fn feed_once(&self) -> Result<usize, DispatchError> {
        let Some(schedule) = &self.inner.schedule else {
            return Ok(0);
        };
        if schedule.is_resting() {
            return Ok(0);
        }
        let mut tx = self
            .inner
            .db
            .begin_with(format!("BEGIN; {BATCH_PLANS}"))
            .await?;
        let rows: Vec<(Uuid, Option<i64>)> = sqlx::query_as(
            "WITH taken AS (DELETE FROM notification_feed WHERE id IN \
                 (SELECT id FROM notification_feed ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
                 RETURNING id) \
             SELECT t.id, CASE WHEN n.state = 'pending' \
                 THEN (extract(epoch FROM n.next_attempt_at) * 1000)::int8 END \
             FROM taken t JOIN notifications n ON n.id = t.id",
        )
        .bind(i64::try_from(FEED_BATCH_MAX).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let entries: Vec<(Uuid, i64)> = rows
            .iter()
            .filter_map(|(id, due)| due.map(|due| (*id, due)))
            .collect();
        match schedule.schedule(&entries).await? {
            Some(_) => {
                tx.commit().await?;
                Metrics::add(&self.inner.metrics.fed, entries.len());
                Ok(rows.len())
            }
            None => {
                // Give the feed rows back before the rebuild writes them again.
                tx.rollback().await?;
                self.rebuild(schedule).await?;
                Ok(0)
            }
        }
    }

    /// Copies every PENDING id into the feed and marks the schedule built; one instance at a time.
    #[tracing::instrument(skip_all)]
    async fn rebuild(&self, schedule: &RedisSchedule) -> Result<(), DispatchError> {
        let mut tx = self.inner.db.begin().await?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(REBUILD_LOCK_KEY)
            .fetch_one(&mut *tx)
            .await?;
        if !ours {
            return Ok(());
        }
        let fed = sqlx::query(
            "INSERT INTO notification_feed (id) SELECT id FROM notifications \
             WHERE state = 'pending' ON CONFLICT DO NOTHING",
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        schedule.mark_built(now_ms()).await?;
        self.inner
            .metrics
            .rebuilds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!(
            fed,
            "the notification schedule was missing from redis: rebuilt from postgres"
        );
        Ok(())
    }

    /// Feeds PENDING rows overdue by [`ORPHAN_GRACE`] again (the schedule keeps claimed ones);
    /// the feeder does it every [`ORPHAN_SWEEP_INTERVAL`]. Returns how many it fed.
    ///
    /// # Errors
    /// Postgres failed.
    #[tracing::instrument(skip_all)]
    pub async fn sweep_overdue(&self) -> Result<u64, DispatchError> {
        let fed = sqlx::query!(
            "INSERT INTO notification_feed (id) SELECT id FROM notifications \
             WHERE state = 'pending' AND next_attempt_at < now() - make_interval(secs => $1) \
             ORDER BY next_attempt_at LIMIT $2 ON CONFLICT DO NOTHING",
            ORPHAN_GRACE.as_secs_f64(),
            ORPHAN_SWEEP_ROWS_MAX,
        )
        .execute(&self.inner.db)
        .await?
        .rows_affected();
        Ok(fed)
    }

    /// One worker pass: a batch claimed from Redis, or from Postgres when Redis is not there.
    ///
    /// # Errors
    /// Postgres failed (the batch's rows stay PENDING and are claimed again).
    #[tracing::instrument(skip_all)]
    pub async fn work_once(&self) -> Result<Pass, DispatchError> {
        self.work_once_until(&CancellationToken::new()).await
    }

    /// [`Dispatcher::work_once`] for a worker that may be told to stop mid-batch: once `stop` is
    /// cancelled the batch starts no new send and gives back what it did not finish.
    ///
    /// # Errors
    /// As [`Dispatcher::work_once`].
    pub async fn work_once_until(&self, stop: &CancellationToken) -> Result<Pass, DispatchError> {
        if let Some(schedule) = &self.inner.schedule
            && !schedule.is_resting()
        {
            let now = now_ms();
            let deadline = now.saturating_add(millis(self.inner.settings.visibility_timeout));
            let began = Instant::now();
            let claim = schedule
                .claim(
                    now,
                    self.inner.settings.claim_batch_max,
                    deadline,
                    self.inner.settings.batches_in_flight,
                )
                .await;
            match claim {
                Ok(Claim::Ids(ids)) => {
                    self.inner.metrics.claim_latency.record_micros(
                        u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX),
                    );
                    return self.work_claimed(schedule, &ids, stop).await;
                }
                Ok(Claim::NotBuilt) => {
                    self.rebuild(schedule).await?;
                    return Ok(Pass {
                        source: Source::Redis,
                        claimed: 0,
                        attempted: 0,
                        given_back: 0,
                    });
                }
                // The schedule logged it and rests; this pass works from Postgres.
                Err(_) => {}
            }
        }
        self.work_from_postgres(stop).await
    }

    /// Works ids claimed from Redis: locks their rows, sends the due PENDING ones, records, then
    /// acknowledges every claim (done, or back to `due` at Postgres' next attempt).
    #[tracing::instrument(skip_all, fields(claimed = ids.len()))]
    async fn work_claimed(
        &self,
        schedule: &RedisSchedule,
        ids: &[Uuid],
        stop: &CancellationToken,
    ) -> Result<Pass, DispatchError> {
        let mut pass = Pass {
            source: Source::Redis,
            claimed: ids.len(),
            attempted: 0,
            given_back: 0,
        };
        if ids.is_empty() {
            return Ok(pass);
        }
        Metrics::add(&self.inner.metrics.redis_batches, 1);
        let mut tx = begin_batch(&self.inner.db).await?;
        let locked: Vec<LockedRow> = sqlx::query_as(&LOCK_CLAIMED)
            .bind(ids)
            .fetch_all(&mut *tx)
            .await?;
        let now = now_ms();
        let mut done: Vec<Uuid> = Vec::new();
        let mut later: Vec<(Uuid, i64)> = Vec::new();
        let mut due: Vec<Locked> = Vec::with_capacity(locked.len());
        for row in locked.into_iter().map(Locked::from) {
            if row.state != NotificationState::Pending {
                done.push(row.id);
            } else if row.next_attempt_ms > now.saturating_add(CLOCK_SKEW_TOLERANCE_MS) {
                later.push((row.id, row.next_attempt_ms));
            } else {
                due.push(row);
            }
        }
        if done.len() + later.len() + due.len() < ids.len() {
            // Locked by another worker (it will finish them; the claim comes back at its
            // deadline and finds them done) or not a notification at all (dropped now).
            let seen: std::collections::HashSet<Uuid> = done
                .iter()
                .chain(later.iter().map(|(id, _)| id))
                .chain(due.iter().map(|row| &row.id))
                .copied()
                .collect();
            let missing: Vec<Uuid> = ids
                .iter()
                .filter(|id| !seen.contains(id))
                .copied()
                .collect();
            let existing: Vec<Uuid> =
                sqlx::query_scalar!("SELECT id FROM notifications WHERE id = ANY($1)", &missing)
                    .fetch_all(&mut *tx)
                    .await?;
            done.extend(missing.into_iter().filter(|id| !existing.contains(id)));
        }
        pass.attempted = due.len();
        let written = self.attempt(&due, stop).await;
        record(&mut tx, &written).await?;
        tx.commit().await?;
        for row in &written {
            match row.verdict {
                Verdict::Decided(Decision::Retry { delay_ms, .. }) => {
                    later.push((
                        row.id,
                        now.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX)),
                    ));
                }
                Verdict::Decided(Decision::Sent { .. } | Decision::Failed { .. }) => {
                    done.push(row.id);
                }
                // Back in `due` at its own time (already past): the next claim takes it.
                Verdict::GivenBack { due_ms } => {
                    pass.given_back += 1;
                    later.push((row.id, due_ms));
                }
            }
        }
        self.count(&written);
        if let Err(error) = schedule.ack(&done, &later).await {
            // Recorded in Postgres already: the claims come back at their deadline and are
            // dropped (done) or rescheduled (later) then.
            tracing::warn!(%error, "could not acknowledge claims; they return at their deadline");
        }
        Ok(pass)
    }

    /// Works a batch of due rows claimed from Postgres (Redis is not there).
    #[tracing::instrument(skip_all)]
    async fn work_from_postgres(&self, stop: &CancellationToken) -> Result<Pass, DispatchError> {
        let mut tx = begin_batch(&self.inner.db).await?;
        let rows: Vec<LockedRow> = sqlx::query_as(&LOCK_DUE)
            .bind(i64::try_from(self.inner.settings.claim_batch_max).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await?;
        let due: Vec<Locked> = rows.into_iter().map(Locked::from).collect();
        let mut pass = Pass {
            source: Source::Postgres,
            claimed: due.len(),
            attempted: due.len(),
            given_back: 0,
        };
        if due.is_empty() {
            return Ok(pass);
        }
        Metrics::add(&self.inner.metrics.fallback_batches, 1);
        let written = self.attempt(&due, stop).await;
        record(&mut tx, &written).await?;
        // The commit frees the rows given back; they are due, and the next claim takes them.
        tx.commit().await?;
        pass.given_back = written
            .iter()
            .filter(|row| matches!(row.verdict, Verdict::GivenBack { .. }))
            .count();
        self.count(&written);
        Ok(pass)
    }

    /// Sends every due notification to each of its user's devices not served before, with
    /// bounded concurrency, and decides each one's next state. Once `stop` is cancelled no new
    /// send starts; the sends in flight finish, and a notification with a device left untried is
    /// given back.
    async fn attempt(&self, due: &[Locked], stop: &CancellationToken) -> Vec<Written> {
        let rendered: Vec<message::Rendered> = due
            .iter()
            .map(|row| message::render(&row.kind, &row.payload))
            .collect();
        let ids: Vec<String> = due.iter().map(|row| row.id.to_string()).collect();
        // (row, device) indexes and the request body: owned, so the sends borrow nothing.
        let mut refused: Vec<(usize, usize, DeviceOutcome)> = Vec::new();
        let mut jobs: Vec<(usize, usize, bytes::Bytes)> = Vec::new();
        for (index, row) in due.iter().enumerate() {
            let outgoing = Outgoing {
                id: &ids[index],
                kind: &row.kind,
                payload: &row.payload,
                rendered: &rendered[index],
            };
            for (device_index, device) in row.devices.iter().enumerate() {
                if !row.delivered.contains(&device.device_id) {
                    match message::send_body(device.platform, &device.token, &outgoing) {
                        Ok(body) => jobs.push((index, device_index, body)),
                        Err(error) => refused.push((
                            index,
                            device_index,
                            DeviceOutcome::Refused(format!("encoding: {error}")),
                        )),
                    }
                }
            }
        }
        let mut untried: Vec<usize> = vec![0; due.len()];
        for (row, _, _) in &jobs {
            untried[*row] += 1;
        }
        let fcm = self.inner.fcm.clone();
        let stopping = stop.clone();
        let results: Vec<(usize, usize, DeviceOutcome)> = futures::stream::iter(jobs)
            // Checked as each send is about to start: after `stop`, none does.
            .take_while(move |_| futures::future::ready(!stopping.is_cancelled()))
            .map(move |(row, device, body)| {
                let fcm = fcm.clone();
                async move { (row, device, fcm.send(body).await) }
            })
            .buffer_unordered(self.inner.settings.sends_per_batch_in_flight)
            .collect()
            .await;
        let mut outcomes: Vec<Vec<(String, DeviceOutcome)>> =
            due.iter().map(|_| Vec::new()).collect();
        let mut written: Vec<Written> = due
            .iter()
            .map(|row| Written {
                id: row.id,
                verdict: Verdict::GivenBack {
                    due_ms: row.next_attempt_ms,
                },
                delivered_now: Vec::new(),
                dead: Vec::new(),
            })
            .collect();
        for (row, _, _) in &results {
            untried[*row] -= 1;
        }
        for (row, device, outcome) in results.into_iter().chain(refused) {
            let device = &due[row].devices[device];
            match &outcome {
                DeviceOutcome::Delivered => {
                    written[row].delivered_now.push(device.device_id.clone());
                }
                DeviceOutcome::TokenGone(_) => written[row].dead.push((
                    due[row].user_id.clone(),
                    device.device_id.clone(),
                    device.token.clone(),
                )),
                _ => {}
            }
            outcomes[row].push((device.device_id.clone(), outcome));
        }
        for (index, row) in due.iter().enumerate() {
            if untried[index] > 0 {
                continue;
            }
            let attempt = u32::try_from(row.attempts)
                .unwrap_or(ATTEMPTS_MAX)
                .saturating_add(1);
            written[index].verdict = Verdict::Decided(outcome::decide(
                attempt,
                row.delivered.len(),
                &outcomes[index],
                self.inner.settings.backoff,
                Uuid::new_v4().as_u64_pair().0,
            ));
        }
        written
    }

    fn count(&self, written: &[Written]) {
        let metrics = &self.inner.metrics;
        let mut failed: Vec<(Uuid, &str)> = Vec::new();
        for row in written {
            Metrics::add(&metrics.messages_delivered, row.delivered_now.len());
            Metrics::add(&metrics.tokens_deleted, row.dead.len());
            match &row.verdict {
                Verdict::Decided(Decision::Sent { .. }) => Metrics::add(&metrics.sent, 1),
                Verdict::Decided(Decision::Retry { .. }) => Metrics::add(&metrics.retried, 1),
                Verdict::Decided(Decision::Failed { last_error }) => {
                    failed.push((row.id, last_error));
                }
                Verdict::GivenBack { .. } => {}
            }
        }
        if let Some((first, last_error)) = failed.first() {
            Metrics::add(&metrics.failed, failed.len());
            Metrics::add(&metrics.alerts, failed.len());
            /// An alert names this many ids; the rest are in the table (state 'failed').
            const ALERT_IDS_MAX: usize = 10;
            let ids: Vec<String> = failed
                .iter()
                .take(ALERT_IDS_MAX)
                .map(|(id, _)| id.to_string())
                .collect();
            tracing::error!(
                alert = "notifications_failed",
                count = failed.len(),
                first = %first,
                ids = ?ids,
                last_error,
                "notifications FAILED after their retries or a permanent refusal"
            );
        }
    }
}

/// Plans for the dispatcher's statements. Each touches at most a batch of rows, found by key or
/// in index order; a plan that reads every PENDING row (a bitmap scan of `notifications_due`
/// sorted afterwards, or hashed for a join) is never right. But right after a burst of new
/// notifications — the moment throughput matters — the table's statistics are stale and say there
/// are a few hundred PENDING rows, and the planner picks exactly those plans (measured: 35–140 ms
/// per statement with 300,000 PENDING, and the whole drain at two thirds of its speed). These
/// settings leave it index lookups in nested loops and ordered index scans, which are right
/// whatever the statistics say. `SET LOCAL`: they end with the transaction.
const BATCH_PLANS: &str = "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_hashjoin = off; \
     SET LOCAL enable_mergejoin = off; SET LOCAL enable_sort = off; SET LOCAL enable_seqscan = off";

/// Sets up a batch's transaction:
/// - Postgres ends it (freeing its row locks) if the worker hangs mid-batch;
/// - its commit does not wait for the WAL flush. A crash of Postgres may then forget the last
///   few milliseconds of outcomes: those notifications are PENDING again and sent again, which
///   at-least-once delivery allows and the notification id hides from the user. Nothing else is
///   written here (the notifications themselves were committed, flushed, with their events);
/// - its statements are planned as [`BATCH_PLANS`] says.
///
/// All of it travels with `BEGIN` in one round trip.
async fn begin_batch(
    db: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    db.begin_with(format!(
        "BEGIN; SET LOCAL idle_in_transaction_session_timeout = {}; \
         SET LOCAL synchronous_commit = off; {BATCH_PLANS}",
        BATCH_TRANSACTION_IDLE_MAX.as_millis()
    ))
    .await
}

/// Writes every attempted notification's outcome (one statement) and deletes dead tokens (only
/// the token FCM refused: a device that re-registered meanwhile keeps its new one). A retried row
/// gets its next attempt here; in Redis the acknowledgement puts it back at that time, and after
/// the fallback the id Redis may still hold is bounced to that time when claimed. A row given back
/// by a stopping worker keeps its attempts and its time; only the devices it reached are written.
#[tracing::instrument(skip_all, fields(rows = written.len()))]
async fn record(conn: &mut PgConnection, written: &[Written]) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let mut ids = Vec::with_capacity(written.len());
    let mut states = Vec::with_capacity(written.len());
    let mut errors: Vec<Option<String>> = Vec::with_capacity(written.len());
    let mut next: Vec<Option<i64>> = Vec::with_capacity(written.len());
    let mut delivered = Vec::with_capacity(written.len());
    let mut counted = Vec::with_capacity(written.len());
    let mut dead_users = Vec::new();
    let mut dead_devices = Vec::new();
    let mut dead_tokens = Vec::new();
    for row in written {
        let (state, error, at) = match &row.verdict {
            Verdict::Decided(Decision::Sent { last_error, .. }) => {
                (NotificationState::Sent, last_error.clone(), None)
            }
            Verdict::Decided(Decision::Retry {
                delay_ms,
                last_error,
            }) => (
                NotificationState::Pending,
                Some(last_error.clone()),
                Some(now.saturating_add(i64::try_from(*delay_ms).unwrap_or(i64::MAX))),
            ),
            Verdict::Decided(Decision::Failed { last_error }) => {
                (NotificationState::Failed, Some(last_error.clone()), None)
            }
            // Nothing to write unless some device got it (or lost its token) before the stop.
            Verdict::GivenBack { .. } if row.delivered_now.is_empty() && row.dead.is_empty() => {
                continue;
            }
            Verdict::GivenBack { .. } => (NotificationState::Pending, None, None),
        };
        ids.push(row.id);
        counted.push(matches!(row.verdict, Verdict::Decided(_)));
        states.push(state);
        errors.push(error);
        next.push(at);
        delivered
            .push(serde_json::to_string(&row.delivered_now).unwrap_or_else(|_| "[]".to_owned()));
        for (user, device, token) in &row.dead {
            dead_users.push(user.as_str());
            dead_devices.push(device.as_str());
            dead_tokens.push(token.as_str());
        }
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE notifications AS n SET \
             state = u.state, \
             attempts = n.attempts + CASE WHEN u.counted THEN 1 ELSE 0 END, \
             last_error = COALESCE(u.last_error, n.last_error), \
             next_attempt_at = COALESCE(to_timestamp(u.next_ms / 1000.0), n.next_attempt_at), \
             sent_at = CASE WHEN u.state = 'sent' THEN now() END, \
             delivered_devices = n.delivered_devices \
                 || ARRAY(SELECT jsonb_array_elements_text(u.delivered::jsonb)), \
             updated_at = now() \
         FROM UNNEST($1::uuid[], $2::notification_state[], $3::text[], $4::int8[], $5::text[], \
                     $6::bool[]) \
             AS u(id, state, last_error, next_ms, delivered, counted) \
         WHERE n.id = u.id AND n.state = 'pending'",
    )
    .bind(&ids)
    .bind(&states)
    .bind(&errors)
    .bind(&next)
    .bind(&delivered)
    .bind(&counted)
    .execute(&mut *conn)
    .await?;
    if !dead_tokens.is_empty() {
        sqlx::query(
            "DELETE FROM user_devices d USING UNNEST($1::text[], $2::text[], $3::text[]) \
                 AS g(user_id, device_id, token) \
             WHERE d.user_id = g.user_id AND d.device_id = g.device_id AND d.token = g.token",
        )
        .bind(&dead_users)
        .bind(&dead_devices)
        .bind(&dead_tokens)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
