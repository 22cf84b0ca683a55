//! Daily proofs: submission inside the day's window by the platform's clock, peer reports,
//! reviews with reason codes, appeals, the reviewers' queue, and what a participant stands to get
//! back (`GET /v1/challenges/{id}/me`), computed by the settlement's own code.
//!
//! The rule users are held to (docs/security.md, "Reports, reviews and appeals: the rule"):
//! - what counts: every proof but a rejected one — [`counted_days_sql`] is the one place that says
//!   so for the database (settlement, `/me` and the live rates), and a test holds it to
//!   `nene_domain::rules::ChallengeRules::counted_days`. An open report (`reported`) and a rejection
//!   under appeal (`appealed`) count: both wait on reviewers, and our slowness never costs the
//!   author;
//! - reports and appeals close [`REPORTS_CLOSE_BEFORE_REVIEWS_SECONDS`] before reviews do, so
//!   reviewers always have [`REVIEWER_TIME_MIN_SECONDS`] for the last one;
//! - a participant makes at most [`REPORTS_PER_DAY_MAX`] reports a day in a challenge;
//! - reviewers work from a queue of open reports and appeals, oldest first ([`review_queue`]).
//!
//! A step that changes what counts (report, appeal, review) share-locks the challenge row and
//! refuses once settlement has computed the payouts, which it does holding that row: no step can
//! commit between the count and the payouts, whatever the clocks say.

use nene_domain::{
    ErrorCode,
    rules::{ChallengeRules, OutsideWindow, RawRules},
    settlement::{Participant, settle},
    states::ChallengeState,
    time::format_rfc3339,
};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// Bounds of a proof's texts (as the schema).
pub const IMAGE_URL_LEN_MAX: usize = 2_048;
pub const NOTE_CHARS_MAX: usize = 500;
pub const REASON_CHARS_MAX: usize = 500;
pub const REASON_CODE_LEN_MAX: usize = 50;
/// Longest page of proofs (and of the reviewers' queue).
pub const PROOF_PAGE_MAX: i64 = 100;
/// A page of proofs when the client names no limit.
pub const PROOF_PAGE_DEFAULT: i64 = 50;
const _: () = assert!(PROOF_PAGE_DEFAULT >= 1 && PROOF_PAGE_DEFAULT <= PROOF_PAGE_MAX);
/// A page of the reviewers' queue when the client names no limit.
pub const QUEUE_PAGE_DEFAULT: i64 = 50;
const _: () = assert!(QUEUE_PAGE_DEFAULT >= 1 && QUEUE_PAGE_DEFAULT <= PROOF_PAGE_MAX);

/// The least time reviewers have between the last report or appeal a challenge can receive and
/// the close of its reviews: a whole day, so an item opened at the last allowed moment still meets
/// a reviewer's working hours (whatever the shift, the weekday or the time zone) before
/// settlement. Before this bound a report a minute before the close was never reviewed and took
/// the proof out of the count for good.
pub const REVIEWER_TIME_MIN_SECONDS: i64 = 86_400;
/// Reviews stay open this long after the end: long enough for a day of reports and appeals and
/// then a reviewers' day ([`REPORTS_CLOSE_BEFORE_REVIEWS_SECONDS`]), short enough that payouts
/// come "the Monday after" as users expect.
pub const REVIEW_WINDOW_SECONDS: i64 = 2 * 86_400;
/// Reports and appeals close this long before reviews do (`review_ends_at` minus this): the
/// reviewers' day.
pub const REPORTS_CLOSE_BEFORE_REVIEWS_SECONDS: i64 = REVIEWER_TIME_MIN_SECONDS;
/// The last day's proofs stay open to reports at least this long after the challenge ends:
/// participants see the last proofs and still have most of a day to look at them.
pub const REPORTABLE_AFTER_END_MIN_SECONDS: i64 = 12 * 3_600;
const _: () = assert!(REPORTS_CLOSE_BEFORE_REVIEWS_SECONDS >= REVIEWER_TIME_MIN_SECONDS);
const _: () = assert!(
    REVIEW_WINDOW_SECONDS - REPORTS_CLOSE_BEFORE_REVIEWS_SECONDS
        >= REPORTABLE_AFTER_END_MIN_SECONDS
);
/// Reports one participant may make per local day (the challenge's time zone) in one challenge.
/// An honest participant rarely finds more than one or two bad proofs a day; five leaves room for
/// a challenge with a real cheating problem, and bounds what one participant can put on the
/// reviewers' queue (and, before reports stopped costing anything by themselves, could take from
/// others). The schema holds the same number (migration 0010's `proof_report_days`).
pub const REPORTS_PER_DAY_MAX: i16 = 5;

