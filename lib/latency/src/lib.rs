//! A point's latencies, kept as a fixed-size log-linear histogram
//! ([`Histogram`]): the benchmark tasks record every I/O of a point of any
//! length in it and print its percentiles. Values below 64 have a bucket
//! each; above, every power of two is split into 64 buckets, so a reported
//! percentile is the lower bound of the bucket that holds the sample at its
//! rank: at most 1/64 (1.6 %) below that sample, never above it. The mean and
//! the maximum are exact.
//!
//! It owns its counts and nothing else: it never allocates (a task's heap is
//! 1 MiB, and a list of every sample outgrew it in a 3 s point), never
//! panics, and saturates rather than wraps.
//!
//! Why not a crate: the log-bucketed histogram crates we found need `std`
//! (lazily built tables, vectors); this one is a page of integer code.

#![no_std]

/// Bits of a value kept below its leading one: 64 buckets per power of two.
const SUB_BITS: u32 = 6;
/// Buckets per power of two, and the values that have a bucket each.
const SUB: usize = 1 << SUB_BITS;
/// Every `u32`: 64 exact buckets, then 64 for each of the 26 powers of two
/// from 2^6 to 2^31.
pub const BUCKETS: usize = SUB + (32 - SUB_BITS as usize) * SUB;

/// Latencies (any unit; the benchmarks record µs) of one point.
#[derive(Clone, Debug)]
pub struct Histogram {
    counts: [u32; BUCKETS],
    n: u64,
    sum: u64,
    max: u32,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

/// The bucket that holds `v`.
fn index(v: u32) -> usize {
    if (v as usize) < SUB {
        return v as usize;
    }
    // v ≥ 64: its leading one is at bit 6 or above.
    let top = 31 - v.leading_zeros();
    let shift = top - SUB_BITS;
    let mantissa = (v >> shift) as usize; // in 64..128
    (shift as usize + 1) * SUB + (mantissa - SUB)
}

/// The smallest value bucket `i` holds.
fn lower_bound(i: usize) -> u32 {
    if i < SUB {
        return i as u32;
    }
    let shift = (i / SUB - 1) as u32;
    ((SUB + i % SUB) as u32) << shift
}

impl Histogram {
    /// Empty.
    pub const fn new() -> Self {
        Self {
            counts: [0; BUCKETS],
            n: 0,
            sum: 0,
            max: 0,
        }
    }

    /// Adds one sample.
    pub fn record(&mut self, v: u32) {
        let c = &mut self.counts[index(v)];
        *c = c.saturating_add(1);
        self.n = self.n.saturating_add(1);
        self.sum = self.sum.saturating_add(u64::from(v));
        self.max = self.max.max(v);
    }

    /// Adds `ticks` of a counter running at `hz` as whole µs (saturating
    /// at `u32::MAX`, about 71 minutes).
    pub fn record_us(&mut self, ticks: u64, hz: u64) {
        let us = u128::from(ticks) * 1_000_000 / u128::from(hz.max(1));
        self.record(u32::try_from(us).unwrap_or(u32::MAX));
    }

    /// Samples recorded.
    pub fn len(&self) -> u64 {
        self.n
    }

    /// Nothing recorded.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The largest sample (0 for none).
    pub fn max(&self) -> u32 {
        self.max
    }

    /// The mean, rounded down (0 for none).
    pub fn mean(&self) -> u64 {
        self.sum / self.n.max(1)
    }

    /// The `q`-th thousandth: the sample at rank `len * q / 1000` (0-based,
    /// clamped to the last) of the sorted samples, as the lower bound of
    /// its bucket (0 for none).
    pub fn per_mille(&self, q: u64) -> u32 {
        if self.n == 0 {
            return 0;
        }
        let rank = (u128::from(self.n) * u128::from(q) / 1000).min(u128::from(self.n - 1)) as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen > rank {
                return lower_bound(i);
            }
        }
        // Only if a bucket saturated: the largest sample.
        self.max
    }
}

#[cfg(test)]
mod tests;
