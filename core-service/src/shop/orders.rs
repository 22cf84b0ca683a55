//! Orders as TCC over the ledger's holds: the try reserves a unit of stock and holds the price,
//! the confirm posts the hold, the cancel releases both — each step with its events, in one
//! transaction. A try not confirmed by its deadline is canceled by [`expire_overdue`], which the
//! core's maintenance loop runs before the ledger's own hold sweep.
//!
//! Locks, always in this order, so no two steps can deadlock: the order's row (steps on an
//! existing order), the buyer's purchase count for the product, the buyer's wallet, the product's
//! row. The product's row is the sale's hot spot: the try takes it last, so it is held only from
//! the conditional stock update to the commit.

use nene_domain::{
    idempotency::IdempotencyKey,
    shop::{
        OrderEvent, OrderState, PointsMove, ProductKind, SaleStatus, SaleWindow, StockMove,
        Transition,
    },
    time::format_rfc3339,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{
    ShopError,
    events::{self, EventData, OrderProjection},
    require_admin,
};
use crate::{
    ledger::{
        self, Hold, HoldState, LedgerError, PostHold, Refund, ReleaseHold, SystemAccount,
        ensure_wallet_in_tx, idempotency, system_account,
    },
    notifications::{self, NotificationKind},
};

/// How long a try waits for its confirm: the edge confirms within the same request, so minutes
/// cover every retry; past it the unit and the points go back.
pub const ORDER_CONFIRM_WINDOW_SECONDS: i64 = 300;
/// How much longer the try's hold lives than its deadline: the shop's sweep, which returns the
/// stock and the points together, comes first; the ledger's own expiry only backs it up.
pub const HOLD_GRACE_SECONDS: i64 = 300;
const _: () =
    assert!(ORDER_CONFIRM_WINDOW_SECONDS + HOLD_GRACE_SECONDS <= ledger::HOLD_EXPIRY_SECONDS_MAX);
/// Overdue tries canceled per sweep, each in its own transaction.
pub const EXPIRED_ORDERS_PER_PASS: i64 = 500;
/// Longest page of a user's orders.
pub const ORDER_PAGE_LIMIT_MAX: i64 = 100;
/// A page of a user's orders when the client names no limit.
pub const ORDER_PAGE_LIMIT_DEFAULT: i64 = 20;

/// An order as its buyer (or an admin) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: Uuid,
    pub product_id: Uuid,
    pub product_name: String,
    pub price: i64,
    pub state: OrderState,
    pub deadline_at: String,
    pub placed_at: String,
    /// A gift card's code, once fulfilled, for its buyer only.
    pub gift_code: Option<String>,
}

/// A page of a user's orders, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPage {
    pub items: Vec<OrderView>,
    pub next_cursor: Option<String>,
}

/// The request an order's Idempotency-Key stands for.
#[derive(Debug, Serialize)]
struct PlaceRequest {
    product: Uuid,
}

fn view(order: &OrderProjection, gift_code: Option<String>) -> OrderView {
    OrderView {
        id: order.id,
        product_id: order.product_id,
        product_name: order.product_name.clone(),
        price: order.price,
        state: order.state,
        deadline_at: format_rfc3339(order.deadline_at.unix_timestamp()),
        placed_at: format_rfc3339(order.placed_at.unix_timestamp()),
        gift_code,
    }
}

/// The ledger key of one of an order's own ledger steps.
fn ledger_key(step: &str, order: Uuid) -> Result<IdempotencyKey, ShopError> {
    Ok(IdempotencyKey::parse(&format!("shop-{step}:{order}")).map_err(LedgerError::from)?)
}

/// The idempotency record of a client's order key: the user and the key hashed together, so
/// two users' keys never meet and any client key fits the ledger's key bound.
fn order_record_key(user: &str, key: &IdempotencyKey) -> Result<IdempotencyKey, ShopError> {
    let mut hasher = Sha256::new();
    hasher.update(user.as_bytes());
    hasher.update([0]);
    hasher.update(key.as_str().as_bytes());
    let digest: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    Ok(IdempotencyKey::parse(&format!("shop-order:{digest}")).map_err(LedgerError::from)?)
}

