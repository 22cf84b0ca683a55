//! The points shop's rules (issue 18): what a product is, parsed once from an admin's input, and an
//! order's life as a state machine over its events.
//!
//! [`ProductInput`] is the wire shape of an admin's create or edit; [`ProductSpec::parse`] turns it
//! into a [`ProductSpec`] or names the first field that is wrong ([`ProductError`]), and past that
//! point nothing re-checks. The core's schema holds the same bounds as CHECK constraints, so a
//! product that skipped this parse still cannot be stored.
//!
//! An order is one unit of one product. Its history is a stream of [`OrderEvent`]s; its current
//! [`OrderState`] is the fold of that stream through [`OrderState::apply`], which also says what
//! each step does to the product's stock and the buyer's points ([`Transition`]). The core runs
//! those effects and appends the event in one transaction, and rebuilds its projections with the
//! same fold, so the live state and a rebuild cannot disagree on a rule.

use serde::{Deserialize, Serialize};

use crate::{Points, time::parse_rfc3339};

/// Cheapest product: one point (the smallest amount the ledger moves).
pub const PRICE_POINTS_MIN: i64 = 1;
/// Dearest product: 10,000,000 points (10,000,000 KRW). Above it a purchase is no longer a reward
/// bought with points but a sale that needs the payment rules of real money.
pub const PRICE_POINTS_MAX: i64 = 10_000_000;
/// Most units a product may have in stock: a million keeps the stock an `integer` column and the
/// per-unit arithmetic far inside every integer type.
pub const STOCK_MAX: i64 = 1_000_000;
/// Longest product name, in characters after trimming: one line of a product card.
pub const NAME_CHARS_MAX: usize = 100;
/// Longest description, in characters: a product page's text, not a document.
pub const DESCRIPTION_CHARS_MAX: usize = 5_000;
/// Longest category, in characters (letters, digits, `_` and `-`): a tab's label and a cache key.
pub const CATEGORY_CHARS_MAX: usize = 30;
/// Most images a product shows.
pub const IMAGES_MAX: usize = 8;
/// Longest image URL, in bytes: what every browser and CDN takes.
pub const IMAGE_URL_LEN_MAX: usize = 2_048;
/// Largest per-user purchase limit that is not "no limit": the stock's bound, beyond which a limit
/// limits nothing.
pub const PER_USER_LIMIT_MAX: i64 = STOCK_MAX;
const _: () = assert!(PRICE_POINTS_MIN > 0 && PRICE_POINTS_MIN <= PRICE_POINTS_MAX);
const _: () = assert!(STOCK_MAX <= i32::MAX as i64 && PER_USER_LIMIT_MAX <= i32::MAX as i64);

/// What fulfils an order of the product.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "shop_product_kind", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    /// A code from the product's pool, loaded by an admin, shown only to its buyer. The stock is
    /// the number of codes not yet sold; a code once shown can never be sold again.
    GiftCard,
    /// A thing shipped; an admin marks the order fulfilled when it leaves.
    Goods,
}

impl ProductKind {
    /// The Postgres enum's label (`shop_product_kind`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ProductKind::GiftCard => "gift_card",
            ProductKind::Goods => "goods",
        }
    }

    /// The kind of a stored label.
    #[must_use]
    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            "gift_card" => Some(ProductKind::GiftCard),
            "goods" => Some(ProductKind::Goods),
            _ => None,
        }
    }
}

/// An admin's product as it arrives: the body of a create (`kind` and `stock` read) or an edit
/// (both ignored: a product's kind never changes, and stock moves only by restocking).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProductInput {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub category: String,
    #[serde(default)]
    pub kind: Option<ProductKind>,
    pub price: i64,
    /// Units on hand; absent or null for goods without a limit. Gift cards take none: their stock
    /// is their code pool.
    #[serde(default)]
    pub stock: Option<i64>,
    #[serde(default)]
    pub images: Vec<String>,
    /// Most units one user may buy; absent or null for no limit.
    #[serde(default)]
    pub per_user_limit: Option<i64>,
    /// RFC 3339; absent for "on sale from publication".
    #[serde(default)]
    pub sale_starts_at: Option<String>,
    /// RFC 3339; absent for "no end".
    #[serde(default)]
    pub sale_ends_at: Option<String>,
}

