//! The system tick: the EL1 virtual timer (CNTV) re-armed every
//! [`TICK_US`], counting ticks. Owns CNTV_CTL/CNTV_TVAL. Must never sleep or
//! take a lock that task context may hold.

use core::sync::atomic::{AtomicU64, Ordering};

use aarch64_cpu::registers::{CNTV_CTL_EL0, CNTV_CVAL_EL0, Writeable};

use crate::timeout::us_to_ticks;

/// Tick period.
pub const TICK_US: u64 = 10_000;

static TICKS: AtomicU64 = AtomicU64::new(0);
/// When the next periodic tick is due (counter ticks).
static NEXT_TICK: AtomicU64 = AtomicU64::new(0);
/// What CNTV_CVAL holds now. Writing the compare register is expensive
/// under emulation (QEMU re-arms a host timer), so it is written only when
/// the wanted value changes.
static PROGRAMMED: AtomicU64 = AtomicU64::new(u64::MAX);
/// Writes of CNTV_CVAL since boot (`abi::KernelCounters::timer_writes`).
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Arms the first tick.
pub fn start() {
    NEXT_TICK.store(super::counter() + us_to_ticks(TICK_US), Ordering::Relaxed);
    program(None);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
}

/// Handles the timer interrupt: counts a tick if one was due and moves the
/// next one on.
pub fn on_interrupt() {
    let now = super::counter();
    let compare = PROGRAMMED.load(Ordering::Relaxed);
    if compare != u64::MAX {
        crate::latency::note_timer_late(now.saturating_sub(compare));
    }
    if now >= NEXT_TICK.load(Ordering::Relaxed) {
        TICKS.fetch_add(1, Ordering::Relaxed);
        NEXT_TICK.store(now + us_to_ticks(TICK_US), Ordering::Relaxed);
    }
    // The compare value has passed: force the next `program` to write.
    PROGRAMMED.store(u64::MAX, Ordering::Relaxed);
    program(None);
}

/// Programs the next interrupt at the next tick or at `deadline` (counter
/// ticks), whichever comes first; a no-op if that is already programmed.
pub fn program(deadline: Option<u64>) {
    let next_tick = NEXT_TICK.load(Ordering::Relaxed);
    let want = deadline.map_or(next_tick, |d| d.min(next_tick));
    if PROGRAMMED.swap(want, Ordering::Relaxed) != want {
        CNTV_CVAL_EL0.set(want);
        WRITES.fetch_add(1, Ordering::Relaxed);
    }
}

/// Writes of the compare value since boot.
pub fn writes() -> u64 {
    WRITES.load(Ordering::Relaxed)
}

/// Ticks since [`start`].
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Waits (with interrupts on) until `n` more ticks have been counted, or
/// ten times as long as that should take. Returns (ticks seen, elapsed µs).
pub fn wait_ticks(n: u64) -> (u64, u64) {
    let start_ticks = ticks();
    let start = super::counter();
    // Spin rather than WFI: a timer that never fires must not hang boot.
    // A timeout is no error here: the ticks seen say what happened.
    let _ = crate::timeout::poll_until(&mut crate::timeout::Counter, 10 * n * TICK_US, || {
        (ticks() - start_ticks >= n).then_some(())
    });
    (
        ticks() - start_ticks,
        crate::timeout::ticks_to_us(super::counter() - start),
    )
}
