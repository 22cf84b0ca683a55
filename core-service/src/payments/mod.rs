//! Buying points through Toss Payments (docs/design.md §3): orders, confirm, the charge outbox,
//! reconciliation of unknown outcomes, webhooks, refunds of unused points.
//!
//! The rule everything here keeps: points exist for a payment exactly while Toss holds its money.
//! - Confirm records the payment as `done` and an outbox row in one transaction and answers at
//!   once; the outbox credits the points (a `charge` lot) with retries, and a charge that can never
//!   be credited is canceled at Toss ([`worker`]).
//! - A timeout or 5xx from Toss leaves the payment `confirming`; the reconciler asks Toss by
//!   orderId and settles it either way.
//! - Every piece of news about a payment (a confirm's answer, the reconciler's read, a webhook's
//!   re-fetch) goes through one function, [`apply_toss_state`], under the payment's row lock. It
//!   compares Toss's state with ours and acts only on the difference, so duplicates, replays and
//!   out-of-order deliveries change nothing.

mod claims;
mod credit;
pub mod refund;
pub mod toss;
pub mod webhook;
pub mod worker;

use std::{sync::Arc, time::Duration};

use nene_domain::{
    ErrorCode,
    payments::{ChargeAmount, OrderId, PaymentInputError, PaymentKey},
};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::{
    ledger::{self, IdempotencyKey, LedgerError, LotId, LotWithdrawal, SystemAccount},
    notifications::{self, NotificationKind},
};
use toss::{TossClient, TossError, TossPayment, TossStatus};

/// How long a claimed piece of work (a confirm in flight, an outbox row, a webhook) belongs to
/// whoever claimed it before someone else may take it over, as a multiple of Toss's timeout: the
/// claimant has certainly given up on its call by then.
pub const LEASE_TIMEOUT_MULTIPLE: u32 = 2;

/// Settings of the payment path.
#[derive(Debug, Clone)]
pub struct PaymentSettings {
    /// The first retry's delay; later ones double up to `retry_delay_max`.
    pub retry_delay_base: Duration,
    pub retry_delay_max: Duration,
    /// Attempts to credit a charge before it is canceled at Toss instead.
    pub credit_attempts_max: u32,
    /// Toss's timeout: a call older than this has ended, one way or the other.
    pub toss_timeout: Duration,
}

impl PaymentSettings {
    /// How long a claim lasts.
    #[must_use]
    pub fn lease(&self) -> Duration {
        self.toss_timeout * LEASE_TIMEOUT_MULTIPLE
    }
}

/// The delay before the next attempt after `attempt` failed ones, in ms, with jitter.
pub(crate) fn retry_delay_ms(payments: &Payments, attempt: i32) -> i64 {
    let settings = &payments.settings;
    let millis = nene_domain::backoff::retry_delay_ms(
        u32::try_from(attempt).unwrap_or(1),
        u64::try_from(settings.retry_delay_base.as_millis()).unwrap_or(u64::MAX),
        u64::try_from(settings.retry_delay_max.as_millis()).unwrap_or(u64::MAX),
        Uuid::new_v4().as_u64_pair().0,
    );
    i64::try_from(millis).unwrap_or(i64::MAX)
}

/// A claim's length in ms.
pub(crate) fn lease_ms(payments: &Payments) -> i64 {
    i64::try_from(payments.settings.lease().as_millis()).unwrap_or(i64::MAX)
}

/// What the payment path needs.
#[derive(Clone)]
pub struct Payments {
    pub db: PgPool,
    pub toss: TossClient,
    pub settings: PaymentSettings,
    /// Dev-mode fault injection (zero in production).
    pub faults: Arc<crate::faults::DevFaults>,
    /// Wakes the worker when there is work now (a confirm's outbox row, a webhook).
    pub wake: Arc<tokio::sync::Notify>,
}

impl Payments {
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        db: PgPool,
        toss: &toss::TossConfig,
        settings: PaymentSettings,
    ) -> Result<Self, crate::tls::ClientError> {
        Ok(Payments {
            db,
            toss: TossClient::new(toss)?,
            settings,
            faults: Arc::default(),
            wake: Arc::default(),
        })
    }
}

