//! `Points`: the only money type. 1 point = 1 KRW; integers only, checked arithmetic only.

use serde::{Deserialize, Serialize};

/// An amount of points. Never negative: a negative quantity of money is a direction (debit),
/// not an amount, and is expressed by which account a transfer moves it from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Points(i64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PointsError {
    #[error("an amount of points cannot be negative (got {0})")]
    Negative(i64),
    #[error("the amount overflows the range of points")]
    Overflow,
    #[error("the amount would go below zero")]
    Underflow,
}

impl Points {
    pub const ZERO: Points = Points(0);

    /// # Errors
    /// [`PointsError::Negative`] for a negative amount.
    pub const fn new(amount: i64) -> Result<Self, PointsError> {
        if amount < 0 {
            Err(PointsError::Negative(amount))
        } else {
            Ok(Points(amount))
        }
    }

    #[must_use]
    pub const fn get(self) -> i64 {
        self.0
    }

    /// # Errors
    /// [`PointsError::Overflow`] past `i64::MAX`.
    pub const fn checked_add(self, other: Points) -> Result<Points, PointsError> {
        match self.0.checked_add(other.0) {
            Some(sum) => Ok(Points(sum)),
            None => Err(PointsError::Overflow),
        }
    }

    /// # Errors
    /// [`PointsError::Underflow`] when `other` is larger than `self`.
    pub const fn checked_sub(self, other: Points) -> Result<Points, PointsError> {
        if other.0 > self.0 {
            Err(PointsError::Underflow)
        } else {
            Ok(Points(self.0 - other.0))
        }
    }
}

impl TryFrom<i64> for Points {
    type Error = PointsError;
    fn try_from(amount: i64) -> Result<Self, Self::Error> {
        Points::new(amount)
    }
}

impl From<Points> for i64 {
    fn from(points: Points) -> i64 {
        points.0
    }
}

impl std::fmt::Display for Points {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} P", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negative_amount_is_refused() {
        assert_eq!(Points::new(-1), Err(PointsError::Negative(-1)));
    }

    #[test]
    fn adding_past_the_maximum_is_an_error_not_a_wrap() {
        let max = Points::new(i64::MAX).unwrap_or(Points::ZERO);
        assert_eq!(max.checked_add(Points(1)), Err(PointsError::Overflow));
    }

    #[test]
    fn subtracting_more_than_there_is_is_an_error() {
        assert_eq!(
            Points(5).checked_sub(Points(6)),
            Err(PointsError::Underflow)
        );
        assert_eq!(Points(5).checked_sub(Points(5)), Ok(Points::ZERO));
    }

    #[test]
    fn json_with_a_negative_amount_does_not_parse() {
        assert!(serde_json::from_str::<Points>("-10").is_err());
        assert_eq!(serde_json::from_str::<Points>("10").ok(), Some(Points(10)));
    }
}
