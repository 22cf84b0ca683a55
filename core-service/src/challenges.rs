//! Challenges, as far as joining needs them: creation and the join transaction.
//!
//! A join is one Postgres transaction: lock the challenge row, check its state and capacity, debit
//! the entry fee from the user's wallet into the challenge's escrow (oldest lots first, through the
//! ledger's `debit_in_tx`, idempotent by `join:{challenge}:{user}`), insert the participant, count
//! the seat. It is correct on its own — the Spin edge calls it directly; the `ChallengeRoom`
//! Durable Object only spares it the requests it can answer without the database.

use nene_domain::{
    ErrorCode, Points,
    rules::{ChallengeRules, RawRules},
    time::{format_rfc3339, parse_rfc3339},
};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::ledger::{
    self, AccountId, Debit, IdempotencyKey, LedgerError, TransferId, ensure_escrow_in_tx,
    ensure_wallet_in_tx,
};

/// Bounds of a challenge's texts (the rules' bounds live in `nene_domain::rules`).
pub const TITLE_CHARS_MAX: usize = 100;
pub const DESCRIPTION_CHARS_MAX: usize = 2_000;
pub const CATEGORY_CHARS_MAX: usize = 30;
/// How long reviews stay open after the end (the proofs' rule, `proofs::REVIEW_WINDOW_SECONDS`).
pub use crate::proofs::REVIEW_WINDOW_SECONDS;
/// Longest page of a challenge list (docs/api.md, "Paging": limit ≤ 100).
pub const LIST_LIMIT_MAX: i64 = 100;
/// Longest search text.
pub const QUERY_CHARS_MAX: usize = 100;

/// A challenge's state: one definition for the core, the rooms and the API.
pub use nene_domain::states::ChallengeState;

/// The proof rules as the API writes them.
pub use nene_domain::rules::RawProofRules;

/// `POST /v1/challenges` as it arrives: times in RFC 3339.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewChallengeWire {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_category")]
    pub category: String,
    pub entry_fee: i64,
    pub capacity: i64,
    pub min_participants: i64,
    pub recruit_ends_at: String,
    pub starts_at: String,
    pub ends_at: String,
    pub proof: RawProofRules,
    #[serde(default)]
    pub house_fee_bps: i64,
}

impl NewChallengeWire {
    /// A one-week daily challenge in Seoul time recruiting until the start: the next Seoul
    /// midnight at least a day after `now`, proofs all day long. For benches, tests and seed
    /// data.
    #[must_use]
    pub fn one_week(title: &str, entry_fee: i64, capacity: i64, now_unix_seconds: i64) -> Self {
        const SEOUL_OFFSET_SECONDS: i64 = 9 * 3_600;
        let local_day = (now_unix_seconds + SEOUL_OFFSET_SECONDS).div_euclid(86_400) + 2;
        let starts_at = local_day * 86_400 - SEOUL_OFFSET_SECONDS;
        NewChallengeWire {
            title: title.to_owned(),
            description: String::new(),
            category: default_category(),
            entry_fee,
            capacity,
            min_participants: 2,
            recruit_ends_at: format_rfc3339(starts_at),
            starts_at: format_rfc3339(starts_at),
            ends_at: format_rfc3339(starts_at + 7 * 86_400),
            proof: RawProofRules {
                days_per_week: 7,
                window_start: "00:00".to_owned(),
                window_end: "24:00".to_owned(),
                time_zone: "Asia/Seoul".to_owned(),
            },
            house_fee_bps: 0,
        }
    }
}

fn default_category() -> String {
    "etc".to_owned()
}

/// A new challenge, parsed: its constructor is the only way to make one.
#[derive(Debug, Clone)]
pub struct NewChallenge {
    title: String,
    description: String,
    category: String,
    rules: ChallengeRules,
}

