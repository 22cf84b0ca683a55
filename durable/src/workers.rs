//! The `#[durable_object]` wrappers: read the request, run the state machine over SQLite, answer.
//!
//! `ChallengeRoom` paths (the edge is the only caller):
//! - `GET|POST /probe` — the plumbing probe;
//! - `POST /join {challenge, user}` — admit, forward to the core holding a pending seat, settle;
//! - `GET /counts?challenge=` — live counts, syncing the rules from the core on first use.
//!
//! `alarm()` retries the pending seats whose outcome is unknown, with the same key, until definite.

use std::time::Duration;

use futures::future::{Either, select};
use nene_domain::{
    ErrorCode,
    error::ErrorEnvelope,
    internal_api,
    limits::CORE_TIMEOUT_MS,
    signing::{HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_USER, SignedParts, SigningSecret},
};
use serde::{Deserialize, Serialize};
use worker::{
    AbortController, Delay, Env, Fetch, Headers, Method, Request, RequestInit, Response,
    SqlStorage, SqlStorageValue, State, durable_object,
};

use crate::{
    join::{
        Admission, JoinRoom, Outcome, RoomRules, Seat, SeatState, SeatStore, StoreError, Verdict,
    },
    room::{Room, RoomCall, RoomError, RoomStore},
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

/// Runs `schema` once per object instance.
fn ensure_schema(
    sql: &SqlStorage,
    ready: &std::cell::Cell<bool>,
    schema: &str,
    upgrades: &[&str],
) -> bool {
    if ready.get() {
        return true;
    }
    if let Err(error) = sql.exec(schema, None) {
        worker::console_error!("schema: {error}");
        return false;
    }
    for upgrade in upgrades {
        if let Err(error) = sql.exec(upgrade, None)
            && !error.to_string().contains("duplicate column")
        {
            worker::console_error!("schema upgrade: {error}");
            return false;
        }
    }
    ready.set(true);
    true
}

/// Body of `POST /join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JoinCall {
    pub challenge: String,
    pub user: String,
    /// The access token's id the user joins with; the core refuses a revoked one.
    #[serde(default)]
    pub session: Option<String>,
}

/// The room's answer to a join that took a seat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Joined {
    pub challenge: String,
    pub user: String,
    pub participants: u32,
    pub capacity: u32,
}

fn error_response(code: ErrorCode) -> worker::Result<Response> {
    let envelope = ErrorEnvelope::new(code, code.default_message(), "");
    Ok(Response::from_json(&envelope)?.with_status(code.http_status()))
}

