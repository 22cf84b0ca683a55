//! The challenge lifecycle, driven by the platform's clock (test clock included):
//! RECRUITING → READY (or CANCELED below the minimum) → IN_PROGRESS → ENDED → SETTLED.
//!
//! Every transition is one conditional `UPDATE … WHERE state = 'from' AND due` over rows claimed
//! with `FOR UPDATE SKIP LOCKED`, so it happens once however many core instances run the loop.
//! The money steps are restartable batches:
//! - a canceled challenge refunds every stake into the lots it came from, one participant row
//!   marked `refunded_at` in the same transaction as its refund;
//! - settlement computes every payout once (the domain's `settle`, in one transaction with the
//!   payout rows), then posts them in batches (bulk credits, `posted_at` and the notifications in
//!   one transaction per batch), then moves the house's share and marks the challenge settled.
//!   Killed at any moment and rerun, it continues where it stopped and the ledger ends the same.
//!
//! Told to stop (SIGTERM), the scheduler finishes the transaction in hand and stops between
//! batches and steps: what is left is due work that the next pass (on any replica) picks up.

use std::time::Duration;

use nene_domain::{
    Points,
    rules::RawRules,
    settlement::{Participant, settle},
};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    ledger::{
        self, AccountId, BulkCredit, IdempotencyKey, LedgerError, LotSource, Refund, SystemAccount,
        TransferId,
    },
    proofs,
};

/// How often the scheduler looks for due transitions: a minute late closes recruitment a minute
/// late, which the room's own refusals cover; tests run it directly.
pub const SCHEDULER_INTERVAL: Duration = Duration::from_secs(5);
/// Challenges moved per transition per pass: bounds one statement's locks.
pub const TRANSITIONS_PER_PASS: i64 = 100;
/// Payouts posted per transaction: two bulk-credit rows each, within the ledger's bulk bound.
pub const PAYOUT_BATCH: i64 = 2_000;
/// Cancellation refunds per transaction.
pub const REFUND_BATCH: i64 = 200;
const _: () = assert!(PAYOUT_BATCH as usize * 2 <= ledger::BULK_CREDIT_MAX);

#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("settlement: {0}")]
    Settlement(String),
}

/// Our own idempotency keys are built from ids: one that is not a key is a ledger request error.
impl From<crate::ledger::InvalidIdempotencyKey> for LifecycleError {
    fn from(error: crate::ledger::InvalidIdempotencyKey) -> Self {
        crate::ledger::LedgerError::from(error).into()
    }
}

/// Proof reminders go out this long before a day's window closes.
pub const REMINDER_LEAD_SECONDS: i64 = 3_600;
/// Quiet hours, local time, in minutes of the day: no reminder from 22:00 until 08:00; a
/// reminder due in them moves to 08:00 if the window is still open then, else it is skipped.
pub const QUIET_HOURS_START_MINUTE: i64 = 22 * 60;
pub const QUIET_HOURS_END_MINUTE: i64 = 8 * 60;

/// When the reminder for challenge day `day` is due, if it is to be sent at all: an hour before
/// the window closes (not before it opens), moved out of quiet hours.
#[must_use]
pub fn reminder_at(rules: &nene_domain::rules::ChallengeRules, day: u32) -> Option<i64> {
    let opens = rules.window_opens_at(day);
    let closes = rules.window_closes_at(day);
    let at = (closes - REMINDER_LEAD_SECONDS).max(opens);
    let offset = i64::from(rules.utc_offset_seconds());
    let minute = (at + offset).rem_euclid(86_400) / 60;
    let quiet = !(QUIET_HOURS_END_MINUTE..QUIET_HOURS_START_MINUTE).contains(&minute);
    if !quiet {
        return Some(at);
    }
    if minute >= QUIET_HOURS_START_MINUTE {
        return None;
    }
    let quiet_end = at + (QUIET_HOURS_END_MINUTE - minute) * 60;
    (quiet_end < closes).then_some(quiet_end)
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub closed: u64,
    pub canceled: u64,
    pub started: u64,
    pub ended: u64,
    pub refunded: u64,
    pub settled: u64,
    pub reminded: u64,
}