impl PaymentSettings {
    /// Settings for tests and benches: fast retries, a short Toss timeout.
    #[must_use]
    pub fn fast() -> Self {
        PaymentSettings {
            retry_delay_base: Duration::from_millis(20),
            retry_delay_max: Duration::from_millis(200),
            credit_attempts_max: 5,
            toss_timeout: Duration::from_millis(1_500),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("input: {0}")]
    Input(#[from] PaymentInputError),
    #[error("no such order for this user")]
    OrderNotFound,
    #[error("the amount does not match the order")]
    AmountMismatch,
    #[error("the order was confirmed with another payment key")]
    OrderAlreadyConfirmed,
    #[error("toss refused the payment: {0}")]
    Rejected(String),
    #[error("nothing left to refund")]
    NothingToRefund,
    #[error("a refund of this payment is in flight")]
    RefundInFlight,
    #[error("toss refused the refund: {0}")]
    RefundRefused(String),
    #[error("toss: {0}")]
    Toss(#[from] TossError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
}

/// Our own idempotency keys are built from ids: one that is not a key is a ledger request error.
impl From<crate::ledger::InvalidIdempotencyKey> for PaymentError {
    fn from(error: crate::ledger::InvalidIdempotencyKey) -> Self {
        crate::ledger::LedgerError::from(error).into()
    }
}

impl PaymentError {
    /// The public error code.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            PaymentError::Input(PaymentInputError::AmountOutOfRange) => ErrorCode::AmountOutOfRange,
            PaymentError::Input(_) => ErrorCode::ValidationFailed,
            PaymentError::OrderNotFound => ErrorCode::NotFound,
            PaymentError::AmountMismatch => ErrorCode::AmountMismatch,
            PaymentError::OrderAlreadyConfirmed => ErrorCode::OrderAlreadyConfirmed,
            PaymentError::Rejected(_) => ErrorCode::PaymentRejected,
            PaymentError::NothingToRefund => ErrorCode::NothingToRefund,
            PaymentError::RefundInFlight => ErrorCode::RequestInProgress,
            PaymentError::RefundRefused(_) | PaymentError::Toss(_) => ErrorCode::UpstreamError,
            PaymentError::Database(_) => ErrorCode::Internal,
            PaymentError::Ledger(error) => error.code(),
        }
    }
}

/// Our state of a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "payment_state", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum PaymentState {
    Confirming,
    WaitingForDeposit,
    Done,
    Failed,
}

/// Where a payment's points are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "payment_points", rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum PointsState {
    None,
    Pending,
    Credited,
    Compensated,
}

/// An order, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: OrderId,
    pub amount: i64,
    pub order_name: String,
}

/// A confirm, as the client sends it after the widget.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfirmRequest {
    pub payment_key: PaymentKey,
    pub order_id: OrderId,
    pub amount: i64,
}

/// A payment, as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentView {
    pub order_id: String,
    pub status: PaymentState,
    pub amount: i64,
    pub points: PointsState,
    /// Points of this payment refunded or canceled so far.
    pub canceled_amount: i64,
}

/// A payment row, locked or not.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub order_id: String,
    pub user_id: String,
    pub payment_key: String,
    pub amount: i64,
    pub state: PaymentState,
    pub points: PointsState,
    pub deposit_secret: Option<String>,
    pub charge_lot_id: Option<Uuid>,
    pub canceled_accounted: i64,
}

impl PaymentRow {
    #[must_use]
    pub fn view(&self) -> PaymentView {
        PaymentView {
            order_id: self.order_id.clone(),
            status: self.state,
            amount: self.amount,
            points: self.points,
            canceled_amount: self.canceled_accounted,
        }
    }
}

const PAYMENT_COLUMNS: &str = "order_id, user_id, payment_key, amount, state, points, \
     deposit_secret, charge_lot_id, canceled_accounted";

/// The payment of `order_id`, locked for the rest of the transaction.
///
/// # Errors
/// When Postgres fails.
pub async fn lock_payment(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 FOR UPDATE"
    ))
    .bind(order_id)
    .fetch_optional(conn)
    .await
}

/// Creates an order for `amount` with a server-chosen orderId.
///
/// # Errors
/// `Input` outside the bounds; `Database`.
pub async fn create_order(db: &PgPool, user: &str, amount: i64) -> Result<Order, PaymentError> {
    let amount = ChargeAmount::parse(amount)?;
    let order_id = OrderId::from_random(Uuid::new_v4().as_u128());
    let order_name = format!("NeNe 포인트 {}P", amount.krw());
    sqlx::query(
        "INSERT INTO payment_orders (order_id, user_id, amount, order_name) VALUES ($1, $2, $3, $4)",
    )
    .bind(order_id.as_str())
    .bind(user)
    .bind(amount.krw())
    .bind(&order_name)
    .execute(db)
    .await?;
    Ok(Order {
        order_id,
        amount: amount.krw(),
        order_name,
    })
}

