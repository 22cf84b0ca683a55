//! Settlement arithmetic (docs/design.md §4): from each participant's stake and counted proof days
//! to their refund and prize, and the house's share, exactly and to the point.
//!
//! Rules, with achievement `r = counted / required`:
//! - `r = 100%`: the stake back, plus a prize;
//! - `85% ≤ r < 100%`: the stake back;
//! - `r < 85%`: `floor(stake × counted / required)` back; the rest is forfeited into the pool.
//!
//! The house takes `floor(pool × house_fee_bps / 10,000)`; the rest of the pool is split among the
//! 100% achievers in proportion to their stakes, each share rounded down. What rounding leaves over,
//! and the whole pool when nobody reached 100%, goes to the house. Refunds + prizes + house = stakes,
//! which [`settle`] checks before it answers.
//!
//! This module owns only the arithmetic: the core turns a [`Settlement`] into ledger transfers (one
//! idempotency key per participant) and records progress so the batch can be rerun.
//!
//! **Expected payouts use the same function.** To show a participant their expected refund and
//! prize before the end (`GET /v1/challenges/{id}/me`), the core calls [`settle`] on the current
//! state (every participant's counted days so far, or as projected) and reads that participant's
//! [`Payout`]. There is deliberately no second implementation that could disagree with the real
//! settlement.
//!
//! Only integers: the 85% comparison is `counted × 100 ≥ 85 × required`, and products are taken in
//! `u128` (a stake times a day count, the pool times a stake), so nothing rounds except where a rule
//! says "floor".

use serde::{Deserialize, Serialize};

use crate::Points;
use crate::rules::{BASIS_POINTS_PER_WHOLE, HOUSE_FEE_BPS_MAX};

/// The lowest achievement, in percent, that still gets the whole stake back. Below it a refund is
/// proportional to the days proven: the market leader's rule, which users know.
pub const FULL_REFUND_ACHIEVEMENT_PERCENT_MIN: u32 = 85;
const _: () =
    assert!(FULL_REFUND_ACHIEVEMENT_PERCENT_MIN > 0 && FULL_REFUND_ACHIEVEMENT_PERCENT_MIN <= 100);

/// One participant as settlement sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    /// What they paid in (the entry fee held in escrow).
    pub stake: Points,
    /// Approved proof days that count toward the rate (`ChallengeRules::counted_days`); at most
    /// the required days.
    pub counted_days: u32,
}

/// What one participant receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    /// The part of the stake given back.
    pub refund: Points,
    /// Their share of the forfeited pool (only for 100% achievers).
    pub prize: Points,
}

/// The outcome of a settlement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// One per participant, in the order they were given.
    pub payouts: Vec<Payout>,
    /// What the house receives: the fee, the rounding remainders, and the whole distributable pool
    /// when nobody reached 100%.
    pub house: Points,
    /// Everything forfeited (stakes minus refunds), before the house fee.
    pub pool: Points,
}

/// Why a settlement cannot be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SettlementError {
    #[error("a settlement needs at least one required day")]
    NoRequiredDays,
    #[error("the house fee is 0–{HOUSE_FEE_BPS_MAX} basis points (got {0})")]
    HouseFeeOutOfRange(u32),
    #[error("participant {index} has {counted_days} counted days of {required_days} required")]
    CountedDaysAboveRequired {
        index: usize,
        counted_days: u32,
        required_days: u32,
    },
    #[error("the stakes add up past the range of points")]
    Overflow,
    #[error("refunds, prizes and the house do not add up to the stakes")]
    Unbalanced,
}