impl NewChallenge {
    /// # Errors
    /// `Invalid` for a text or rule outside its bounds (the rule's field is logged).
    pub fn parse(wire: &NewChallengeWire) -> Result<Self, JoinError> {
        let title = wire.title.trim();
        let category = wire.category.trim();
        let texts_ok = !title.is_empty()
            && title.chars().count() <= TITLE_CHARS_MAX
            && wire.description.chars().count() <= DESCRIPTION_CHARS_MAX
            && !category.is_empty()
            && category.chars().count() <= CATEGORY_CHARS_MAX
            && category
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
        if !texts_ok {
            return Err(JoinError::Invalid);
        }
        let time = |raw: &str| parse_rfc3339(raw).ok_or(JoinError::Invalid);
        let raw = RawRules {
            entry_fee: wire.entry_fee,
            capacity: wire.capacity,
            min_participants: wire.min_participants,
            recruit_ends_at: time(&wire.recruit_ends_at)?,
            starts_at: time(&wire.starts_at)?,
            ends_at: time(&wire.ends_at)?,
            proof: wire.proof.clone(),
            house_fee_bps: wire.house_fee_bps,
        };
        let rules = ChallengeRules::parse(&raw).map_err(|error| {
            tracing::info!(field = error.field(), %error, "challenge rules refused");
            JoinError::Invalid
        })?;
        Ok(NewChallenge {
            title: title.to_owned(),
            description: wire.description.clone(),
            category: category.to_owned(),
            rules,
        })
    }

    #[must_use]
    pub fn rules(&self) -> &ChallengeRules {
        &self.rules
    }
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.code())
    }
}

/// A challenge, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub id: Uuid,
    pub title: String,
    pub description: String,
    pub category: String,
    pub creator: Option<String>,
    pub entry_fee: Points,
    pub capacity: i32,
    pub min_participants: Option<i32>,
    pub participants: i32,
    pub state: ChallengeState,
    pub escrow: AccountId,
    pub recruit_ends_at: Option<String>,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub review_ends_at: Option<String>,
    pub required_days: Option<i32>,
    pub house_fee_bps: Option<i32>,
    pub proof: Option<RawProofRules>,
    /// Detail only: today's proofs per participant, in basis points (10,000 = everyone proved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof_rate_today: Option<u32>,
    /// Detail only: participants on course for their stake back (counted days ≥ 85% of the days
    /// required so far; after settlement, of all days), in basis points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<u32>,
}

/// The seat a join took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    pub challenge: Uuid,
    pub user: String,
    pub fee_transfer: TransferId,
    pub participants: i32,
    pub capacity: i32,
}

#[derive(Debug)]
pub enum JoinError {
    NotFound,
    AlreadyJoined,
    Full,
    NotRecruiting,
    InsufficientPoints,
    Invalid,
    Ledger(LedgerError),
    Database(sqlx::Error),
}

impl std::error::Error for JoinError {}

impl JoinError {
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            JoinError::NotFound => ErrorCode::NotFound,
            JoinError::AlreadyJoined => ErrorCode::AlreadyJoined,
            JoinError::Full => ErrorCode::ChallengeFull,
            JoinError::NotRecruiting => ErrorCode::ChallengeNotRecruiting,
            JoinError::InsufficientPoints => ErrorCode::InsufficientPoints,
            JoinError::Invalid => ErrorCode::ValidationFailed,
            JoinError::Ledger(error) => error.code(),
            JoinError::Database(_) => ErrorCode::Internal,
        }
    }
}

impl From<sqlx::Error> for JoinError {
    fn from(error: sqlx::Error) -> Self {
        JoinError::Database(error)
    }
}

impl From<LedgerError> for JoinError {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::InsufficientPoints => JoinError::InsufficientPoints,
            other => JoinError::Ledger(other),
        }
    }
}