/// The payment of `order_id`, if `user` owns it.
///
/// # Errors
/// `OrderNotFound`; `Database`.
pub async fn get_payment(
    db: &PgPool,
    user: &str,
    order_id: &str,
) -> Result<PaymentView, PaymentError> {
    let row: Option<PaymentRow> = sqlx::query_as(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1 AND user_id = $2"
    ))
    .bind(order_id)
    .bind(user)
    .fetch_optional(db)
    .await?;
    row.map(|row| row.view()).ok_or(PaymentError::OrderNotFound)
}

/// Toss's idempotency key for the confirm of an order: one per order, so every retry of the
/// confirm (the user's, the reconciler's) is the same request to Toss.
#[must_use]
pub fn confirm_key(order_id: &str) -> String {
    format!("confirm:{order_id}")
}

/// Confirms the payment of an order (after the widget), in three steps: [`claim`] the order (its
/// owner and amount checked before anything is asked of Toss, and a row recorded before the call,
/// so a crash mid-call leaves it for the reconciler), [`ask_toss`] with the order's idempotency
/// key, outside any transaction, and [`record`] Toss's answer with the points credited in the same
/// commit. Answers as soon as the outcome is recorded; a credit that failed there follows from the
/// outbox.
///
/// # Errors
/// `OrderNotFound` (not this user's), `AmountMismatch`, `OrderAlreadyConfirmed` (another payment
/// key), `Rejected` (Toss declined: no money taken); `Database`, `Ledger`.
#[tracing::instrument(skip_all, fields(order_id = %request.order_id))]
pub async fn confirm(
    payments: &Payments,
    user: &str,
    request: &ConfirmRequest,
) -> Result<PaymentView, PaymentError> {
    let order_id = request.order_id.as_str();
    let amount = match claim(payments, user, request).await? {
        Claim::Ask { amount } => amount,
        Claim::Settled(view) => return Ok(view),
    };
    match ask_toss(payments, request, amount).await? {
        Some(toss_payment) => record(payments, order_id, &toss_payment).await,
        None => still_confirming(payments, order_id).await,
    }
}

/// What [`claim`] found.
enum Claim {
    /// Ask Toss to confirm this amount (a first confirm, or one whose outcome is still unknown:
    /// asking again with the same key is safe and may settle it).
    Ask { amount: i64 },
    /// An earlier confirm of the same payment settled it.
    Settled(PaymentView),
}

/// Step 1: the order is the user's and the amount is the order's; the payment row is recorded (or
/// found) before Toss is asked.
async fn claim(
    payments: &Payments,
    user: &str,
    request: &ConfirmRequest,
) -> Result<Claim, PaymentError> {
    let order_id = request.order_id.as_str();
    let order: Option<(String, i64)> =
        sqlx::query_as("SELECT user_id, amount FROM payment_orders WHERE order_id = $1")
            .bind(order_id)
            .fetch_optional(&payments.db)
            .await?;
    let (owner, amount) = order.ok_or(PaymentError::OrderNotFound)?;
    if owner != user {
        // Not "forbidden": another user's order ids are not ours to confirm or to learn about.
        return Err(PaymentError::OrderNotFound);
    }
    if amount != request.amount {
        return Err(PaymentError::AmountMismatch);
    }
    // Record that we are about to ask, before asking: a crash mid-call leaves this row for the
    // reconciler. A second confirm of the same order finds it. The row has two unique keys (the
    // order, the payment key), and `ON CONFLICT` with a target arbitrates only that one: two
    // confirms of one order inserting at the same instant would have the second fail on the
    // payment key's index. With no target every unique conflict is "not claimed", and which row
    // holds what is read back below.
    let claimed = sqlx::query(
        "INSERT INTO payments (order_id, user_id, payment_key, amount, confirm_attempts) \
         VALUES ($1, $2, $3, $4, 1) ON CONFLICT DO NOTHING",
    )
    .bind(order_id)
    .bind(user)
    .bind(request.payment_key.as_str())
    .bind(amount)
    .execute(&payments.db)
    .await?
    .rows_affected()
        == 1;
    if claimed {
        return Ok(Claim::Ask { amount });
    }
    // No row for the order: the conflict was the payment key, which belongs to another order.
    let existing = find(&payments.db, order_id)
        .await?
        .ok_or(PaymentError::OrderAlreadyConfirmed)?;
    if existing.payment_key != request.payment_key.as_str() {
        // An order takes one payment key. If that attempt was declined, nothing was taken and
        // nothing will be: the order is over, and saying "already confirmed" would be false. A
        // new attempt needs a new order.
        return Err(if existing.state == PaymentState::Failed {
            PaymentError::Rejected("an earlier attempt for this order was declined".to_owned())
        } else {
            PaymentError::OrderAlreadyConfirmed
        });
    }
    match existing.state {
        PaymentState::Done | PaymentState::WaitingForDeposit => Ok(Claim::Settled(existing.view())),
        PaymentState::Failed => Err(PaymentError::Rejected("failed earlier".to_owned())),
        PaymentState::Confirming => Ok(Claim::Ask { amount }),
    }
}

