//! The ledger's operations. Each `x_in_tx` runs inside the caller's transaction (in a savepoint of
//! its own, so a failure leaves the caller's transaction usable and writes nothing); each `x`
//! wraps it in a transaction of its own.

use nene_domain::{
    Points,
    lots::{LotError, LotShare, give_back},
};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use super::{
    accounts::{SystemAccount, system_account},
    idempotency,
    types::*,
};

pub(super) fn points(amount: i64) -> Result<Points, LedgerError> {
    Points::new(amount).map_err(|_| LedgerError::Inconsistent("a stored amount is negative"))
}

pub(super) fn positive(amount: Points) -> Result<i64, LedgerError> {
    match amount.get() {
        0 => Err(LedgerError::InvalidRequest("the amount must be positive")),
        positive => Ok(positive),
    }
}

/// Maps Postgres errors that have a meaning for the caller.
pub(super) fn database_error(error: sqlx::Error) -> LedgerError {
    if let sqlx::Error::Database(db) = &error {
        // numeric_value_out_of_range: a balance would pass i64.
        if db.code().as_deref() == Some("22003") {
            return LedgerError::Overflow;
        }
        // The transfer's own unique key: its idempotency record was purged, the effect remains.
        if db.constraint() == Some("ledger_transfers_idempotency_key_key")
            || db.constraint() == Some("ledger_holds_idempotency_key_key")
        {
            return LedgerError::IdempotencyKeyReused;
        }
    }
    LedgerError::Database(error)
}

async fn account_kind(
    conn: &mut PgConnection,
    account: AccountId,
) -> Result<AccountKind, LedgerError> {
    sqlx::query_scalar("SELECT kind FROM ledger_accounts WHERE id = $1")
        .bind(account)
        .fetch_optional(conn)
        .await?
        .ok_or(LedgerError::NotFound("account"))
}

pub(super) async fn require_not_wallet(
    conn: &mut PgConnection,
    account: AccountId,
) -> Result<(), LedgerError> {
    // The system accounts are seeded with fixed ids and kinds: no need to ask.
    let system = [
        SystemAccount::PaymentClearing,
        SystemAccount::House,
        SystemAccount::ShopSales,
    ];
    if system.iter().any(|kind| system_account(*kind) == account) {
        return Ok(());
    }
    if account_kind(conn, account).await? == AccountKind::UserWallet {
        return Err(LedgerError::InvalidRequest(
            "points move between wallets and other accounts only by credit, debit and refund",
        ));
    }
    Ok(())
}

/// Whether a wallet exists: tells "not enough points" from "no such wallet" after a guarded
/// update changed no row.
pub(super) async fn wallet_exists(
    conn: &mut PgConnection,
    wallet: AccountId,
) -> Result<bool, LedgerError> {
    Ok(
        sqlx::query_scalar::<_, i32>("SELECT 1 FROM ledger_wallets WHERE account_id = $1")
            .bind(wallet)
            .fetch_optional(conn)
            .await?
            .is_some(),
    )
}

/// A transfer row about to be written.
struct NewTransfer<'a> {
    key: &'a IdempotencyKey,
    kind: TransferKind,
    from: AccountId,
    to: AccountId,
    amount: i64,
    refund_of: Option<TransferId>,
    hold: Option<HoldId>,
}

async fn insert_transfer(
    conn: &mut PgConnection,
    transfer: NewTransfer<'_>,
) -> Result<TransferId, LedgerError> {
    let NewTransfer {
        key,
        kind,
        from,
        to,
        amount,
        refund_of,
        hold,
    } = transfer;
    let id = TransferId(Uuid::now_v7());
    sqlx::query(
        "INSERT INTO ledger_transfers \
             (id, idempotency_key, kind, from_account_id, to_account_id, amount, refund_of, hold_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(key.as_str())
    .bind(kind)
    .bind(from)
    .bind(to)
    .bind(amount)
    .bind(refund_of)
    .bind(hold)
    .execute(conn)
    .await
    .map_err(database_error)?;
    Ok(id)
}

/// Applies lot shares: `sign` 1 consumes (debit), -1 gives back (refund).
async fn apply_shares(
    conn: &mut PgConnection,
    transfer: TransferId,
    shares: &[LotShare<LotId>],
    sign: i64,
) -> Result<(), LedgerError> {
    let lots: Vec<Uuid> = shares.iter().map(|share| share.lot.0).collect();
    let amounts: Vec<i64> = shares
        .iter()
        .map(|share| sign * share.amount.get())
        .collect();
    sqlx::query(
        "UPDATE ledger_lots l SET remaining = l.remaining - v.amount \
         FROM UNNEST($1::uuid[], $2::int8[]) AS v(id, amount) WHERE l.id = v.id",
    )
    .bind(&lots)
    .bind(&amounts)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO ledger_lot_allocations (transfer_id, lot_id, amount) \
         SELECT $1, v.id, v.amount FROM UNNEST($2::uuid[], $3::int8[]) AS v(id, amount)",
    )
    .bind(transfer)
    .bind(&lots)
    .bind(&amounts)
    .execute(conn)
    .await?;
    Ok(())
}

