//! The figures a benchmark task prints on its `bench-result` line, in the
//! one form `cargo xtask bench` parses: a per-I/O count with three
//! decimals ([`PerIo`]) and the latency summary of a point ([`Latencies`]).
//! Formatting only: it measures nothing and never allocates.

use core::fmt;

/// `count / ios` with three decimals (`ios` 0 counts as 1).
#[derive(Clone, Copy, Debug)]
pub struct PerIo(pub u64, pub u64);

impl fmt::Display for PerIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let milli = self.0 * 1000 / self.1.max(1);
        write!(f, "{}.{:03}", milli / 1000, milli % 1000)
    }
}

/// A point's latencies in µs, sorted ascending: shown as
/// `p50_us=… p99_us=… p999_us=… max_us=… mean_us=…` (0 for none).
#[derive(Clone, Copy, Debug)]
pub struct Latencies<'a>(pub &'a [u32]);

impl Latencies<'_> {
    /// The `q`-th thousandth (the sample at that rank, clamped).
    pub fn per_mille(&self, q: usize) -> u32 {
        let l = self.0;
        l.get((l.len() * q / 1000).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    }

    /// The mean, rounded down.
    pub fn mean(&self) -> u64 {
        let kept = u64::try_from(self.0.len()).unwrap_or(u64::MAX).max(1);
        self.0.iter().map(|&l| u64::from(l)).sum::<u64>() / kept
    }
}

impl fmt::Display for Latencies<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50_us={} p99_us={} p999_us={} max_us={} mean_us={}",
            self.per_mille(500),
            self.per_mille(990),
            self.per_mille(999),
            self.0.last().copied().unwrap_or(0),
            self.mean()
        )
    }
}