/// How long the push to the edge may take: it only saves the room a round trip to the core.
pub const ROOM_PUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Tells the edge — and through it the challenge's `ChallengeRoom` — that recruitment closed, so
/// the room refuses joins at once instead of learning it from the core's next refusal. Signed with
/// the edge↔core secret. Best effort: correctness never depends on it (the core refuses joins to a
/// closed challenge on its own).
#[derive(Clone)]
pub struct RoomPusher {
    http: reqwest::Client,
    edge_url: String,
    secret: nene_domain::signing::SigningSecret,
}

impl RoomPusher {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        edge_url: &str,
        secret: nene_domain::signing::SigningSecret,
        tls: &crate::tls::Trust,
    ) -> Result<Self, crate::tls::ClientError> {
        Ok(RoomPusher {
            http: tls
                .http(crate::tls::HttpVersions::Http1)?
                .timeout(ROOM_PUSH_TIMEOUT)
                .build()?,
            edge_url: edge_url.trim_end_matches('/').to_owned(),
            secret,
        })
    }

    async fn close(&self, challenge: Uuid) {
        use nene_domain::signing::{HEADER_SIGNATURE, HEADER_TIMESTAMP, SignedParts};
        let path = nene_domain::internal_api::edge_room_close(&challenge.to_string());
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let signature = self.secret.sign(&SignedParts {
            method: "POST",
            path_and_query: &path,
            timestamp_unix_seconds: timestamp,
            user: "",
            body: b"",
        });
        let sent = self
            .http
            .post(format!("{}{path}", self.edge_url))
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(HEADER_SIGNATURE, signature)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(%challenge, status = %response.status(), "room close refused");
            }
            Err(error) => tracing::warn!(%challenge, %error, "room close not delivered"),
        }
    }
}

/// Runs the scheduler until `stop`, which it obeys between batches.
pub async fn run(db: PgPool, rooms: Option<RoomPusher>, stop: CancellationToken) {
    let mut interval = tokio::time::interval(SCHEDULER_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = interval.tick() => {}
        }
        match run_once_until(&db, rooms.as_ref(), &stop).await {
            Ok(pass) if pass != Pass::default() => tracing::info!(?pass, "lifecycle pass"),
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "lifecycle pass failed"),
        }
    }
    tracing::info!("lifecycle scheduler stopped between batches; the next pass resumes");
}

/// One pass of every transition and money step that is due.
///
/// # Errors
/// When Postgres or the ledger fails; what was committed stays, the next pass continues.
pub async fn run_once(db: &PgPool) -> Result<Pass, LifecycleError> {
    run_once_with(db, None).await
}

/// [`run_once`], pushing closed recruitments to the rooms through `rooms`.
///
/// # Errors
/// As [`run_once`].
pub async fn run_once_with(
    db: &PgPool,
    rooms: Option<&RoomPusher>,
) -> Result<Pass, LifecycleError> {
    run_once_until(db, rooms, &CancellationToken::new()).await
}

/// [`run_once_with`], returning early between steps and batches once `stop` is cancelled (what
/// it leaves is still due, for the next pass).
///
/// # Errors
/// As [`run_once`].
pub async fn run_once_until(
    db: &PgPool,
    rooms: Option<&RoomPusher>,
    stop: &CancellationToken,
) -> Result<Pass, LifecycleError> {
    let mut pass = Pass::default();
    let closed: Vec<(Uuid, String)> = sqlx::query_as(
        "UPDATE challenges SET state = CASE WHEN participants >= min_participants \
             THEN 'ready'::challenge_state ELSE 'canceled'::challenge_state END \
         WHERE id IN (SELECT id FROM challenges WHERE state = 'recruiting' \
                      AND recruit_ends_at <= platform_now() ORDER BY recruit_ends_at \
                      LIMIT $1 FOR UPDATE SKIP LOCKED) \
         RETURNING id, state::text",
    )
    .bind(TRANSITIONS_PER_PASS)
    .fetch_all(db)
    .await?;
    for (challenge, state) in &closed {
        if state == "canceled" {
            pass.canceled += 1;
        } else {
            pass.closed += 1;
        }
        // Best effort, and a few seconds each: not worth holding the shutdown for.
        if let Some(rooms) = rooms.filter(|_| !stop.is_cancelled()) {
            rooms.close(*challenge).await;
        }
    }
    if stop.is_cancelled() {
        return Ok(pass);
    }
    pass.started = transition(db, "ready", "in_progress", "starts_at").await?;
    pass.ended = transition(db, "in_progress", "ended", "ends_at").await?;
    let canceled: Vec<Uuid> = sqlx::query_scalar(
        "SELECT DISTINCT c.id FROM challenges c JOIN challenge_participants p \
             ON p.challenge_id = c.id AND p.refunded_at IS NULL \
         WHERE c.state = 'canceled' LIMIT $1",
    )
    .bind(TRANSITIONS_PER_PASS)
    .fetch_all(db)
    .await?;
    for challenge in canceled {
        pass.refunded += refund_stakes(db, challenge, stop).await?;
        if stop.is_cancelled() {
            return Ok(pass);
        }
    }
    pass.reminded = remind(db, stop).await?;
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM challenges WHERE state = 'ended' AND review_ends_at <= platform_now() \
         ORDER BY review_ends_at LIMIT $1",
    )
    .bind(TRANSITIONS_PER_PASS)
    .fetch_all(db)
    .await?;
    for challenge in due {
        if stop.is_cancelled() {
            break;
        }
        if settle_challenge_until(db, challenge, stop).await? {
            pass.settled += 1;
        }
    }
    Ok(pass)
}