fn allocations(shares: &[LotShare<LotId>]) -> Vec<Allocation> {
    shares
        .iter()
        .map(|share| Allocation {
            lot: share.lot,
            amount: share.amount,
        })
        .collect()
}

// --- credit ----------------------------------------------------------------------------------

/// # Errors
/// See [`credit_in_tx`].
pub async fn credit(db: &PgPool, request: &Credit) -> Result<TransferReceipt, LedgerError> {
    standalone!(db, credit_in_tx, request)
}

/// Moves points from a non-wallet account into a wallet and creates a lot for them.
///
/// # Errors
/// `NotFound` for an unknown wallet or account, `InvalidRequest` for a zero amount or a wallet as
/// the source, `IdempotencyKeyReused`, `Overflow`.
pub async fn credit_in_tx(
    conn: &mut PgConnection,
    request: &Credit,
) -> Result<TransferReceipt, LedgerError> {
    idempotent!(conn, "credit", request, |c| apply_credit(c, request))
}

async fn apply_credit(
    conn: &mut PgConnection,
    request: &Credit,
) -> Result<TransferReceipt, LedgerError> {
    let amount = positive(request.amount)?;
    require_not_wallet(conn, request.from).await?;
    let balance: i64 = sqlx::query_scalar(
        "UPDATE ledger_wallets SET balance = balance + $2 WHERE account_id = $1 RETURNING balance",
    )
    .bind(request.wallet)
    .bind(amount)
    .fetch_optional(&mut *conn)
    .await
    .map_err(database_error)?
    .ok_or(LedgerError::NotFound("wallet"))?;
    let transfer = insert_transfer(
        conn,
        NewTransfer {
            key: &request.key,
            kind: TransferKind::Credit,
            from: request.from,
            to: request.wallet,
            amount,
            refund_of: None,
            hold: None,
        },
    )
    .await?;
    let lot = LotId(Uuid::now_v7());
    sqlx::query(
        "INSERT INTO ledger_lots (id, wallet_id, source, credit_transfer_id, amount, remaining) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(lot)
    .bind(request.wallet)
    .bind(request.source)
    .bind(transfer)
    .bind(amount)
    .execute(conn)
    .await?;
    Ok(TransferReceipt {
        transfer,
        kind: TransferKind::Credit,
        from: request.from,
        to: request.wallet,
        amount: request.amount,
        lot: Some(lot),
        allocations: Vec::new(),
        wallet_balance: Some(points(balance)?),
    })
}

// --- debit -----------------------------------------------------------------------------------

/// # Errors
/// See [`debit_in_tx`].
pub async fn debit(db: &PgPool, request: &Debit) -> Result<TransferReceipt, LedgerError> {
    // One statement is atomic on its own: no explicit transaction, one round trip.
    let mut conn = db.acquire().await?;
    debit_in_tx(&mut conn, request).await
}

/// Moves points out of a wallet to a non-wallet account, consuming lots oldest first.
///
/// Business failures leave the caller's transaction usable (`ledger_debit` undoes its own claim).
/// Two failures abort it, as any database error does: a key whose record was purged while its
/// transfer remains (`IdempotencyKeyReused` from the unique key) and an inconsistent ledger.
///
/// # Errors
/// `InsufficientPoints` when the wallet's available balance (balance less holds) is short;
/// `NotFound`, `InvalidRequest`, `IdempotencyKeyReused`.
pub async fn debit_in_tx(
    conn: &mut PgConnection,
    request: &Debit,
) -> Result<TransferReceipt, LedgerError> {
    // `ledger_debit` claims the key and undoes its claim on failure by itself, in one statement.
    apply_debit(conn, request).await
}

async fn apply_debit(
    conn: &mut PgConnection,
    request: &Debit,
) -> Result<TransferReceipt, LedgerError> {
    let amount = positive(request.amount)?;
    let hash = idempotency::request_hash("debit", request)?;
    let outcome: serde_json::Value =
        sqlx::query_scalar("SELECT ledger_debit($1, $2, $3, $4, $5, $6)")
            .bind(request.key.as_str())
            .bind(&hash)
            .bind(Uuid::now_v7())
            .bind(request.wallet)
            .bind(request.to)
            .bind(amount)
            .fetch_one(conn)
            .await
            .map_err(database_error)?;
    decode_outcome(outcome)
}

/// Most debits [`debit_batch_in_tx`] takes at once: its arrays are one statement's parameters, and
/// its wallets stay locked until the caller commits.
pub const DEBIT_BATCH_LEN_MAX: usize = 1_024;

/// Runs `requests` as one statement (`ledger_debit_batch`): each gets exactly the outcome it would
/// have had from [`debit_in_tx`] run one after another in this order. Most debits take a set-based
/// path (a handful of statements for the whole batch); the rest (a wallet short of points, a key
/// already used, an unknown wallet, …) go through `ledger_debit` one by one in the same statement.
///
/// Locks every wallet of the batch, in account id order, until the caller's transaction ends. The
/// transaction must be READ COMMITTED. Runs in no savepoint: an error aborts the caller's
/// transaction and leaves nothing done by the batch.
///
/// # Errors
/// The outer `Err` fails the whole batch, with nothing done: `InvalidRequest` for more than
/// [`DEBIT_BATCH_LEN_MAX`] debits; `IdempotencyKeyReused` when a key of the batch was first used
/// by a transaction that committed during the statement, or when its record was purged while its
/// transfer remains (the batch cannot tell which debit: rerun them one by one); `Database`
/// (a deadlock with a transaction using the same key, for one). The inner results are as
/// [`debit_in_tx`]'s.
pub async fn debit_batch_in_tx(
    conn: &mut PgConnection,
    requests: &[Debit],
) -> Result<Vec<Result<TransferReceipt, LedgerError>>, LedgerError> {
    if requests.len() > DEBIT_BATCH_LEN_MAX {
        return Err(LedgerError::InvalidRequest("too many debits in one batch"));
    }
    let mut keys = Vec::with_capacity(requests.len());
    let mut hashes = Vec::with_capacity(requests.len());
    let mut transfers = Vec::with_capacity(requests.len());
    let mut wallets = Vec::with_capacity(requests.len());
    let mut counterparties = Vec::with_capacity(requests.len());
    let mut amounts = Vec::with_capacity(requests.len());
    for request in requests {
        keys.push(request.key.as_str());
        hashes.push(idempotency::request_hash("debit", request)?);
        transfers.push(Uuid::now_v7());
        wallets.push(request.wallet.0);
        counterparties.push(request.to.0);
        amounts.push(request.amount.get());
    }
    let outcomes: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT ledger_debit_batch($1, $2, $3, $4, $5, $6)")
            .bind(&keys)
            .bind(&hashes)
            .bind(&transfers)
            .bind(&wallets)
            .bind(&counterparties)
            .bind(&amounts)
            .fetch_one(conn)
            .await
            .map_err(database_error)?;
    if outcomes.len() != requests.len() {
        return Err(LedgerError::Inconsistent(
            "ledger_debit_batch answered another number of outcomes",
        ));
    }
    Ok(outcomes.into_iter().map(decode_outcome).collect())
}

/// Decodes `{"ok": r} | {"replay": r} | {"error": CODE}` from the ledger's SQL functions.
pub(super) fn decode_outcome<R: serde::de::DeserializeOwned>(
    outcome: serde_json::Value,
) -> Result<R, LedgerError> {
    let serde_json::Value::Object(mut fields) = outcome else {
        return Err(LedgerError::Inconsistent(
            "a ledger function answered a non-object",
        ));
    };
    if let Some(receipt) = fields.remove("ok").or_else(|| fields.remove("replay")) {
        return Ok(serde_json::from_value(receipt)?);
    }
    Err(
        match fields.get("error").and_then(serde_json::Value::as_str) {
            Some("INSUFFICIENT_POINTS") => LedgerError::InsufficientPoints,
            Some("IDEMPOTENCY_KEY_REUSED") => LedgerError::IdempotencyKeyReused,
            Some("WALLET_NOT_FOUND") => LedgerError::NotFound("wallet"),
            Some("ACCOUNT_NOT_FOUND") => LedgerError::NotFound("account"),
            Some("WALLET_COUNTERPARTY") => LedgerError::InvalidRequest(
                "points move between wallets and other accounts only by credit, debit and refund",
            ),
            Some("ZERO_AMOUNT") => LedgerError::InvalidRequest("the amount must be positive"),
            _ => LedgerError::Inconsistent("a ledger function answered an unknown outcome"),
        },
    )
}

/// Records a debit whose wallet row is already updated and locked: FIFO over the lots
/// (`ledger_consume_lots`, the same rule `ledger_debit` uses).
pub(super) async fn consume_lots(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    wallet: AccountId,
    to: AccountId,
    amount: i64,
    balance_after: i64,
    hold: Option<HoldId>,
) -> Result<TransferReceipt, LedgerError> {
    let transfer = insert_transfer(
        conn,
        NewTransfer {
            key,
            kind: TransferKind::Debit,
            from: wallet,
            to,
            amount,
            refund_of: None,
            hold,
        },
    )
    .await?;
    let allocations: serde_json::Value =
        sqlx::query_scalar("SELECT ledger_consume_lots($1, $2, $3)")
            .bind(wallet)
            .bind(amount)
            .bind(transfer)
            .fetch_one(&mut *conn)
            .await?;
    let allocations: Vec<Allocation> = serde_json::from_value(allocations)?;
    Ok(TransferReceipt {
        transfer,
        kind: TransferKind::Debit,
        from: wallet,
        to,
        amount: points(amount)?,
        lot: None,
        allocations,
        wallet_balance: Some(points(balance_after)?),
    })
}

// --- transfer --------------------------------------------------------------------------------

/// # Errors
/// See [`transfer_in_tx`].
pub async fn transfer(db: &PgPool, request: &Transfer) -> Result<TransferReceipt, LedgerError> {
    standalone!(db, transfer_in_tx, request)
}

/// Moves points between two accounts that are not wallets.
///
/// # Errors
/// `InvalidRequest` for a wallet on either side, the same account twice, or a zero amount;
/// `NotFound`, `IdempotencyKeyReused`.
pub async fn transfer_in_tx(
    conn: &mut PgConnection,
    request: &Transfer,
) -> Result<TransferReceipt, LedgerError> {
    idempotent!(conn, "transfer", request, |c| apply_transfer(c, request))
}

async fn apply_transfer(
    conn: &mut PgConnection,
    request: &Transfer,
) -> Result<TransferReceipt, LedgerError> {
    let amount = positive(request.amount)?;
    if request.from == request.to {
        return Err(LedgerError::InvalidRequest(
            "a transfer needs two different accounts",
        ));
    }
    require_not_wallet(conn, request.from).await?;
    require_not_wallet(conn, request.to).await?;
    let transfer = insert_transfer(
        conn,
        NewTransfer {
            key: &request.key,
            kind: TransferKind::Transfer,
            from: request.from,
            to: request.to,
            amount,
            refund_of: None,
            hold: None,
        },
    )
    .await?;
    Ok(TransferReceipt {
        transfer,
        kind: TransferKind::Transfer,
        from: request.from,
        to: request.to,
        amount: request.amount,
        lot: None,
        allocations: Vec::new(),
        wallet_balance: None,
    })
}

// --- refund ----------------------------------------------------------------------------------

/// # Errors
/// See [`refund_in_tx`].
pub async fn refund(db: &PgPool, request: &Refund) -> Result<TransferReceipt, LedgerError> {
    standalone!(db, refund_in_tx, request)
}

/// Gives `amount` of an earlier debit back to the lots it consumed (newest of them first), from
/// the account the debit paid. Several partial refunds may follow one debit; together they never
/// exceed it.
///
/// # Errors
/// `RefundExceedsDebit`, `NotFound` (no such debit), `InvalidRequest` (not a debit, zero amount),
/// `IdempotencyKeyReused`.
pub async fn refund_in_tx(
    conn: &mut PgConnection,
    request: &Refund,
) -> Result<TransferReceipt, LedgerError> {
    idempotent!(conn, "refund", request, |c| apply_refund(c, request))
}

async fn apply_refund(
    conn: &mut PgConnection,
    request: &Refund,
) -> Result<TransferReceipt, LedgerError> {
    let amount = positive(request.amount)?;
    let debit: Option<(TransferKind, Uuid, Uuid)> = sqlx::query_as(
        "SELECT kind, from_account_id, to_account_id FROM ledger_transfers WHERE id = $1",
    )
    .bind(request.debit)
    .fetch_optional(&mut *conn)
    .await?;
    let (kind, wallet, paid) = debit.ok_or(LedgerError::NotFound("debit"))?;
    if kind != TransferKind::Debit {
        return Err(LedgerError::InvalidRequest("only a debit can be refunded"));
    }
    let (wallet, paid) = (AccountId(wallet), AccountId(paid));
    // The wallet's row lock also serializes concurrent refunds of the same debit.
    let balance: i64 = sqlx::query_scalar(
        "UPDATE ledger_wallets SET balance = balance + $2 WHERE account_id = $1 RETURNING balance",
    )
    .bind(wallet)
    .bind(amount)
    .fetch_one(&mut *conn)
    .await
    .map_err(database_error)?;
    // What the debit took from each lot, less what earlier refunds gave back, in FIFO order.
    let rows: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT a.lot_id, sum(a.amount)::int8 FROM ledger_lot_allocations a \
         JOIN ledger_lots l ON l.id = a.lot_id \
         WHERE a.transfer_id = $1 \
            OR a.transfer_id IN (SELECT id FROM ledger_transfers WHERE refund_of = $1) \
         GROUP BY a.lot_id, l.seq HAVING sum(a.amount) > 0 ORDER BY l.seq",
    )
    .bind(request.debit)
    .fetch_all(&mut *conn)
    .await?;
    let taken = rows
        .into_iter()
        .map(|(lot, net)| {
            Ok(LotShare {
                lot: LotId(lot),
                amount: points(net)?,
            })
        })
        .collect::<Result<Vec<_>, LedgerError>>()?;
    let shares = give_back(&taken, points(amount)?).map_err(|error| match error {
        LotError::Insufficient { .. } => LedgerError::RefundExceedsDebit,
        LotError::ZeroAmount => LedgerError::InvalidRequest("the amount must be positive"),
        LotError::Overflow => LedgerError::Overflow,
    })?;
    let transfer = insert_transfer(
        conn,
        NewTransfer {
            key: &request.key,
            kind: TransferKind::Refund,
            from: paid,
            to: wallet,
            amount,
            refund_of: Some(request.debit),
            hold: None,
        },
    )
    .await?;
    apply_shares(conn, transfer, &shares, -1).await?;
    Ok(TransferReceipt {
        transfer,
        kind: TransferKind::Refund,
        from: paid,
        to: wallet,
        amount: request.amount,
        lot: None,
        allocations: allocations(&shares),
        wallet_balance: Some(points(balance)?),
    })
}