/// When reports and appeals of a challenge whose reviews close at `review_ends_at` close.
#[must_use]
pub const fn reports_close_at(review_ends_at: i64) -> i64 {
    review_ends_at - REPORTS_CLOSE_BEFORE_REVIEWS_SECONDS
}

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
    /// A report at or after [`reports_close_at`].
    #[error("reports are closed")]
    ReportsClosed,
    /// An appeal at or after [`reports_close_at`].
    #[error("appeals are closed")]
    AppealsClosed,
    /// The reporter's [`REPORTS_PER_DAY_MAX`] of today in this challenge are used.
    #[error("the day's reports are used")]
    ReportLimitReached,
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
            ProofError::ReportsClosed => ErrorCode::ReportsClosed,
            ProofError::AppealsClosed => ErrorCode::AppealsClosed,
            ProofError::ReportLimitReached => ErrorCode::ReportLimitReached,
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

const CHALLENGE_VIEW: &str = "SELECT state, rules, extract(epoch FROM review_ends_at)::int8, \
     floor(extract(epoch FROM platform_now()))::int8 FROM challenges WHERE id = $1";

async fn challenge_view(conn: &mut PgConnection, id: Uuid) -> Result<ChallengeView, ProofError> {
    let row: Option<ChallengeTimes> = sqlx::query_as(CHALLENGE_VIEW)
        .bind(id)
        .fetch_optional(conn)
        .await?;
    view_of(row)
}

