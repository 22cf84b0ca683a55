//! The schedule in Redis: which notification is due when. Postgres holds every notification and
//! its state; this is an index over the PENDING ones that lets workers find due work without
//! polling Postgres, and it can be lost at any moment (docs/decisions/0009-notifications.md).
//!
//! Three keys, sharing one hash tag so a cluster keeps them in one slot:
//! - `{prefix}:due`, a sorted set of notification ids scored by the next attempt (unix ms);
//! - `{prefix}:inflight`, a sorted set of claimed ids scored by their visibility deadline: a
//!   worker that dies holding claims loses them when the deadline passes, and the next claim
//!   moves them back to `due`;
//! - `{prefix}:built`, set once the schedule holds every PENDING row. A Redis that was flushed or
//!   restarted empty lacks it: every script then refuses to work and the dispatcher rebuilds the
//!   schedule from Postgres first.
//!
//! All changes are Lua scripts, so each is atomic: a claim cannot hand one id to two workers,
//! and adding an id never disturbs a claim in flight.

use std::{
    sync::{Mutex, PoisonError},
    time::{Duration, Instant},
};

use redis::{AsyncConnectionConfig, Script, aio::MultiplexedConnection};
use uuid::Uuid;

/// Redis answers these scripts in well under a millisecond; half a second means it is gone or
/// drowning, and the dispatcher is better off on Postgres than waiting.
pub const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// After Redis failed, it is not asked again for this long: a dead Redis must not cost every
/// worker pass a connection attempt.
pub const REDIS_RECONNECT_INTERVAL: Duration = Duration::from_secs(1);
/// Ids per script call at most: each is two arguments of an `unpack`, and Lua's C stack holds
/// 8,000 values (LUAI_MAXCSTACK).
pub const SCRIPT_IDS_MAX: usize = 2_000;
/// A claim spread over workers still takes this many ids: below it, a claim's round trips cost
/// more than spreading saves.
pub const CLAIM_SHARE_IDS_MIN: usize = 32;

/// Claims due ids (score ≤ ARGV[1]) into the in-flight set with deadline ARGV[3], first moving
/// claims whose deadline passed back to `due`. Takes at most ARGV[2], and no more than a 1/ARGV[4]
/// share of the backlog — what is due plus what is claimed — (but at least ARGV[5]), so a small
/// backlog is spread evenly over the workers instead of landing on the first. (Counting the claimed
/// ids matters: with only what is still due, each claim of a burst took a share of a smaller rest,
/// 125, 94, 71, 53 of 500, and a second round of claims was needed for the remainder.) Nil when the
/// schedule is not built.
const CLAIM: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return false end
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local share = tonumber(ARGV[4])
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, limit)
if #expired > 0 then
  local back = {}
  for i, id in ipairs(expired) do back[2 * i - 1] = now; back[2 * i] = id end
  redis.call('ZADD', KEYS[1], unpack(back))
  redis.call('ZREM', KEYS[2], unpack(expired))
end
if share > 1 then
  local backlog = redis.call('ZCOUNT', KEYS[1], '-inf', now) + redis.call('ZCARD', KEYS[2])
  limit = math.min(limit, math.max(tonumber(ARGV[5]), math.ceil(backlog / share)))
end
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
if #ids > 0 then
  local claimed = {}
  for i, id in ipairs(ids) do claimed[2 * i - 1] = ARGV[3]; claimed[2 * i] = id end
  -- They are the lowest-ranked: removing by rank skips a lookup per id.
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, #ids - 1)
  redis.call('ZADD', KEYS[2], unpack(claimed))
end
return ids
";