fn now_ms() -> i64 {
    // Date::now is milliseconds since the epoch as f64; it fits i64 exactly.
    #[allow(clippy::cast_possible_truncation)]
    let ms = worker::Date::now().as_millis() as i64;
    ms
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
        match (method.as_str(), path.as_str()) {
            ("POST", "/join") => {
                let Ok(call) = req.json::<JoinCall>().await else {
                    return error_response(ErrorCode::BadRequest);
                };
                self.join(&call).await
            }
            ("POST", "/close") => {
                let mut logic = crate::join::JoinRoom::new(SqliteSeatStore { sql: sql.clone() });
                match logic.close_recruitment() {
                    Ok(known) => Response::from_json(&serde_json::json!({ "closed": known })),
                    Err(error) => {
                        worker::console_error!("room close failed: {error}");
                        error_response(ErrorCode::Internal)
                    }
                }
            }
            ("GET", crate::join::PATH_ROSTER) => {
                match JoinRoom::new(SqliteSeatStore { sql: sql.clone() }).sealed_roster() {
                    Ok(sealed) => Response::from_json(&crate::join::RosterAnswer { sealed }),
                    Err(error) => {
                        worker::console_error!("room roster: {error}");
                        error_response(ErrorCode::Internal)
                    }
                }
            }
            ("GET", "/counts") => {
                let challenge = req
                    .url()?
                    .query_pairs()
                    .find(|(k, _)| k == "challenge")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                self.counts(&challenge).await
            }
            _ => {
                let body = req.bytes().await.unwrap_or_default();
                let outcome = RoomCall::parse(&method, &path, &body)
                    .and_then(|call| Room::new(SqliteRoomStore { sql: sql.clone() }).handle(&call));
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

/// The core's URL and the shared secret, from the object's environment.
fn core_link(env: &Env) -> Option<(String, SigningSecret)> {
    let url = env.var("CORE_URL").ok()?.to_string();
    let secret = SigningSecret::parse(&env.var("CORE_SIGNING_SECRET").ok()?.to_string()).ok()?;
    Some((url.trim_end_matches('/').to_owned(), secret))
}

/// A signed call to the core (one of its [`internal_api`] routes) as `user`; `None` when it did
/// not answer in time or could not be reached.
async fn core_call(
    env: &Env,
    call: &internal_api::Call,
    user: &str,
    body: &[u8],
) -> Option<(u16, Vec<u8>)> {
    let method = call.method().as_str();
    let path = call.path_and_query();
    let (base, secret) = core_link(env)?;
    let timestamp = now_ms() / 1_000;
    let signature = secret.sign(&SignedParts {
        method,
        path_and_query: path,
        timestamp_unix_seconds: timestamp,
        user,
        body,
    });
    let headers = Headers::new();
    headers.set(HEADER_TIMESTAMP, &timestamp.to_string()).ok()?;
    headers.set(HEADER_SIGNATURE, &signature).ok()?;
    if !user.is_empty() {
        headers.set(HEADER_USER, user).ok()?;
    }
    let mut init = RequestInit::new();
    if !body.is_empty() {
        headers.set("content-type", "application/json").ok()?;
        init.with_body(Some(wasm_bindgen::JsValue::from_str(
            std::str::from_utf8(body).ok()?,
        )));
    }
    init.with_method(Method::from(method.to_owned()))
        .with_headers(headers);
    let request = Request::new_with_init(&format!("{base}{path}"), &init).ok()?;
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let call = std::pin::pin!(fetch.send_with_signal(&signal));
    let timer = Delay::from(Duration::from_millis(CORE_TIMEOUT_MS));
    match select(call, timer).await {
        Either::Left((Ok(mut response), _)) => {
            let status = response.status_code();
            let body = response.bytes().await.ok()?;
            Some((status, body))
        }
        Either::Left((Err(_), _)) => None,
        Either::Right(((), _)) => {
            controller.abort();
            None
        }
    }
}

/// Reads a challenge's rules from the core; `Err(NotFound)` when it does not exist.
async fn fetch_rules(env: &Env, challenge: &str) -> Result<RoomRules, ErrorCode> {
    #[derive(Deserialize)]
    struct Detail {
        capacity: u32,
        state: String,
    }
    let call = internal_api::CHALLENGE_DETAIL.call(&[challenge]);
    match core_call(env, &call, "", b"").await {
        Some((200, body)) => serde_json::from_slice::<Detail>(&body)
            .map(|detail| RoomRules {
                capacity: detail.capacity,
                recruiting: detail.state == "RECRUITING",
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
            .and_then(|session| serde_json::to_vec(&serde_json::json!({ "session": session })).ok())
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

    async fn join(&self, call: &JoinCall) -> worker::Result<Response> {
        if let Err(code) = self.ensure_rules(&call.challenge).await {
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
            .core_join(&call.challenge, &call.user, call.session.as_deref())
            .await;
        let mut room = JoinRoom::new(SqliteSeatStore { sql: self.sql() });
        let outcome = room.settle(&call.user, verdict, now_ms());
        self.schedule_alarm().await;
        match outcome {
            Ok(Outcome::Confirmed) => {
                let counts = room.counts().ok().flatten();
                let joined = Joined {
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

struct SqliteRoomStore {
    sql: SqlStorage,
}

fn storage_error(error: worker::Error) -> RoomError {
    RoomError::Storage(error.to_string())
}

#[derive(Deserialize)]
struct ValueRow {
    value: i64,
}

impl RoomStore for SqliteRoomStore {
    fn probe_value(&self) -> Result<i64, RoomError> {
        let rows: Vec<ValueRow> = self
            .sql
            .exec("SELECT value FROM probe WHERE id = 1", None)
            .and_then(|cursor| cursor.to_array())
            .map_err(storage_error)?;
        Ok(rows.first().map_or(0, |row| row.value))
    }

    fn set_probe_value(&mut self, value: i64) -> Result<(), RoomError> {
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
            state: if self.state == "confirmed" {
                SeatState::Confirmed
            } else {
                SeatState::Pending
            },
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

    fn count(&self, query: &str) -> Result<u32, StoreError> {
        let rows: Vec<CountRow> = self.rows(query, Vec::new())?;
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
        let state = match seat.state {
            SeatState::Pending => "pending",
            SeatState::Confirmed => "confirmed",
        };
        self.sql
            .exec(
                "INSERT INTO seats (user, state, attempts, retry_at_ms, session) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (user) DO UPDATE SET state = excluded.state, \
                 attempts = excluded.attempts, retry_at_ms = excluded.retry_at_ms, \
                 session = excluded.session",
                vec![
                    SqlStorageValue::String(seat.user.clone()),
                    SqlStorageValue::String(state.to_owned()),
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
        self.count("SELECT count(*) AS n FROM seats")
    }

    fn confirmed(&self) -> Result<u32, StoreError> {
        self.count("SELECT count(*) AS n FROM seats WHERE state = 'confirmed'")
    }

    fn confirmed_users(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        #[derive(Deserialize)]
        struct UserRow {
            user: String,
        }
        let rows: Vec<UserRow> = self.rows(
            "SELECT user FROM seats WHERE state = 'confirmed' LIMIT ?",
            vec![
                SqlStorageValue::try_from_i64(i64::try_from(limit).unwrap_or(i64::MAX))
                    .map_err(seat_error)?,
            ],
        )?;
        Ok(rows.into_iter().map(|row| row.user).collect())
    }

    fn due(&self, now_ms: i64) -> Result<Vec<Seat>, StoreError> {
        let rows: Vec<SeatRow> = self.rows(
            "SELECT user, state, attempts, retry_at_ms, session FROM seats \
             WHERE state = 'pending' AND retry_at_ms <= ? ORDER BY retry_at_ms",
            vec![SqlStorageValue::try_from_i64(now_ms).map_err(seat_error)?],
        )?;
        Ok(rows.into_iter().map(SeatRow::into_seat).collect())
    }

    fn next_retry_ms(&self) -> Result<Option<i64>, StoreError> {
        #[derive(Deserialize)]
        struct Next {
            at: Option<i64>,
        }
        let rows: Vec<Next> = self.rows(
            "SELECT min(retry_at_ms) AS at FROM seats WHERE state = 'pending'",
            Vec::new(),
        )?;
        Ok(rows.first().and_then(|row| row.at))
    }
}

// --- Wallet -----------------------------------------------------------------------------------

/// Schema of a wallet's SQLite database.
const WALLET_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    entry TEXT NOT NULL
);
";

/// Binding name of the `ChallengeRoom` namespace, which the wallet calls to join.
const ROOM_BINDING: &str = crate::CHALLENGE_ROOM_BINDING;

/// Body of the wallet's `POST /join`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WalletJoin {
    pub challenge: String,
    pub user: String,
    pub idempotency_key: Option<String>,
    /// The access token's id, passed on to the room and the core (`JoinCall::session`).
    #[serde(default)]
    pub session: Option<String>,
}

/// One user's wallet: runs that user's money-moving requests one at a time, remembers their
/// Idempotency-Keys, caches the balance (`crate::wallet`).
#[durable_object]
pub struct Wallet {
    state: State,
    env: Env,
    /// One money-moving request at a time per user: input gates let requests interleave at every
    /// outbound call, so the object serializes them itself.
    one_at_a_time: futures::lock::Mutex<()>,
    /// The cached balance: (response body, when it was read, ms).
    balance: std::cell::RefCell<Option<(String, i64)>>,
}

impl worker::DurableObject for Wallet {
    fn new(state: State, env: Env) -> Self {
        Wallet {
            state,
            env,
            one_at_a_time: futures::lock::Mutex::new(()),
            balance: std::cell::RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        // No schema here: a wallet that never needs to remember anything (a join without an
        // Idempotency-Key, say) never creates its database at all (SqliteWalletStore).
        match (req.method().to_string().as_str(), req.path().as_str()) {
            ("POST", "/join") => {
                let Ok(call) = req.json::<WalletJoin>().await else {
                    return error_response(ErrorCode::BadRequest);
                };
                let _turn = self.one_at_a_time.lock().await;
                self.join(&call).await
            }
            ("GET", "/balance") => {
                let user = req
                    .url()?
                    .query_pairs()
                    .find(|(k, _)| k == "user")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                self.balance(&user).await
            }
            ("POST", "/balance/forget") => {
                let _turn = self.one_at_a_time.lock().await;
                match self.logic().forget_balance() {
                    Ok(()) => json_response(200, "{}"),
                    Err(_) => error_response(ErrorCode::Internal),
                }
            }
            _ => error_response(ErrorCode::NotFound),
        }
    }
}

fn json_response(status: u16, body: &str) -> worker::Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::ok(body)?
        .with_status(status)
        .with_headers(headers))
}

impl Wallet {
    fn logic(&self) -> crate::wallet::WalletLogic<SqliteWalletStore<'_>> {
        crate::wallet::WalletLogic::new(SqliteWalletStore {
            sql: self.state.storage().sql(),
            balance: &self.balance,
        })
    }

    async fn join(&self, call: &WalletJoin) -> worker::Result<Response> {
        use crate::wallet::Begin;
        let request_hash = format!("join:{}", call.challenge);
        let key = call.idempotency_key.as_deref();
        match self.logic().begin(key, &request_hash, now_ms()) {
            Ok(Begin::Run) => {}
            Ok(Begin::Replay { status, body }) => return json_response(status, &body),
            Ok(Begin::InProgress) => return error_response(ErrorCode::RequestInProgress),
            Ok(Begin::KeyReused) => return error_response(ErrorCode::IdempotencyKeyReused),
            Err(error) => {
                worker::console_error!("wallet begin: {error}");
                return error_response(ErrorCode::Internal);
            }
        }
        let (status, body) = match self.forward_to_room(call).await {
            Some(answer) => answer,
            None => (
                503,
                serde_json::to_string(&ErrorEnvelope::new(
                    ErrorCode::CoreUnavailable,
                    ErrorCode::CoreUnavailable.default_message(),
                    "",
                ))?,
            ),
        };
        if let Err(error) = self
            .logic()
            .finish(key, &request_hash, status, &body, now_ms())
        {
            worker::console_error!("wallet finish: {error}");
        }
        json_response(status, &body)
    }

    async fn forward_to_room(&self, call: &WalletJoin) -> Option<(u16, String)> {
        let stub = self
            .env
            .durable_object(ROOM_BINDING)
            .and_then(|namespace| namespace.get_by_name(&call.challenge))
            .ok()?;
        let body = serde_json::to_string(&JoinCall {
            challenge: call.challenge.clone(),
            user: call.user.clone(),
            session: call.session.clone(),
        })
        .ok()?;
        let headers = Headers::new();
        headers.set("content-type", "application/json").ok()?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
        let request = Request::new_with_init("https://room/join", &init).ok()?;
        let mut response = stub.fetch_with_request(request).await.ok()?;
        let status = response.status_code();
        let text = response.text().await.ok()?;
        Some((status, text))
    }

    async fn balance(&self, user: &str) -> worker::Result<Response> {
        if let Ok(Some(body)) = self.logic().balance(now_ms()) {
            return json_response(200, &body);
        }
        match core_call(&self.env, &internal_api::WALLET.call(&[]), user, b"").await {
            Some((200, body)) => {
                let body = String::from_utf8_lossy(&body).into_owned();
                if let Err(error) = self.logic().cache_balance(&body, now_ms()) {
                    worker::console_error!("wallet cache: {error}");
                }
                json_response(200, &body)
            }
            Some((status, body)) if (400..500).contains(&status) => {
                json_response(status, &String::from_utf8_lossy(&body))
            }
            _ => error_response(ErrorCode::CoreUnavailable),
        }
    }
}

/// A wallet's storage. Its tables are created by the first write, and a read before that finds
/// nothing: most wallets are read far more often than they remember anything. The cached balance
/// lives in the object's memory, not in SQLite: a cache needs no durability (an evicted object
/// asks the core again), and a join without an Idempotency-Key then never opens the object's
/// database at all.
struct SqliteWalletStore<'a> {
    sql: SqlStorage,
    balance: &'a std::cell::RefCell<Option<(String, i64)>>,
}

impl SqliteWalletStore<'_> {
    fn read<T: serde::de::DeserializeOwned>(
        &self,
        query: &str,
        bindings: Vec<SqlStorageValue>,
    ) -> Result<Vec<T>, crate::wallet::WalletStoreError> {
        match self
            .sql
            .exec(query, bindings)
            .and_then(|cursor| cursor.to_array())
        {
            Ok(rows) => Ok(rows),
            Err(error) if error.to_string().contains("no such table") => Ok(Vec::new()),
            Err(error) => Err(wallet_error(error)),
        }
    }

    fn write(
        &self,
        query: &str,
        bindings: Vec<SqlStorageValue>,
    ) -> Result<(), crate::wallet::WalletStoreError> {
        self.sql.exec(WALLET_SCHEMA, None).map_err(wallet_error)?;
        self.sql.exec(query, bindings).map_err(wallet_error)?;
        Ok(())
    }
}

fn wallet_error(error: impl std::fmt::Display) -> crate::wallet::WalletStoreError {
    crate::wallet::WalletStoreError(error.to_string())
}

impl crate::wallet::WalletStore for SqliteWalletStore<'_> {
    fn remembered(
        &self,
        key: &str,
    ) -> Result<Option<crate::wallet::Remembered>, crate::wallet::WalletStoreError> {
        #[derive(Deserialize)]
        struct Row {
            entry: String,
        }
        let rows: Vec<Row> = self.read(
            "SELECT entry FROM replies WHERE key = ?",
            vec![SqlStorageValue::String(key.to_owned())],
        )?;
        rows.first()
            .map(|row| serde_json::from_str(&row.entry).map_err(wallet_error))
            .transpose()
    }

    fn remember(
        &mut self,
        key: &str,
        entry: &crate::wallet::Remembered,
    ) -> Result<(), crate::wallet::WalletStoreError> {
        let entry = serde_json::to_string(entry).map_err(wallet_error)?;
        self.write(
            "INSERT INTO replies (key, entry) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET entry = excluded.entry",
            vec![SqlStorageValue::String(key.to_owned()), SqlStorageValue::String(entry)],
        )
    }

    fn forget(&mut self, key: &str) -> Result<(), crate::wallet::WalletStoreError> {
        self.write(
            "DELETE FROM replies WHERE key = ?",
            vec![SqlStorageValue::String(key.to_owned())],
        )
    }

    fn cached_balance(&self) -> Result<Option<(String, i64)>, crate::wallet::WalletStoreError> {
        Ok(self.balance.borrow().clone())
    }

    fn set_cached_balance(
        &mut self,
        balance: Option<(String, i64)>,
    ) -> Result<(), crate::wallet::WalletStoreError> {
        *self.balance.borrow_mut() = balance;
        Ok(())
    }
}