/// Our own idempotency keys are built from ids: one that is not a key is a ledger request error.
impl From<crate::ledger::InvalidIdempotencyKey> for JoinError {
    fn from(error: crate::ledger::InvalidIdempotencyKey) -> Self {
        LedgerError::from(error).into()
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    title: String,
    description: String,
    category: String,
    creator_id: Option<String>,
    entry_fee: i64,
    capacity: i32,
    min_participants: Option<i32>,
    participants: i32,
    state: ChallengeState,
    escrow_account_id: Uuid,
    recruit_ends_at: Option<i64>,
    starts_at: Option<i64>,
    ends_at: Option<i64>,
    review_ends_at: Option<i64>,
    required_days: Option<i32>,
    house_fee_bps: Option<i32>,
    rules: Option<sqlx::types::Json<RawRules>>,
}

fn challenge_of(row: Row) -> Result<Challenge, JoinError> {
    Ok(Challenge {
        id: row.id,
        title: row.title,
        description: row.description,
        category: row.category,
        creator: row.creator_id,
        entry_fee: Points::new(row.entry_fee).map_err(|_| JoinError::Invalid)?,
        capacity: row.capacity,
        min_participants: row.min_participants,
        participants: row.participants,
        state: row.state,
        escrow: AccountId(row.escrow_account_id),
        recruit_ends_at: row.recruit_ends_at.map(format_rfc3339),
        starts_at: row.starts_at.map(format_rfc3339),
        ends_at: row.ends_at.map(format_rfc3339),
        review_ends_at: row.review_ends_at.map(format_rfc3339),
        required_days: row.required_days,
        house_fee_bps: row.house_fee_bps,
        proof: row.rules.map(|rules| rules.0.proof),
        proof_rate_today: None,
        success_rate: None,
    })
}

const CHALLENGE_COLUMNS: &str = "id, title, description, category, creator_id, entry_fee, \
     capacity, min_participants, participants, state, escrow_account_id, \
     extract(epoch FROM recruit_ends_at)::int8 AS recruit_ends_at, \
     extract(epoch FROM starts_at)::int8 AS starts_at, \
     extract(epoch FROM ends_at)::int8 AS ends_at, \
     extract(epoch FROM review_ends_at)::int8 AS review_ends_at, \
     required_days, house_fee_bps, rules";

fn select_challenge() -> String {
    format!("SELECT {CHALLENGE_COLUMNS} FROM challenges WHERE id = $1")
}

/// Creates a challenge in RECRUITING with its escrow account, made by `creator`.
///
/// # Errors
/// `Invalid` when recruitment would already be over by the platform's clock; `Database`.
pub async fn create(
    db: &PgPool,
    creator: Option<&str>,
    new: &NewChallenge,
) -> Result<Challenge, JoinError> {
    let mut tx = db.begin().await?;
    let now: i64 = sqlx::query_scalar("SELECT floor(extract(epoch FROM platform_now()))::int8")
        .fetch_one(&mut *tx)
        .await?;
    let rules = &new.rules;
    if rules.recruit_ends_at() <= now {
        return Err(JoinError::Invalid);
    }
    let id = Uuid::now_v7();
    let escrow = ensure_escrow_in_tx(&mut tx, &id.to_string()).await?;
    let raw = RawRules::from(rules.clone());
    sqlx::query(
        "INSERT INTO challenges (id, title, description, category, creator_id, entry_fee, \
             capacity, min_participants, escrow_account_id, rules, recruit_ends_at, starts_at, \
             ends_at, review_ends_at, house_fee_bps, required_days) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, to_timestamp($11), to_timestamp($12), \
             to_timestamp($13), to_timestamp($13 + $14), $15, $16)",
    )
    .bind(id)
    .bind(&new.title)
    .bind(&new.description)
    .bind(&new.category)
    .bind(creator)
    .bind(rules.entry_fee().get())
    .bind(i32::try_from(rules.capacity()).map_err(|_| JoinError::Invalid)?)
    .bind(i32::try_from(rules.min_participants()).map_err(|_| JoinError::Invalid)?)
    .bind(escrow)
    .bind(sqlx::types::Json(&raw))
    .bind(rules.recruit_ends_at() as f64)
    .bind(rules.starts_at() as f64)
    .bind(rules.ends_at() as f64)
    .bind(REVIEW_WINDOW_SECONDS as f64)
    .bind(i32::try_from(rules.house_fee_bps()).map_err(|_| JoinError::Invalid)?)
    .bind(i32::try_from(rules.required_days()).map_err(|_| JoinError::Invalid)?)
    .execute(&mut *tx)
    .await?;
    let row: Row = sqlx::query_as(&select_challenge())
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    challenge_of(row)
}

/// A challenge with its live counts.
///
/// # Errors
/// `NotFound`.
pub async fn get(db: &PgPool, id: Uuid) -> Result<Challenge, JoinError> {
    let row: Option<Row> = sqlx::query_as(&select_challenge())
        .bind(id)
        .fetch_optional(db)
        .await?;
    let row = row.ok_or(JoinError::NotFound)?;
    let rules = row
        .rules
        .as_ref()
        .and_then(|rules| ChallengeRules::parse(&rules.0).ok());
    let mut challenge = challenge_of(row)?;
    if let Some(rules) = rules {
        live_rates(db, &mut challenge, &rules).await?;
    }
    Ok(challenge)
}

fn rate_bps(part: u64, whole: u32) -> u32 {
    u32::try_from(part.saturating_mul(10_000) / u64::from(whole.max(1))).unwrap_or(10_000)
}

/// Fills the detail's live rates from the proofs (both 0 before the start).
async fn live_rates(
    db: &PgPool,
    challenge: &mut Challenge,
    rules: &ChallengeRules,
) -> Result<(), JoinError> {
    let now: i64 = sqlx::query_scalar("SELECT floor(extract(epoch FROM platform_now()))::int8")
        .fetch_one(db)
        .await?;
    let participants = u32::try_from(challenge.participants).unwrap_or(0);
    let today = rules.day_of(now);
    let days_so_far = match today {
        Some(day) => day + 1,
        None if now >= rules.ends_at() => rules.total_days(),
        None => 0,
    };
    if participants == 0 || days_so_far == 0 {
        return Ok(());
    }
    let dpw = rules.days_per_week();
    let required_so_far = (days_so_far / 7) * dpw + (days_so_far % 7).min(dpw);
    let mut conn = db.acquire().await?;
    let counts = crate::proofs::counted_days(&mut conn, challenge.id, dpw).await?;
    let on_course = counts
        .iter()
        .filter(|(_, counted)| {
            u64::try_from(*counted).unwrap_or(0) * 100 >= 85 * u64::from(required_so_far)
        })
        .count();
    challenge.success_rate = Some(rate_bps(
        u64::try_from(on_course).unwrap_or(0),
        participants,
    ));
    if let Some(day) = today {
        let proved: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM proofs WHERE challenge_id = $1 AND day = $2 AND state IN {}",
            crate::proofs::COUNTING_STATES
        ))
        .bind(challenge.id)
        .bind(i32::try_from(day).unwrap_or(i32::MAX))
        .fetch_one(&mut *conn)
        .await?;
        challenge.proof_rate_today =
            Some(rate_bps(u64::try_from(proved).unwrap_or(0), participants));
    }
    Ok(())
}

