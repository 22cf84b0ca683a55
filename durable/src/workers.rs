//! The `#[durable_object]` wrappers: read the request, run the state machine over SQLite, answer.

use crate::room::{Room, RoomCall, RoomError, RoomStore};
use worker::{Env, Request, Response, SqlStorage, SqlStorageValue, State, durable_object};

/// Schema of a room's SQLite database. `CREATE … IF NOT EXISTS` makes it safe to run on every
/// start of the object; the CHECK keeps the probe a single row.
const ROOM_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
)";

#[durable_object]
pub struct ChallengeRoom {
    state: State,
}

impl worker::DurableObject for ChallengeRoom {
    fn new(state: State, _env: Env) -> Self {
        ChallengeRoom { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let path = req.path();
        let method = req.method().to_string();
        let body = req.bytes().await.unwrap_or_default();
        let outcome = RoomCall::parse(&method, &path, &body).and_then(|call| {
            let store = SqliteRoomStore::open(self.state.storage().sql())?;
            Room::new(store).handle(&call)
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

struct SqliteRoomStore {
    sql: SqlStorage,
}

impl SqliteRoomStore {
    fn open(sql: SqlStorage) -> Result<Self, RoomError> {
        sql.exec(ROOM_SCHEMA, None).map_err(storage_error)?;
        Ok(SqliteRoomStore { sql })
    }
}

fn storage_error(error: worker::Error) -> RoomError {
    RoomError::Storage(error.to_string())
}

#[derive(serde::Deserialize)]
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