/// Queues today's proof reminder for every participant of a running challenge who has not proved
/// today, once the reminder is due (see [`reminder_at`]) and while the window is open. One per
/// participant and day (the dedup key), however often the scheduler runs.
async fn remind(db: &PgPool, stop: &CancellationToken) -> Result<u64, LifecycleError> {
    let running: Vec<(Uuid, sqlx::types::Json<RawRules>, i64)> = sqlx::query_as(
        "SELECT id, rules, floor(extract(epoch FROM platform_now()))::int8 FROM challenges \
         WHERE state = 'in_progress' AND rules IS NOT NULL LIMIT $1",
    )
    .bind(TRANSITIONS_PER_PASS)
    .fetch_all(db)
    .await?;
    let mut queued = 0;
    for (challenge, rules, now) in running {
        if stop.is_cancelled() {
            break;
        }
        let Ok(rules) = nene_domain::rules::ChallengeRules::parse(&rules.0) else {
            continue;
        };
        let Some(day) = rules.day_of(now) else {
            continue;
        };
        let due = reminder_at(&rules, day).is_some_and(|at| at <= now);
        if !due || now >= rules.window_closes_at(day) {
            continue;
        }
        let mut tx = db.begin().await?;
        let missing: Vec<String> = sqlx::query_scalar(
            "SELECT p.user_id FROM challenge_participants p \
             WHERE p.challenge_id = $1 AND NOT EXISTS (SELECT 1 FROM proofs f \
                 WHERE f.challenge_id = $1 AND f.user_id = p.user_id AND f.day = $2) \
             AND NOT EXISTS (SELECT 1 FROM notifications n \
                 WHERE n.dedup_key = 'reminder:' || $1 || ':' || $2 || ':' || p.user_id)",
        )
        .bind(challenge)
        .bind(i32::try_from(day).unwrap_or(i32::MAX))
        .fetch_all(&mut *tx)
        .await?;
        for user in &missing {
            crate::notifications::enqueue_in_tx(
                &mut tx,
                user,
                crate::notifications::NotificationKind::ProofReminder,
                &serde_json::json!({
                    "challenge": challenge,
                    "day": day,
                    "window_closes_at": nene_domain::time::format_rfc3339(rules.window_closes_at(day)),
                }),
                &format!("reminder:{challenge}:{day}:{user}"),
            )
            .await?;
        }
        tx.commit().await?;
        queued += u64::try_from(missing.len()).unwrap_or(0);
    }
    Ok(queued)
}

async fn transition(
    db: &PgPool,
    from: &str,
    to: &str,
    due_column: &'static str,
) -> Result<u64, LifecycleError> {
    let moved = sqlx::query(&format!(
        "UPDATE challenges SET state = $2::challenge_state \
         WHERE id IN (SELECT id FROM challenges WHERE state = $1::challenge_state \
                      AND {due_column} <= platform_now() LIMIT $3 FOR UPDATE SKIP LOCKED)"
    ))
    .bind(from)
    .bind(to)
    .bind(TRANSITIONS_PER_PASS)
    .execute(db)
    .await?
    .rows_affected();
    Ok(moved)
}

