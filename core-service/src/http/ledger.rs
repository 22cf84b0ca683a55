//! The ledger's internal HTTP API (signed calls only, like every `/internal/` path). Bodies are the
//! ledger's own request types; answers are its receipts. A replay of a key answers 200 with the
//! first receipt, exactly as the first call did.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    routing::{get, post},
};
use nene_domain::Points;
use serde::Deserialize;

use super::{CoreJson, CorePath, CoreQuery, error::CoreApiError, signature::SignedIn};
use crate::{
    AppState,
    ledger::{self, *},
};

type Shared = State<Arc<AppState>>;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/internal/v1/ledger/wallets", post(ensure_wallet))
        .route("/internal/v1/ledger/escrows", post(ensure_escrow))
        .route("/internal/v1/ledger/credits", post(credit))
        .route("/internal/v1/ledger/debits", post(debit))
        .route("/internal/v1/ledger/transfers", post(transfer))
        .route("/internal/v1/ledger/holds", post(hold))
        .route("/internal/v1/ledger/holds/{hold}/post", post(post_hold))
        .route(
            "/internal/v1/ledger/holds/{hold}/release",
            post(release_hold),
        )
        .route("/internal/v1/ledger/refunds", post(refund))
        .route(
            "/internal/v1/ledger/wallets/{account}/balance",
            get(balance),
        )
        .route(
            "/internal/v1/ledger/accounts/{account}/entries",
            get(entries),
        )
        .route("/internal/v1/ledger/check", get(check))
        .route("/internal/v1/me/wallet", get(my_wallet))
        .route("/internal/v1/me/wallet/entries", get(my_entries))
}

/// Owner ids are user or challenge ids: short printable strings.
const OWNER_ID_LEN_MAX: usize = 64;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerBody {
    owner: String,
}

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

async fn ensure_wallet(
    State(state): Shared,
    CoreJson(body): CoreJson<OwnerBody>,
) -> Result<Json<serde_json::Value>, CoreApiError> {
    let mut conn = state.db.acquire().await?;
    let wallet = ensure_wallet_in_tx(&mut conn, parse_owner(&body.owner)?).await?;
    Ok(Json(serde_json::json!({ "account": wallet })))
}

async fn ensure_escrow(
    State(state): Shared,
    CoreJson(body): CoreJson<OwnerBody>,
) -> Result<Json<serde_json::Value>, CoreApiError> {
    let mut conn = state.db.acquire().await?;
    let escrow = ensure_escrow_in_tx(&mut conn, parse_owner(&body.owner)?).await?;
    Ok(Json(serde_json::json!({ "account": escrow })))
}

async fn credit(
    State(state): Shared,
    CoreJson(request): CoreJson<Credit>,
) -> Result<Json<TransferReceipt>, CoreApiError> {
    Ok(Json(ledger::credit(&state.db, &request).await?))
}

async fn debit(
    State(state): Shared,
    CoreJson(request): CoreJson<Debit>,
) -> Result<Json<TransferReceipt>, CoreApiError> {
    Ok(Json(state.debits.debit(request).await?))
}

async fn transfer(
    State(state): Shared,
    CoreJson(request): CoreJson<Transfer>,
) -> Result<Json<TransferReceipt>, CoreApiError> {
    Ok(Json(ledger::transfer(&state.db, &request).await?))
}

async fn hold(
    State(state): Shared,
    CoreJson(request): CoreJson<Hold>,
) -> Result<Json<HoldReceipt>, CoreApiError> {
    Ok(Json(ledger::hold(&state.db, &request).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostBody {
    key: IdempotencyKey,
    to: AccountId,
    amount: Points,
}

async fn post_hold(
    State(state): Shared,
    CorePath(hold): CorePath<uuid::Uuid>,
    CoreJson(body): CoreJson<PostBody>,
) -> Result<Json<HoldReceipt>, CoreApiError> {
    let request = PostHold {
        key: body.key,
        hold: HoldId(hold),
        to: body.to,
        amount: body.amount,
    };
    Ok(Json(ledger::post_hold(&state.db, &request).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReleaseBody {
    key: IdempotencyKey,
}

async fn release_hold(
    State(state): Shared,
    CorePath(hold): CorePath<uuid::Uuid>,
    CoreJson(body): CoreJson<ReleaseBody>,
) -> Result<Json<HoldReceipt>, CoreApiError> {
    let request = ReleaseHold {
        key: body.key,
        hold: HoldId(hold),
    };
    Ok(Json(ledger::release_hold(&state.db, &request).await?))
}

async fn refund(
    State(state): Shared,
    CoreJson(request): CoreJson<Refund>,
) -> Result<Json<TransferReceipt>, CoreApiError> {
    Ok(Json(ledger::refund(&state.db, &request).await?))
}

async fn balance(
    State(state): Shared,
    CorePath(account): CorePath<uuid::Uuid>,
) -> Result<Json<WalletBalance>, CoreApiError> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(wallet_balance(&mut conn, AccountId(account)).await?))
}

#[derive(Deserialize)]
struct PageQuery {
    cursor: Option<String>,
    limit: Option<u32>,
}

/// Page size when the caller names none.
const PAGE_LIMIT_DEFAULT: u32 = 20;

async fn entries(
    State(state): Shared,
    CorePath(account): CorePath<uuid::Uuid>,
    CoreQuery(page): CoreQuery<PageQuery>,
) -> Result<Json<EntryPage>, CoreApiError> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(page_of(&mut conn, AccountId(account), &page).await?))
}

async fn page_of(
    conn: &mut sqlx::PgConnection,
    account: AccountId,
    page: &PageQuery,
) -> Result<EntryPage, LedgerError> {
    let limit = page.limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    history(conn, account, page.cursor.as_deref(), limit).await
}

async fn check(State(state): Shared) -> Result<Json<Vec<Violation>>, CoreApiError> {
    let mut conn = state.db.acquire().await?;
    Ok(Json(check_invariants(&mut conn).await?))
}

/// The signed user's ledger history, newest first (`GET /v1/wallet/entries`; an empty page for a
/// user who never had points).
async fn my_entries(
    State(state): Shared,
    SignedIn(user): SignedIn,
    CoreQuery(page): CoreQuery<PageQuery>,
) -> Result<Json<EntryPage>, CoreApiError> {
    let mut conn = state.db.acquire().await?;
    let wallet = ensure_wallet_in_tx(&mut conn, parse_owner(&user)?).await?;
    Ok(Json(page_of(&mut conn, wallet, &page).await?))
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
