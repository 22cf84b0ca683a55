//! The points ledger (docs/design.md §2): double-entry, append-only, FIFO lots, holds, idempotency.
//!
//! Every operation is atomic and idempotent by a caller-chosen key, and has an `_in_tx` form so
//! payments, joins, settlement and the shop can compose it into their own transaction. The
//! standalone forms open a transaction, run the `_in_tx` form, and commit.
//!
//! Concurrency: a wallet's row in `ledger_wallets` is the lock that serializes everything that
//! changes the wallet (its balance, holds and lots). Every operation touches at most one wallet and
//! takes its idempotency key before the wallet, so operations cannot deadlock one another.
//! Accounts that are not wallets keep no cached balance and take no lock: their balance is the sum
//! of their entries.

#[macro_use]
mod macros;
mod accounts;
mod batcher;
mod check;
mod holds;
pub(crate) mod idempotency;
mod ops;
mod types;

pub use accounts::{SystemAccount, ensure_escrow_in_tx, ensure_wallet_in_tx, system_account};
pub use batcher::{DEBIT_BATCH_MAX, DebitBatcher};
pub use check::{Violation, check_invariants, verdict};
pub use holds::*;
pub use idempotency::purge_idempotency_records;
pub use ops::*;
pub use types::*;
