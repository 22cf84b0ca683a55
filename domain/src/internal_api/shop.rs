//! The shop's messages between the edge and the core: the bodies of the `SHOP_*` routes that take
//! one. A product's own body is [`crate::shop::ProductInput`], shared the same way.

use serde::{Deserialize, Serialize};

use crate::idempotency::IdempotencyKey;

/// Body of [`SHOP_ORDER_PLACE`](super::SHOP_ORDER_PLACE): the client's Idempotency-Key, carried in
/// the signed body so that nothing between the edge and the core can change it. Every order has
/// one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderBody {
    pub idempotency_key: IdempotencyKey,
}

/// Body of [`SHOP_ADMIN_PUBLISH`](super::SHOP_ADMIN_PUBLISH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishBody {
    pub published: bool,
}

/// Body of [`SHOP_ADMIN_RESTOCK`](super::SHOP_ADMIN_RESTOCK): units added to the stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestockBody {
    pub units: i64,
}

/// Body of [`SHOP_ADMIN_GIFT_CODES`](super::SHOP_ADMIN_GIFT_CODES): codes for a gift card's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GiftCodesBody {
    pub codes: Vec<String>,
}
