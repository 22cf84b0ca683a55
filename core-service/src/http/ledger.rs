//! The signed user's own wallet over the internal API: the balance and the history, newest first.
//!
//! These are the ledger's only routes. Its operations (credits, debits, transfers, holds,
//! refunds) have none: points move only inside the flows that justify them (a confirmed payment,
//! a join, a settlement), so a leaked signing secret cannot mint or move points by itself. Tests
//! and benchmarks call the operations as library functions (`nene_core::ledger`).

use std::sync::Arc;

use axum::{Json, extract::State};
use nene_domain::internal_api as api;
use serde::Deserialize;

use super::{CoreQuery, Mounted, error::CoreApiError, signature::SignedIn};
use crate::{
    AppState,
    ledger::{EntryPage, WalletBalance, ensure_wallet_in_tx, history, wallet_balance},
};

type Shared = State<Arc<AppState>>;

pub(super) fn mount(mounted: Mounted) -> Mounted {
    mounted
        .at(api::WALLET, my_wallet)
        .at(api::WALLET_ENTRIES, my_entries)
}

/// Owner ids are user ids: short printable strings.
const OWNER_ID_LEN_MAX: usize = 64;

fn parse_owner(owner: &str) -> Result<&str, CoreApiError> {
    let ok = !owner.is_empty()
        && owner.len() <= OWNER_ID_LEN_MAX
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(owner)
    } else {
        Err(CoreApiError::Client(
            nene_domain::ErrorCode::ValidationFailed,
        ))
    }
}

#[derive(Deserialize)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

/// Page size when the caller names none.
const PAGE_LIMIT_DEFAULT: u32 = 20;

/// The signed user's ledger history, newest first (`GET /v1/wallet/entries`; an empty page for a
/// user who never had points).
async fn my_entries(
    State(state): Shared,
    SignedIn(user): SignedIn,
    CoreQuery(page): CoreQuery<PageQuery>,
) -> Result<Json<EntryPage>, CoreApiError> {
    let mut conn = state.db.acquire().await?;
    let wallet = ensure_wallet_in_tx(&mut conn, parse_owner(&user)?).await?;
    let limit = page.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    Ok(Json(
        history(&mut conn, wallet, page.cursor.as_deref(), limit).await?,
    ))
}

/// The signed user's wallet (created empty on first look, so a new user sees zero, not 404).
async fn my_wallet(
    State(state): Shared,
    SignedIn(user): SignedIn,
) -> Result<Json<WalletBalance>, CoreApiError> {
    let mut conn = state.db.acquire().await?;
    let wallet = ensure_wallet_in_tx(&mut conn, parse_owner(&user)?).await?;
    Ok(Json(wallet_balance(&mut conn, wallet).await?))
}
