//! Buying points: the order's id and amount, as the server fixes them before the Toss widget runs.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Points;

/// Smallest payment we take (KRW): below it card fees eat the charge.
pub const CHARGE_AMOUNT_MIN: i64 = 1_000;
/// Largest single payment (KRW): a bound on what one mistake or one stolen session can cost.
pub const CHARGE_AMOUNT_MAX: i64 = 1_000_000;
const _: () = assert!(CHARGE_AMOUNT_MIN > 0 && CHARGE_AMOUNT_MIN < CHARGE_AMOUNT_MAX);

/// Toss's bounds on an `orderId`.
pub const ORDER_ID_LEN_MIN: usize = 6;
pub const ORDER_ID_LEN_MAX: usize = 64;
/// Toss's bound on a `paymentKey`.
pub const PAYMENT_KEY_LEN_MAX: usize = 200;

/// What can be wrong with a payment's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PaymentInputError {
    #[error("the amount is outside {CHARGE_AMOUNT_MIN}–{CHARGE_AMOUNT_MAX}")]
    AmountOutOfRange,
    #[error("an orderId is 6–64 characters of [A-Za-z0-9_-]")]
    OrderId,
    #[error("a paymentKey is 1–200 printable ASCII characters")]
    PaymentKey,
}

/// An order's id: 6–64 characters of `[A-Za-z0-9_-]`, as Toss requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderId(String);

impl OrderId {
    /// # Errors
    /// [`PaymentInputError::OrderId`] outside Toss's format.
    pub fn parse(raw: &str) -> Result<Self, PaymentInputError> {
        let valid = (ORDER_ID_LEN_MIN..=ORDER_ID_LEN_MAX).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid {
            Ok(OrderId(raw.to_owned()))
        } else {
            Err(PaymentInputError::OrderId)
        }
    }

    /// The id of a new order from 128 random bits (hex): unguessable, so one user cannot name
    /// another's order.
    #[must_use]
    pub fn from_random(bits: u128) -> Self {
        OrderId(format!("nene_{bits:032x}"))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for OrderId {
    type Error = PaymentInputError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        OrderId::parse(&raw)
    }
}

impl From<OrderId> for String {
    fn from(id: OrderId) -> String {
        id.0
    }
}

/// Toss's `paymentKey`, as the widget hands it back.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PaymentKey(String);

impl PaymentKey {
    /// # Errors
    /// [`PaymentInputError::PaymentKey`] when empty, over 200 characters or not printable ASCII.
    pub fn parse(raw: &str) -> Result<Self, PaymentInputError> {
        let valid = !raw.is_empty()
            && raw.len() <= PAYMENT_KEY_LEN_MAX
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if valid {
            Ok(PaymentKey(raw.to_owned()))
        } else {
            Err(PaymentInputError::PaymentKey)
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PaymentKey {
    type Error = PaymentInputError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        PaymentKey::parse(&raw)
    }
}

impl From<PaymentKey> for String {
    fn from(key: PaymentKey) -> String {
        key.0
    }
}

/// The amount of one payment, within our bounds. 1 point = 1 KRW, so it is also the points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct ChargeAmount(i64);

impl ChargeAmount {
    /// # Errors
    /// [`PaymentInputError::AmountOutOfRange`] outside 1,000–1,000,000.
    pub fn parse(krw: i64) -> Result<Self, PaymentInputError> {
        if (CHARGE_AMOUNT_MIN..=CHARGE_AMOUNT_MAX).contains(&krw) {
            Ok(ChargeAmount(krw))
        } else {
            Err(PaymentInputError::AmountOutOfRange)
        }
    }

    #[must_use]
    pub const fn krw(self) -> i64 {
        self.0
    }

    /// The points this payment buys.
    #[must_use]
    pub fn points(self) -> Points {
        // In range by construction, so never negative.
        Points::new(self.0).unwrap_or(Points::ZERO)
    }
}

impl TryFrom<i64> for ChargeAmount {
    type Error = PaymentInputError;
    fn try_from(krw: i64) -> Result<Self, Self::Error> {
        ChargeAmount::parse(krw)
    }
}

impl From<ChargeAmount> for i64 {
    fn from(amount: ChargeAmount) -> i64 {
        amount.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_inside_the_bounds_are_accepted_and_outside_refused() {
        assert!(ChargeAmount::parse(1_000).is_ok());
        assert!(ChargeAmount::parse(1_000_000).is_ok());
        for krw in [0, 999, 1_000_001, -5_000, i64::MAX] {
            assert_eq!(
                ChargeAmount::parse(krw),
                Err(PaymentInputError::AmountOutOfRange),
                "{krw}"
            );
        }
    }

    #[test]
    fn order_ids_follow_the_toss_format() {
        assert!(OrderId::parse("abc-_9").is_ok());
        assert!(OrderId::parse(&"a".repeat(64)).is_ok());
        for raw in [
            "abcde",
            "has space1",
            "주문번호123",
            &"a".repeat(65),
            "a/b/c/d",
        ] {
            assert!(OrderId::parse(raw).is_err(), "{raw}");
        }
    }

    #[test]
    fn a_generated_order_id_is_a_valid_toss_order_id() {
        for bits in [0, 1, u128::MAX] {
            let id = OrderId::from_random(bits);
            assert_eq!(OrderId::parse(id.as_str()), Ok(id.clone()));
        }
    }

    #[test]
    fn payment_keys_are_printable_and_bounded() {
        assert!(PaymentKey::parse("tviva20240101abc").is_ok());
        assert!(PaymentKey::parse("").is_err());
        assert!(PaymentKey::parse("a b").is_err());
        assert!(PaymentKey::parse(&"k".repeat(201)).is_err());
    }
}
