//! Bounded waiting: the one helper every poll in the kernel goes through
//! (GIC acknowledgements, device ready bits). Measures time with the
//! architected counter; never spins without a deadline.

use crate::arch;

/// A poll ran out of time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollError {
    /// How long was waited, in microseconds.
    pub waited_us: u64,
}

/// Converts counter ticks to microseconds.
pub fn ticks_to_us(ticks: u64) -> u64 {
    ticks.saturating_mul(1_000_000) / arch::counter_hz().max(1)
}

/// Converts microseconds to counter ticks.
pub fn us_to_ticks(us: u64) -> u64 {
    us.saturating_mul(arch::counter_hz()) / 1_000_000
}

/// Polls `done` until it returns true or `timeout_us` microseconds pass.
pub fn poll_until(timeout_us: u64, mut done: impl FnMut() -> bool) -> Result<(), PollError> {
    let start = arch::counter();
    let limit = us_to_ticks(timeout_us);
    loop {
        if done() {
            return Ok(());
        }
        let waited = arch::counter().wrapping_sub(start);
        if waited > limit {
            // One last look: the condition may have become true while we
            // were descheduled.
            return if done() {
                Ok(())
            } else {
                Err(PollError {
                    waited_us: ticks_to_us(waited),
                })
            };
        }
        core::hint::spin_loop();
    }
}
