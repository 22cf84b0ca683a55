//! Orders as events (CQRS): each order's history is its rows in `shop_order_events`, which the
//! database never lets anyone update or delete. The projections — `shop_orders` (each order's
//! current state, also its lock) and `shop_user_orders` (a user's list) — are folds of those rows,
//! written with each event in the same transaction, and rebuilt from the events by [`rebuild`]
//! (`nene-core shop-rebuild`) with the very same fold ([`OrderProjection::apply`]).

use nene_domain::shop::{OrderEvent, OrderState, ProductKind, Transition};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, types::time::OffsetDateTime};
use uuid::Uuid;

use super::ShopError;

/// What an event recorded: each kind fills its own fields, the rest stay absent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventData {
    /// `placed`: the buyer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `placed`: the product, its name and kind, and the price paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ProductKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    /// `placed`: unix seconds (platform clock) after which an unconfirmed try is canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    /// `points_held`: the ledger hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold: Option<Uuid>,
    /// `confirmed`: the ledger debit the hold was posted as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debit: Option<Uuid>,
    /// `canceled` after a confirm, `refunded`: the ledger refund.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<Uuid>,
    /// `fulfilled` (gift cards): the code sold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gift_code: Option<Uuid>,
    /// `canceled`, `refunded`: who (`buyer`, `admin`, `deadline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// One order folded from its events: the row of `shop_orders` and, with the product's name, of
/// `shop_user_orders`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderProjection {
    pub id: Uuid,
    pub user_id: String,
    pub product_id: Uuid,
    pub product_name: String,
    pub kind: ProductKind,
    pub price: i64,
    pub state: OrderState,
    /// The last event folded in (its `seq`).
    pub version: i32,
    pub hold_id: Option<Uuid>,
    pub debit_id: Option<Uuid>,
    pub refund_id: Option<Uuid>,
    pub gift_code_id: Option<Uuid>,
    pub deadline_at: OffsetDateTime,
    pub placed_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The projection of `shop_user_orders`, for comparing a rebuild with the live rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserOrderProjection {
    pub user_id: String,
    pub order_id: Uuid,
    pub product_id: Uuid,
    pub product_name: String,
    pub price: i64,
    pub state: OrderState,
    pub placed_at: OffsetDateTime,
}

impl OrderProjection {
    /// The order a `placed` event starts.
    ///
    /// # Errors
    /// `Inconsistent` when the event lacks a field a placed order has.
    pub fn start(id: Uuid, data: &EventData, at: OffsetDateTime) -> Result<Self, ShopError> {
        let missing = || ShopError::Inconsistent("a placed event lacks a field");
        let state = OrderState::start(OrderEvent::Placed)?.to;
        let deadline = data.deadline.ok_or_else(missing)?;
        Ok(OrderProjection {
            id,
            user_id: data.user.clone().ok_or_else(missing)?,
            product_id: data.product.ok_or_else(missing)?,
            product_name: data.product_name.clone().ok_or_else(missing)?,
            kind: data.kind.ok_or_else(missing)?,
            price: data.price.ok_or_else(missing)?,
            state,
            version: 1,
            hold_id: None,
            debit_id: None,
            refund_id: None,
            gift_code_id: None,
            deadline_at: OffsetDateTime::from_unix_timestamp(deadline)
                .map_err(|_| ShopError::Inconsistent("a deadline out of range"))?,
            placed_at: at,
            updated_at: at,
        })
    }

    /// Folds in the next event: the domain's step, then what the event recorded.
    ///
    /// # Errors
    /// `IllegalStep` when the order's state does not allow `event`.
    pub fn apply(
        &mut self,
        event: OrderEvent,
        data: &EventData,
        at: OffsetDateTime,
    ) -> Result<Transition, ShopError> {
        let transition = self.state.apply(event, self.kind)?;
        self.state = transition.to;
        self.version += 1;
        self.hold_id = data.hold.or(self.hold_id);
        self.debit_id = data.debit.or(self.debit_id);
        self.refund_id = data.refund.or(self.refund_id);
        self.gift_code_id = data.gift_code.or(self.gift_code_id);
        self.updated_at = at;
        Ok(transition)
    }

    /// The row of `shop_user_orders` this order has.
    #[must_use]
    pub fn user_order(&self) -> UserOrderProjection {
        UserOrderProjection {
            user_id: self.user_id.clone(),
            order_id: self.id,
            product_id: self.product_id,
            product_name: self.product_name.clone(),
            price: self.price,
            state: self.state,
            placed_at: self.placed_at,
        }
    }
}