/// How many units a product has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stock {
    /// At most this many more units can be sold (0 ≤ n ≤ [`STOCK_MAX`]).
    Limited(u32),
    /// Goods without a limit.
    Unlimited,
}

impl Stock {
    /// The units as the `stock` column holds them: `None` for unlimited. A count past `i32`
    /// (never parsed: [`STOCK_MAX`] fits) saturates, which the column's CHECK refuses, rather than
    /// reading as unlimited.
    #[must_use]
    pub fn units(self) -> Option<i32> {
        match self {
            Stock::Limited(units) => Some(i32::try_from(units).unwrap_or(i32::MAX)),
            Stock::Unlimited => None,
        }
    }
}

/// When a product may be bought (unix seconds, start inclusive, end exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SaleWindow {
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
}

/// Where `now` stands against a sale window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaleStatus {
    NotYet,
    Open,
    Over,
}

impl SaleWindow {
    #[must_use]
    pub fn status(self, now_unix_seconds: i64) -> SaleStatus {
        if self.starts_at.is_some_and(|start| now_unix_seconds < start) {
            SaleStatus::NotYet
        } else if self.ends_at.is_some_and(|end| now_unix_seconds >= end) {
            SaleStatus::Over
        } else {
            SaleStatus::Open
        }
    }
}

/// A product's fields that an edit may change, all within their bounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductDetails {
    pub name: String,
    pub description: String,
    pub category: String,
    pub price: Points,
    pub images: Vec<String>,
    /// `None`: no limit.
    pub per_user_limit: Option<u32>,
    pub sale: SaleWindow,
}

/// A new product, within every bound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductSpec {
    pub kind: ProductKind,
    pub stock: Stock,
    pub details: ProductDetails,
}

/// The first field of a [`ProductInput`] that is out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    #[error("name: 1–{NAME_CHARS_MAX} characters after trimming")]
    Name,
    #[error("description: at most {DESCRIPTION_CHARS_MAX} characters")]
    Description,
    #[error("category: 1–{CATEGORY_CHARS_MAX} letters, digits, '_' or '-'")]
    Category,
    #[error("kind: gift_card or goods")]
    Kind,
    #[error("price: {PRICE_POINTS_MIN}–{PRICE_POINTS_MAX} points")]
    Price,
    #[error("stock: 0–{STOCK_MAX} units, or absent for unlimited goods")]
    Stock,
    #[error("stock: a gift card's stock is its code pool; load codes instead")]
    GiftCardStock,
    #[error("images: at most {IMAGES_MAX}")]
    ImageCount,
    #[error("images.{0}: an https URL of at most {IMAGE_URL_LEN_MAX} characters with a host")]
    ImageUrl(usize),
    #[error("per_user_limit: 1–{PER_USER_LIMIT_MAX}, or absent for no limit")]
    PerUserLimit,
    #[error("{0}: an RFC 3339 time")]
    Time(&'static str),
    #[error("sale_starts_at: before sale_ends_at")]
    SaleWindow,
}

impl ProductError {
    /// The field the error is about, as the wire names it.
    #[must_use]
    pub fn field(&self) -> &'static str {
        match self {
            ProductError::Name => "name",
            ProductError::Description => "description",
            ProductError::Category => "category",
            ProductError::Kind => "kind",
            ProductError::Price => "price",
            ProductError::Stock | ProductError::GiftCardStock => "stock",
            ProductError::ImageCount | ProductError::ImageUrl(_) => "images",
            ProductError::PerUserLimit => "per_user_limit",
            ProductError::Time(field) => field,
            ProductError::SaleWindow => "sale_starts_at",
        }
    }
}

