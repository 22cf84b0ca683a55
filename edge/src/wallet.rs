//! The user's wallet: `GET /v1/wallet` (balance, holds and lots) and `GET /v1/wallet/entries`
//! (the ledger history). On Workers the balance comes through the user's `Wallet` object, which
//! never shows a balance older than its own last write; the ledger is always the core's.

use axum::{
    Router,
    extract::{RawQuery, State},
    routing::get,
};
use bytes::Bytes;
use nene_domain::internal_api;
use nene_durable::protocol::WalletRoute;

use crate::{
    auth::User,
    core_client::Core,
    error::ApiError,
    objects::call_object,
    paging,
    platform::{AppState, ObjectName},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/wallet", get(wallet))
        .route("/v1/wallet/entries", get(entries))
}

/// `GET /v1/wallet`.
async fn wallet(
    State(state): State<AppState>,
    core: Core,
    User(user): User,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let balance = match &state.rooms {
        Some(objects) => {
            call_object(
                objects.as_ref(),
                ObjectName::Wallet(&user),
                WalletRoute::Balance.method(),
                &WalletRoute::balance_of(&user),
                Bytes::new(),
            )
            .await?
        }
        None => {
            core.json(internal_api::WALLET.call(&[]), Some(&user), Bytes::new())
                .await?
        }
    };
    Ok(axum::Json(balance))
}

/// `GET /v1/wallet/entries?cursor=&limit=`: the user's ledger history, newest first, from the
/// core (the ledger is the truth; the `Wallet` object keeps only a balance).
async fn entries(
    core: Core,
    User(user): User,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let query = paging::core_query(query.as_deref(), paging::SEQUENCE_CURSOR)?;
    let call = internal_api::WALLET_ENTRIES.call(&[]).with_query(&query);
    let page = core.json(call, Some(&user), Bytes::new()).await?;
    Ok(axum::Json(page))
}