// --- bulk credit -----------------------------------------------------------------------------

/// Longest bulk credit: one statement's arrays; a settlement posts its payouts in batches of this.
pub const BULK_CREDIT_MAX: usize = 5_000;

/// Credits many wallets from one non-wallet account in one statement: a transfer and a lot per
/// credit, each wallet's balance raised once by its total. A key already used is skipped (its
/// effect exists); returns how many wallets were raised. Faster than [`credit_in_tx`] per item by
/// two orders of magnitude, for batches whose callers record their own progress (settlement).
///
/// # Errors
/// `InvalidRequest` for a zero amount, a wallet as the source or more than [`BULK_CREDIT_MAX`];
/// `Database`.
pub async fn credit_many_in_tx(
    conn: &mut PgConnection,
    from: AccountId,
    credits: &[BulkCredit],
) -> Result<u64, LedgerError> {
    if credits.len() > BULK_CREDIT_MAX {
        return Err(LedgerError::InvalidRequest(
            "too many credits in one bulk credit",
        ));
    }
    if credits.is_empty() {
        return Ok(0);
    }
    require_not_wallet(conn, from).await?;
    let mut transfers = Vec::with_capacity(credits.len());
    let mut lots = Vec::with_capacity(credits.len());
    let mut keys = Vec::with_capacity(credits.len());
    let mut wallets = Vec::with_capacity(credits.len());
    let mut amounts = Vec::with_capacity(credits.len());
    let mut sources = Vec::with_capacity(credits.len());
    for credit in credits {
        transfers.push(Uuid::now_v7());
        lots.push(Uuid::now_v7());
        keys.push(credit.key.as_str().to_owned());
        wallets.push(credit.wallet.0);
        amounts.push(positive(credit.amount)?);
        sources.push(credit.source);
    }
    let applied = sqlx::query(
        "WITH input AS ( \
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], $5::int8[], \
                                  $6::ledger_lot_source[]) \
                 AS i(transfer_id, lot_id, key, wallet, amount, source)), \
         transfers AS ( \
             INSERT INTO ledger_transfers \
                 (id, idempotency_key, kind, from_account_id, to_account_id, amount) \
             SELECT transfer_id, key, 'credit', $7, wallet, amount FROM input \
             ON CONFLICT (idempotency_key) DO NOTHING \
             RETURNING id, to_account_id, amount), \
         lots AS ( \
             INSERT INTO ledger_lots (id, wallet_id, source, credit_transfer_id, amount, remaining) \
             SELECT i.lot_id, t.to_account_id, i.source, t.id, t.amount, t.amount \
             FROM transfers t JOIN input i ON i.transfer_id = t.id \
             RETURNING wallet_id, amount) \
         UPDATE ledger_wallets w SET balance = w.balance + s.total \
         FROM (SELECT wallet_id, sum(amount)::int8 AS total FROM lots GROUP BY wallet_id) s \
         WHERE w.account_id = s.wallet_id",
    )
    .bind(&transfers)
    .bind(&lots)
    .bind(&keys)
    .bind(&wallets)
    .bind(&amounts)
    .bind(&sources)
    .bind(from)
    .execute(&mut *conn)
    .await
    .map_err(database_error)?
    .rows_affected();
    Ok(applied)
}