/// [`challenge_view`] for a step that changes what counts (a report, an appeal, a review), inside
/// its transaction, and whether the count is frozen. The challenge row is share-locked: settlement
/// computes the payouts holding it `FOR UPDATE`, so this waits for a settlement under way and
/// holds one off until the step commits. The clock alone cannot say it: `platform_now()` is the
/// transaction's start, and a review begun a moment before reviews close could otherwise commit
/// after settlement counted. Frozen = the payouts exist; checked after the lock, by a statement
/// that sees what the settlement committed.
async fn challenge_for_step(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<(ChallengeView, bool), ProofError> {
    let row: Option<ChallengeTimes> = sqlx::query_as(&format!("{CHALLENGE_VIEW} FOR SHARE"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let view = view_of(row)?;
    let frozen: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM challenge_settlements WHERE challenge_id = $1)",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    Ok((view, frozen))
}

fn view_of(row: Option<ChallengeTimes>) -> Result<ChallengeView, ProofError> {
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

/// The participants' proofs of a challenge, newest first, `limit` (1 to [`PROOF_PAGE_MAX`],
/// default 50) at a time.
///
/// # Errors
/// `Invalid` cursor or a limit out of range (refused, as every list of the API does, not quietly
/// clamped); `Database`.
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
    let limit = limit.unwrap_or(PROOF_PAGE_DEFAULT);
    if !(1..=PROOF_PAGE_MAX).contains(&limit) {
        return Err(ProofError::Invalid);
    }
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

/// Another participant reports a proof, until reports close. The proof goes to the reviewers'
/// queue and keeps counting while the report is open: only a reviewer's rejection takes it out.
///
/// # Errors
/// `NotFound`, `NotAParticipant` (outsiders), `NotYours` (the proof's own author),
/// `ReportsClosed` (at or after [`reports_close_at`]), `StateConflict` (not a plain submitted
/// proof), `ReportLimitReached` (the reporter's [`REPORTS_PER_DAY_MAX`] of today are used),
/// `Invalid`. A refused report changes nothing.
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
    let (view, frozen) = challenge_for_step(&mut tx, challenge).await?;
    if frozen || view.now >= reports_close_at(view.review_ends_at) {
        return Err(ProofError::ReportsClosed);
    }
    if state != "submitted" {
        return Err(ProofError::StateConflict);
    }
    // One more of today's reports, or none: the upsert's row lock serializes this reporter's
    // concurrent reports, and the WHERE sees the count the previous one committed.
    let day = i32::try_from(view.rules.local_date(view.now)).map_err(|_| ProofError::Invalid)?;
    let counted: Option<i16> = sqlx::query_scalar(
        "INSERT INTO proof_report_days AS r (challenge_id, reporter_id, day, reports) \
         VALUES ($1, $2, DATE '1970-01-01' + $3::int4, 1) \
         ON CONFLICT (challenge_id, reporter_id, day) DO UPDATE SET reports = r.reports + 1 \
             WHERE r.reports < $4 \
         RETURNING reports",
    )
    .bind(challenge)
    .bind(reporter)
    .bind(day)
    .bind(REPORTS_PER_DAY_MAX)
    .fetch_optional(&mut *tx)
    .await?;
    if counted.is_none() {
        return Err(ProofError::ReportLimitReached);
    }
    sqlx::query(
        "UPDATE proofs SET state = 'reported', reported_by = $2, report_reason = $3 WHERE id = $1",
    )
    .bind(proof)
    .bind(reporter)
    .bind(&reason.reason)
    .execute(&mut *tx)
    .await?;
    open_dispute(
        &mut tx,
        proof,
        challenge,
        "report",
        reporter,
        &reason.reason,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Puts a report or an appeal on the reviewers' queue, opened now by the platform's clock.
async fn open_dispute(
    conn: &mut PgConnection,
    proof: Uuid,
    challenge: Uuid,
    kind: &str,
    by: &str,
    reason: &str,
) -> Result<(), ProofError> {
    sqlx::query(
        "INSERT INTO proof_disputes (id, proof_id, challenge_id, kind, opened_by, reason, opened_at) \
         VALUES ($1, $2, $3, $4::proof_dispute_kind, $5, $6, platform_now())",
    )
    .bind(Uuid::now_v7())
    .bind(proof)
    .bind(challenge)
    .bind(kind)
    .bind(by)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// The proof's author appeals a rejection, once, until appeals close (with reports). The proof
/// goes to the reviewers' queue and counts while the appeal is open.
///
/// # Errors
/// `NotFound`, `NotYours` (not the author), `AppealsClosed` (at or after [`reports_close_at`]),
/// `StateConflict` (not rejected, or appealed once already), `Invalid`.
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
    let (view, frozen) = challenge_for_step(&mut tx, challenge).await?;
    if frozen || view.now >= reports_close_at(view.review_ends_at) {
        return Err(ProofError::AppealsClosed);
    }
    let appealed_before: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM proof_disputes WHERE proof_id = $1 AND kind = 'appeal')",
    )
    .bind(proof)
    .fetch_one(&mut *tx)
    .await?;
    if state != "rejected" || appealed_before {
        return Err(ProofError::StateConflict);
    }
    sqlx::query("UPDATE proofs SET state = 'appealed', appeal_reason = $2 WHERE id = $1")
        .bind(proof)
        .bind(&reason.reason)
        .execute(&mut *tx)
        .await?;
    open_dispute(&mut tx, proof, challenge, "appeal", user, &reason.reason).await?;
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

/// Whether `user` is one of the operator's reviewers (`CHALLENGE_REVIEWERS`).
#[must_use]
pub fn is_reviewer(reviewers: &[String], user: &str) -> bool {
    reviewers.iter().any(|r| r == user)
}

/// A reviewer approves or rejects a proof (a rejection needs a reason code), until reviews close;
/// the proof's open report or appeal, if any, leaves the queue with the decision.
///
/// # Errors
/// `NotAReviewer`, `NotFound`, `StateConflict` (a decided proof, or reviews closed), `Invalid`.
pub async fn review(
    db: &PgPool,
    reviewers: &[String],
    proof: Uuid,
    reviewer: &str,
    review: &Review,
) -> Result<(), ProofError> {
    if !is_reviewer(reviewers, reviewer) {
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
    let (view, frozen) = challenge_for_step(&mut tx, challenge).await?;
    let reviewable = matches!(state.as_str(), "submitted" | "reported" | "appealed");
    if !reviewable || frozen || view.now >= view.review_ends_at {
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
    sqlx::query(
        "UPDATE proof_disputes SET decided_at = platform_now(), decided_by = $2, decision = $3 \
         WHERE proof_id = $1 AND decided_at IS NULL",
    )
    .bind(proof)
    .bind(reviewer)
    .bind(new_state)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One open item of the reviewers' queue: a report or an appeal, and the proof it is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct OpenDispute {
    #[sqlx(rename = "dispute_id")]
    pub id: Uuid,
    /// `report` (another participant says the proof is not valid) or `appeal` (the author
    /// contests a rejection).
    pub kind: String,
    /// The reporter or, for an appeal, the author.
    pub opened_by: String,
    pub reason: String,
    /// When it was opened (the platform's clock): the queue's order.
    pub opened_at: String,
    /// The challenge's reviews close here; left undecided, the proof counts.
    pub review_ends_at: String,
    /// The proof, with its author (`user_id`), its state and, after a rejection, its reason code.
    #[sqlx(flatten)]
    pub proof: Proof,
}

/// A page of the reviewers' queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuePage {
    pub items: Vec<OpenDispute>,
    pub next_cursor: Option<String>,
}

/// A queue cursor: the 32 hex digits of the last item's id, as [`review_queue`] hands it out.
#[must_use]
pub fn parse_queue_cursor(text: &str) -> Option<Uuid> {
    if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(text).ok()
}

/// The reviewers' queue: open reports and appeals of challenges whose reviews are still open,
/// oldest first (by when they were opened), after `cursor`, at most `limit` (1 to
/// [`PROOF_PAGE_MAX`]).
///
/// # Errors
/// `NotAReviewer`, `Invalid` (a limit out of range), `Database`.
pub async fn review_queue(
    db: &PgPool,
    reviewers: &[String],
    reviewer: &str,
    cursor: Option<Uuid>,
    limit: i64,
) -> Result<QueuePage, ProofError> {
    if !is_reviewer(reviewers, reviewer) {
        return Err(ProofError::NotAReviewer);
    }
    if !(1..=PROOF_PAGE_MAX).contains(&limit) {
        return Err(ProofError::Invalid);
    }
    let mut items: Vec<OpenDispute> = sqlx::query_as(&format!(
        r#"SELECT d.id AS dispute_id, d.kind::text AS kind, d.opened_by, d.reason,
               to_char(d.opened_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS opened_at,
               to_char(c.review_ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
                   AS review_ends_at,
               p.*
           FROM proof_disputes d
           JOIN challenges c ON c.id = d.challenge_id
           CROSS JOIN LATERAL (SELECT {PROOF_COLUMNS} FROM proofs WHERE proofs.id = d.proof_id) p
           WHERE d.decided_at IS NULL AND c.review_ends_at > platform_now()
             AND ($1::uuid IS NULL
                  OR (d.opened_at, d.id) > (SELECT opened_at, id FROM proof_disputes WHERE id = $1))
           ORDER BY d.opened_at, d.id LIMIT $2"#
    ))
    .bind(cursor)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    let more = i64::try_from(items.len()).unwrap_or(i64::MAX) > limit;
    items.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = more
        .then(|| items.last().map(|item| item.id.simple().to_string()))
        .flatten();
    Ok(QueuePage { items, next_cursor })
}

/// The proof states that count, as SQL: every state but `rejected`.
///
/// - `submitted`, `approved`: nobody doubts them, or a reviewer confirmed them.
/// - `reported`: a claim by another participant, not a decision. Were it to stop the proof
///   counting, a report would take the author's stake by itself — one made a minute before reviews
///   closed was never looked at, and the reporter collected the forfeit as prize.
/// - `appealed`: a rejection the author contested before appeals closed, which reviewers then had
///   at least [`REVIEWER_TIME_MIN_SECONDS`] to decide. Undecided, the platform failed to give the
///   second look it promised, and our slowness must not cost the author. Waiting instead would hold
///   every participant's payout hostage to one item nobody decides, with no bound.
macro_rules! counting_states {
    () => {
        "('submitted', 'reported', 'approved', 'appealed')"
    };
}

/// `counting_states!` for other modules' queries (the live rates of a challenge's detail).
pub const COUNTING_STATES: &str = counting_states!();

/// Counted days per participant of a challenge, in user order: proofs that count (see
/// `counting_states!`), at most `days_per_week` per week. The database's statement of
/// `ChallengeRules::counted_days`, and the one place that says what counts at settlement and in
/// `GET /v1/challenges/{id}/me`.
///
/// `LEAST` ignores NULLs: a participant without one counted proof has a single joined row with
/// `w.n` NULL, and `LEAST(NULL, $2)` is `$2` — a full week counted for nothing, which settlement
/// paid out as achievement. Hence the inner `COALESCE`.
#[must_use]
pub fn counted_days_sql() -> &'static str {
    concat!(
        "SELECT cp.user_id, COALESCE(sum(LEAST(COALESCE(w.n, 0), $2)), 0)::int4 AS counted \
         FROM challenge_participants cp \
         LEFT JOIN (SELECT user_id, week, count(*) AS n FROM proofs \
                    WHERE challenge_id = $1 AND state IN ",
        counting_states!(),
        " GROUP BY user_id, week) w ON w.user_id = cp.user_id \
         WHERE cp.challenge_id = $1 \
         GROUP BY cp.user_id ORDER BY cp.user_id"
    )
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
    /// Reports and appeals of this challenge close here, a day before reviews.
    pub reports_close_at: String,
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
        reports_close_at: format_rfc3339(reports_close_at(view.review_ends_at)),
        review_ends_at: format_rfc3339(view.review_ends_at),
    })
}
