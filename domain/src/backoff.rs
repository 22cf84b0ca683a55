//! Retry delays: exponential from a base, capped, with jitter so that many retries scheduled by
//! one outage do not all land in the same instant.

/// The delay before attempt `attempt + 1`, after `attempt` failed attempts (1-based), in ms:
/// `base × 2^(attempt−1)`, capped at `max`, plus a jitter in `[0, base)` taken from `random`.
#[must_use]
pub fn retry_delay_ms(attempt: u32, base_ms: u64, max_ms: u64, random: u64) -> u64 {
    let exponent = attempt.saturating_sub(1).min(32);
    let exponential = base_ms.saturating_mul(1_u64 << exponent).min(max_ms);
    let jitter = random.checked_rem(base_ms).unwrap_or(0);
    exponential.saturating_add(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_base_until_the_cap() {
        let delays: Vec<u64> = (1..=6).map(|a| retry_delay_ms(a, 100, 1_000, 0)).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1_000, 1_000]);
    }

    #[test]
    fn jitter_stays_below_the_base_and_huge_attempts_do_not_overflow() {
        assert_eq!(retry_delay_ms(1, 100, 1_000, 12_345), 145);
        assert_eq!(retry_delay_ms(u32::MAX, 100, 1_000, 99), 1_099);
        assert_eq!(retry_delay_ms(3, 0, 1_000, 7), 0);
    }
}