/// Settles a challenge: each participant's refund and prize (same order as `participants`), the
/// house's share and the forfeited pool. O(n) in two passes, one allocation (the payouts).
///
/// Also the only way to compute an expected payout: see the module documentation.
///
/// # Errors
/// - [`SettlementError::NoRequiredDays`] when `required_days` is 0;
/// - [`SettlementError::HouseFeeOutOfRange`] above [`HOUSE_FEE_BPS_MAX`];
/// - [`SettlementError::CountedDaysAboveRequired`] for the first participant with more counted days
///   than required;
/// - [`SettlementError::Overflow`] when the stakes together exceed the range of [`Points`];
/// - [`SettlementError::Unbalanced`] if refunds + prizes + house ever differed from the stakes (a
///   bug in this function; nothing should be paid out then).
pub fn settle(
    required_days: u32,
    house_fee_bps: u32,
    participants: &[Participant],
) -> Result<Settlement, SettlementError> {
    if required_days == 0 {
        return Err(SettlementError::NoRequiredDays);
    }
    if house_fee_bps > HOUSE_FEE_BPS_MAX {
        return Err(SettlementError::HouseFeeOutOfRange(house_fee_bps));
    }

    // Pass 1: refunds, and the sums the prizes need.
    let mut payouts = Vec::with_capacity(participants.len());
    let mut stakes_total: u128 = 0;
    let mut refunds_total: u128 = 0;
    let mut achiever_stakes_total: u128 = 0;
    for (index, participant) in participants.iter().enumerate() {
        if participant.counted_days > required_days {
            return Err(SettlementError::CountedDaysAboveRequired {
                index,
                counted_days: participant.counted_days,
                required_days,
            });
        }
        let stake = amount(participant.stake);
        let refund = refund(stake, participant.counted_days, required_days)?;
        stakes_total = add(stakes_total, stake)?;
        refunds_total = add(refunds_total, refund)?;
        if participant.counted_days == required_days {
            achiever_stakes_total = add(achiever_stakes_total, stake)?;
        }
        payouts.push(Payout {
            refund: points(refund)?,
            prize: Points::ZERO,
        });
    }
    // Everything escrow holds must itself be an amount of points.
    points(stakes_total)?;

    let pool = stakes_total
        .checked_sub(refunds_total)
        .ok_or(SettlementError::Unbalanced)?;
    let fee = pool
        .checked_mul(u128::from(house_fee_bps))
        .ok_or(SettlementError::Overflow)?
        / u128::from(BASIS_POINTS_PER_WHOLE);
    let distributable = pool.checked_sub(fee).ok_or(SettlementError::Unbalanced)?;

    // Pass 2: prizes, in proportion to stake among the 100% achievers. With no achiever (or only
    // zero stakes among them) there is no one to share with, and it all goes to the house.
    let mut prizes_total: u128 = 0;
    if achiever_stakes_total > 0 && distributable > 0 {
        for (payout, participant) in payouts.iter_mut().zip(participants) {
            if participant.counted_days == required_days {
                let prize = distributable
                    .checked_mul(amount(participant.stake))
                    .ok_or(SettlementError::Overflow)?
                    / achiever_stakes_total;
                prizes_total = add(prizes_total, prize)?;
                payout.prize = points(prize)?;
            }
        }
    }
    let remainder = distributable
        .checked_sub(prizes_total)
        .ok_or(SettlementError::Unbalanced)?;
    let house = add(fee, remainder)?;

    let paid_out = add(add(refunds_total, prizes_total)?, house)?;
    if paid_out != stakes_total {
        return Err(SettlementError::Unbalanced);
    }
    Ok(Settlement {
        payouts,
        house: points(house)?,
        pool: points(pool)?,
    })
}

/// The refund of one stake by the achievement rules. `counted ≤ required`, `required > 0`.
fn refund(stake: u128, counted: u32, required: u32) -> Result<u128, SettlementError> {
    let whole_stake_back = u64::from(counted) * 100
        >= u64::from(FULL_REFUND_ACHIEVEMENT_PERCENT_MIN) * u64::from(required);
    if whole_stake_back {
        return Ok(stake);
    }
    stake
        .checked_mul(u128::from(counted))
        .map(|product| product / u128::from(required))
        .ok_or(SettlementError::Overflow)
}

fn amount(points: Points) -> u128 {
    // Points are never negative.
    u128::try_from(points.get()).unwrap_or(0)
}

fn points(amount: u128) -> Result<Points, SettlementError> {
    i64::try_from(amount)
        .ok()
        .and_then(|amount| Points::new(amount).ok())
        .ok_or(SettlementError::Overflow)
}

