//! The histogram against the exact answer: a sorted list of the same samples.

extern crate std;

use proptest::prelude::*;

use super::*;

/// The sample at the same rank as `per_mille` picks, exactly.
fn exact(sorted: &[u32], q: u64) -> u32 {
    let n = sorted.len() as u64;
    sorted[((n * q / 1000).min(n - 1)) as usize]
}

#[test]
fn buckets_cover_every_u32_in_order() {
    // Each bucket's lower bound maps back to it, bounds rise, and the last
    // bucket holds u32::MAX.
    let mut last = None;
    for i in 0..BUCKETS {
        let lo = lower_bound(i);
        assert_eq!(index(lo), i, "bucket {i}");
        if let Some(prev) = last {
            assert!(lo > prev, "bucket {i}");
        }
        last = Some(lo);
    }
    assert_eq!(index(u32::MAX), BUCKETS - 1);
    assert_eq!(index(63), 63);
    assert_eq!(index(64), 64);
    assert_eq!(index(128), 128);
    assert_eq!(index(129), 128);
    assert_eq!(index(130), 129);
}

#[test]
fn ticks_become_microseconds() {
    let mut h = Histogram::new();
    // 62.5 MHz: 6,250 ticks are 100 µs; a count past u32::MAX µs saturates.
    h.record_us(6_250, 62_500_000);
    h.record_us(u64::MAX / 2, 62_500_000);
    assert_eq!(h.per_mille(0), 100);
    assert_eq!(h.max(), u32::MAX);
}

#[test]
fn empty_reads_zero() {
    let h = Histogram::new();
    assert!(h.is_empty());
    assert_eq!((h.per_mille(500), h.max(), h.mean()), (0, 0, 0));
}

#[test]
fn small_values_are_exact() {
    let mut h = Histogram::new();
    for v in [5, 1, 3, 2, 4] {
        h.record(v);
    }
    assert_eq!(h.per_mille(0), 1);
    assert_eq!(h.per_mille(500), 3);
    assert_eq!(h.per_mille(999), 5);
    assert_eq!(h.per_mille(1000), 5);
    assert_eq!((h.max(), h.mean(), h.len()), (5, 3, 5));
}

#[test]
fn a_long_point_keeps_every_sample() {
    // More samples than the list the tasks kept before (100,000), with the
    // slow ones at the end: a list cut at its first 100,000 would miss them.
    let mut h = Histogram::new();
    for _ in 0..150_000 {
        h.record(100);
    }
    for _ in 0..50_000 {
        h.record(10_000);
    }
    assert_eq!(h.len(), 200_000);
    assert_eq!(h.per_mille(500), 100);
    let p99 = h.per_mille(990);
    assert!((10_000 - 10_000 / 64..=10_000).contains(&p99), "{p99}");
}

proptest! {
    /// Every percentile is the exact one or at most 1/64 below it; mean,
    /// max and count are exact.
    #[test]
    fn percentiles_within_a_sixty_fourth_below(
        samples in prop::collection::vec(
            prop_oneof![0u32..200, 0u32..5_000, 0u32..2_000_000, any::<u32>()],
            1..2_000,
        ),
        q in 0u64..=1000,
    ) {
        let mut h = Histogram::new();
        for &s in &samples {
            h.record(s);
        }
        let mut sorted = samples.clone();
        sorted.sort_unstable();
        let want = exact(&sorted, q);
        let got = h.per_mille(q);
        prop_assert!(got <= want, "q {} got {} want {}", q, got, want);
        prop_assert!(u64::from(want - got) * 64 <= u64::from(want), "q {} got {} want {}", q, got, want);
        prop_assert_eq!(h.max(), *sorted.last().unwrap());
        let sum: u64 = samples.iter().map(|&s| u64::from(s)).sum();
        prop_assert_eq!(h.mean(), sum / samples.len() as u64);
        prop_assert_eq!(h.len(), samples.len() as u64);
    }
}
