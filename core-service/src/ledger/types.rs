//! The ledger's types: ids, requests, receipts, errors.

use nene_domain::{ErrorCode, Points};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An account of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct AccountId(pub Uuid);

/// A transfer of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct TransferId(pub Uuid);

/// A hold on a wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct HoldId(pub Uuid);

/// A lot of points in a wallet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct LotId(pub Uuid);

/// A caller-chosen idempotency key (`join:{challenge}:{user}`, `charge:{orderId}`, …): the one
/// rule for keys, shared with the edge and the `Wallet` object.
pub use nene_domain::idempotency::{
    IDEMPOTENCY_KEY_LEN_MAX, IdempotencyKey, InvalidIdempotencyKey,
};

impl From<InvalidIdempotencyKey> for LedgerError {
    fn from(_: InvalidIdempotencyKey) -> Self {
        LedgerError::InvalidRequest("an idempotency key is 1–255 printable ASCII characters")
    }
}

/// Where the points of a lot came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "ledger_lot_source", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum LotSource {
    Charge,
    Prize,
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "ledger_transfer_kind", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Credit,
    Debit,
    Transfer,
    Refund,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "ledger_account_kind", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    UserWallet,
    ChallengeEscrow,
    PaymentClearing,
    House,
    ShopSales,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "ledger_hold_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    Pending,
    Posted,
    Released,
}

/// Points into a wallet from a non-wallet account; creates a lot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credit {
    pub key: IdempotencyKey,
    pub wallet: AccountId,
    pub from: AccountId,
    pub amount: Points,
    pub source: LotSource,
}

/// Points out of a wallet to a non-wallet account; consumes lots oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Debit {
    pub key: IdempotencyKey,
    pub wallet: AccountId,
    pub to: AccountId,
    pub amount: Points,
}

/// Points between two accounts that are not wallets (escrow → house, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub key: IdempotencyKey,
    pub from: AccountId,
    pub to: AccountId,
    pub amount: Points,
}

/// Reserves points of a wallet until `expires_in_seconds` from the platform's now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub key: IdempotencyKey,
    pub wallet: AccountId,
    pub amount: Points,
    pub expires_in_seconds: i64,
}

/// Turns (part of) a pending hold into a debit to `to`; the rest of the hold is released.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostHold {
    pub key: IdempotencyKey,
    pub hold: HoldId,
    pub to: AccountId,
    pub amount: Points,
}

/// Releases a pending hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseHold {
    pub key: IdempotencyKey,
    pub hold: HoldId,
}

/// Gives `amount` of an earlier debit back to the lots it consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub key: IdempotencyKey,
    pub debit: TransferId,
    pub amount: Points,
}

/// One credit of a bulk credit (settlement payouts, cancellation refunds): into `wallet`, as a
/// new lot of `source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkCredit {
    pub key: IdempotencyKey,
    pub wallet: AccountId,
    pub amount: Points,
    pub source: LotSource,
}

/// Takes points back out of one lot, to a non-wallet account: a charge cancelled at Toss gives
/// back exactly the points of that payment that are still unspent, never other lots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotWithdrawal {
    pub key: IdempotencyKey,
    pub lot: LotId,
    pub to: AccountId,
    pub amount: Points,
}

/// What a lot still holds, and how much of that may be taken now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotStanding {
    pub wallet: AccountId,
    /// What debits have not consumed.
    pub remaining: Points,
    /// `remaining`, less what the wallet's holds need: taking more would overdraw the wallet.
    pub withdrawable: Points,
}

/// One lot's share of a debit (positive) or a refund (given back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub lot: LotId,
    pub amount: Points,
}

/// What a transfer did. The same receipt is returned again for a replay of its key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferReceipt {
    pub transfer: TransferId,
    pub kind: TransferKind,
    pub from: AccountId,
    pub to: AccountId,
    pub amount: Points,
    /// The lot a credit created.
    pub lot: Option<LotId>,
    /// The lots a debit consumed or a refund gave back to, in that order.
    pub allocations: Vec<Allocation>,
    /// The wallet's balance right after this transfer (for a wallet-side transfer).
    pub wallet_balance: Option<Points>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldReceipt {
    pub hold: HoldId,
    pub wallet: AccountId,
    pub amount: Points,
    pub state: HoldState,
    /// The debit a post made.
    pub debit: Option<TransferReceipt>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotView {
    pub id: LotId,
    pub source: LotSource,
    pub remaining: Points,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletBalance {
    pub wallet: AccountId,
    pub balance: Points,
    pub held: Points,
    pub available: Points,
    /// Non-empty lots, oldest first.
    pub lots: Vec<LotView>,
}

/// One leg of a transfer, seen from one account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub transfer: TransferId,
    pub kind: TransferKind,
    /// Positive into the account, negative out of it.
    pub amount: i64,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPage {
    pub items: Vec<Entry>,
    pub next_cursor: Option<String>,
}

/// Largest page of history: the API's list limit (docs/api.md, "Paging").
pub const HISTORY_PAGE_LIMIT_MAX: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("not enough points")]
    InsufficientPoints,
    #[error("the idempotency key was used with a different request")]
    IdempotencyKeyReused,
    #[error("no such {0}")]
    NotFound(&'static str),
    #[error("the hold is already {0:?}")]
    HoldNotPending(HoldState),
    #[error("the hold has expired")]
    HoldExpired,
    #[error("the amount exceeds what is held")]
    ExceedsHold,
    #[error("the refund exceeds what the debit has left to refund")]
    RefundExceedsDebit,
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    #[error("the amounts overflow")]
    Overflow,
    #[error("the ledger is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored response: {0}")]
    StoredResponse(#[from] serde_json::Error),
}

impl LedgerError {
    /// The public error code for this failure.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            LedgerError::InsufficientPoints => ErrorCode::InsufficientPoints,
            LedgerError::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            LedgerError::NotFound(_) => ErrorCode::NotFound,
            LedgerError::HoldNotPending(_)
            | LedgerError::HoldExpired
            | LedgerError::ExceedsHold
            | LedgerError::RefundExceedsDebit
            | LedgerError::InvalidRequest(_)
            | LedgerError::Overflow => ErrorCode::ValidationFailed,
            LedgerError::Database(_)
            | LedgerError::StoredResponse(_)
            | LedgerError::Inconsistent(_) => ErrorCode::Internal,
        }
    }
}