impl ProductDetails {
    /// The fields of `input` an edit may change.
    ///
    /// # Errors
    /// The first field out of bounds, in the order the fields are declared.
    pub fn parse(input: &ProductInput) -> Result<Self, ProductError> {
        let name = input.name.trim();
        if name.is_empty() || name.chars().count() > NAME_CHARS_MAX {
            return Err(ProductError::Name);
        }
        if input.description.chars().count() > DESCRIPTION_CHARS_MAX {
            return Err(ProductError::Description);
        }
        let category = input.category.trim();
        let category_ok = !category.is_empty()
            && category.chars().count() <= CATEGORY_CHARS_MAX
            && category
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-');
        if !category_ok {
            return Err(ProductError::Category);
        }
        if !(PRICE_POINTS_MIN..=PRICE_POINTS_MAX).contains(&input.price) {
            return Err(ProductError::Price);
        }
        let price = Points::new(input.price).map_err(|_| ProductError::Price)?;
        if input.images.len() > IMAGES_MAX {
            return Err(ProductError::ImageCount);
        }
        for (index, url) in input.images.iter().enumerate() {
            if !is_image_url(url) {
                return Err(ProductError::ImageUrl(index));
            }
        }
        let per_user_limit = match input.per_user_limit {
            None => None,
            Some(limit) if (1..=PER_USER_LIMIT_MAX).contains(&limit) => {
                Some(u32::try_from(limit).map_err(|_| ProductError::PerUserLimit)?)
            }
            Some(_) => return Err(ProductError::PerUserLimit),
        };
        let time = |raw: &Option<String>, field: &'static str| -> Result<_, ProductError> {
            raw.as_deref()
                .map(|raw| parse_rfc3339(raw).ok_or(ProductError::Time(field)))
                .transpose()
        };
        let sale = SaleWindow {
            starts_at: time(&input.sale_starts_at, "sale_starts_at")?,
            ends_at: time(&input.sale_ends_at, "sale_ends_at")?,
        };
        if let (Some(start), Some(end)) = (sale.starts_at, sale.ends_at)
            && start >= end
        {
            return Err(ProductError::SaleWindow);
        }
        Ok(ProductDetails {
            name: name.to_owned(),
            description: input.description.clone(),
            category: category.to_owned(),
            price,
            images: input.images.clone(),
            per_user_limit,
            sale,
        })
    }
}

impl ProductSpec {
    /// A new product from `input`.
    ///
    /// # Errors
    /// The first field out of bounds: the editable fields first ([`ProductDetails::parse`]), then
    /// the kind and the stock.
    pub fn parse(input: &ProductInput) -> Result<Self, ProductError> {
        let details = ProductDetails::parse(input)?;
        let kind = input.kind.ok_or(ProductError::Kind)?;
        let stock = match (kind, input.stock) {
            (ProductKind::GiftCard, None | Some(0)) => Stock::Limited(0),
            (ProductKind::GiftCard, Some(_)) => return Err(ProductError::GiftCardStock),
            (ProductKind::Goods, None) => Stock::Unlimited,
            (ProductKind::Goods, Some(units)) => Stock::Limited(restock_units(units, 0)?),
        };
        Ok(ProductSpec {
            kind,
            stock,
            details,
        })
    }
}

/// `units` as a count of stock, when `0 ≤ units` and the result of adding them to `on_hand` stays
/// within [`STOCK_MAX`].
///
/// # Errors
/// [`ProductError::Stock`] otherwise.
pub fn restock_units(units: i64, on_hand: i64) -> Result<u32, ProductError> {
    let total = on_hand.checked_add(units).ok_or(ProductError::Stock)?;
    if units < 0 || !(0..=STOCK_MAX).contains(&total) {
        return Err(ProductError::Stock);
    }
    u32::try_from(units).map_err(|_| ProductError::Stock)
}

/// Whether `url` is an image URL the shop shows: `https://`, a host, no whitespace or control
/// characters, at most [`IMAGE_URL_LEN_MAX`] bytes. Plain `http` is refused: the app would show
/// a mixed-content warning or nothing, and the image could be swapped on the way.
#[must_use]
pub fn is_image_url(url: &str) -> bool {
    const SCHEME: &str = "https://";
    let Some(rest) = url.strip_prefix(SCHEME) else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    url.len() <= IMAGE_URL_LEN_MAX
        && !host.is_empty()
        && !host.contains('@')
        && url.chars().all(|c| c.is_ascii_graphic())
}

