//! Challenges, as far as joining needs them: creation and the join transaction.
//!
//! A join is one Postgres transaction: lock the challenge row, check its state and capacity, debit
//! the entry fee from the user's wallet into the challenge's escrow (oldest lots first, through the
//! ledger's `debit_in_tx`, idempotent by `join:{challenge}:{user}`), insert the participant, count
//! the seat. It is correct on its own — the Spin edge calls it directly; the `ChallengeRoom`
//! Durable Object only spares it the requests it can answer without the database.

use nene_domain::{ErrorCode, Points};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::ledger::{
    self, AccountId, Debit, IdempotencyKey, LedgerError, TransferId, ensure_escrow_in_tx,
    ensure_wallet_in_tx,
};

/// Bounds of a challenge's rules (issue 7 owns the full set).
pub const ENTRY_FEE_POINTS_MIN: i64 = 1_000;
pub const ENTRY_FEE_POINTS_MAX: i64 = 200_000;
pub const ENTRY_FEE_STEP_POINTS: i64 = 1_000;
pub const CAPACITY_MIN: i32 = 2;
pub const CAPACITY_MAX: i32 = 10_000;
pub const TITLE_CHARS_MAX: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "challenge_state", rename_all = "snake_case")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChallengeState {
    Recruiting,
    Ready,
    InProgress,
    Ended,
    Settled,
    Canceled,
}

/// A new challenge, parsed: its constructor is the only way to make one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "NewChallengeWire")]
pub struct NewChallenge {
    title: String,
    entry_fee: Points,
    capacity: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewChallengeWire {
    title: String,
    entry_fee: i64,
    capacity: i32,
}

impl TryFrom<NewChallengeWire> for NewChallenge {
    type Error = JoinError;
    fn try_from(wire: NewChallengeWire) -> Result<Self, Self::Error> {
        NewChallenge::parse(&wire.title, wire.entry_fee, wire.capacity)
    }
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.code())
    }
}

impl NewChallenge {
    /// # Errors
    /// `ValidationFailed` for a title, fee or capacity outside its bounds.
    pub fn parse(title: &str, entry_fee: i64, capacity: i32) -> Result<Self, JoinError> {
        let title = title.trim();
        let title_ok = !title.is_empty() && title.chars().count() <= TITLE_CHARS_MAX;
        let fee_ok = (ENTRY_FEE_POINTS_MIN..=ENTRY_FEE_POINTS_MAX).contains(&entry_fee)
            && entry_fee % ENTRY_FEE_STEP_POINTS == 0;
        let capacity_ok = (CAPACITY_MIN..=CAPACITY_MAX).contains(&capacity);
        if !(title_ok && fee_ok && capacity_ok) {
            return Err(JoinError::Invalid);
        }
        Ok(NewChallenge {
            title: title.to_owned(),
            entry_fee: Points::new(entry_fee).map_err(|_| JoinError::Invalid)?,
            capacity,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub id: Uuid,
    pub title: String,
    pub entry_fee: Points,
    pub capacity: i32,
    pub participants: i32,
    pub state: ChallengeState,
    pub escrow: AccountId,
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

type Row = (Uuid, String, i64, i32, i32, ChallengeState, Uuid);

fn challenge_of(row: Row) -> Result<Challenge, JoinError> {
    let (id, title, entry_fee, capacity, participants, state, escrow) = row;
    Ok(Challenge {
        id,
        title,
        entry_fee: Points::new(entry_fee).map_err(|_| JoinError::Invalid)?,
        capacity,
        participants,
        state,
        escrow: AccountId(escrow),
    })
}

const SELECT_CHALLENGE: &str = "SELECT id, title, entry_fee, capacity, participants, state, \
     escrow_account_id FROM challenges WHERE id = $1";

/// Creates a challenge in RECRUITING with its escrow account.
///
/// # Errors
/// When Postgres fails.
pub async fn create(db: &PgPool, new: &NewChallenge) -> Result<Challenge, JoinError> {
    let mut tx = db.begin().await?;
    let id = Uuid::now_v7();
    let escrow = ensure_escrow_in_tx(&mut tx, &id.to_string()).await?;
    sqlx::query(
        "INSERT INTO challenges (id, title, entry_fee, capacity, escrow_account_id) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(&new.title)
    .bind(new.entry_fee.get())
    .bind(new.capacity)
    .bind(escrow)
    .execute(&mut *tx)
    .await?;
    let row: Row = sqlx::query_as(SELECT_CHALLENGE)
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
    let row: Option<Row> = sqlx::query_as(SELECT_CHALLENGE)
        .bind(id)
        .fetch_optional(db)
        .await?;
    challenge_of(row.ok_or(JoinError::NotFound)?)
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
        format!("{SELECT_CHALLENGE} FOR UPDATE")
    } else {
        SELECT_CHALLENGE.to_owned()
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
