//! FIFO lot arithmetic: which lots a debit consumes, and which lots a refund gives back to.
//!
//! Every credit to a wallet creates a lot; a debit consumes the oldest lots first; a refund of a
//! debit gives the points back to the same lots. The sum of a wallet's remaining lots always
//! equals its balance. These functions are the whole rule; the ledger only stores their results.

use crate::points::Points;

/// A lot as the allocator sees it: an opaque id (in FIFO order) and what remains in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotRemaining<Id> {
    pub lot: Id,
    pub remaining: Points,
}

/// One lot's share of a debit or of a refund.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LotShare<Id> {
    pub lot: Id,
    pub amount: Points,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LotError {
    #[error("the lots hold {available}, less than the {requested} asked for")]
    Insufficient {
        available: Points,
        requested: Points,
    },
    #[error("the amount must be positive")]
    ZeroAmount,
    #[error("the amounts overflow")]
    Overflow,
}

/// Takes `amount` from `lots`, oldest first (`lots` must be in FIFO order).
///
/// # Errors
/// [`LotError::Insufficient`] when the lots hold less than `amount` (nothing is taken);
/// [`LotError::ZeroAmount`] for a zero amount.
pub fn take_fifo<Id: Copy>(
    lots: &[LotRemaining<Id>],
    amount: Points,
) -> Result<Vec<LotShare<Id>>, LotError> {
    if amount == Points::ZERO {
        return Err(LotError::ZeroAmount);
    }
    let mut still_needed = amount;
    let mut shares = Vec::new();
    for lot in lots {
        if still_needed == Points::ZERO {
            break;
        }
        let take = lot.remaining.min(still_needed);
        if take == Points::ZERO {
            continue;
        }
        shares.push(LotShare {
            lot: lot.lot,
            amount: take,
        });
        still_needed = still_needed
            .checked_sub(take)
            .map_err(|_| LotError::Overflow)?;
    }
    if still_needed != Points::ZERO {
        let available = lots
            .iter()
            .try_fold(Points::ZERO, |sum, lot| sum.checked_add(lot.remaining))
            .map_err(|_| LotError::Overflow)?;
        return Err(LotError::Insufficient {
            available,
            requested: amount,
        });
    }
    Ok(shares)
}

/// Gives `amount` of a debit back to the lots it was taken from. `taken` is, per lot in the order
/// the debit consumed them, what the debit took less what earlier refunds already gave back.
/// Points go back to the newest of those lots first, so a partial refund leaves the debit's
/// oldest consumption in place — the mirror image of the debit itself.
///
/// # Errors
/// [`LotError::Insufficient`] when `amount` exceeds what is still refundable;
/// [`LotError::ZeroAmount`] for a zero amount.
pub fn give_back<Id: Copy>(
    taken: &[LotShare<Id>],
    amount: Points,
) -> Result<Vec<LotShare<Id>>, LotError> {
    let reversed: Vec<LotRemaining<Id>> = taken
        .iter()
        .rev()
        .map(|share| LotRemaining {
            lot: share.lot,
            remaining: share.amount,
        })
        .collect();
    take_fifo(&reversed, amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(amount: i64) -> Points {
        Points::new(amount).unwrap_or(Points::ZERO)
    }

    fn lots(remaining: &[i64]) -> Vec<LotRemaining<usize>> {
        remaining
            .iter()
            .enumerate()
            .map(|(lot, r)| LotRemaining {
                lot,
                remaining: p(*r),
            })
            .collect()
    }

    fn shares(pairs: &[(usize, i64)]) -> Vec<LotShare<usize>> {
        pairs
            .iter()
            .map(|(lot, amount)| LotShare {
                lot: *lot,
                amount: p(*amount),
            })
            .collect()
    }

    #[test]
    fn a_debit_takes_the_oldest_lots_first() {
        assert_eq!(
            take_fifo(&lots(&[300, 500, 1000]), p(600)),
            Ok(shares(&[(0, 300), (1, 300)]))
        );
    }

    #[test]
    fn empty_lots_are_skipped() {
        assert_eq!(
            take_fifo(&lots(&[0, 100, 0, 50]), p(120)),
            Ok(shares(&[(1, 100), (3, 20)]))
        );
    }

    #[test]
    fn a_debit_larger_than_the_lots_takes_nothing() {
        assert_eq!(
            take_fifo(&lots(&[300, 200]), p(501)),
            Err(LotError::Insufficient {
                available: p(500),
                requested: p(501)
            })
        );
    }

    #[test]
    fn a_debit_of_exactly_everything_empties_every_lot() {
        assert_eq!(
            take_fifo(&lots(&[300, 200]), p(500)),
            Ok(shares(&[(0, 300), (1, 200)]))
        );
    }

    #[test]
    fn a_zero_debit_is_refused() {
        assert_eq!(
            take_fifo(&lots(&[10]), Points::ZERO),
            Err(LotError::ZeroAmount)
        );
    }

    #[test]
    fn a_partial_refund_goes_back_to_the_newest_lot_the_debit_took_from() {
        let taken = shares(&[(0, 300), (1, 300)]);
        assert_eq!(give_back(&taken, p(400)), Ok(shares(&[(1, 300), (0, 100)])));
    }

    #[test]
    fn a_refund_cannot_exceed_what_the_debit_took() {
        let taken = shares(&[(0, 300)]);
        assert!(matches!(
            give_back(&taken, p(301)),
            Err(LotError::Insufficient { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        #[test]
        fn fifo_conserves_points_and_never_overdraws_a_lot_for_any_seed(
            remaining in proptest::collection::vec(0..1_000_i64, 0..6),
            amount in 1..=1_200_i64,
        ) {
            let total: i64 = remaining.iter().sum();
            let lots = lots(&remaining);
            match take_fifo(&lots, p(amount)) {
                Ok(taken) => {
                    prop_assert!(amount <= total);
                    prop_assert_eq!(taken.iter().map(|s| s.amount.get()).sum::<i64>(), amount);
                    for share in &taken {
                        prop_assert!(share.amount.get() > 0);
                        prop_assert!(share.amount <= lots[share.lot].remaining);
                    }
                    // Oldest first: every lot before the last one touched is emptied.
                    if let Some((last, earlier)) = taken.split_last() {
                        for share in earlier {
                            prop_assert_eq!(share.amount, lots[share.lot].remaining);
                        }
                        prop_assert!(earlier.iter().all(|s| s.lot < last.lot));
                    }
                    // Refunding the whole debit gives every point back to where it came from.
                    let mut back = give_back(&taken, p(amount)).unwrap_or_default();
                    back.sort_by_key(|s| s.lot);
                    prop_assert_eq!(back, taken);
                }
                Err(LotError::Insufficient { available, .. }) => {
                    prop_assert!(amount > total);
                    prop_assert_eq!(available.get(), total);
                }
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }
}