/// Places an order of one unit of `product` for `user`: the try. One transaction reserves the
/// unit (a conditional update that cannot oversell), holds the price in the buyer's wallet and
/// appends `placed`, `stock_reserved` and `points_held`. The same `key` again answers with the
/// same order (in its state now); with another product, `IdempotencyKeyReused`.
///
/// # Errors
/// `NotFound` (no such product, or unpublished), `NotOnSale` (outside the sale window),
/// `SoldOut`, `PurchaseLimitReached`, `Ledger(InsufficientPoints)`,
/// `Ledger(IdempotencyKeyReused)`, `Database`.
pub async fn place_order(
    db: &PgPool,
    user: &str,
    product: Uuid,
    key: &IdempotencyKey,
) -> Result<OrderView, ShopError> {
    let record = order_record_key(user, key)?;
    let mut tx = db.begin().await?;
    let request = PlaceRequest { product };
    if let Some(first) =
        idempotency::begin::<OrderView>(&mut tx, "shop_order", &record, &request).await?
    {
        tx.rollback().await?;
        return order(db, user, first.id).await;
    }
    // Now in whole seconds rounded down (a cast would round up half the time): the deadline is
    // then never later than the window after the events' own time.
    let row = sqlx::query!(
        r#"SELECT kind AS "kind: ProductKind", name, price, stock, per_user_limit, published,
                  extract(epoch FROM sale_starts_at)::int8 AS sale_starts_at,
                  extract(epoch FROM sale_ends_at)::int8 AS sale_ends_at,
                  floor(extract(epoch FROM platform_now()))::int8 AS "now!"
           FROM shop_products WHERE id = $1"#,
        product
    )
    .fetch_optional(&mut *tx)
    .await?
    .filter(|row| row.published)
    .ok_or(ShopError::NotFound("product"))?;
    let window = SaleWindow {
        starts_at: row.sale_starts_at,
        ends_at: row.sale_ends_at,
    };
    if window.status(row.now) != SaleStatus::Open {
        return Err(ShopError::NotOnSale);
    }
    // Most refusals of a sale that is over take no lock at all.
    if row.stock == Some(0) {
        return Err(ShopError::SoldOut);
    }
    // The buyer's count: a conditional upsert, so one buyer's concurrent orders serialize here.
    let counted = sqlx::query_scalar!(
        "INSERT INTO shop_purchase_counts AS c (product_id, user_id, units) VALUES ($1, $2, 1) \
         ON CONFLICT (product_id, user_id) DO UPDATE SET units = c.units + 1 \
         WHERE $3::int4 IS NULL OR c.units < $3 \
         RETURNING units",
        product,
        user,
        row.per_user_limit
    )
    .fetch_optional(&mut *tx)
    .await?;
    if counted.is_none() {
        return Err(ShopError::PurchaseLimitReached);
    }
    let id = Uuid::now_v7();
    let deadline =
        row.now
            .checked_add(ORDER_CONFIRM_WINDOW_SECONDS)
            .ok_or(ShopError::Inconsistent(
                "the platform clock is out of range",
            ))?;
    let placed = EventData {
        user: Some(user.to_owned()),
        product: Some(product),
        product_name: Some(row.name),
        kind: Some(row.kind),
        price: Some(row.price),
        deadline: Some(deadline),
        ..EventData::default()
    };
    let at = events::append(&mut tx, id, 1, OrderEvent::Placed, &placed).await?;
    let mut order = OrderProjection::start(id, &placed, at)?;
    // The unit is reserved first by the rules, but taken from the product's row last (below):
    // the three events commit together, and the hot row is held for the shortest time.
    let reserve = events::record(
        &mut tx,
        &mut order,
        OrderEvent::StockReserved,
        &EventData::default(),
    )
    .await?;
    let hold_transition = order.state.apply(OrderEvent::PointsHeld, order.kind)?;
    let held = run_points(&mut tx, &order, hold_transition).await?;
    events::record(&mut tx, &mut order, OrderEvent::PointsHeld, &held).await?;
    if reserve.stock == StockMove::Take && row.stock.is_some() {
        let taken = sqlx::query!(
            "UPDATE shop_products SET stock = stock - 1 WHERE id = $1 AND published AND stock > 0",
            product
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if taken == 0 {
            return Err(ShopError::SoldOut);
        }
    }
    let placed_view = view(&order, None);
    idempotency::finish(&mut tx, &record, &placed_view).await?;
    tx.commit().await?;
    Ok(placed_view)
}

/// Runs a step's effect on the buyer's points; returns what the event records of it.
async fn run_points(
    conn: &mut PgConnection,
    order: &OrderProjection,
    transition: Transition,
) -> Result<EventData, ShopError> {
    let price = nene_domain::Points::new(order.price)
        .map_err(|_| ShopError::Inconsistent("a negative price"))?;
    let mut data = EventData::default();
    match transition.points {
        PointsMove::Keep => {}
        PointsMove::Hold => {
            let wallet = ensure_wallet_in_tx(conn, &order.user_id).await?;
            let receipt = ledger::hold_in_tx(
                conn,
                &Hold {
                    key: ledger_key("hold", order.id)?,
                    wallet,
                    amount: price,
                    expires_in_seconds: ORDER_CONFIRM_WINDOW_SECONDS + HOLD_GRACE_SECONDS,
                },
            )
            .await?;
            data.hold = Some(receipt.hold.0);
        }
        PointsMove::Post => {
            let hold = order
                .hold_id
                .ok_or(ShopError::Inconsistent("no hold to post"))?;
            let receipt = ledger::post_hold_in_tx(
                conn,
                &PostHold {
                    key: ledger_key("post", order.id)?,
                    hold: ledger::HoldId(hold),
                    to: system_account(SystemAccount::ShopSales),
                    amount: price,
                },
            )
            .await?;
            let debit = receipt
                .debit
                .ok_or(ShopError::Inconsistent("a posted hold without its debit"))?;
            data.debit = Some(debit.transfer.0);
        }
        PointsMove::Release => {
            let hold = order
                .hold_id
                .ok_or(ShopError::Inconsistent("no hold to release"))?;
            let released = ledger::release_hold_in_tx(
                conn,
                &ReleaseHold {
                    key: ledger_key("release", order.id)?,
                    hold: ledger::HoldId(hold),
                },
            )
            .await;
            match released {
                // The ledger's own expiry got there first: the points are back already.
                Ok(_) | Err(LedgerError::HoldNotPending(HoldState::Released)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        PointsMove::Refund => {
            let debit = order
                .debit_id
                .ok_or(ShopError::Inconsistent("no debit to refund"))?;
            let receipt = ledger::refund_in_tx(
                conn,
                &Refund {
                    key: ledger_key("refund", order.id)?,
                    debit: ledger::TransferId(debit),
                    amount: price,
                },
            )
            .await?;
            data.refund = Some(receipt.transfer.0);
        }
    }
    Ok(data)
}

/// Takes an order leaving for a final state out of its buyer's per-user count. Runs before the
/// step's points move: the count's row comes before the wallet in the lock order.
async fn uncount(
    conn: &mut PgConnection,
    order: &OrderProjection,
    transition: Transition,
) -> Result<(), ShopError> {
    if transition.to.is_final() && order.state.counts_towards_limit() {
        sqlx::query!(
            "UPDATE shop_purchase_counts SET units = units - 1 WHERE product_id = $1 AND user_id = $2",
            order.product_id,
            order.user_id
        )
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// Runs an undoing step's effect on the stock: the unit back (goods, or a gift card's code never
/// shown), or nothing (a shown code is burned). Runs last: the product's row is last in the lock
/// order.
async fn return_unit(
    conn: &mut PgConnection,
    order: &OrderProjection,
    transition: Transition,
) -> Result<(), ShopError> {
    match transition.stock {
        StockMove::Return => {
            sqlx::query!(
                "UPDATE shop_products SET stock = stock + 1 WHERE id = $1 AND stock IS NOT NULL",
                order.product_id
            )
            .execute(conn)
            .await?;
        }
        StockMove::Keep | StockMove::Burn => {}
        StockMove::Take => return Err(ShopError::Inconsistent("an undo that takes stock")),
    }
    Ok(())
}

/// Locks order `id` for a step.
async fn lock_order(conn: &mut PgConnection, id: Uuid) -> Result<OrderProjection, ShopError> {
    sqlx::query_as!(
        OrderProjection,
        r#"SELECT o.id, o.user_id, o.product_id, u.product_name, o.kind AS "kind: ProductKind",
                  o.price, o.state AS "state: OrderState", o.version, o.hold_id, o.debit_id,
                  o.refund_id, o.gift_code_id, o.deadline_at, o.placed_at, o.updated_at
           FROM shop_orders o
           JOIN shop_user_orders u ON u.user_id = o.user_id AND u.order_id = o.id
           WHERE o.id = $1 FOR UPDATE OF o"#,
        id
    )
    .fetch_optional(conn)
    .await?
    .ok_or(ShopError::NotFound("order"))
}

/// The code a gift card order was fulfilled with.
async fn gift_code(
    conn: &mut PgConnection,
    order: &OrderProjection,
) -> Result<Option<String>, ShopError> {
    let Some(code) = order.gift_code_id else {
        return Ok(None);
    };
    Ok(
        sqlx::query_scalar!("SELECT code FROM shop_gift_codes WHERE id = $1", code)
            .fetch_optional(conn)
            .await?,
    )
}

/// Confirms `user`'s order `id`: its hold is posted to the shop's sales account, and a gift card
/// is fulfilled at once with the oldest unsold code. Confirming a confirmed order answers with it
/// again.
///
/// # Errors
/// `NotFound` (no such order of this user), `DeadlinePassed`, `IllegalStep` (canceled),
/// `Ledger`, `Database`.
pub async fn confirm_order(db: &PgPool, user: &str, id: Uuid) -> Result<OrderView, ShopError> {
    let mut tx = db.begin().await?;
    let mut order = lock_order(&mut tx, id).await?;
    if order.user_id != user {
        return Err(ShopError::NotFound("order"));
    }
    if matches!(order.state, OrderState::Confirmed | OrderState::Fulfilled) {
        let code = gift_code(&mut tx, &order).await?;
        return Ok(view(&order, code));
    }
    let transition = order.state.apply(OrderEvent::Confirmed, order.kind)?;
    let overdue = sqlx::query_scalar!(
        r#"SELECT $1 <= platform_now() AS "overdue!""#,
        order.deadline_at
    )
    .fetch_one(&mut *tx)
    .await?;
    if overdue {
        return Err(ShopError::DeadlinePassed);
    }
    let posted = run_points(&mut tx, &order, transition).await?;
    events::record(&mut tx, &mut order, OrderEvent::Confirmed, &posted).await?;
    let mut code = None;
    if order.kind == ProductKind::GiftCard {
        let sold = sqlx::query!(
            "UPDATE shop_gift_codes SET order_id = $1, sold_at = now() \
             WHERE id = (SELECT id FROM shop_gift_codes WHERE product_id = $2 AND order_id IS NULL \
                         ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             RETURNING id, code",
            order.id,
            order.product_id
        )
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(ShopError::Inconsistent(
            "a gift card sold with no code left",
        ))?;
        let fulfilled = EventData {
            gift_code: Some(sold.id),
            ..EventData::default()
        };
        events::record(&mut tx, &mut order, OrderEvent::Fulfilled, &fulfilled).await?;
        code = Some(sold.code);
    }
    tx.commit().await?;
    Ok(view(&order, code))
}

/// Cancels a step not yet fulfilled, undoing exactly what the order did (the domain says what).
async fn cancel_locked(
    conn: &mut PgConnection,
    order: &mut OrderProjection,
    by: &str,
) -> Result<Transition, ShopError> {
    let transition = order.state.apply(OrderEvent::Canceled, order.kind)?;
    uncount(conn, order, transition).await?;
    let mut data = run_points(conn, order, transition).await?;
    return_unit(conn, order, transition).await?;
    data.by = Some(by.to_owned());
    events::record(conn, order, OrderEvent::Canceled, &data).await
}

/// The buyer cancels order `id`, until it is fulfilled: the unit goes back to the stock, and the
/// points back to the buyer (a released hold, or a refund into the same lots after a confirm).
/// Canceling a canceled order answers with it again.
///
/// # Errors
/// `NotFound` (no such order of this user), `IllegalStep` (fulfilled or refunded), `Ledger`,
/// `Database`.
pub async fn cancel_order(db: &PgPool, user: &str, id: Uuid) -> Result<OrderView, ShopError> {
    let mut tx = db.begin().await?;
    let mut order = lock_order(&mut tx, id).await?;
    if order.user_id != user {
        return Err(ShopError::NotFound("order"));
    }
    if order.state == OrderState::Canceled {
        return Ok(view(&order, None));
    }
    cancel_locked(&mut tx, &mut order, "buyer").await?;
    tx.commit().await?;
    Ok(view(&order, None))
}

/// Payload of the buyer's notification of an admin's cancel or refund.
#[derive(Debug, Serialize)]
struct CanceledNotice<'a> {
    order_id: Uuid,
    product_name: &'a str,
    amount: i64,
}

/// An admin cancels order `id`: before fulfilment as the buyer would; after it, a refund of the
/// points into the lots they came from (and the unit back, for goods). The buyer is notified in
/// the same transaction.
///
/// # Errors
/// `NotAnAdmin`, `NotFound`, `IllegalStep` (already canceled or refunded), `Ledger`, `Database`.
pub async fn admin_cancel(
    db: &PgPool,
    admins: &[String],
    admin: &str,
    id: Uuid,
) -> Result<OrderView, ShopError> {
    require_admin(admins, admin)?;
    let mut tx = db.begin().await?;
    let mut order = lock_order(&mut tx, id).await?;
    let had_points = order.state.points() == nene_domain::shop::PointsStanding::Taken;
    if order.state == OrderState::Fulfilled {
        let transition = order.state.apply(OrderEvent::Refunded, order.kind)?;
        uncount(&mut tx, &order, transition).await?;
        let mut data = run_points(&mut tx, &order, transition).await?;
        return_unit(&mut tx, &order, transition).await?;
        data.by = Some("admin".to_owned());
        events::record(&mut tx, &mut order, OrderEvent::Refunded, &data).await?;
    } else {
        cancel_locked(&mut tx, &mut order, "admin").await?;
    }
    notifications::enqueue_in_tx(
        &mut tx,
        &order.user_id,
        NotificationKind::ShopOrderCanceled,
        &CanceledNotice {
            order_id: order.id,
            product_name: &order.product_name,
            amount: if had_points { order.price } else { 0 },
        },
        &format!("shop-canceled:{}", order.id),
    )
    .await?;
    tx.commit().await?;
    Ok(view(&order, None))
}

/// An admin marks goods order `id` fulfilled (sent).
///
/// # Errors
/// `NotAnAdmin`, `NotFound`, `IllegalStep` (not confirmed), `InvalidRequest` (a gift card, which
/// its confirm fulfils), `Database`.
pub async fn fulfil_order(
    db: &PgPool,
    admins: &[String],
    admin: &str,
    id: Uuid,
) -> Result<OrderView, ShopError> {
    require_admin(admins, admin)?;
    let mut tx = db.begin().await?;
    let mut order = lock_order(&mut tx, id).await?;
    if order.kind == ProductKind::GiftCard {
        return Err(ShopError::InvalidRequest(
            "a gift card is fulfilled by its confirm",
        ));
    }
    events::record(
        &mut tx,
        &mut order,
        OrderEvent::Fulfilled,
        &EventData::default(),
    )
    .await?;
    tx.commit().await?;
    Ok(view(&order, None))
}

/// Cancels up to `batch` tries whose deadline has passed (platform clock), each in its own
/// transaction, skipping orders another replica or a request holds. Returns how many.
///
/// # Errors
/// When Postgres or the ledger fails.
pub async fn expire_overdue(db: &PgPool, batch: i64) -> Result<u64, ShopError> {
    let overdue = sqlx::query_scalar!(
        "SELECT id FROM shop_orders \
         WHERE state IN ('placed', 'stock_reserved', 'reserved') AND deadline_at <= platform_now() \
         ORDER BY deadline_at LIMIT $1",
        batch
    )
    .fetch_all(db)
    .await?;
    let mut expired = 0;
    for id in overdue {
        let mut tx = db.begin().await?;
        let locked = sqlx::query_scalar!(
            "SELECT id FROM shop_orders WHERE id = $1 \
               AND state IN ('placed', 'stock_reserved', 'reserved') \
               AND deadline_at <= platform_now() \
             FOR UPDATE SKIP LOCKED",
            id
        )
        .fetch_optional(&mut *tx)
        .await?;
        if locked.is_none() {
            continue;
        }
        let mut order = lock_order(&mut tx, id).await?;
        cancel_locked(&mut tx, &mut order, "deadline").await?;
        tx.commit().await?;
        expired += 1;
    }
    Ok(expired)
}

/// `user`'s order `id`, with its gift code.
///
/// # Errors
/// `NotFound` (no such order of this user), `Database`.
pub async fn order(db: &PgPool, user: &str, id: Uuid) -> Result<OrderView, ShopError> {
    let mut conn = db.acquire().await?;
    let order = sqlx::query_as!(
        OrderProjection,
        r#"SELECT o.id, o.user_id, o.product_id, u.product_name, o.kind AS "kind: ProductKind",
                  o.price, o.state AS "state: OrderState", o.version, o.hold_id, o.debit_id,
                  o.refund_id, o.gift_code_id, o.deadline_at, o.placed_at, o.updated_at
           FROM shop_orders o
           JOIN shop_user_orders u ON u.user_id = o.user_id AND u.order_id = o.id
           WHERE o.id = $1 AND o.user_id = $2"#,
        id,
        user
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(ShopError::NotFound("order"))?;
    let code = gift_code(&mut conn, &order).await?;
    Ok(view(&order, code))
}

/// `user`'s orders, newest first, from the list projection, `limit` at a time after `cursor`.
///
/// # Errors
/// `InvalidRequest` for a malformed cursor or a limit out of range; `Database`.
pub async fn user_orders(
    db: &PgPool,
    user: &str,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<OrderPage, ShopError> {
    let limit = limit.unwrap_or(ORDER_PAGE_LIMIT_DEFAULT);
    if !(1..=ORDER_PAGE_LIMIT_MAX).contains(&limit) {
        return Err(ShopError::InvalidRequest("limit: 1–100"));
    }
    let after = cursor
        .map(|cursor| Uuid::parse_str(cursor).map_err(|_| ShopError::InvalidRequest("cursor")))
        .transpose()?;
    let rows = sqlx::query!(
        r#"SELECT u.order_id, u.product_id, u.product_name, u.price,
                  u.state AS "state: OrderState", o.deadline_at, u.placed_at
           FROM shop_user_orders u JOIN shop_orders o ON o.id = u.order_id
           WHERE u.user_id = $1 AND ($2::uuid IS NULL OR u.order_id < $2)
           ORDER BY u.order_id DESC LIMIT $3"#,
        user,
        after,
        limit + 1
    )
    .fetch_all(db)
    .await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    let items: Vec<OrderView> = rows
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .map(|row| OrderView {
            id: row.order_id,
            product_id: row.product_id,
            product_name: row.product_name,
            price: row.price,
            state: row.state,
            deadline_at: format_rfc3339(row.deadline_at.unix_timestamp()),
            placed_at: format_rfc3339(row.placed_at.unix_timestamp()),
            gift_code: None,
        })
        .collect();
    let next_cursor = more
        .then(|| items.last().map(|last| last.id.to_string()))
        .flatten();
    Ok(OrderPage { items, next_cursor })
}