/// Gives every stake of a canceled challenge back to the lots it was paid from, in batches,
/// stopping between batches once `stop` is cancelled. Returns how many it refunded.
///
/// # Errors
/// Postgres or ledger failures; committed batches stay.
pub async fn refund_stakes(
    db: &PgPool,
    challenge: Uuid,
    stop: &CancellationToken,
) -> Result<u64, LifecycleError> {
    let mut refunded = 0;
    while !stop.is_cancelled() {
        let mut tx = db.begin().await?;
        let batch: Vec<(String, Uuid, i64)> = sqlx::query_as(
            "SELECT p.user_id, p.join_transfer_id, t.amount FROM challenge_participants p \
             JOIN ledger_transfers t ON t.id = p.join_transfer_id \
             WHERE p.challenge_id = $1 AND p.refunded_at IS NULL \
             ORDER BY p.user_id LIMIT $2 FOR UPDATE OF p SKIP LOCKED",
        )
        .bind(challenge)
        .bind(REFUND_BATCH)
        .fetch_all(&mut *tx)
        .await?;
        if batch.is_empty() {
            return Ok(refunded);
        }
        for (user, debit, amount) in &batch {
            ledger::refund_in_tx(
                &mut tx,
                &Refund {
                    key: IdempotencyKey::parse(&format!("cancel:{challenge}:{user}"))?,
                    debit: TransferId(*debit),
                    amount: points(*amount)?,
                },
            )
            .await?;
            crate::notifications::enqueue_in_tx(
                &mut tx,
                user,
                crate::notifications::NotificationKind::ChallengeCanceled,
                &serde_json::json!({ "challenge": challenge, "refund": amount }),
                &format!("challenge-canceled:{challenge}:{user}"),
            )
            .await?;
        }
        let users: Vec<&str> = batch.iter().map(|(user, _, _)| user.as_str()).collect();
        sqlx::query(
            "UPDATE challenge_participants SET refunded_at = now() \
             WHERE challenge_id = $1 AND user_id = ANY($2)",
        )
        .bind(challenge)
        .bind(&users)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        refunded += u64::try_from(batch.len()).unwrap_or(0);
    }
    Ok(refunded)
}

fn points(amount: i64) -> Result<Points, LedgerError> {
    Points::new(amount).map_err(|_| LedgerError::Inconsistent("a negative amount"))
}

/// Settles one ENDED challenge whose reviews have closed. Returns whether it finished now.
///
/// # Errors
/// Postgres or ledger failures; committed steps stay and a rerun continues.
pub async fn settle_challenge(db: &PgPool, challenge: Uuid) -> Result<bool, LifecycleError> {
    settle_challenge_until(db, challenge, &CancellationToken::new()).await
}

/// [`settle_challenge`], stopping between payout batches once `stop` is cancelled (not finished:
/// `false`; the next pass continues where it stopped).
///
/// # Errors
/// As [`settle_challenge`].
pub async fn settle_challenge_until(
    db: &PgPool,
    challenge: Uuid,
    stop: &CancellationToken,
) -> Result<bool, LifecycleError> {
    let Some(escrow) = compute_payouts(db, challenge).await? else {
        return Ok(false);
    };
    while post_payout_batch(db, challenge, escrow).await? > 0 {
        if stop.is_cancelled() {
            return Ok(false);
        }
    }
    finish(db, challenge, escrow).await
}

/// Step 1, once: every participant's payout, from the domain's `settle`, stored with the
/// settlement's totals in one transaction. Returns the escrow, or `None` if not due.
///
/// # Errors
/// Postgres failures, or a settlement the domain refuses.
pub async fn compute_payouts(
    db: &PgPool,
    challenge: Uuid,
) -> Result<Option<AccountId>, LifecycleError> {
    let mut tx = db.begin().await?;
    let row: Option<(Uuid, sqlx::types::Json<RawRules>, bool)> = sqlx::query_as(
        "SELECT escrow_account_id, rules, review_ends_at <= platform_now() FROM challenges \
         WHERE id = $1 AND state = 'ended' FOR UPDATE",
    )
    .bind(challenge)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((escrow, rules, due)) = row else {
        return Ok(None);
    };
    if !due {
        return Ok(None);
    }
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM challenge_settlements WHERE challenge_id = $1)",
    )
    .bind(challenge)
    .fetch_one(&mut *tx)
    .await?;
    if !exists {
        let rules = nene_domain::rules::ChallengeRules::parse(&rules.0)
            .map_err(|error| LifecycleError::Settlement(error.to_string()))?;
        let counts = proofs::counted_days(&mut tx, challenge, rules.days_per_week()).await?;
        let stake = rules.entry_fee();
        let participants: Vec<Participant> = counts
            .iter()
            .map(|(_, counted)| Participant {
                stake,
                counted_days: u32::try_from(*counted).unwrap_or(0),
            })
            .collect();
        let outcome = settle(rules.required_days(), rules.house_fee_bps(), &participants)
            .map_err(|error| LifecycleError::Settlement(error.to_string()))?;
        insert_payouts(&mut tx, challenge, stake, &counts, &outcome).await?;
    }
    tx.commit().await?;
    Ok(Some(AccountId(escrow)))
}

