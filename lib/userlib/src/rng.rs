//! Small seedable pseudo-random generators for test and benchmark tasks
//! that must be replayable from a seed: splitmix64 ([`Rng`]: the fuzzer,
//! the soak) and xorshift64* ([`XorShift`]: the benchmarks' random LBAs).
//! Not for anything secret: they are predictable by design.

/// splitmix64: small, seedable, good enough to spread test cases.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// The generator that `seed` starts.
    pub const fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64().checked_rem(n).unwrap_or(0)
    }

    /// Uniform in `lo..=hi` (`lo` when `hi < lo`).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }

    /// True with `percent` percent probability.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// xorshift64*: the benchmarks' random LBAs. `blk-bench` and the ceiling
/// run draw the same sequence from the same seed, so both read the same
/// blocks at a given queue depth.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// The generator that `seed` (non-zero) starts.
    pub const fn new(seed: u64) -> Self {
        XorShift(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
