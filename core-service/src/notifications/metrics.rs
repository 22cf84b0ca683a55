//! The dispatcher's counters and its claim-latency histogram, kept in the process: the tests and
//! the benchmark read them. Nothing exports them yet (the core has no metrics endpoint); until it
//! does, the operator's alert on FAILED notifications is the dispatcher's `error!` log line
//! (`alert = "notifications_failed"`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Sub-buckets per power of two: percentiles are read to within 1/16 (about 6 %).
const SUB_BUCKETS: usize = 16;
/// Powers of two covered: up to 2^36 µs (19 hours); anything longer lands in the last bucket.
const OCTAVES: usize = 36;
const BUCKETS: usize = SUB_BUCKETS * OCTAVES;

/// A lock-free latency histogram in microseconds, log-linear (as HDR histograms are).
pub struct Histogram {
    counts: Box<[AtomicU64]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Histogram")
            .field("count", &self.count())
            .finish()
    }
}

fn bucket_of(micros: u64) -> usize {
    let sub = SUB_BUCKETS as u64;
    if micros < sub {
        return usize::try_from(micros).unwrap_or(0);
    }
    // The top four bits below the highest set bit pick the sub-bucket.
    let octave = u64::from(63 - micros.leading_zeros()) - 3;
    let sub_bucket = (micros >> (octave - 1)) - sub;
    usize::try_from(octave * sub + sub_bucket)
        .unwrap_or(BUCKETS - 1)
        .min(BUCKETS - 1)
}

/// The largest value in `bucket` (a percentile is reported at its bucket's upper edge).
fn bucket_upper(bucket: usize) -> u64 {
    let sub = SUB_BUCKETS as u64;
    let bucket = bucket as u64;
    if bucket < sub {
        return bucket;
    }
    let octave = bucket / sub;
    let sub_bucket = bucket % sub;
    ((sub + sub_bucket + 1) << (octave - 1)) - 1
}

impl Histogram {
    pub fn record_micros(&self, micros: u64) {
        self.counts[bucket_of(micros)].fetch_add(1, Ordering::Relaxed);
    }

    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .sum()
    }

    /// The value at or below which a fraction `quantile` of the recordings lie (µs); 0 when
    /// nothing was recorded.
    #[must_use]
    pub fn quantile_micros(&self, quantile: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        // Rank of the wanted recording, 1-based: ceil(q × n), at least 1.
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let rank = ((quantile.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count.load(Ordering::Relaxed);
            if seen >= rank {
                return bucket_upper(bucket);
            }
        }
        bucket_upper(BUCKETS - 1)
    }

    pub fn reset(&self) {
        for count in &*self.counts {
            count.store(0, Ordering::Relaxed);
        }
    }
}

/// Counters since the dispatcher started.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Notifications marked SENT.
    pub sent: AtomicU64,
    /// Notifications put back for a retry.
    pub retried: AtomicU64,
    /// Notifications marked FAILED.
    pub failed: AtomicU64,
    /// Operator alerts raised (one per FAILED notification).
    pub alerts: AtomicU64,
    /// Messages FCM accepted (one per device).
    pub messages_delivered: AtomicU64,
    /// Device tokens deleted because FCM called them dead.
    pub tokens_deleted: AtomicU64,
    /// Batches worked from Postgres because Redis was not there.
    pub fallback_batches: AtomicU64,
    /// Batches worked from Redis claims.
    pub redis_batches: AtomicU64,
    /// Times the schedule was rebuilt from Postgres.
    pub rebuilds: AtomicU64,
    /// Ids moved from Postgres into the schedule.
    pub fed: AtomicU64,
    /// Redis claim round trips (the Lua script), in µs.
    pub claim_latency: Histogram,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, amount: usize) {
        counter.fetch_add(u64::try_from(amount).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    #[must_use]
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_and_their_upper_edges_contain_them() {
        let mut previous = 0;
        for micros in (0..5_000).chain([65_535, 1_000_000, u64::MAX / 2, u64::MAX]) {
            let bucket = bucket_of(micros);
            assert!(bucket >= previous, "{micros}");
            previous = bucket;
            if bucket < BUCKETS - 1 {
                assert!(bucket_upper(bucket) >= micros, "{micros}");
                assert!(bucket == 0 || bucket_upper(bucket - 1) < micros, "{micros}");
            }
        }
    }

    #[test]
    fn percentiles_are_read_to_within_a_sixteenth() {
        let histogram = Histogram::default();
        for micros in 1..=1_000 {
            histogram.record_micros(micros);
        }
        assert_eq!(histogram.count(), 1_000);
        let p99 = histogram.quantile_micros(0.99);
        assert!((990..=990 + 990 / 16).contains(&p99), "{p99}");
        let p50 = histogram.quantile_micros(0.5);
        assert!((500..=500 + 500 / 16).contains(&p50), "{p50}");
        assert_eq!(Histogram::default().quantile_micros(0.99), 0);
    }
}
