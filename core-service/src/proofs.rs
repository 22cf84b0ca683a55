//! Daily proofs: submission inside the day's window by the platform's clock, peer reports,
//! reviews with reason codes, appeals until the review window closes, and what a participant
//! stands to get back (`GET /v1/challenges/{id}/me`), computed by the settlement's own code.
//!
//! What counts: a proof counts while it is `submitted` or `approved`; `reported`, `rejected` and
//! `appealed` do not (until a reviewer decides). Per week at most `days_per_week` proofs count —
//! [`counted_days_sql`] is the one place that says so for the database, and a test holds it to
//! `nene_domain::rules::ChallengeRules::counted_days`.

use nene_domain::{
    ErrorCode,
    rules::{ChallengeRules, OutsideWindow, RawRules},
    settlement::{Participant, settle},
    time::format_rfc3339,
};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::challenges::ChallengeState;

/// Bounds of a proof's texts (as the schema).
pub const IMAGE_URL_LEN_MAX: usize = 2_048;
pub const NOTE_CHARS_MAX: usize = 500;
pub const REASON_CHARS_MAX: usize = 500;
pub const REASON_CODE_LEN_MAX: usize = 50;
/// Longest page of proofs.
pub const PROOF_PAGE_MAX: i64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error("no such challenge or proof")]
    NotFound,
    #[error("not a participant")]
    NotAParticipant,
    /// A participant taking a step that is someone else's: reporting their own proof, appealing
    /// another's.
    #[error("not this participant's step")]
    NotYours,
    #[error("already submitted today")]
    AlreadySubmitted,
    #[error("outside the proof window: {0}")]
    OutsideWindow(OutsideWindow),
    #[error("the proof cannot take this step now")]
    StateConflict,
    #[error("invalid input")]
    Invalid,
    #[error("only reviewers may review")]
    NotAReviewer,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl ProofError {
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            ProofError::NotFound => ErrorCode::NotFound,
            ProofError::NotAParticipant => ErrorCode::NotAParticipant,
            ProofError::NotYours => ErrorCode::Forbidden,
            ProofError::AlreadySubmitted => ErrorCode::ProofAlreadySubmitted,
            ProofError::OutsideWindow(_) => ErrorCode::OutsideProofWindow,
            ProofError::StateConflict => ErrorCode::ProofStateConflict,
            ProofError::Invalid => ErrorCode::ValidationFailed,
            ProofError::NotAReviewer => ErrorCode::Forbidden,
            ProofError::Database(_) => ErrorCode::Internal,
        }
    }
}

/// What the proof paths need of a challenge.
struct ChallengeView {
    state: ChallengeState,
    rules: ChallengeRules,
    review_ends_at: i64,
    now: i64,
}

/// A challenge's state, stored rules, review end and the platform's now.
type ChallengeTimes = (
    ChallengeState,
    Option<sqlx::types::Json<RawRules>>,
    Option<i64>,
    i64,
);

async fn challenge_view(conn: &mut PgConnection, id: Uuid) -> Result<ChallengeView, ProofError> {
    let row: Option<ChallengeTimes> = sqlx::query_as(
        "SELECT state, rules, extract(epoch FROM review_ends_at)::int8, \
                 floor(extract(epoch FROM platform_now()))::int8 FROM challenges WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?;
    let (state, rules, review_ends_at, now) = row.ok_or(ProofError::NotFound)?;
    let rules = rules.ok_or(ProofError::NotFound)?;
    let rules = ChallengeRules::parse(&rules.0).map_err(|_| ProofError::NotFound)?;
    Ok(ChallengeView {
        state,
        rules,
        review_ends_at: review_ends_at.ok_or(ProofError::NotFound)?,
        now,
    })
}

async fn is_participant(
    conn: &mut PgConnection,
    challenge: Uuid,
    user: &str,
) -> Result<bool, ProofError> {
    Ok(sqlx::query_scalar::<_, i32>(
        "SELECT 1 FROM challenge_participants WHERE challenge_id = $1 AND user_id = $2",
    )
    .bind(challenge)
    .bind(user)
    .fetch_optional(conn)
    .await?
    .is_some())
}

/// A proof, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Proof {
    pub id: Uuid,
    pub challenge_id: Uuid,
    pub user_id: String,
    pub day: i32,
    pub image_url: String,
    pub note: String,
    pub state: String,
    pub reason_code: Option<String>,
    pub submitted_at: String,
}

