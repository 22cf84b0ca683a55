//! A small seeded generator for reproducible property and simulation tests (SplitMix64): the same
//! seed gives the same sequence everywhere, with no dependency.

#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (0 for a bound of 0 or less).
    pub fn below(&mut self, bound: i64) -> i64 {
        match u64::try_from(bound) {
            Ok(bound) if bound > 0 => i64::try_from(self.next_u64() % bound).unwrap_or(0),
            _ => 0,
        }
    }

    /// An index into a collection of `len` items (0 for an empty one).
    pub fn index(&mut self, len: usize) -> usize {
        match u64::try_from(len) {
            Ok(len) if len > 0 => usize::try_from(self.next_u64() % len).unwrap_or(0),
            _ => 0,
        }
    }

    /// An amount in `1..=max`.
    pub fn amount(&mut self, max: i64) -> i64 {
        self.below(max) + 1
    }
}