// --- lot withdrawal -------------------------------------------------------------------------

/// What `lot` still holds and what may be withdrawn from it now, locking its wallet's row so the
/// answer stays true for the rest of the caller's transaction.
///
/// # Errors
/// `NotFound` for an unknown lot.
pub async fn lot_standing_in_tx(
    conn: &mut PgConnection,
    lot: LotId,
) -> Result<LotStanding, LedgerError> {
    let row: Option<(Uuid, i64, i64, i64)> = sqlx::query_as(
        "SELECT w.account_id, l.remaining, w.balance, w.held \
         FROM ledger_lots l JOIN ledger_wallets w ON w.account_id = l.wallet_id \
         WHERE l.id = $1 FOR UPDATE OF w",
    )
    .bind(lot)
    .fetch_optional(&mut *conn)
    .await?;
    let (wallet, remaining, balance, held) = row.ok_or(LedgerError::NotFound("lot"))?;
    let available = balance
        .checked_sub(held)
        .ok_or(LedgerError::Inconsistent("held exceeds balance"))?;
    Ok(LotStanding {
        wallet: AccountId(wallet),
        remaining: points(remaining)?,
        withdrawable: points(remaining.min(available))?,
    })
}

/// # Errors
/// See [`withdraw_from_lot_in_tx`].
pub async fn withdraw_from_lot(
    db: &PgPool,
    request: &LotWithdrawal,
) -> Result<TransferReceipt, LedgerError> {
    standalone!(db, withdraw_from_lot_in_tx, request)
}

