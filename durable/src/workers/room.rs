//! `ChallengeRoom`: one per challenge (named after it), serializing its joins. Its calls are
//! `protocol::RoomRoute`; `alarm()` retries the pending seats whose outcome is unknown, with the
//! same key, until definite.

use std::time::Duration;

use nene_domain::{ErrorCode, error::ErrorEnvelope, internal_api, states::ChallengeState};
use serde::Deserialize;
use worker::{Env, Request, Response, SqlStorage, SqlStorageValue, State, durable_object};

use super::{core::core_call, ensure_schema, error_response, now_ms, query_param};
use crate::{
    join::{
        Admission, JoinRoom, Outcome, RoomRules, Seat, SeatState, SeatStore, StoreError, Verdict,
    },
    probe::{Probe, ProbeCall, ProbeError, ProbeStore},
    protocol::{QUERY_CHALLENGE, RoomClosed, RoomJoin, RoomJoined, RoomRoute, RosterAnswer},
    single_flight::SingleFlight,
};

/// Schema of a room's SQLite database. `IF NOT EXISTS` makes it safe to run on every start.
const ROOM_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS room_rules (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    capacity INTEGER NOT NULL CHECK (capacity > 0),
    recruiting INTEGER NOT NULL CHECK (recruiting IN (0, 1))
);
CREATE TABLE IF NOT EXISTS seats (
    user TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('pending', 'confirmed')),
    attempts INTEGER NOT NULL,
    retry_at_ms INTEGER NOT NULL,
    session TEXT
);
CREATE INDEX IF NOT EXISTS seats_pending_by_retry ON seats (state, retry_at_ms);";

/// Columns added to a room's tables after rooms were first created: `CREATE TABLE IF NOT EXISTS`
/// leaves an existing table as it was, so each is added here, and "duplicate column" (a room
/// created with it, or upgraded already) is success.
const ROOM_SCHEMA_UPGRADES: &[&str] = &[
    // The session a pending seat's retries send (durable/src/join.rs, `Seat::session`).
    "ALTER TABLE seats ADD COLUMN session TEXT",
];

#[durable_object]
pub struct ChallengeRoom {
    state: State,
    env: Env,
    /// The schema is created once per instance: DDL on every request would be a write each time.
    schema_ready: std::cell::Cell<bool>,
    /// The read of the rules from the core. A storm's first requests all find the room without
    /// rules; they share one read instead of each asking a core that is busiest right then.
    rules_fetch: SingleFlight<Result<RoomRules, ErrorCode>>,
}