/// A page of challenges, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page {
    pub items: Vec<Challenge>,
    pub next_cursor: Option<String>,
}

/// Browse filters (`GET /v1/challenges?state=&category=&q=&cursor=&limit=`, edge/openapi.json).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Browse {
    pub state: Option<String>,
    pub category: Option<String>,
    pub q: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

/// Lists challenges, newest first, `limit` (≤ 100) at a time after `cursor`.
///
/// # Errors
/// `Invalid` for an unknown state, a malformed cursor, a limit outside 1–100 or an over-long
/// query; `Database`.
pub async fn list(db: &PgPool, browse: &Browse) -> Result<Page, JoinError> {
    let state = match browse.state.as_deref() {
        Some(raw) => Some(ChallengeState::parse(raw).ok_or(JoinError::Invalid)?),
        None => None,
    };
    let cursor = match browse.cursor.as_deref() {
        Some(raw) => Some(Uuid::parse_str(raw).map_err(|_| JoinError::Invalid)?),
        None => None,
    };
    let query = match browse.q.as_deref().map(str::trim) {
        Some(q) if q.chars().count() > QUERY_CHARS_MAX => return Err(JoinError::Invalid),
        Some(q) if !q.is_empty() => Some(format!(
            "%{}%",
            q.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )),
        _ => None,
    };
    // Out of range is refused, as every other list of the API does, not quietly clamped.
    let limit = browse.limit.unwrap_or(20);
    if !(1..=LIST_LIMIT_MAX).contains(&limit) {
        return Err(JoinError::Invalid);
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {CHALLENGE_COLUMNS} FROM challenges \
         WHERE ($1::challenge_state IS NULL OR state = $1) \
           AND ($2::text IS NULL OR category = $2) \
           AND ($3::text IS NULL OR title ILIKE $3 OR description ILIKE $3) \
           AND ($4::uuid IS NULL OR id < $4) \
         ORDER BY id DESC LIMIT $5"
    ))
    .bind(state)
    .bind(browse.category.as_deref())
    .bind(query)
    .bind(cursor)
    .bind(limit + 1)
    .fetch_all(db)
    .await?;
    let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > limit;
    let mut items = rows
        .into_iter()
        .map(challenge_of)
        .collect::<Result<Vec<_>, _>>()?;
    if more {
        items.truncate(usize::try_from(limit).unwrap_or(0));
    }
    let next_cursor = more
        .then(|| items.last().map(|last| last.id.to_string()))
        .flatten();
    Ok(Page { items, next_cursor })
}