/// Step 2: Toss's answer to the confirm, outside any transaction; `None` while the outcome is
/// unknown (the reconciler settles it). A decline is recorded and refused.
async fn ask_toss(
    payments: &Payments,
    request: &ConfirmRequest,
    amount: i64,
) -> Result<Option<TossPayment>, PaymentError> {
    let order_id = request.order_id.as_str();
    let answer = payments
        .toss
        .confirm(
            request.payment_key.as_str(),
            order_id,
            amount,
            &confirm_key(order_id),
        )
        .await;
    match answer {
        Ok(toss_payment) => Ok(Some(toss_payment)),
        // Already confirmed at Toss (by an earlier call of ours whose answer we lost): read it.
        Err(TossError::Refused { code, .. }) if code == "ALREADY_PROCESSED_PAYMENT" => Ok(payments
            .toss
            .payment_by_order(order_id)
            .await
            .ok()
            .flatten()),
        Err(TossError::Refused { code, message, .. }) => {
            tracing::info!(%code, %message, "toss declined the confirm");
            mark_failed(&payments.db, order_id, &code).await?;
            Err(PaymentError::Rejected(code))
        }
        Err(TossError::Unknown(reason)) => {
            tracing::warn!(%reason, "confirm outcome unknown; the reconciler will settle it");
            Ok(None)
        }
    }
}

/// Step 3: Toss's answer applied to the payment and, in the same commit, its points credited
/// (`credit::credit_at_confirm`).
async fn record(
    payments: &Payments,
    order_id: &str,
    toss_payment: &TossPayment,
) -> Result<PaymentView, PaymentError> {
    let mut tx = payments.db.begin().await?;
    let row = lock_payment(&mut tx, order_id)
        .await?
        .ok_or(PaymentError::OrderNotFound)?;
    if apply_toss_state(&mut tx, &row, toss_payment).await? == Applied::AmountMismatch {
        // Toss answered with another amount than the order's (and than we asked for): refused.
        // The order is flagged and the outbox cancels the whole payment at Toss.
        tx.commit().await?;
        payments.wake.notify_one();
        return Err(PaymentError::AmountMismatch);
    }
    credit::credit_at_confirm(&mut tx, payments, order_id).await?;
    let view = lock_payment(&mut tx, order_id)
        .await?
        .ok_or(PaymentError::OrderNotFound)?
        .view();
    tx.commit().await?;
    Ok(view)
}

async fn still_confirming(
    payments: &Payments,
    order_id: &str,
) -> Result<PaymentView, PaymentError> {
    payments.wake.notify_one();
    current(&payments.db, order_id).await.map(|row| row.view())
}

async fn current(db: &PgPool, order_id: &str) -> Result<PaymentRow, PaymentError> {
    find(db, order_id).await?.ok_or(PaymentError::OrderNotFound)
}

async fn find(db: &PgPool, order_id: &str) -> Result<Option<PaymentRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE order_id = $1"
    ))
    .bind(order_id)
    .fetch_optional(db)
    .await
}

async fn mark_failed(db: &PgPool, order_id: &str, code: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments SET state = 'failed', failure_code = $2, updated_at = now() \
         WHERE order_id = $1 AND state = 'confirming'",
    )
    .bind(order_id)
    .bind(code)
    .execute(db)
    .await?;
    Ok(())
}