impl worker::DurableObject for ChallengeRoom {
    fn new(state: State, env: Env) -> Self {
        ChallengeRoom {
            state,
            env,
            schema_ready: std::cell::Cell::new(false),
            rules_fetch: SingleFlight::default(),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        let method = req.method().to_string();
        let sql = self.state.storage().sql();
        if !ensure_schema(&sql, &self.schema_ready, ROOM_SCHEMA, ROOM_SCHEMA_UPGRADES) {
            return error_response(ErrorCode::Internal);
        }
        match RoomRoute::recognise(&method, &path) {
            Some(RoomRoute::Join) => {
                let Ok(call) = req.json::<RoomJoin>().await else {
                    return error_response(ErrorCode::BadRequest);
                };
                self.join(&call).await
            }
            Some(RoomRoute::Close) => {
                let mut logic = JoinRoom::new(SqliteSeatStore { sql: sql.clone() });
                match logic.close_recruitment() {
                    Ok(closed) => Response::from_json(&RoomClosed { closed }),
                    Err(error) => {
                        worker::console_error!("room close failed: {error}");
                        error_response(ErrorCode::Internal)
                    }
                }
            }
            Some(RoomRoute::Roster) => {
                match JoinRoom::new(SqliteSeatStore { sql: sql.clone() }).sealed_roster() {
                    Ok(sealed) => Response::from_json(&RosterAnswer { sealed }),
                    Err(error) => {
                        worker::console_error!("room roster: {error}");
                        error_response(ErrorCode::Internal)
                    }
                }
            }
            Some(RoomRoute::Counts) => {
                let challenge = query_param(&req, QUERY_CHALLENGE)?;
                self.counts(&challenge).await
            }
            Some(RoomRoute::ReadProbe | RoomRoute::AddToProbe) | None => {
                let body = req.bytes().await.unwrap_or_default();
                let outcome = ProbeCall::parse(&method, &path, &body).and_then(|call| {
                    Probe::new(SqliteProbeStore { sql: sql.clone() }).handle(&call)
                });
                match outcome {
                    Ok(value) => Response::from_json(&value),
                    Err(error) => {
                        worker::console_error!("room call failed: {error}");
                        Response::error(error.to_string(), error.http_status())
                    }
                }
            }
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let sql = self.state.storage().sql();
        if !ensure_schema(&sql, &self.schema_ready, ROOM_SCHEMA, ROOM_SCHEMA_UPGRADES) {
            return Response::error("room schema", 500);
        }
        // Claimed: each seat is stored as not due again until this retry's call has certainly
        // ended, so no other alarm sends the same join meanwhile.
        let due = match JoinRoom::new(SqliteSeatStore { sql: sql.clone() }).claim_due(now_ms()) {
            Ok(due) => due,
            Err(error) => {
                worker::console_error!("room alarm: {error}");
                Vec::new()
            }
        };
        for seat in due {
            let challenge = self.challenge_name().unwrap_or_default();
            // The session the user joined with: a session revoked since is refused by the core
            // here too, and the seat is released without a charge.
            let verdict = self
                .core_join(&challenge, &seat.user, seat.session.as_deref())
                .await;
            let settled = JoinRoom::new(SqliteSeatStore { sql: sql.clone() }).settle(
                &seat.user,
                verdict,
                now_ms(),
            );
            if let Err(error) = settled {
                worker::console_error!("room alarm settle: {error}");
            }
        }
        self.schedule_alarm().await;
        Response::ok("retried")
    }
}

/// Reads a challenge's rules from the core; `Err(NotFound)` when it does not exist.
async fn fetch_rules(env: &Env, challenge: &str) -> Result<RoomRules, ErrorCode> {
    let call = internal_api::CHALLENGE_DETAIL.call(&[challenge]);
    match core_call(env, &call, "", b"").await {
        Some((200, body)) => serde_json::from_slice::<internal_api::ChallengeSeats>(&body)
            .map(|seats| RoomRules {
                capacity: seats.capacity,
                recruiting: seats.state == ChallengeState::Recruiting,
            })
            .map_err(|_| ErrorCode::Internal),
        Some((404, _)) => Err(ErrorCode::NotFound),
        _ => Err(ErrorCode::CoreUnavailable),
    }
}

impl ChallengeRoom {
    fn sql(&self) -> SqlStorage {
        self.state.storage().sql()
    }

    /// The room is named after its challenge (`get_by_name`).
    fn challenge_name(&self) -> Option<String> {
        self.state.id().name()
    }

    /// Forwards a join to the core, signed as the user, and reads the verdict. `session` is the
    /// access token id the user joined with (the core refuses a revoked one); the alarm's retries
    /// send the one stored with the seat, so a session revoked after the first call is refused
    /// too.
    async fn core_join(&self, challenge: &str, user: &str, session: Option<&str>) -> Verdict {
        let call = internal_api::CHALLENGE_JOIN.call(&[challenge]);
        let body = session
            .and_then(|session| {
                serde_json::to_vec(&internal_api::JoinBody {
                    session: Some(session.to_owned()),
                })
                .ok()
            })
            .unwrap_or_default();
        match core_call(&self.env, &call, user, &body).await {
            Some((201, _)) => Verdict::Joined,
            Some((status, body)) if (400..500).contains(&status) => {
                match serde_json::from_slice::<ErrorEnvelope>(&body).map(|e| e.error.code) {
                    Ok(ErrorCode::AlreadyJoined) => Verdict::AlreadyJoined,
                    Ok(ErrorCode::ChallengeFull) => Verdict::Full,
                    Ok(ErrorCode::ChallengeNotRecruiting) => Verdict::NotRecruiting,
                    Ok(ErrorCode::InsufficientPoints) => Verdict::InsufficientPoints,
                    Ok(ErrorCode::NotFound) => Verdict::NotFound,
                    Ok(ErrorCode::Unauthorized) => Verdict::Unauthorized,
                    // Anything else (a bad signature from a misconfiguration, say) is not an
                    // answer about the join: keep the seat and retry.
                    _ => Verdict::Unknown,
                }
            }
            _ => Verdict::Unknown,
        }
    }

    /// Makes sure the room knows its rules, reading them from the core on first use (one read
    /// at a time, shared by whoever is waiting for it).
    async fn ensure_rules(&self, challenge: &str) -> Result<(), ErrorCode> {
        let known = || {
            SqliteSeatStore { sql: self.sql() }
                .rules()
                .map_err(|_| ErrorCode::Internal)
        };
        if known()?.is_some() {
            return Ok(());
        }
        let fetched = self
            .rules_fetch
            .run(|| {
                let (env, challenge) = (self.env.clone(), challenge.to_owned());
                async move { fetch_rules(&env, &challenge).await }
            })
            .await;
        let rules = fetched?;
        // Rules the room learned meanwhile (an earlier waiter, a close) are newer than this read.
        if known()?.is_none() {
            JoinRoom::new(SqliteSeatStore { sql: self.sql() })
                .set_rules(rules)
                .map_err(|_| ErrorCode::Internal)?;
        }
        Ok(())
    }

    async fn schedule_alarm(&self) {
        let next = JoinRoom::new(SqliteSeatStore { sql: self.sql() }).next_alarm_ms();
        if let Ok(Some(at)) = next {
            let delay_ms = u64::try_from((at - now_ms()).max(1)).unwrap_or(1);
            if let Err(error) = self
                .state
                .storage()
                .set_alarm(Duration::from_millis(delay_ms))
                .await
            {
                worker::console_error!("room: cannot set the alarm: {error}");
            }
        }
    }

    async fn join(&self, call: &RoomJoin) -> worker::Result<Response> {
        if let Err(code) = self.ensure_rules(call.challenge.as_str()).await {
            return error_response(code);
        }
        let admission = JoinRoom::new(SqliteSeatStore { sql: self.sql() }).admit(
            &call.user,
            call.session.as_deref(),
            now_ms(),
        );
        let admission = match admission {
            Ok(admission) => admission,
            Err(error) => {
                worker::console_error!("room admit: {error}");
                return error_response(ErrorCode::Internal);
            }
        };
        match admission {
            Admission::AlreadyJoined => return error_response(ErrorCode::AlreadyJoined),
            Admission::InProgress => return error_response(ErrorCode::RequestInProgress),
            Admission::Full => return error_response(ErrorCode::ChallengeFull),
            Admission::NotRecruiting => return error_response(ErrorCode::ChallengeNotRecruiting),
            Admission::NeedsRules => return error_response(ErrorCode::CoreUnavailable),
            Admission::Forward => {}
        }
        // The pending seat is stored: requests that interleave at this await see it.
        let verdict = self
            .core_join(call.challenge.as_str(), &call.user, call.session.as_deref())
            .await;
        let mut room = JoinRoom::new(SqliteSeatStore { sql: self.sql() });
        let outcome = room.settle(&call.user, verdict, now_ms());
        self.schedule_alarm().await;
        match outcome {
            Ok(Outcome::Confirmed) => {
                let counts = room.counts().ok().flatten();
                let joined = RoomJoined {
                    challenge: call.challenge.clone(),
                    user: call.user.clone(),
                    participants: counts.map_or(0, |c| c.participants),
                    capacity: counts.map_or(0, |c| c.capacity),
                };
                Ok(Response::from_json(&joined)?.with_status(201))
            }
            Ok(Outcome::Released(verdict)) => error_response(match verdict {
                Verdict::Full => ErrorCode::ChallengeFull,
                Verdict::NotRecruiting => ErrorCode::ChallengeNotRecruiting,
                Verdict::InsufficientPoints => ErrorCode::InsufficientPoints,
                Verdict::NotFound => ErrorCode::NotFound,
                Verdict::Unauthorized => ErrorCode::Unauthorized,
                Verdict::Joined | Verdict::AlreadyJoined | Verdict::Unknown => ErrorCode::Internal,
            }),
            // Unknown for now: the seat stays held and the alarm finishes the join; a retry by the
            // client sees REQUEST_IN_PROGRESS until then, and ALREADY_JOINED after.
            Ok(Outcome::RetryAt(_)) => error_response(ErrorCode::CoreUnavailable),
            Err(error) => {
                worker::console_error!("room settle: {error}");
                error_response(ErrorCode::Internal)
            }
        }
    }

    async fn counts(&self, challenge: &str) -> worker::Result<Response> {
        if let Err(code) = self.ensure_rules(challenge).await {
            return error_response(code);
        }
        match JoinRoom::new(SqliteSeatStore { sql: self.sql() }).counts() {
            Ok(Some(counts)) => Response::from_json(&counts),
            Ok(None) => error_response(ErrorCode::CoreUnavailable),
            Err(_) => error_response(ErrorCode::Internal),
        }
    }
}

/// The probe's counter in the room's SQLite database.
struct SqliteProbeStore {
    sql: SqlStorage,
}

fn storage_error(error: worker::Error) -> ProbeError {
    ProbeError::Storage(error.to_string())
}

#[derive(Deserialize)]
struct ValueRow {
    value: i64,
}

impl ProbeStore for SqliteProbeStore {
    fn probe_value(&self) -> Result<i64, ProbeError> {
        let rows: Vec<ValueRow> = self
            .sql
            .exec("SELECT value FROM probe WHERE id = 1", None)
            .and_then(|cursor| cursor.to_array())
            .map_err(storage_error)?;
        Ok(rows.first().map_or(0, |row| row.value))
    }

    fn set_probe_value(&mut self, value: i64) -> Result<(), ProbeError> {
        let value = SqlStorageValue::try_from_i64(value).map_err(storage_error)?;
        self.sql
            .exec(
                "INSERT INTO probe (id, value) VALUES (1, ?) \
                 ON CONFLICT (id) DO UPDATE SET value = excluded.value",
                vec![value],
            )
            .map_err(storage_error)?;
        Ok(())
    }
}

/// The seats and rules of a room in its SQLite database.
struct SqliteSeatStore {
    sql: SqlStorage,
}

/// A seat's state as its column keeps it ([`SeatState::as_str`]; the schema's CHECK lists the same
/// names).
fn state_value(state: SeatState) -> SqlStorageValue {
    SqlStorageValue::String(state.as_str().to_owned())
}

fn seat_error(error: worker::Error) -> StoreError {
    StoreError(error.to_string())
}

#[derive(Deserialize)]
struct RulesRow {
    capacity: i64,
    recruiting: i64,
}

#[derive(Deserialize)]
struct SeatRow {
    user: String,
    state: String,
    attempts: i64,
    retry_at_ms: i64,
    session: Option<String>,
}

#[derive(Deserialize)]
struct CountRow {
    n: i64,
}

impl SeatRow {
    fn into_seat(self) -> Seat {
        Seat {
            user: self.user,
            // A name this code does not know can only be a seat whose outcome is unknown.
            state: SeatState::parse(&self.state).unwrap_or(SeatState::Pending),
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            retry_at_ms: self.retry_at_ms,
            session: self.session,
        }
    }
}

impl SqliteSeatStore {
    fn rows<T: serde::de::DeserializeOwned>(
        &self,
        query: &str,
        bindings: Vec<SqlStorageValue>,
    ) -> Result<Vec<T>, StoreError> {
        self.sql
            .exec(query, bindings)
            .and_then(|cursor| cursor.to_array())
            .map_err(seat_error)
    }

    fn count(&self, query: &str, bindings: Vec<SqlStorageValue>) -> Result<u32, StoreError> {
        let rows: Vec<CountRow> = self.rows(query, bindings)?;
        Ok(rows
            .first()
            .map_or(0, |row| u32::try_from(row.n).unwrap_or(u32::MAX)))
    }
}

impl SeatStore for SqliteSeatStore {
    fn rules(&self) -> Result<Option<RoomRules>, StoreError> {
        let rows: Vec<RulesRow> = self.rows(
            "SELECT capacity, recruiting FROM room_rules WHERE id = 1",
            Vec::new(),
        )?;
        Ok(rows.first().map(|row| RoomRules {
            capacity: u32::try_from(row.capacity).unwrap_or(0),
            recruiting: row.recruiting == 1,
        }))
    }

    fn set_rules(&mut self, rules: RoomRules) -> Result<(), StoreError> {
        self.sql
            .exec(
                "INSERT INTO room_rules (id, capacity, recruiting) VALUES (1, ?, ?) \
                 ON CONFLICT (id) DO UPDATE SET capacity = excluded.capacity, recruiting = excluded.recruiting",
                vec![
                    SqlStorageValue::from(i64::from(rules.capacity)),
                    SqlStorageValue::from(i64::from(rules.recruiting)),
                ],
            )
            .map_err(seat_error)?;
        Ok(())
    }

    fn seat(&self, user: &str) -> Result<Option<Seat>, StoreError> {
        let rows: Vec<SeatRow> = self.rows(
            "SELECT user, state, attempts, retry_at_ms, session FROM seats WHERE user = ?",
            vec![SqlStorageValue::String(user.to_owned())],
        )?;
        Ok(rows.into_iter().next().map(SeatRow::into_seat))
    }

    fn put_seat(&mut self, seat: &Seat) -> Result<(), StoreError> {
        self.sql
            .exec(
                "INSERT INTO seats (user, state, attempts, retry_at_ms, session) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (user) DO UPDATE SET state = excluded.state, \
                 attempts = excluded.attempts, retry_at_ms = excluded.retry_at_ms, \
                 session = excluded.session",
                vec![
                    SqlStorageValue::String(seat.user.clone()),
                    state_value(seat.state),
                    SqlStorageValue::from(i64::from(seat.attempts)),
                    SqlStorageValue::try_from_i64(seat.retry_at_ms).map_err(seat_error)?,
                    seat.session
                        .clone()
                        .map_or(SqlStorageValue::Null, SqlStorageValue::String),
                ],
            )
            .map_err(seat_error)?;
        Ok(())
    }

    fn remove_seat(&mut self, user: &str) -> Result<(), StoreError> {
        self.sql
            .exec(
                "DELETE FROM seats WHERE user = ?",
                vec![SqlStorageValue::String(user.to_owned())],
            )
            .map_err(seat_error)?;
        Ok(())
    }

    fn seats_held(&self) -> Result<u32, StoreError> {
        self.count("SELECT count(*) AS n FROM seats", Vec::new())
    }

    fn confirmed(&self) -> Result<u32, StoreError> {
        self.count(
            "SELECT count(*) AS n FROM seats WHERE state = ?",
            vec![state_value(SeatState::Confirmed)],
        )
    }

    fn confirmed_users(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        #[derive(Deserialize)]
        struct UserRow {
            user: String,
        }
        let rows: Vec<UserRow> = self.rows(
            "SELECT user FROM seats WHERE state = ? LIMIT ?",
            vec![
                state_value(SeatState::Confirmed),
                SqlStorageValue::try_from_i64(i64::try_from(limit).unwrap_or(i64::MAX))
                    .map_err(seat_error)?,
            ],
        )?;
        Ok(rows.into_iter().map(|row| row.user).collect())
    }

    fn due(&self, now_ms: i64) -> Result<Vec<Seat>, StoreError> {
        let rows: Vec<SeatRow> = self.rows(
            "SELECT user, state, attempts, retry_at_ms, session FROM seats \
             WHERE state = ? AND retry_at_ms <= ? ORDER BY retry_at_ms",
            vec![
                state_value(SeatState::Pending),
                SqlStorageValue::try_from_i64(now_ms).map_err(seat_error)?,
            ],
        )?;
        Ok(rows.into_iter().map(SeatRow::into_seat).collect())
    }

    fn next_retry_ms(&self) -> Result<Option<i64>, StoreError> {
        #[derive(Deserialize)]
        struct Next {
            at: Option<i64>,
        }
        let rows: Vec<Next> = self.rows(
            "SELECT min(retry_at_ms) AS at FROM seats WHERE state = ?",
            vec![state_value(SeatState::Pending)],
        )?;
        Ok(rows.first().and_then(|row| row.at))
    }
}