// --- orders ----------------------------------------------------------------------------------

/// Where an order stands. `Canceled` and `Refunded` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "shop_order_state", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Written, nothing reserved yet.
    Placed,
    /// A unit of stock is the order's; its points are not held yet.
    StockReserved,
    /// The try is complete: a unit and the price held, until the deadline.
    Reserved,
    /// The points are taken (the hold posted); the unit is sold.
    Confirmed,
    /// Delivered: the gift code shown, or the goods sent.
    Fulfilled,
    /// Undone before fulfilment: the unit back in stock, the points back to the buyer.
    Canceled,
    /// Undone by an admin after fulfilment: the points back in the lots they came from.
    Refunded,
}

/// One step of an order's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(
    feature = "sqlx",
    derive(sqlx::Type),
    sqlx(type_name = "shop_order_event", rename_all = "snake_case")
)]
#[serde(rename_all = "snake_case")]
pub enum OrderEvent {
    Placed,
    StockReserved,
    PointsHeld,
    Confirmed,
    Fulfilled,
    Canceled,
    Refunded,
}

/// What a step does to the product's stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockMove {
    Keep,
    /// One unit leaves the stock (refused when there is none).
    Take,
    /// The order's unit goes back to the stock.
    Return,
    /// The order's unit is gone for good (a gift code once shown is never sold again).
    Burn,
}

/// What a step does to the buyer's points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointsMove {
    Keep,
    /// The price is held in the buyer's wallet.
    Hold,
    /// The hold is posted: the price is taken.
    Post,
    /// The hold is released: the price is available again.
    Release,
    /// The taken price goes back into the lots it came from.
    Refund,
}

/// The outcome of an allowed step: the new state and its effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub to: OrderState,
    pub stock: StockMove,
    pub points: PointsMove,
}

/// A step the order's state does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an order that is {from:?} cannot take {event:?}")]
pub struct IllegalTransition {
    pub from: Option<OrderState>,
    pub event: OrderEvent,
}

/// Where an order's points stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointsStanding {
    None,
    Held,
    Taken,
}

impl OrderState {
    /// The state of a new order: only [`OrderEvent::Placed`] starts one.
    ///
    /// # Errors
    /// [`IllegalTransition`] for any other event.
    pub fn start(event: OrderEvent) -> Result<Transition, IllegalTransition> {
        match event {
            OrderEvent::Placed => Ok(Transition {
                to: OrderState::Placed,
                stock: StockMove::Keep,
                points: PointsMove::Keep,
            }),
            event => Err(IllegalTransition { from: None, event }),
        }
    }

    /// The step `event` takes from `self`, for an order of a `kind` product.
    ///
    /// The rules: stock first, then points (the try); confirm only a complete try; fulfil only a
    /// confirmed order; the buyer (or the deadline) cancels anything not yet fulfilled, undoing
    /// exactly what was done; an admin refunds a fulfilled order. Nothing follows a final state.
    ///
    /// # Errors
    /// [`IllegalTransition`] for every other pair.
    pub fn apply(
        self,
        event: OrderEvent,
        kind: ProductKind,
    ) -> Result<Transition, IllegalTransition> {
        use OrderEvent as E;
        use OrderState as S;
        let (to, stock, points) = match (self, event) {
            (S::Placed, E::StockReserved) => (S::StockReserved, StockMove::Take, PointsMove::Keep),
            (S::StockReserved, E::PointsHeld) => (S::Reserved, StockMove::Keep, PointsMove::Hold),
            (S::Reserved, E::Confirmed) => (S::Confirmed, StockMove::Keep, PointsMove::Post),
            (S::Confirmed, E::Fulfilled) => (S::Fulfilled, StockMove::Keep, PointsMove::Keep),
            (S::Placed, E::Canceled) => (S::Canceled, StockMove::Keep, PointsMove::Keep),
            (S::StockReserved, E::Canceled) => (S::Canceled, StockMove::Return, PointsMove::Keep),
            (S::Reserved, E::Canceled) => (S::Canceled, StockMove::Return, PointsMove::Release),
            (S::Confirmed, E::Canceled) => (S::Canceled, StockMove::Return, PointsMove::Refund),
            (S::Fulfilled, E::Refunded) => {
                let stock = match kind {
                    ProductKind::GiftCard => StockMove::Burn,
                    ProductKind::Goods => StockMove::Return,
                };
                (S::Refunded, stock, PointsMove::Refund)
            }
            (from, event) => {
                return Err(IllegalTransition {
                    from: Some(from),
                    event,
                });
            }
        };
        Ok(Transition { to, stock, points })
    }