/// What [`apply_toss_state`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Ours already matched Toss's.
    Nothing,
    /// Ours moved to match Toss's.
    Changed,
    /// Toss canceled money whose points are not credited yet: apply again after the credit.
    Deferred,
    /// Toss's payment is not this payment (another order or key): ignored.
    Mismatch,
    /// Toss holds this payment for another amount than its order's: no points, the order
    /// flagged, and the whole payment given back at Toss (the outbox's `compensate`).
    AmountMismatch,
}

/// Brings our record of a payment in line with Toss's, acting only on the difference. The caller
/// holds the payment's row lock (`row` was read with [`lock_payment`]) and commits.
///
/// # Errors
/// `Database`, `Ledger`.
pub async fn apply_toss_state(
    conn: &mut PgConnection,
    row: &PaymentRow,
    toss_payment: &TossPayment,
) -> Result<Applied, PaymentError> {
    if toss_payment.order_id != row.order_id || toss_payment.payment_key != row.payment_key {
        tracing::warn!(order_id = %row.order_id, "toss's payment names another order or key");
        return Ok(Applied::Mismatch);
    }
    sqlx::query("UPDATE payments SET toss_status = $2, updated_at = now() WHERE order_id = $1")
        .bind(&row.order_id)
        .bind(toss_payment.status.as_str())
        .execute(&mut *conn)
        .await?;
    let open = matches!(
        row.state,
        PaymentState::Confirming | PaymentState::WaitingForDeposit
    );
    let approved = matches!(
        toss_payment.status,
        TossStatus::Done | TossStatus::PartialCanceled | TossStatus::Canceled
    );
    if approved && toss_payment.total_amount != row.amount {
        // Toss took another amount than the order's. We never credit it, and our amounts (the
        // order's) say nothing about Toss's cancels, so nothing else applies either. Until the
        // money is back (`points` becomes `compensated`), seeing it again changes nothing more.
        if row.points == PointsState::None {
            give_back_another_amount(conn, row, toss_payment.total_amount).await?;
        }
        return Ok(Applied::AmountMismatch);
    }
    match toss_payment.status {
        TossStatus::Done | TossStatus::PartialCanceled | TossStatus::Canceled => {
            let mut applied = Applied::Nothing;
            let mut row = row.clone();
            if open {
                record_done(conn, &row.order_id).await?;
                row.state = PaymentState::Done;
                row.points = PointsState::Pending;
                applied = Applied::Changed;
            }
            let canceled = apply_cancellations(conn, &row, toss_payment.canceled_amount()).await?;
            Ok(if canceled == Applied::Nothing {
                applied
            } else {
                canceled
            })
        }
        TossStatus::WaitingForDeposit if row.state == PaymentState::Confirming => {
            sqlx::query(
                "UPDATE payments SET state = 'waiting_for_deposit', deposit_secret = $2 \
                 WHERE order_id = $1",
            )
            .bind(&row.order_id)
            .bind(toss_payment.secret.as_deref())
            .execute(&mut *conn)
            .await?;
            Ok(Applied::Changed)
        }
        TossStatus::Aborted | TossStatus::Expired if open => {
            sqlx::query!(
                "UPDATE payments SET state = 'failed', failure_code = $2 WHERE order_id = $1",
                row.order_id,
                toss_payment.status.as_str(),
            )
            .execute(&mut *conn)
            .await?;
            Ok(Applied::Changed)
        }
        // Not confirmed at Toss yet (or nothing new): the reconciler confirms again or waits.
        _ => Ok(Applied::Nothing),
    }
}