/// Moves `amount` out of one lot of a wallet (a debit allocated to that lot alone).
///
/// # Errors
/// `InsufficientPoints` when the lot holds less, or the wallet has less available (holds count);
/// `NotFound`, `InvalidRequest` (zero amount, a wallet as the destination), `IdempotencyKeyReused`.
pub async fn withdraw_from_lot_in_tx(
    conn: &mut PgConnection,
    request: &LotWithdrawal,
) -> Result<TransferReceipt, LedgerError> {
    idempotent!(conn, "withdraw_from_lot", request, |c| apply_withdrawal(
        c, request
    ))
}

async fn apply_withdrawal(
    conn: &mut PgConnection,
    request: &LotWithdrawal,
) -> Result<TransferReceipt, LedgerError> {
    let amount = positive(request.amount)?;
    require_not_wallet(conn, request.to).await?;
    let standing = lot_standing_in_tx(conn, request.lot).await?;
    if standing.withdrawable.get() < amount {
        return Err(LedgerError::InsufficientPoints);
    }
    let balance: i64 = sqlx::query_scalar(
        "UPDATE ledger_wallets SET balance = balance - $2 WHERE account_id = $1 RETURNING balance",
    )
    .bind(standing.wallet)
    .bind(amount)
    .fetch_one(&mut *conn)
    .await
    .map_err(database_error)?;
    let transfer = insert_transfer(
        conn,
        NewTransfer {
            key: &request.key,
            kind: TransferKind::Debit,
            from: standing.wallet,
            to: request.to,
            amount,
            refund_of: None,
            hold: None,
        },
    )
    .await?;
    let shares = [LotShare {
        lot: request.lot,
        amount: request.amount,
    }];
    apply_shares(conn, transfer, &shares, 1).await?;
    Ok(TransferReceipt {
        transfer,
        kind: TransferKind::Debit,
        from: standing.wallet,
        to: request.to,
        amount: request.amount,
        lot: None,
        allocations: allocations(&shares),
        wallet_balance: Some(points(balance)?),
    })
}