    /// Whether the order has a unit of the product's stock.
    #[must_use]
    pub const fn has_unit(self) -> bool {
        matches!(
            self,
            OrderState::StockReserved
                | OrderState::Reserved
                | OrderState::Confirmed
                | OrderState::Fulfilled
        )
    }

    /// Where the order's points stand.
    #[must_use]
    pub const fn points(self) -> PointsStanding {
        match self {
            OrderState::Reserved => PointsStanding::Held,
            OrderState::Confirmed | OrderState::Fulfilled => PointsStanding::Taken,
            OrderState::Placed
            | OrderState::StockReserved
            | OrderState::Canceled
            | OrderState::Refunded => PointsStanding::None,
        }
    }

    /// Whether no event can follow.
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(self, OrderState::Canceled | OrderState::Refunded)
    }

    /// Whether the order still counts towards its buyer's per-user limit.
    #[must_use]
    pub const fn counts_towards_limit(self) -> bool {
        !self.is_final()
    }

    /// The Postgres enum's label (`shop_order_state`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderState::Placed => "placed",
            OrderState::StockReserved => "stock_reserved",
            OrderState::Reserved => "reserved",
            OrderState::Confirmed => "confirmed",
            OrderState::Fulfilled => "fulfilled",
            OrderState::Canceled => "canceled",
            OrderState::Refunded => "refunded",
        }
    }
}

impl OrderEvent {
    /// The stored label (`shop_order_events.kind`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            OrderEvent::Placed => "placed",
            OrderEvent::StockReserved => "stock_reserved",
            OrderEvent::PointsHeld => "points_held",
            OrderEvent::Confirmed => "confirmed",
            OrderEvent::Fulfilled => "fulfilled",
            OrderEvent::Canceled => "canceled",
            OrderEvent::Refunded => "refunded",
        }
    }

    /// The event of a stored label.
    #[must_use]
    pub fn from_label(label: &str) -> Option<Self> {
        Some(match label {
            "placed" => OrderEvent::Placed,
            "stock_reserved" => OrderEvent::StockReserved,
            "points_held" => OrderEvent::PointsHeld,
            "confirmed" => OrderEvent::Confirmed,
            "fulfilled" => OrderEvent::Fulfilled,
            "canceled" => OrderEvent::Canceled,
            "refunded" => OrderEvent::Refunded,
            _ => return None,
        })
    }
}