async fn insert_payouts(
    conn: &mut PgConnection,
    challenge: Uuid,
    stake: Points,
    counts: &[(String, i32)],
    outcome: &nene_domain::settlement::Settlement,
) -> Result<(), LifecycleError> {
    let stakes_total = stake
        .get()
        .checked_mul(i64::try_from(counts.len()).unwrap_or(i64::MAX))
        .ok_or(LedgerError::Overflow)?;
    sqlx::query(
        "INSERT INTO challenge_settlements (challenge_id, participants, stakes, pool, house) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(challenge)
    .bind(i32::try_from(counts.len()).unwrap_or(i32::MAX))
    .bind(stakes_total)
    .bind(outcome.pool.get())
    .bind(outcome.house.get())
    .execute(&mut *conn)
    .await?;
    let users: Vec<&str> = counts.iter().map(|(user, _)| user.as_str()).collect();
    let counted: Vec<i32> = counts.iter().map(|(_, counted)| *counted).collect();
    let refunds: Vec<i64> = outcome.payouts.iter().map(|p| p.refund.get()).collect();
    let prizes: Vec<i64> = outcome.payouts.iter().map(|p| p.prize.get()).collect();
    sqlx::query(
        "INSERT INTO challenge_payouts (challenge_id, user_id, stake, counted_days, refund, prize) \
         SELECT $1, u, $2, c, r, p FROM UNNEST($3::text[], $4::int4[], $5::int8[], $6::int8[]) \
             AS x(u, c, r, p)",
    )
    .bind(challenge)
    .bind(stake.get())
    .bind(&users)
    .bind(&counted)
    .bind(&refunds)
    .bind(&prizes)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Step 2, repeated: one batch of unposted payouts — their credits, `posted_at` and the users'
/// notifications in one transaction. Returns how many payouts it posted.
///
/// # Errors
/// Postgres or ledger failures (the batch rolls back whole).
pub async fn post_payout_batch(
    db: &PgPool,
    challenge: Uuid,
    escrow: AccountId,
) -> Result<u64, LifecycleError> {
    let mut tx = db.begin().await?;
    let batch: Vec<(String, i64, i64, Uuid)> = sqlx::query_as(
        "SELECT p.user_id, p.refund, p.prize, a.id FROM challenge_payouts p \
         JOIN ledger_accounts a ON a.kind = 'user_wallet' AND a.owner_id = p.user_id \
         WHERE p.challenge_id = $1 AND p.posted_at IS NULL \
         ORDER BY p.user_id LIMIT $2 FOR UPDATE OF p SKIP LOCKED",
    )
    .bind(challenge)
    .bind(PAYOUT_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    if batch.is_empty() {
        return Ok(0);
    }
    let mut credits = Vec::with_capacity(batch.len() * 2);
    for (user, refund, prize, wallet) in &batch {
        for (amount, source, what) in [
            (*refund, LotSource::Refund, "refund"),
            (*prize, LotSource::Prize, "prize"),
        ] {
            if amount > 0 {
                credits.push(BulkCredit {
                    key: IdempotencyKey::parse(&format!("settle:{challenge}:{user}:{what}"))?,
                    wallet: AccountId(*wallet),
                    amount: points(amount)?,
                    source,
                });
            }
        }
    }
    ledger::credit_many_in_tx(&mut tx, escrow, &credits).await?;
    let users: Vec<&str> = batch.iter().map(|(user, ..)| user.as_str()).collect();
    let refunds: Vec<i64> = batch.iter().map(|(_, refund, ..)| *refund).collect();
    let prizes: Vec<i64> = batch.iter().map(|(_, _, prize, _)| *prize).collect();
    let ids: Vec<Uuid> = batch.iter().map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "UPDATE challenge_payouts SET posted_at = now() \
         WHERE challenge_id = $1 AND user_id = ANY($2)",
    )
    .bind(challenge)
    .bind(&users)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        // As notifications::enqueue_in_tx, for a whole batch: the row and its feed entry.
        "WITH queued AS ( \
             INSERT INTO notifications (id, user_id, kind, payload, dedup_key) \
             SELECT i, u, 'settlement_result', \
                    jsonb_build_object('challenge', $1::uuid, 'refund', r, 'prize', p), \
                    'settled:' || $1::uuid || ':' || u \
             FROM UNNEST($2::uuid[], $3::text[], $4::int8[], $5::int8[]) AS x(i, u, r, p) \
             ON CONFLICT (dedup_key) DO NOTHING RETURNING id) \
         INSERT INTO notification_feed (id) SELECT id FROM queued",
    )
    .bind(challenge)
    .bind(&ids)
    .bind(&users)
    .bind(&refunds)
    .bind(&prizes)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(u64::try_from(batch.len()).unwrap_or(0))
}

/// Step 3, once: the house's share out of the escrow, and the challenge SETTLED — only when no
/// payout is left unposted (a concurrent settler may still hold a batch).
async fn finish(db: &PgPool, challenge: Uuid, escrow: AccountId) -> Result<bool, LifecycleError> {
    let mut tx = db.begin().await?;
    let state: Option<String> =
        sqlx::query_scalar("SELECT state::text FROM challenges WHERE id = $1 FOR UPDATE")
            .bind(challenge)
            .fetch_optional(&mut *tx)
            .await?;
    if state.as_deref() != Some("ended") {
        return Ok(false);
    }
    let unposted: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM challenge_payouts WHERE challenge_id = $1 \
                        AND posted_at IS NULL)",
    )
    .bind(challenge)
    .fetch_one(&mut *tx)
    .await?;
    if unposted {
        return Ok(false);
    }
    let house: i64 =
        sqlx::query_scalar("SELECT house FROM challenge_settlements WHERE challenge_id = $1")
            .bind(challenge)
            .fetch_one(&mut *tx)
            .await?;
    if house > 0 {
        ledger::transfer_in_tx(
            &mut tx,
            &ledger::Transfer {
                key: IdempotencyKey::parse(&format!("settle:{challenge}:house"))?,
                from: escrow,
                to: ledger::system_account(SystemAccount::House),
                amount: points(house)?,
            },
        )
        .await?;
    }
    sqlx::query(
        "UPDATE challenges SET state = 'settled', settled_at = platform_now() WHERE id = $1",
    )
    .bind(challenge)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE challenge_settlements SET finished_at = now() WHERE challenge_id = $1")
        .bind(challenge)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use nene_domain::rules::{ChallengeRules, RawProofRules, RawRules};

    use super::*;

    /// A one-week Seoul challenge starting 2026-11-30 00:00 local with the given window.
    fn rules(start: &str, end: &str) -> ChallengeRules {
        let starts_at = 1_796_396_400; // 2026-11-30T00:00:00+09:00
        ChallengeRules::parse(&RawRules {
            entry_fee: 10_000,
            capacity: 10,
            min_participants: 2,
            recruit_ends_at: starts_at,
            starts_at,
            ends_at: starts_at + 7 * 86_400,
            proof: RawProofRules {
                days_per_week: 7,
                window_start: start.to_owned(),
                window_end: end.to_owned(),
                time_zone: "Asia/Seoul".to_owned(),
            },
            house_fee_bps: 0,
        })
        .unwrap()
    }

    #[test]
    fn a_reminder_goes_an_hour_before_the_window_closes() {
        let r = rules("06:00", "09:00");
        assert_eq!(reminder_at(&r, 0), Some(r.window_closes_at(0) - 3_600));
        // A window shorter than the lead: remind when it opens.
        let short = rules("12:00", "12:30");
        assert_eq!(reminder_at(&short, 2), Some(short.window_opens_at(2)));
    }

    #[test]
    fn quiet_hours_move_a_reminder_to_eight_or_skip_it() {
        // Closes 08:30: an hour before is 07:30, quiet → 08:00, still open.
        let early = rules("05:00", "08:30");
        assert_eq!(
            reminder_at(&early, 1),
            Some(early.window_closes_at(1) - 30 * 60)
        );
        // Closes 07:30: 08:00 is too late — no reminder.
        assert_eq!(reminder_at(&rules("05:00", "07:30"), 1), None);
        // Closes at midnight: 23:00 is quiet and the window is gone by 08:00.
        assert_eq!(reminder_at(&rules("20:00", "24:00"), 1), None);
    }
}