// --- reads -----------------------------------------------------------------------------------

/// RFC 3339 in UTC, as the API writes times (docs/api.md, "Requests").
const RFC3339_UTC: &str = r#"YYYY-MM-DD"T"HH24:MI:SS.US"Z""#;

/// A wallet's balance, holds and non-empty lots (oldest first).
///
/// # Errors
/// `NotFound` for an unknown wallet.
pub async fn wallet_balance(
    conn: &mut PgConnection,
    wallet: AccountId,
) -> Result<WalletBalance, LedgerError> {
    let (balance, held): (i64, i64) =
        sqlx::query_as("SELECT balance, held FROM ledger_wallets WHERE account_id = $1")
            .bind(wallet)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(LedgerError::NotFound("wallet"))?;
    let rows: Vec<(Uuid, LotSource, i64, String)> = sqlx::query_as(&format!(
        "SELECT id, source, remaining, to_char(created_at AT TIME ZONE 'UTC', '{RFC3339_UTC}') \
         FROM ledger_lots WHERE wallet_id = $1 AND NOT spent ORDER BY seq"
    ))
    .bind(wallet)
    .fetch_all(conn)
    .await?;
    let lots = rows
        .into_iter()
        .map(|(id, source, remaining, created_at)| {
            Ok(LotView {
                id: LotId(id),
                source,
                remaining: points(remaining)?,
                created_at,
            })
        })
        .collect::<Result<Vec<_>, LedgerError>>()?;
    Ok(WalletBalance {
        wallet,
        balance: points(balance)?,
        held: points(held)?,
        available: points(balance - held)?,
        lots,
    })
}