/// Puts (score, id) pairs into `due` unless the id is claimed (in flight): Postgres' next attempt
/// is the truth, so an id already due gets its score. -1 when the schedule is not built.
/// Two commands whatever the number of ids (one lookup of them all in `inflight`, one `ZADD`):
/// Redis runs scripts one at a time, and a claim waiting behind a feed of 2,000 ids is a worker
/// waiting.
const SCHEDULE: &str = r"
if redis.call('EXISTS', KEYS[3]) == 0 then return -1 end
local ids = {}
for i = 2, #ARGV, 2 do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return 0 end
local claimed = redis.call('ZMSCORE', KEYS[2], unpack(ids))
local free = {}
for i = 1, #ids do
  if not claimed[i] then
    free[#free + 1] = ARGV[2 * i - 1]
    free[#free + 1] = ids[i]
  end
end
if #free > 0 then redis.call('ZADD', KEYS[1], unpack(free)) end
return #free / 2
";

/// Ends claims: the first ARGV[1] ids are done (dropped); the (score, id) pairs after them go
/// back to `due` at that score.
const ACK: &str = r"
local done = tonumber(ARGV[1])
if done > 0 then redis.call('ZREM', KEYS[2], unpack(ARGV, 2, done + 1)) end
for i = done + 2, #ARGV, 2 do
  redis.call('ZREM', KEYS[2], ARGV[i + 1])
  redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 1
";

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis is resting after a failure")]
    Resting,
    #[error("redis answered an id that is not a uuid")]
    BadId,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    Ids(Vec<Uuid>),
    /// The schedule was lost (no `built` key): rebuild it before claiming.
    NotBuilt,
}

/// The three keys.
#[derive(Debug, Clone)]
pub struct Keys {
    pub due: String,
    pub inflight: String,
    pub built: String,
}

impl Keys {
    #[must_use]
    pub fn new(prefix: &str) -> Self {
        Self {
            due: format!("{{{prefix}}}:due"),
            inflight: format!("{{{prefix}}}:inflight"),
            built: format!("{{{prefix}}}:built"),
        }
    }
}

/// The schedule's Redis, with one shared connection that is dropped on the first error and
/// re-opened no sooner than [`REDIS_RECONNECT_INTERVAL`] later.
pub struct RedisSchedule {
    client: redis::Client,
    keys: Keys,
    connection: Mutex<Option<MultiplexedConnection>>,
    resting_until: Mutex<Option<Instant>>,
    connecting: tokio::sync::Mutex<()>,
    claim: Script,
    schedule: Script,
    ack: Script,
}

impl std::fmt::Debug for RedisSchedule {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RedisSchedule")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl RedisSchedule {
    #[must_use]
    pub fn new(client: redis::Client, prefix: &str) -> Self {
        Self {
            client,
            keys: Keys::new(prefix),
            connection: Mutex::new(None),
            resting_until: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            claim: Script::new(CLAIM),
            schedule: Script::new(SCHEDULE),
            ack: Script::new(ACK),
        }
    }

    #[must_use]
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Whether Redis failed recently (the dispatcher then works from Postgres without asking).
    #[must_use]
    pub fn is_resting(&self) -> bool {
        self.resting_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| Instant::now() < until)
    }

    fn current(&self) -> Option<MultiplexedConnection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn connection(&self) -> Result<MultiplexedConnection, ScheduleError> {
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        if self.is_resting() {
            return Err(ScheduleError::Resting);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(connection) = self.current() {
            return Ok(connection);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(REDIS_TIMEOUT)
            .set_response_timeout(REDIS_TIMEOUT);
        match self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
        {
            Ok(connection) => {
                tracing::info!("notification schedule: redis connected");
                *self
                    .connection
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(connection.clone());
                Ok(connection)
            }
            Err(error) => Err(self.failed(error)),
        }
    }

    /// Drops the connection and rests; returns the error for the caller.
    fn failed(&self, error: redis::RedisError) -> ScheduleError {
        let was_up = self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some();
        *self
            .resting_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some(Instant::now() + REDIS_RECONNECT_INTERVAL);
        if was_up {
            tracing::warn!(%error, "notification schedule: redis failed; working from postgres");
        }
        ScheduleError::Redis(error)
    }

    /// Claims up to `limit` ids due at `now_ms` (and no more than a `1/share` of those due or
    /// claimed, but at least [`CLAIM_SHARE_IDS_MIN`]), invisible to other claims until
    /// `deadline_ms`.
    ///
    /// # Errors
    /// Redis failed or is resting; [`ScheduleError::BadId`] if something else wrote the keys.
    #[tracing::instrument(skip(self))]
    pub async fn claim(
        &self,
        now_ms: i64,
        limit: usize,
        deadline_ms: i64,
        share: usize,
    ) -> Result<Claim, ScheduleError> {
        debug_assert!(limit <= SCRIPT_IDS_MAX);
        let mut connection = self.connection().await?;
        let answer: Option<Vec<String>> = self
            .claim
            .key(&self.keys.due)
            .key(&self.keys.inflight)
            .key(&self.keys.built)
            .arg(now_ms)
            .arg(limit)
            .arg(deadline_ms)
            .arg(share)
            .arg(CLAIM_SHARE_IDS_MIN)
            .invoke_async(&mut connection)
            .await
            .map_err(|error| self.failed(error))?;
        let Some(ids) = answer else {
            return Ok(Claim::NotBuilt);
        };
        ids.iter()
            .map(|id| Uuid::try_parse(id).map_err(|_| ScheduleError::BadId))
            .collect::<Result<_, _>>()
            .map(Claim::Ids)
    }

    /// Puts `entries` (id, due at in unix ms) into the schedule, leaving claimed ids alone.
    /// `Ok(None)` when the schedule is not built.
    ///
    /// # Errors
    /// Redis failed or is resting.
    #[tracing::instrument(skip_all, fields(entries = entries.len()))]
    pub async fn schedule(&self, entries: &[(Uuid, i64)]) -> Result<Option<usize>, ScheduleError> {
        let mut connection = self.connection().await?;
        let mut added = 0;
        for chunk in entries.chunks(SCRIPT_IDS_MAX) {
            let mut invocation = self.schedule.prepare_invoke();
            invocation
                .key(&self.keys.due)
                .key(&self.keys.inflight)
                .key(&self.keys.built);
            for (id, due_ms) in chunk {
                invocation.arg(*due_ms).arg(id.to_string());
            }
            let answer: i64 = invocation
                .invoke_async(&mut connection)
                .await
                .map_err(|error| self.failed(error))?;
            match usize::try_from(answer) {
                Ok(count) => added += count,
                Err(_) => return Ok(None),
            }
        }
        Ok(Some(added))
    }

    /// Ends claims: `done` ids leave the schedule, `later` ones go back to `due` at their time.
    ///
    /// # Errors
    /// Redis failed or is resting (the claims then come back at their deadline).
    #[tracing::instrument(skip_all, fields(done = done.len(), later = later.len()))]
    pub async fn ack(&self, done: &[Uuid], later: &[(Uuid, i64)]) -> Result<(), ScheduleError> {
        if done.is_empty() && later.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection().await?;
        for chunk in done.chunks(SCRIPT_IDS_MAX) {
            self.invoke_ack(&mut connection, chunk, &[]).await?;
        }
        for chunk in later.chunks(SCRIPT_IDS_MAX) {
            self.invoke_ack(&mut connection, &[], chunk).await?;
        }
        Ok(())
    }

    async fn invoke_ack(
        &self,
        connection: &mut MultiplexedConnection,
        done: &[Uuid],
        later: &[(Uuid, i64)],
    ) -> Result<(), ScheduleError> {
        let mut invocation = self.ack.prepare_invoke();
        invocation
            .key(&self.keys.due)
            .key(&self.keys.inflight)
            .arg(done.len());
        for id in done {
            invocation.arg(id.to_string());
        }
        for (id, due_ms) in later {
            invocation.arg(*due_ms).arg(id.to_string());
        }
        let _: i64 = invocation
            .invoke_async(connection)
            .await
            .map_err(|error| self.failed(error))?;
        Ok(())
    }

    /// Marks the schedule as holding every PENDING row (after a rebuild).
    ///
    /// # Errors
    /// Redis failed or is resting.
    #[tracing::instrument(skip(self))]
    pub async fn mark_built(&self, now_ms: i64) -> Result<(), ScheduleError> {
        let mut connection = self.connection().await?;
        redis::cmd("SET")
            .arg(&self.keys.built)
            .arg(now_ms)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|error| self.failed(error))
    }

    /// How many ids are due and in flight (for tests, benchmarks and a queue-depth gauge).
    ///
    /// # Errors
    /// Redis failed or is resting.
    #[tracing::instrument(skip(self))]
    pub async fn depth(&self) -> Result<(u64, u64), ScheduleError> {
        let mut connection = self.connection().await?;
        redis::pipe()
            .zcard(&self.keys.due)
            .zcard(&self.keys.inflight)
            .query_async(&mut connection)
            .await
            .map_err(|error| self.failed(error))
    }
}