fn add(left: u128, right: u128) -> Result<u128, SettlementError> {
    left.checked_add(right).ok_or(SettlementError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seeded::SplitMix64;
    use proptest::prelude::*;

    fn p(amount: i64) -> Points {
        Points::new(amount).unwrap_or(Points::ZERO)
    }

    fn participant(stake: i64, counted_days: u32) -> Participant {
        Participant {
            stake: p(stake),
            counted_days,
        }
    }

    fn payout(refund: i64, prize: i64) -> Payout {
        Payout {
            refund: p(refund),
            prize: p(prize),
        }
    }

    fn settled(required: u32, bps: u32, participants: &[Participant]) -> Settlement {
        match settle(required, bps, participants) {
            Ok(settlement) => settlement,
            Err(error) => panic!("settlement refused: {error}"),
        }
    }

    /// Σ refunds + Σ prizes + house = Σ stakes, in `i128` so the check itself cannot overflow.
    fn assert_conserved(participants: &[Participant], settlement: &Settlement) {
        let stakes: i128 = participants.iter().map(|x| i128::from(x.stake.get())).sum();
        let paid: i128 = settlement
            .payouts
            .iter()
            .map(|x| i128::from(x.refund.get()) + i128::from(x.prize.get()))
            .sum();
        assert_eq!(paid + i128::from(settlement.house.get()), stakes);
    }

    #[test]
    fn three_participants_at_full_ninety_and_fifty_percent_settle_to_the_point() {
        let participants = [
            participant(10_000, 10),
            participant(10_000, 9),
            participant(10_000, 5),
        ];
        let settlement = settled(10, 1_000, &participants);
        // Pool 5,000; fee 500; the one achiever takes the other 4,500.
        assert_eq!(
            settlement,
            Settlement {
                payouts: vec![payout(10_000, 4_500), payout(10_000, 0), payout(5_000, 0)],
                house: p(500),
                pool: p(5_000),
            }
        );
        assert_conserved(&participants, &settlement);
    }

    #[test]
    fn prizes_follow_stakes_and_rounding_remainders_go_to_the_house() {
        let participants = [
            participant(10_000, 14),
            participant(20_000, 14),
            participant(30_000, 14),
            participant(10_000, 0),
        ];
        let settlement = settled(14, 0, &participants);
        // 10,000 split 1:2:3 is 1,666.67 / 3,333.33 / 5,000: floors leave 1 point over.
        assert_eq!(
            settlement.payouts,
            vec![
                payout(10_000, 1_666),
                payout(20_000, 3_333),
                payout(30_000, 5_000),
                payout(0, 0),
            ]
        );
        assert_eq!(settlement.house, p(1));
        assert_eq!(settlement.pool, p(10_000));
        assert_conserved(&participants, &settlement);
    }

    #[test]
    fn with_nobody_at_one_hundred_percent_the_whole_pool_goes_to_the_house() {
        let participants = [
            participant(10_000, 9),
            participant(20_000, 3),
            participant(50_000, 0),
        ];
        let settlement = settled(10, 1_000, &participants);
        // 20,000 × 3/10 = 6,000 back; 14,000 + 50,000 forfeited.
        assert_eq!(
            settlement.payouts,
            vec![payout(10_000, 0), payout(6_000, 0), payout(0, 0)]
        );
        assert_eq!(settlement.pool, p(64_000));
        assert_eq!(settlement.house, p(64_000));
        assert_conserved(&participants, &settlement);
    }

    #[test]
    fn when_everyone_reaches_one_hundred_percent_there_is_no_pool() {
        let participants = [participant(10_000, 12), participant(200_000, 12)];
        let settlement = settled(12, 3_000, &participants);
        assert_eq!(
            settlement.payouts,
            vec![payout(10_000, 0), payout(200_000, 0)]
        );
        assert_eq!(settlement.pool, Points::ZERO);
        assert_eq!(settlement.house, Points::ZERO);
    }

    #[test]
    fn exactly_eighty_five_percent_gets_the_whole_stake_back_and_just_below_does_not() {
        // 17 of 20 is exactly 85%; 16 of 20 is 80%.
        let settlement = settled(20, 0, &[participant(10_000, 17), participant(10_000, 16)]);
        assert_eq!(settlement.payouts[0], payout(10_000, 0));
        assert_eq!(settlement.payouts[1], payout(8_000, 0));
        // 6 of 7 is 85.7%: whole stake. 47 of 56 is 83.9%: floor(10,000 × 47 / 56) = 8,392.
        let settlement = settled(7, 0, &[participant(10_000, 6)]);
        assert_eq!(settlement.payouts[0], payout(10_000, 0));
        let settlement = settled(56, 0, &[participant(10_000, 47)]);
        assert_eq!(settlement.payouts[0], payout(8_392, 0));
        assert_eq!(settlement.house, p(1_608));
    }

    #[test]
    fn the_house_fee_is_taken_from_the_pool_rounded_down() {
        // Pool 3,333 (nothing proven), fee 3,333 × 1,500 / 10,000 = 499.95 → 499.
        let participants = [participant(3_333, 0), participant(10_000, 1)];
        let settlement = settled(1, 1_500, &participants);
        assert_eq!(settlement.pool, p(3_333));
        // The single achiever gets the remaining 2,834 whole.
        assert_eq!(settlement.payouts[1], payout(10_000, 2_834));
        assert_eq!(settlement.house, p(499));
        assert_conserved(&participants, &settlement);
    }

    #[test]
    fn achievers_with_zero_stakes_win_nothing_and_the_pool_goes_to_the_house() {
        let participants = [participant(0, 5), participant(10_000, 0)];
        let settlement = settled(5, 1_000, &participants);
        assert_eq!(settlement.payouts, vec![payout(0, 0), payout(0, 0)]);
        assert_eq!(settlement.house, p(10_000));
        assert_conserved(&participants, &settlement);
    }

    #[test]
    fn nobody_to_settle_settles_to_nothing() {
        assert_eq!(
            settle(10, 1_000, &[]),
            Ok(Settlement {
                payouts: vec![],
                house: Points::ZERO,
                pool: Points::ZERO
            })
        );
    }

    #[test]
    fn more_counted_days_than_required_is_refused_with_the_participant() {
        assert_eq!(
            settle(10, 0, &[participant(1_000, 10), participant(1_000, 11)]),
            Err(SettlementError::CountedDaysAboveRequired {
                index: 1,
                counted_days: 11,
                required_days: 10
            })
        );
    }

    #[test]
    fn a_house_fee_above_thirty_percent_is_refused() {
        assert!(settle(10, HOUSE_FEE_BPS_MAX, &[participant(1_000, 0)]).is_ok());
        assert_eq!(
            settle(10, HOUSE_FEE_BPS_MAX + 1, &[participant(1_000, 0)]),
            Err(SettlementError::HouseFeeOutOfRange(HOUSE_FEE_BPS_MAX + 1))
        );
    }

    #[test]
    fn zero_required_days_is_refused() {
        assert_eq!(
            settle(0, 0, &[participant(1_000, 0)]),
            Err(SettlementError::NoRequiredDays)
        );
    }

    #[test]
    fn stakes_adding_up_past_the_range_of_points_are_refused_not_wrapped() {
        assert_eq!(
            settle(1, 0, &[participant(i64::MAX, 1), participant(1, 0)]),
            Err(SettlementError::Overflow)
        );
        // One stake of the largest amount settles exactly.
        let settlement = settled(3, 3_000, &[participant(i64::MAX, 1), participant(0, 3)]);
        assert_eq!(settlement.payouts[0].refund, p(i64::MAX / 3));
        assert_conserved(&[participant(i64::MAX, 1), participant(0, 3)], &settlement);
    }

    #[test]
    fn a_hundred_thousand_participants_settle_in_one_call_and_conserve_points() {
        let mut rng = SplitMix64::new(0x5E77_1E00);
        let participants: Vec<Participant> = (0..100_000)
            .map(|_| {
                let counted = u32::try_from(rng.below(15)).unwrap_or(0);
                participant(1_000 * rng.amount(200), counted)
            })
            .collect();
        let settlement = settled(14, 1_000, &participants);
        assert_eq!(settlement.payouts.len(), participants.len());
        assert_conserved(&participants, &settlement);
    }

    /// A challenge's rules and its participants, skewed toward the interesting rates: a third
    /// at 100%, the rest anywhere from nothing to every day (so often near 85%).
    fn challenges() -> impl Strategy<Value = (u32, u32, Vec<Participant>)> {
        (1..=56_u32, 0..=HOUSE_FEE_BPS_MAX).prop_flat_map(|(required_days, bps)| {
            let counted = prop_oneof![1 => Just(required_days), 2 => 0..=required_days];
            let one = (1..=200_i64, counted)
                .prop_map(|(thousands, counted)| participant(1_000 * thousands, counted));
            (
                Just(required_days),
                Just(bps),
                proptest::collection::vec(one, 1..=500),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3_000))]

        #[test]
        fn settlement_conserves_points_and_keeps_every_promise_for_any_seed(
            (required_days, bps, participants) in challenges(),
        ) {
            let required = i64::from(required_days);
            let settlement = settled(required_days, bps, &participants);
            assert_conserved(&participants, &settlement);
            prop_assert_eq!(settlement.payouts.len(), participants.len());

            let mut forfeited: i64 = 0;
            let mut achievers: Vec<(Points, Points)> = Vec::new();
            for (who, got) in participants.iter().zip(&settlement.payouts) {
                let stake = who.stake.get();
                let counted = i64::from(who.counted_days);
                if who.counted_days == required_days {
                    prop_assert_eq!(got.refund, who.stake);
                    achievers.push((who.stake, got.prize));
                } else {
                    prop_assert_eq!(got.prize, Points::ZERO, "no prize below 100%");
                    if counted * 100 >= 85 * required {
                        prop_assert_eq!(got.refund, who.stake);
                    } else {
                        prop_assert_eq!(got.refund.get(), stake * counted / required);
                    }
                }
                forfeited += stake - got.refund.get();
            }
            prop_assert_eq!(settlement.pool.get(), forfeited);
            let fee = forfeited * i64::from(bps) / 10_000;
            prop_assert!(settlement.house.get() >= fee);
            if achievers.is_empty() {
                prop_assert_eq!(settlement.house, settlement.pool);
            } else {
                // Rounding loses less than a point per achiever.
                let remainder = settlement.house.get() - fee;
                prop_assert!(remainder < i64::try_from(achievers.len()).unwrap_or(i64::MAX));
            }
            achievers.sort();
            for pair in achievers.windows(2) {
                prop_assert!(pair[0].1 <= pair[1].1, "a larger stake never gets a smaller prize");
            }
        }
    }
}
