//! `Wallet`: one per user, running that user's money-moving requests one at a time. Its calls are
//! `protocol::WalletRoute`.

use nene_domain::{ErrorCode, error::ErrorEnvelope, internal_api};
use serde::Deserialize;
use worker::{
    Env, Headers, Method, Request, RequestInit, Response, SqlStorage, SqlStorageValue, State,
    durable_object,
};

use super::{core::core_call, error_response, json_response, now_ms, query_param};
use crate::protocol::{QUERY_USER, RoomJoin, RoomRoute, WalletJoin, WalletRoute, object_url};

/// Schema of a wallet's SQLite database.
const WALLET_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    entry TEXT NOT NULL
);
";

/// Binding name of the `ChallengeRoom` namespace, which the wallet calls to join.
const ROOM_BINDING: &str = crate::CHALLENGE_ROOM_BINDING;

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
        match WalletRoute::recognise(req.method().as_ref(), &req.path()) {
            Some(WalletRoute::Join) => {
                let Ok(call) = req.json::<WalletJoin>().await else {
                    return error_response(ErrorCode::BadRequest);
                };
                let _turn = self.one_at_a_time.lock().await;
                self.join(&call).await
            }
            Some(WalletRoute::Balance) => {
                let user = query_param(&req, QUERY_USER)?;
                self.balance(&user).await
            }
            Some(WalletRoute::ForgetBalance) => {
                let _turn = self.one_at_a_time.lock().await;
                match self.logic().forget_balance() {
                    Ok(()) => json_response(200, "{}"),
                    Err(_) => error_response(ErrorCode::Internal),
                }
            }
            None => error_response(ErrorCode::NotFound),
        }
    }
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
        let key = call.idempotency_key.as_ref();
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
            .and_then(|namespace| namespace.get_by_name(call.challenge.as_str()))
            .ok()?;
        let body = serde_json::to_string(&RoomJoin::from(call)).ok()?;
        let headers = Headers::new();
        headers.set("content-type", "application/json").ok()?;
        let mut init = RequestInit::new();
        init.with_method(Method::from(RoomRoute::Join.method().as_str().to_owned()))
            .with_headers(headers)
            .with_body(Some(wasm_bindgen::JsValue::from_str(&body)));
        let request = Request::new_with_init(&object_url(RoomRoute::Join.path()), &init).ok()?;
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
