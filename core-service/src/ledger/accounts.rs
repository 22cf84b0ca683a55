//! Accounts: one wallet per user, one escrow per challenge, and the system accounts.

use sqlx::PgConnection;
use uuid::{Uuid, uuid};

use super::types::{AccountId, LedgerError};

/// The system accounts, seeded by migration 0002 with these ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemAccount {
    /// Money in from Toss: a charge moves points from here to a wallet.
    PaymentClearing,
    /// Our fees and settlement remainders.
    House,
    /// Points spent in the shop.
    ShopSales,
}

#[must_use]
pub const fn system_account(account: SystemAccount) -> AccountId {
    AccountId(match account {
        SystemAccount::PaymentClearing => uuid!("00000000-0000-7000-8000-000000000001"),
        SystemAccount::House => uuid!("00000000-0000-7000-8000-000000000002"),
        SystemAccount::ShopSales => uuid!("00000000-0000-7000-8000-000000000003"),
    })
}

/// The wallet of `user`, created on first use.
///
/// # Errors
/// When Postgres fails.
pub async fn ensure_wallet_in_tx(
    conn: &mut PgConnection,
    user: &str,
) -> Result<AccountId, LedgerError> {
    // Most calls find the wallet: one round trip then.
    let existing: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ledger_accounts WHERE kind = 'user_wallet' AND owner_id = $1",
    )
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = existing {
        return Ok(AccountId(id));
    }
    let created: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO ledger_accounts (id, kind, owner_id) VALUES ($1, 'user_wallet', $2) \
         ON CONFLICT ON CONSTRAINT ledger_accounts_one_per_owner DO NOTHING RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(user)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = created {
        sqlx::query("INSERT INTO ledger_wallets (account_id) VALUES ($1)")
            .bind(id)
            .execute(&mut *conn)
            .await?;
        return Ok(AccountId(id));
    }
    let id: Uuid = sqlx::query_scalar(
        "SELECT id FROM ledger_accounts WHERE kind = 'user_wallet' AND owner_id = $1",
    )
    .bind(user)
    .fetch_one(&mut *conn)
    .await?;
    Ok(AccountId(id))
}

/// The escrow of `challenge`, created on first use.
///
/// # Errors
/// When Postgres fails.
pub async fn ensure_escrow_in_tx(
    conn: &mut PgConnection,
    challenge: &str,
) -> Result<AccountId, LedgerError> {
    sqlx::query(
        "INSERT INTO ledger_accounts (id, kind, owner_id) VALUES ($1, 'challenge_escrow', $2) \
         ON CONFLICT ON CONSTRAINT ledger_accounts_one_per_owner DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(challenge)
    .execute(&mut *conn)
    .await?;
    let id: Uuid = sqlx::query_scalar(
        "SELECT id FROM ledger_accounts WHERE kind = 'challenge_escrow' AND owner_id = $1",
    )
    .bind(challenge)
    .fetch_one(&mut *conn)
    .await?;
    Ok(AccountId(id))
}