const PROOF_COLUMNS: &str = r#"id, challenge_id, user_id, day, image_url, note, state::text AS state,
    reason_code, to_char(submitted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS submitted_at"#;

/// A proof submission.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProof {
    pub image_url: String,
    #[serde(default)]
    pub note: String,
}

/// Submits today's proof of `user`, timestamped by the platform's clock.
///
/// # Errors
/// `NotFound`, `NotAParticipant`, `OutsideWindow`, `AlreadySubmitted`, `Invalid`.
pub async fn submit(
    db: &PgPool,
    challenge: Uuid,
    user: &str,
    proof: &NewProof,
) -> Result<Proof, ProofError> {
    let url_ok = (1..=IMAGE_URL_LEN_MAX).contains(&proof.image_url.len())
        && (proof.image_url.starts_with("https://") || proof.image_url.starts_with("http://"));
    if !url_ok || proof.note.chars().count() > NOTE_CHARS_MAX {
        return Err(ProofError::Invalid);
    }
    let mut conn = db.acquire().await?;
    let view = challenge_view(&mut conn, challenge).await?;
    if !is_participant(&mut conn, challenge, user).await? {
        return Err(ProofError::NotAParticipant);
    }
    // The scheduler may not have flipped READY to IN_PROGRESS yet; the window decides.
    if !matches!(
        view.state,
        ChallengeState::Ready | ChallengeState::InProgress
    ) {
        return Err(ProofError::OutsideWindow(OutsideWindow::AfterEnd));
    }
    let slot = view
        .rules
        .proof_slot(view.now)
        .map_err(ProofError::OutsideWindow)?;
    let inserted: Option<Proof> = sqlx::query_as(&format!(
        "INSERT INTO proofs (id, challenge_id, user_id, day, week, image_url, note, submitted_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8)) \
         ON CONFLICT ON CONSTRAINT proofs_one_per_day DO NOTHING RETURNING {PROOF_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(challenge)
    .bind(user)
    .bind(i32::try_from(slot.day).map_err(|_| ProofError::Invalid)?)
    .bind(i32::try_from(slot.week).map_err(|_| ProofError::Invalid)?)
    .bind(&proof.image_url)
    .bind(&proof.note)
    .bind(view.now as f64)
    .fetch_optional(&mut *conn)
    .await?;
    inserted.ok_or(ProofError::AlreadySubmitted)
}

/// The participants' proofs of a challenge, newest first.
///
/// # Errors
/// `Invalid` cursor, `Database`.
pub async fn list(
    db: &PgPool,
    challenge: Uuid,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<(Vec<Proof>, Option<String>), ProofError> {
    let cursor = cursor
        .map(Uuid::parse_str)
        .transpose()
        .map_err(|_| ProofError::Invalid)?;
    let limit = limit.unwrap_or(50).clamp(1, PROOF_PAGE_MAX);
    let mut rows: Vec<Proof> = sqlx::query_as(&format!(
        "SELECT {PROOF_COLUMNS} FROM proofs WHERE challenge_id = $1 \
         AND ($2::uuid IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
    ))
    .bind(challenge)
    .bind(cursor)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    rows.truncate(usize::try_from(limit).unwrap_or(0));
    let next = more
        .then(|| rows.last().map(|p| p.id.to_string()))
        .flatten();
    Ok((rows, next))
}

/// A report or an appeal.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

async fn proof_owner(
    conn: &mut PgConnection,
    proof: Uuid,
) -> Result<(Uuid, String, String), ProofError> {
    let row: Option<(Uuid, String, String)> = sqlx::query_as(
        "SELECT challenge_id, user_id, state::text FROM proofs WHERE id = $1 FOR UPDATE",
    )
    .bind(proof)
    .fetch_optional(conn)
    .await?;
    row.ok_or(ProofError::NotFound)
}

fn reason_ok(reason: &str) -> Result<(), ProofError> {
    if reason.trim().is_empty() || reason.chars().count() > REASON_CHARS_MAX {
        return Err(ProofError::Invalid);
    }
    Ok(())
}

/// Another participant reports a proof: it stops counting until a reviewer decides.
///
/// # Errors
/// `NotFound`, `NotAParticipant` (outsiders), `NotYours` (the proof's own author),
/// `StateConflict` (not a plain submitted proof, or reviews are closed), `Invalid`.
pub async fn report(
    db: &PgPool,
    proof: Uuid,
    reporter: &str,
    reason: &Reason,
) -> Result<(), ProofError> {
    reason_ok(&reason.reason)?;
    let mut tx = db.begin().await?;
    let (challenge, owner, state) = proof_owner(&mut tx, proof).await?;
    if !is_participant(&mut tx, challenge, reporter).await? {
        return Err(ProofError::NotAParticipant);
    }
    if owner == reporter {
        return Err(ProofError::NotYours);
    }
    let view = challenge_view(&mut tx, challenge).await?;
    if state != "submitted" || view.now >= view.review_ends_at {
        return Err(ProofError::StateConflict);
    }
    sqlx::query(
        "UPDATE proofs SET state = 'reported', reported_by = $2, report_reason = $3 WHERE id = $1",
    )
    .bind(proof)
    .bind(reporter)
    .bind(&reason.reason)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The proof's author appeals a rejection, until reviews close.
///
/// # Errors
/// `NotFound`, `NotYours` (not the author), `StateConflict`, `Invalid`.
pub async fn appeal(
    db: &PgPool,
    proof: Uuid,
    user: &str,
    reason: &Reason,
) -> Result<(), ProofError> {
    reason_ok(&reason.reason)?;
    let mut tx = db.begin().await?;
    let (challenge, owner, state) = proof_owner(&mut tx, proof).await?;
    if owner != user {
        return Err(ProofError::NotYours);
    }
    let view = challenge_view(&mut tx, challenge).await?;
    if state != "rejected" || view.now >= view.review_ends_at {
        return Err(ProofError::StateConflict);
    }
    sqlx::query("UPDATE proofs SET state = 'appealed', appeal_reason = $2 WHERE id = $1")
        .bind(proof)
        .bind(&reason.reason)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approve,
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Review {
    pub decision: Decision,
    #[serde(default)]
    pub reason_code: Option<String>,
}

/// A reviewer approves or rejects a proof (a rejection needs a reason code), until reviews close.
///
/// # Errors
/// `NotAReviewer`, `NotFound`, `StateConflict`, `Invalid`.
pub async fn review(
    db: &PgPool,
    reviewers: &[String],
    proof: Uuid,
    reviewer: &str,
    review: &Review,
) -> Result<(), ProofError> {
    if !reviewers.iter().any(|r| r == reviewer) {
        return Err(ProofError::NotAReviewer);
    }
    let reason_code = review.reason_code.as_deref().map(str::trim);
    let code_ok = reason_code.is_none_or(|code| {
        !code.is_empty()
            && code.len() <= REASON_CODE_LEN_MAX
            && code
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    });
    if !code_ok || (review.decision == Decision::Reject && reason_code.is_none()) {
        return Err(ProofError::Invalid);
    }
    let mut tx = db.begin().await?;
    let (challenge, _, state) = proof_owner(&mut tx, proof).await?;
    let view = challenge_view(&mut tx, challenge).await?;
    let reviewable = matches!(state.as_str(), "submitted" | "reported" | "appealed");
    if !reviewable || view.now >= view.review_ends_at {
        return Err(ProofError::StateConflict);
    }
    let new_state = match review.decision {
        Decision::Approve => "approved",
        Decision::Reject => "rejected",
    };
    sqlx::query(
        "UPDATE proofs SET state = $2::proof_state, reason_code = $3, reviewed_by = $4, \
             reviewed_at = platform_now() WHERE id = $1",
    )
    .bind(proof)
    .bind(new_state)
    .bind(reason_code)
    .bind(reviewer)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Counted days per participant of a challenge, in user order: proofs that count, at most
/// `days_per_week` per week. The database's statement of `ChallengeRules::counted_days`.
///
/// `LEAST` ignores NULLs: a participant without one counted proof has a single joined row with
/// `w.n` NULL, and `LEAST(NULL, $2)` is `$2` — a full week counted for nothing, which settlement
/// paid out as achievement. Hence the inner `COALESCE`.
#[must_use]
pub fn counted_days_sql() -> &'static str {
    "SELECT cp.user_id, COALESCE(sum(LEAST(COALESCE(w.n, 0), $2)), 0)::int4 AS counted \
     FROM challenge_participants cp \
     LEFT JOIN (SELECT user_id, week, count(*) AS n FROM proofs \
                WHERE challenge_id = $1 AND state IN ('submitted', 'approved') \
                GROUP BY user_id, week) w ON w.user_id = cp.user_id \
     WHERE cp.challenge_id = $1 \
     GROUP BY cp.user_id ORDER BY cp.user_id"
}

/// Every participant's counted days.
///
/// # Errors
/// `Database`.
pub async fn counted_days(
    conn: &mut PgConnection,
    challenge: Uuid,
    days_per_week: u32,
) -> Result<Vec<(String, i32)>, sqlx::Error> {
    sqlx::query_as(counted_days_sql())
        .bind(challenge)
        .bind(i32::try_from(days_per_week).unwrap_or(i32::MAX))
        .fetch_all(conn)
        .await
}

/// `GET /v1/challenges/{id}/me`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MyStanding {
    pub proofs: Vec<Proof>,
    pub counted_days: u32,
    pub required_days: u32,
    /// Achievement so far, in basis points (10,000 = 100%).
    pub achievement_bps: u32,
    /// What settlement would pay now if the challenge ended with today's proofs.
    pub expected_refund: i64,
    pub expected_prize: i64,
    pub review_ends_at: String,
}

/// A participant's proofs and where they stand, computed by `nene_domain::settlement::settle` on
/// everyone's current counts — the same code settlement runs.
///
/// # Errors
/// `NotFound`, `NotAParticipant`, `Database`.
pub async fn my_standing(
    db: &PgPool,
    challenge: Uuid,
    user: &str,
) -> Result<MyStanding, ProofError> {
    let mut conn = db.acquire().await?;
    let view = challenge_view(&mut conn, challenge).await?;
    if !is_participant(&mut conn, challenge, user).await? {
        return Err(ProofError::NotAParticipant);
    }
    let proofs: Vec<Proof> = sqlx::query_as(&format!(
        "SELECT {PROOF_COLUMNS} FROM proofs WHERE challenge_id = $1 AND user_id = $2 ORDER BY day"
    ))
    .bind(challenge)
    .bind(user)
    .fetch_all(&mut *conn)
    .await?;
    let counts = counted_days(&mut conn, challenge, view.rules.days_per_week()).await?;
    let stake = view.rules.entry_fee();
    let participants: Vec<Participant> = counts
        .iter()
        .map(|(_, counted)| Participant {
            stake,
            counted_days: u32::try_from(*counted).unwrap_or(0),
        })
        .collect();
    let required = view.rules.required_days();
    let outcome = settle(required, view.rules.house_fee_bps(), &participants)
        .map_err(|_| ProofError::Invalid)?;
    let me = counts
        .iter()
        .position(|(id, _)| id == user)
        .ok_or(ProofError::NotAParticipant)?;
    let counted = participants[me].counted_days;
    Ok(MyStanding {
        proofs,
        counted_days: counted,
        required_days: required,
        achievement_bps: nene_domain::rules::achievement_basis_points(counted, required),
        expected_refund: outcome.payouts[me].refund.get(),
        expected_prize: outcome.payouts[me].prize.get(),
        review_ends_at: format_rfc3339(view.review_ends_at),
    })
}