async fn record_done(conn: &mut PgConnection, order_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE payments SET state = 'done', points = 'pending' WHERE order_id = $1")
        .bind(order_id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO payment_outbox (order_id, kind) VALUES ($1, 'credit_charge') \
         ON CONFLICT ON CONSTRAINT payment_outbox_once DO NOTHING",
    )
    .bind(order_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Toss approved `toss_amount` for a payment whose order is for another amount: the payment is
/// done at Toss but earns nothing; it is flagged, logged, and canceled in full by the outbox.
async fn give_back_another_amount(
    conn: &mut PgConnection,
    row: &PaymentRow,
    toss_amount: i64,
) -> Result<(), sqlx::Error> {
    tracing::error!(order_id = %row.order_id, toss = toss_amount, ours = row.amount,
        "toss approved another amount than the order: flagged, canceled in full");
    sqlx::query("UPDATE payments SET state = 'done', updated_at = now() WHERE order_id = $1")
        .bind(&row.order_id)
        .execute(&mut *conn)
        .await?;
    flag_amount_mismatch(
        conn,
        &row.order_id,
        toss_amount,
        "Toss approved another amount than the order's: canceled in full, no points",
    )
    .await?;
    sqlx::query(
        "INSERT INTO payment_outbox (order_id, kind) VALUES ($1, 'compensate') \
         ON CONFLICT ON CONSTRAINT payment_outbox_once DO NOTHING",
    )
    .bind(&row.order_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Flags an order whose payment Toss holds (or was asked to hold) for `toss_amount`, not the
/// order's amount: a `payment_flags` row of kind `amount_mismatch` (one per order), which is where
/// an operator looks.
pub(crate) async fn flag_amount_mismatch(
    conn: &mut PgConnection,
    order_id: &str,
    toss_amount: i64,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payment_flags (order_id, kind, reason, amount) \
         VALUES ($1, 'amount_mismatch', $2, $3) \
         ON CONFLICT (order_id) WHERE kind = 'amount_mismatch' DO NOTHING",
    )
    .bind(order_id)
    .bind(reason)
    .bind(toss_amount)
    .execute(conn)
    .await?;
    Ok(())
}

/// Toss says `canceled_at_toss` of the payment is canceled. Takes the newly canceled part's points
/// out of the charge's lot, as far as they are unspent; what was already spent is flagged for an
/// operator, never driven negative.
async fn apply_cancellations(
    conn: &mut PgConnection,
    row: &PaymentRow,
    canceled_at_toss: i64,
) -> Result<Applied, PaymentError> {
    let Some(newly_canceled) = canceled_at_toss
        .checked_sub(row.canceled_accounted)
        .filter(|amount| *amount > 0)
    else {
        return Ok(Applied::Nothing);
    };
    match (row.points, row.charge_lot_id) {
        (PointsState::Pending, _) => return Ok(Applied::Deferred),
        (PointsState::Credited, Some(lot)) => {
            let standing = ledger::lot_standing_in_tx(conn, LotId(lot)).await?;
            let withdrawn = newly_canceled.min(standing.withdrawable.get());
            if withdrawn > 0 {
                let key =
                    IdempotencyKey::parse(&format!("cancel:{}:{canceled_at_toss}", row.order_id))?;
                ledger::withdraw_from_lot_in_tx(
                    conn,
                    &LotWithdrawal {
                        key,
                        lot: LotId(lot),
                        to: ledger::system_account(SystemAccount::PaymentClearing),
                        amount: points(withdrawn)?,
                    },
                )
                .await?;
            }
            let spent = newly_canceled - withdrawn;
            if spent > 0 {
                tracing::error!(order_id = %row.order_id, spent,
                    "canceled at toss after its points were spent: flagged for an operator");
                sqlx::query(
                    "INSERT INTO payment_flags (order_id, kind, reason, amount) \
                     VALUES ($1, 'canceled_after_spent', \
                             'canceled at Toss after the points were spent', $2)",
                )
                .bind(&row.order_id)
                .bind(spent)
                .execute(&mut *conn)
                .await?;
            }
            notifications::enqueue_in_tx(
                conn,
                &row.user_id,
                NotificationKind::PaymentCanceled,
                &serde_json::json!({
                    "order_id": row.order_id,
                    "canceled_amount": newly_canceled,
                    "points_removed": withdrawn,
                }),
                &format!("payment-canceled:{}:{canceled_at_toss}", row.order_id),
            )
            .await?;
        }
        // No points were ever given for it (or they were given back): nothing to take.
        _ => {}
    }
    sqlx::query("UPDATE payments SET canceled_accounted = $2 WHERE order_id = $1")
        .bind(&row.order_id)
        .bind(canceled_at_toss)
        .execute(&mut *conn)
        .await?;
    Ok(Applied::Changed)
}

fn points(amount: i64) -> Result<nene_domain::Points, LedgerError> {
    nene_domain::Points::new(amount).map_err(|_| LedgerError::InvalidRequest("negative amount"))
}
