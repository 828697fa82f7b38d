//! The kernel's clock for bounded waits: the architecture's counter
//! (`arch::counter`), as a [`::mmio::Clock`] for the shared [`::mmio::poll_until`] (interrupt
//! controller acknowledgements, device ready bits), and tick/microsecond conversions
//! at its frequency. Never waits itself, and never spins without a
//! deadline.

use crate::arch;

pub use ::mmio::poll_until;

/// [`arch::counter`] at [`arch::counter_hz`]; pauses with a spin-loop hint.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counter;

impl ::mmio::Clock for Counter {
    fn now(&mut self) -> u64 {
        arch::counter()
    }
    fn hz(&self) -> u64 {
        arch::counter_hz().max(1)
    }
}

/// Converts counter ticks to microseconds.
pub fn ticks_to_us(ticks: u64) -> u64 {
    ::mmio::ticks_to_us(ticks, arch::counter_hz())
}

/// Converts microseconds to counter ticks.
pub fn us_to_ticks(us: u64) -> u64 {
    ::mmio::us_to_ticks(us, arch::counter_hz())
}