/// Appends `event` to `order`'s history as step `seq`; returns when it happened (the platform's
/// now of the transaction).
///
/// # Errors
/// `Database` (a step already written by another transaction is a primary-key violation).
pub(super) async fn append(
    conn: &mut PgConnection,
    order: Uuid,
    seq: i32,
    event: OrderEvent,
    data: &EventData,
) -> Result<OffsetDateTime, ShopError> {
    let at = sqlx::query_scalar!(
        "INSERT INTO shop_order_events (order_id, seq, kind, data) VALUES ($1, $2, $3, $4) \
         RETURNING at",
        order,
        seq,
        event as OrderEvent,
        serde_json::to_value(data)?
    )
    .fetch_one(conn)
    .await?;
    Ok(at)
}

/// Writes `order`'s rows of both projections (inserted or replaced).
///
/// # Errors
/// `Database`.
pub(super) async fn save(
    conn: &mut PgConnection,
    order: &OrderProjection,
) -> Result<(), ShopError> {
    sqlx::query!(
        "INSERT INTO shop_orders (id, user_id, product_id, kind, price, state, version, hold_id, \
             debit_id, refund_id, gift_code_id, deadline_at, placed_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, version = EXCLUDED.version, \
             hold_id = EXCLUDED.hold_id, debit_id = EXCLUDED.debit_id, \
             refund_id = EXCLUDED.refund_id, gift_code_id = EXCLUDED.gift_code_id, \
             updated_at = EXCLUDED.updated_at",
        order.id,
        order.user_id,
        order.product_id,
        order.kind as ProductKind,
        order.price,
        order.state as OrderState,
        order.version,
        order.hold_id,
        order.debit_id,
        order.refund_id,
        order.gift_code_id,
        order.deadline_at,
        order.placed_at,
        order.updated_at,
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO shop_user_orders (user_id, order_id, product_id, product_name, price, state, \
             placed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (user_id, order_id) DO UPDATE SET state = EXCLUDED.state",
        order.user_id,
        order.id,
        order.product_id,
        order.product_name,
        order.price,
        order.state as OrderState,
        order.placed_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Appends `event` with `data` to `order` and folds it into the projections.
///
/// # Errors
/// `IllegalStep`, `Database`.
pub(super) async fn record(
    conn: &mut PgConnection,
    order: &mut OrderProjection,
    event: OrderEvent,
    data: &EventData,
) -> Result<Transition, ShopError> {
    let seq = order
        .version
        .checked_add(1)
        .ok_or(ShopError::Inconsistent("an order's history is too long"))?;
    // Checked before anything is written, then folded with the time the event got.
    order.state.apply(event, order.kind)?;
    let at = append(conn, order.id, seq, event, data).await?;
    let transition = order.apply(event, data, at)?;
    save(conn, order).await?;
    Ok(transition)
}

/// Every order folded from the events alone, by id.
///
/// # Errors
/// `IllegalStep` or `Inconsistent` for a history the rules do not allow (which the live path
/// never writes); `Database`.
pub async fn projections_from_events(
    conn: &mut PgConnection,
) -> Result<Vec<OrderProjection>, ShopError> {
    let events = sqlx::query!(
        r#"SELECT order_id, seq, kind AS "kind: OrderEvent", data, at
           FROM shop_order_events ORDER BY order_id, seq"#
    )
    .fetch_all(conn)
    .await?;
    let mut orders: Vec<OrderProjection> = Vec::new();
    for event in events {
        let data: EventData = serde_json::from_value(event.data)?;
        match orders.last_mut() {
            Some(order) if order.id == event.order_id => {
                if event.seq != order.version + 1 {
                    return Err(ShopError::Inconsistent("a gap in an order's history"));
                }
                order.apply(event.kind, &data, event.at)?;
            }
            _ => {
                if event.kind != OrderEvent::Placed {
                    return Err(ShopError::Inconsistent("an order not started by placed"));
                }
                orders.push(OrderProjection::start(event.order_id, &data, event.at)?);
            }
        }
    }
    Ok(orders)
}

/// Rebuilds both projections from the events, in one transaction that keeps every order step out
/// while it runs. Returns how many orders it wrote.
///
/// # Errors
/// As [`projections_from_events`]; nothing is changed then.
pub async fn rebuild(db: &PgPool) -> Result<usize, ShopError> {
    let mut tx = db.begin().await?;
    // The projections, not the events: every step locks or writes `shop_orders` before
    // `shop_user_orders`, and a try appends its first event before it writes either, so taking
    // both projections (in that order) keeps every writer out without a cycle. Reads go on (they
    // see the old rows until the commit). A try whose events this rebuild cannot see yet writes
    // its projection rows after the commit.
    sqlx::query!("LOCK TABLE shop_orders, shop_user_orders IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let orders = projections_from_events(&mut tx).await?;
    sqlx::query!("DELETE FROM shop_user_orders")
        .execute(&mut *tx)
        .await?;
    sqlx::query!("DELETE FROM shop_orders")
        .execute(&mut *tx)
        .await?;
    for order in &orders {
        save(&mut tx, order).await?;
    }
    tx.commit().await?;
    Ok(orders.len())
}
