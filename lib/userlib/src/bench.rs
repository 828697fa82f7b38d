//! The figures a benchmark task prints on its `bench-result` line, in the
//! one form `cargo xtask bench` parses: a per-I/O count with three
//! decimals ([`PerIo`]) and the latency summary of a point ([`Latencies`],
//! over the point's [`Histogram`]). Formatting only: it measures nothing
//! and never allocates.

use core::fmt;

pub use latency::Histogram;

/// `count / ios` with three decimals (`ios` 0 counts as 1).
#[derive(Clone, Copy, Debug)]
pub struct PerIo(pub u64, pub u64);

impl fmt::Display for PerIo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let milli = self.0 * 1000 / self.1.max(1);
        write!(f, "{}.{:03}", milli / 1000, milli % 1000)
    }
}

/// A point's latencies in µs (every I/O of it): shown as
/// `p50_us=… p99_us=… p999_us=… max_us=… mean_us=…` (0 for none). The
/// percentiles are within 1/64 below the exact ones; max and mean exact.
#[derive(Clone, Copy, Debug)]
pub struct Latencies<'a>(pub &'a Histogram);

impl fmt::Display for Latencies<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = self.0;
        write!(
            f,
            "p50_us={} p99_us={} p999_us={} max_us={} mean_us={}",
            h.per_mille(500),
            h.per_mille(990),
            h.per_mille(999),
            h.max(),
            h.mean()
        )
    }
}
