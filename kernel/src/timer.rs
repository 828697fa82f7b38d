//! The system tick: the EL1 virtual timer (CNTV) re-armed every
//! [`TICK_US`], counting ticks. Owns CNTV_CTL/CNTV_TVAL. Must never sleep or
//! take a lock that task context may hold.

use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{CNTV_CTL_EL0, CNTV_CVAL_EL0, CNTV_TVAL_EL0, Writeable};

use crate::timeout::us_to_ticks;

/// Tick period.
pub const TICK_US: u64 = 10_000;

static TICKS: AtomicU64 = AtomicU64::new(0);

/// Arms the first tick.
pub fn start() {
    arm();
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
}

fn arm() {
    CNTV_TVAL_EL0.set(us_to_ticks(TICK_US));
}

/// Handles the timer interrupt: counts the tick and re-arms.
pub fn on_interrupt() {
    TICKS.fetch_add(1, Ordering::Relaxed);
    arm();
}

/// Programs the next interrupt at the next tick or at `deadline` (counter
/// ticks), whichever comes first.
pub fn program(deadline: Option<u64>) {
    let next_tick = crate::arch::counter() + us_to_ticks(TICK_US);
    CNTV_CVAL_EL0.set(deadline.map_or(next_tick, |d| d.min(next_tick)));
}

/// Ticks since [`start`].
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Waits (with interrupts on) until `n` more ticks have been counted, or
/// ten times as long as that should take. Returns (ticks seen, elapsed µs).
pub fn wait_ticks(n: u64) -> (u64, u64) {
    let start_ticks = ticks();
    let start = crate::arch::counter();
    let limit = crate::timeout::us_to_ticks(10 * n * TICK_US);
    // Spin rather than WFI: a timer that never fires must not hang boot.
    while ticks() - start_ticks < n && crate::arch::counter() - start < limit {
        core::hint::spin_loop();
    }
    (
        ticks() - start_ticks,
        crate::timeout::ticks_to_us(crate::arch::counter() - start),
    )
}