/// An account's entries, newest first, `limit` (≤ [`HISTORY_PAGE_LIMIT_MAX`]) at a time.
/// `cursor` is the `next_cursor` of the previous page.
///
/// # Errors
/// `InvalidRequest` for a malformed cursor or a limit out of range.
pub async fn history(
    conn: &mut PgConnection,
    account: AccountId,
    cursor: Option<&str>,
    limit: u32,
) -> Result<EntryPage, LedgerError> {
    if !(1..=HISTORY_PAGE_LIMIT_MAX).contains(&limit) {
        return Err(LedgerError::InvalidRequest("limit is 1–100"));
    }
    let before: Option<i64> = cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| LedgerError::InvalidRequest("malformed cursor"))
        })
        .transpose()?;
    let rows: Vec<(Uuid, TransferKind, i64, String, i64)> = sqlx::query_as(&format!(
        "SELECT transfer_id, kind, amount, \
                to_char(created_at AT TIME ZONE 'UTC', '{RFC3339_UTC}'), seq \
         FROM ledger_entries WHERE account_id = $1 AND ($2::int8 IS NULL OR seq < $2) \
         ORDER BY seq DESC LIMIT $3"
    ))
    .bind(account)
    .bind(before)
    .bind(i64::from(limit) + 1)
    .fetch_all(conn)
    .await?;
    let has_more = rows.len() > limit as usize;
    let items: Vec<Entry> = rows
        .iter()
        .take(limit as usize)
        .map(|(transfer, kind, amount, created_at, _)| Entry {
            transfer: TransferId(*transfer),
            kind: *kind,
            amount: *amount,
            created_at: created_at.clone(),
        })
        .collect();
    let next_cursor = has_more
        .then(|| rows.get(limit as usize - 1).map(|row| row.4.to_string()))
        .flatten();
    Ok(EntryPage { items, next_cursor })
}