/// The state a whole history leads to: the fold of [`OrderState::start`] and
/// [`OrderState::apply`].
///
/// # Errors
/// The first step the history does not allow (an empty history is one: it has no `Placed`).
pub fn replay(
    events: impl IntoIterator<Item = OrderEvent>,
    kind: ProductKind,
) -> Result<OrderState, IllegalTransition> {
    let mut state: Option<OrderState> = None;
    for event in events {
        state = Some(match state {
            None => OrderState::start(event)?.to,
            Some(state) => state.apply(event, kind)?.to,
        });
    }
    state.ok_or(IllegalTransition {
        from: None,
        event: OrderEvent::Placed,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn input() -> ProductInput {
        ProductInput {
            name: "  Coffee voucher  ".to_owned(),
            description: "A cup".to_owned(),
            category: "gift-cards".to_owned(),
            kind: Some(ProductKind::Goods),
            price: 4_500,
            stock: Some(20),
            images: vec!["https://cdn.example.com/coffee.png".to_owned()],
            per_user_limit: Some(2),
            sale_starts_at: Some("2026-01-01T00:00:00Z".to_owned()),
            sale_ends_at: Some("2026-01-02T00:00:00Z".to_owned()),
        }
    }

    fn refused(change: impl FnOnce(&mut ProductInput)) -> ProductError {
        let mut input = input();
        change(&mut input);
        ProductSpec::parse(&input).expect_err("refused")
    }

    #[test]
    fn a_product_within_every_bound_is_parsed_with_its_name_trimmed() {
        let spec = ProductSpec::parse(&input()).unwrap();
        assert_eq!(spec.details.name, "Coffee voucher");
        assert_eq!(spec.stock, Stock::Limited(20));
        assert_eq!(spec.details.per_user_limit, Some(2));
        assert_eq!(spec.details.price.get(), 4_500);
        assert_eq!(spec.details.sale.status(1_767_225_600), SaleStatus::Open);
        assert_eq!(spec.details.sale.status(1_767_225_599), SaleStatus::NotYet);
        assert_eq!(spec.details.sale.status(1_767_312_000), SaleStatus::Over);
    }

    #[test]
    fn the_price_is_between_one_and_ten_million_points() {
        assert_eq!(refused(|i| i.price = 0), ProductError::Price);
        assert_eq!(refused(|i| i.price = -5), ProductError::Price);
        assert_eq!(
            refused(|i| i.price = PRICE_POINTS_MAX + 1),
            ProductError::Price
        );
        for price in [PRICE_POINTS_MIN, PRICE_POINTS_MAX] {
            let mut input = input();
            input.price = price;
            assert!(ProductSpec::parse(&input).is_ok());
        }
    }

    #[test]
    fn the_stock_is_between_zero_and_a_million_or_unlimited_for_goods() {
        assert_eq!(refused(|i| i.stock = Some(-1)), ProductError::Stock);
        assert_eq!(
            refused(|i| i.stock = Some(STOCK_MAX + 1)),
            ProductError::Stock
        );
        let mut input = input();
        input.stock = None;
        assert_eq!(ProductSpec::parse(&input).unwrap().stock, Stock::Unlimited);
        input.stock = Some(0);
        assert_eq!(ProductSpec::parse(&input).unwrap().stock, Stock::Limited(0));
        input.stock = Some(STOCK_MAX);
        assert!(ProductSpec::parse(&input).is_ok());
    }

    #[test]
    fn a_gift_card_takes_its_stock_from_its_codes_only() {
        let mut input = input();
        input.kind = Some(ProductKind::GiftCard);
        assert_eq!(
            ProductSpec::parse(&input).unwrap_err(),
            ProductError::GiftCardStock
        );
        input.stock = None;
        assert_eq!(ProductSpec::parse(&input).unwrap().stock, Stock::Limited(0));
    }

    #[test]
    fn names_are_one_to_a_hundred_characters_after_trimming() {
        assert_eq!(refused(|i| i.name = "   ".to_owned()), ProductError::Name);
        assert_eq!(
            refused(|i| i.name = "가".repeat(NAME_CHARS_MAX + 1)),
            ProductError::Name
        );
        let mut input = input();
        input.name = format!("  {}  ", "가".repeat(NAME_CHARS_MAX));
        assert!(ProductSpec::parse(&input).is_ok());
    }

    #[test]
    fn description_category_and_kind_have_their_bounds() {
        assert_eq!(
            refused(|i| i.description = "x".repeat(DESCRIPTION_CHARS_MAX + 1)),
            ProductError::Description
        );
        assert_eq!(
            refused(|i| i.category = String::new()),
            ProductError::Category
        );
        assert_eq!(
            refused(|i| i.category = "gift cards".to_owned()),
            ProductError::Category
        );
        assert_eq!(refused(|i| i.kind = None), ProductError::Kind);
    }

    #[test]
    fn images_are_https_urls_with_a_host_and_a_bounded_count() {
        assert_eq!(
            refused(|i| i.images = vec!["http://cdn.example.com/a.png".to_owned()]),
            ProductError::ImageUrl(0)
        );
        assert_eq!(
            refused(|i| i.images.push("https:///a.png".to_owned())),
            ProductError::ImageUrl(1)
        );
        assert_eq!(
            refused(|i| i.images.push("https://cdn.example.com/a b.png".to_owned())),
            ProductError::ImageUrl(1)
        );
        assert_eq!(
            refused(|i| i.images.push(format!(
                "https://a.example/{}",
                "x".repeat(IMAGE_URL_LEN_MAX)
            ))),
            ProductError::ImageUrl(1)
        );
        assert_eq!(
            refused(|i| i.images = vec!["https://a.example/x".to_owned(); IMAGES_MAX + 1]),
            ProductError::ImageCount
        );
    }

    #[test]
    fn a_per_user_limit_is_at_least_one_or_absent() {
        assert_eq!(
            refused(|i| i.per_user_limit = Some(0)),
            ProductError::PerUserLimit
        );
        let mut input = input();
        input.per_user_limit = None;
        assert_eq!(
            ProductSpec::parse(&input).unwrap().details.per_user_limit,
            None
        );
    }

    #[test]
    fn a_sale_window_starts_before_it_ends_and_its_times_are_rfc3339() {
        assert_eq!(
            refused(|i| i.sale_ends_at = i.sale_starts_at.clone()),
            ProductError::SaleWindow
        );
        assert_eq!(
            refused(|i| i.sale_starts_at = Some("tomorrow".to_owned())),
            ProductError::Time("sale_starts_at")
        );
        let mut input = input();
        input.sale_starts_at = None;
        input.sale_ends_at = None;
        let open = ProductSpec::parse(&input).unwrap().details.sale;
        assert_eq!(open.status(0), SaleStatus::Open);
    }

    #[test]
    fn restocking_never_takes_the_stock_past_its_bound_or_below_zero() {
        assert_eq!(restock_units(5, 10), Ok(5));
        assert_eq!(restock_units(-1, 10), Err(ProductError::Stock));
        assert_eq!(restock_units(1, STOCK_MAX), Err(ProductError::Stock));
        assert_eq!(restock_units(i64::MAX, 1), Err(ProductError::Stock));
    }

    #[test]
    fn the_happy_path_is_placed_reserved_confirmed_fulfilled() {
        use OrderEvent as E;
        let history = [
            E::Placed,
            E::StockReserved,
            E::PointsHeld,
            E::Confirmed,
            E::Fulfilled,
        ];
        assert_eq!(
            replay(history, ProductKind::Goods),
            Ok(OrderState::Fulfilled)
        );
        assert_eq!(
            replay([E::Placed, E::PointsHeld], ProductKind::Goods),
            Err(IllegalTransition {
                from: Some(OrderState::Placed),
                event: E::PointsHeld
            })
        );
        assert!(replay([], ProductKind::Goods).is_err());
        assert!(replay([E::Confirmed], ProductKind::Goods).is_err());
    }

    #[test]
    fn a_cancel_undoes_exactly_what_the_order_did_and_nothing_follows_a_final_state() {
        use OrderEvent as E;
        let kind = ProductKind::Goods;
        let reserved = OrderState::Reserved.apply(E::Canceled, kind).unwrap();
        assert_eq!(
            (reserved.stock, reserved.points),
            (StockMove::Return, PointsMove::Release)
        );
        let confirmed = OrderState::Confirmed.apply(E::Canceled, kind).unwrap();
        assert_eq!(
            (confirmed.stock, confirmed.points),
            (StockMove::Return, PointsMove::Refund)
        );
        assert!(OrderState::Fulfilled.apply(E::Canceled, kind).is_err());
        let burned = OrderState::Fulfilled
            .apply(E::Refunded, ProductKind::GiftCard)
            .unwrap();
        assert_eq!(burned.stock, StockMove::Burn);
        for last in [OrderState::Canceled, OrderState::Refunded] {
            for event in ALL_EVENTS {
                assert!(last.apply(event, kind).is_err(), "{last:?} took {event:?}");
            }
        }
    }

    #[test]
    fn every_label_reads_back_as_its_value() {
        for event in ALL_EVENTS {
            assert_eq!(OrderEvent::from_label(event.as_str()), Some(event));
        }
        for kind in [ProductKind::GiftCard, ProductKind::Goods] {
            assert_eq!(ProductKind::from_label(kind.as_str()), Some(kind));
        }
    }

    const ALL_EVENTS: [OrderEvent; 7] = [
        OrderEvent::Placed,
        OrderEvent::StockReserved,
        OrderEvent::PointsHeld,
        OrderEvent::Confirmed,
        OrderEvent::Fulfilled,
        OrderEvent::Canceled,
        OrderEvent::Refunded,
    ];

    /// One product's stock and its orders' points, driven only through the machine's effects.
    struct Model {
        kind: ProductKind,
        initial: i64,
        stock: i64,
        burned: i64,
        orders: Vec<(Option<OrderState>, PointsStanding)>,
    }

    impl Model {
        /// Applies `event` to order `index` if the machine and the stock allow it.
        fn step(&mut self, index: usize, event: OrderEvent) {
            let (state, points) = self.orders[index];
            let transition = match state {
                None => OrderState::start(event),
                Some(state) => state.apply(event, self.kind),
            };
            let Ok(transition) = transition else {
                return;
            };
            // The conditional stock update: a take with no stock is refused, state unchanged.
            if transition.stock == StockMove::Take && self.stock == 0 {
                return;
            }
            match transition.stock {
                StockMove::Keep => {}
                StockMove::Take => self.stock -= 1,
                StockMove::Return => self.stock += 1,
                StockMove::Burn => self.burned += 1,
            }
            let points = match (points, transition.points) {
                (PointsStanding::None, PointsMove::Hold) => PointsStanding::Held,
                (PointsStanding::Held, PointsMove::Post) => PointsStanding::Taken,
                (PointsStanding::Held, PointsMove::Release)
                | (PointsStanding::Taken, PointsMove::Refund) => PointsStanding::None,
                (standing, PointsMove::Keep) => standing,
                (standing, other) => panic!("{other:?} of points that are {standing:?}"),
            };
            self.orders[index] = (Some(transition.to), points);
        }

        fn check(&self) {
            assert!(self.stock >= 0, "stock below zero");
            let units = self
                .orders
                .iter()
                .filter(|(state, _)| state.is_some_and(OrderState::has_unit))
                .count();
            let units = i64::try_from(units).unwrap();
            assert_eq!(
                self.stock + units + self.burned,
                self.initial,
                "units lost or made"
            );
            for (state, points) in &self.orders {
                if let Some(state) = state {
                    assert_eq!(state.points(), *points, "{state:?} with points {points:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn no_sequence_of_events_reaches_an_illegal_state_or_takes_stock_below_zero(
            gift_card in any::<bool>(),
            initial in 0_i64..4,
            orders in 1_usize..6,
            steps in proptest::collection::vec((0_usize..6, 0_usize..7), 0..80),
        ) {
            let kind = if gift_card { ProductKind::GiftCard } else { ProductKind::Goods };
            let mut model = Model {
                kind,
                initial,
                stock: initial,
                burned: 0,
                orders: vec![(None, PointsStanding::None); orders],
            };
            for (order, event) in steps {
                model.step(order % orders, ALL_EVENTS[event]);
                model.check();
            }
        }

        #[test]
        fn a_history_replays_to_the_state_its_steps_reached(
            steps in proptest::collection::vec(0_usize..7, 0..12),
        ) {
            let mut state: Option<OrderState> = None;
            let mut accepted = Vec::new();
            for event in steps.into_iter().map(|i| ALL_EVENTS[i]) {
                let next = match state {
                    None => OrderState::start(event),
                    Some(state) => state.apply(event, ProductKind::Goods),
                };
                if let Ok(transition) = next {
                    state = Some(transition.to);
                    accepted.push(event);
                }
            }
            let replayed = replay(accepted, ProductKind::Goods).ok();
            prop_assert_eq!(replayed, state);
        }
    }
}