/// A challenge as a join sees it: its row, and whether the user already has a seat.
struct JoinView {
    challenge: Challenge,
    already_seated: bool,
}

async fn challenge_state_for(
    conn: &mut PgConnection,
    challenge: Uuid,
    user: &str,
    lock: bool,
) -> Result<JoinView, JoinError> {
    let query = if lock {
        format!("{} FOR UPDATE", select_challenge())
    } else {
        select_challenge()
    };
    let row: Option<Row> = sqlx::query_as(&query)
        .bind(challenge)
        .fetch_optional(&mut *conn)
        .await?;
    let challenge_row = challenge_of(row.ok_or(JoinError::NotFound)?)?;
    let already: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM challenge_participants WHERE challenge_id = $1 AND user_id = $2",
    )
    .bind(challenge)
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(JoinView {
        challenge: challenge_row,
        already_seated: already.is_some(),
    })
}

fn refuse_if_not_open(view: &JoinView) -> Result<(), JoinError> {
    if view.already_seated {
        return Err(JoinError::AlreadyJoined);
    }
    if view.challenge.state != ChallengeState::Recruiting {
        return Err(JoinError::NotRecruiting);
    }
    if view.challenge.participants >= view.challenge.capacity {
        return Err(JoinError::Full);
    }
    Ok(())
}

/// The join's ledger key: one debit per user and challenge, forever.
#[must_use]
pub fn join_key(challenge: Uuid, user: &str) -> String {
    format!("join:{challenge}:{user}")
}

/// Joins `user` to `challenge` in one transaction of its own.
///
/// # Errors
/// `NotFound`, `AlreadyJoined`, `Full`, `NotRecruiting`, `InsufficientPoints` — each leaving no
/// trace; `Database` when Postgres fails (nothing is committed then either).
pub async fn join(db: &PgPool, challenge: Uuid, user: &str) -> Result<Seat, JoinError> {
    let mut tx = db.begin().await?;
    match join_in_tx(&mut tx, challenge, user).await {
        Ok(seat) => {
            tx.commit().await?;
            Ok(seat)
        }
        Err(error) => {
            tx.rollback().await?;
            Err(error)
        }
    }
}

/// The join inside the caller's transaction; a failure must be followed by the caller's rollback.
///
/// # Errors
/// As [`join`].
pub async fn join_in_tx(
    conn: &mut PgConnection,
    challenge: Uuid,
    user: &str,
) -> Result<Seat, JoinError> {
    // A first look without the lock: during recruitment seats are only ever taken and states only
    // move forward, so "full", "closed" and "already in" seen here are final, and a storm's many
    // refusals never queue behind the row lock that the few admitted joins need.
    let seen = challenge_state_for(conn, challenge, user, false).await?;
    refuse_if_not_open(&seen)?;
    let locked = challenge_state_for(conn, challenge, user, true).await?;
    refuse_if_not_open(&locked)?;
    let found = locked.challenge;
    let wallet = ensure_wallet_in_tx(conn, user).await?;
    let key = IdempotencyKey::parse(&join_key(challenge, user))?;
    let receipt = ledger::debit_in_tx(
        conn,
        &Debit {
            key,
            wallet,
            to: found.escrow,
            amount: found.entry_fee,
        },
    )
    .await?;
    sqlx::query(
        "INSERT INTO challenge_participants (challenge_id, user_id, join_transfer_id) VALUES ($1, $2, $3)",
    )
    .bind(challenge)
    .bind(user)
    .bind(receipt.transfer)
    .execute(&mut *conn)
    .await?;
    let participants: i32 = sqlx::query_scalar(
        "UPDATE challenges SET participants = participants + 1 WHERE id = $1 RETURNING participants",
    )
    .bind(challenge)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Seat {
        challenge,
        user: user.to_owned(),
        fee_transfer: receipt.transfer,
        participants,
        capacity: found.capacity,
    })
}
