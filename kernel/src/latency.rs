//! The kernel's own latency peaks, for [`abi::Sysno::KernelStats`]: how
//! late the timer interrupt was taken after its compare value, how late a
//! task was woken after its deadline, and the longest stretch the kernel
//! ran with IRQs masked for one trap. They separate what the kernel delays
//! from what the machine (under TCG: QEMU's main loop) delays. Owns only
//! these peaks, kept in atomics; must never block or allocate (the timer
//! handler updates them).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch;
use crate::timeout::ticks_to_us;

/// Largest timer-interrupt lateness (counter ticks) since the last reset.
static TIMER_LATE: AtomicU64 = AtomicU64::new(0);
/// Largest deadline-to-wake lateness (ticks) since the last reset.
static WAKE_LATE: AtomicU64 = AtomicU64::new(0);
/// Longest IRQ-masked stretch of one trap (ticks) since the last reset.
static MASKED: AtomicU64 = AtomicU64::new(0);
/// When the current IRQ-masked stretch began (ticks; 0: none open).
static MASKED_SINCE: AtomicU64 = AtomicU64::new(0);

/// The timer interrupt was taken `ticks` after its compare value.
pub fn note_timer_late(ticks: u64) {
    TIMER_LATE.fetch_max(ticks, Ordering::Relaxed);
}

/// A task was woken `ticks` after its deadline.
pub fn note_wake_late(ticks: u64) {
    WAKE_LATE.fetch_max(ticks, Ordering::Relaxed);
}

/// The kernel entered with IRQs masked (a trap from user mode, or the return
/// from an idle wait).
pub fn masked_begin() {
    MASKED_SINCE.store(arch::counter(), Ordering::Relaxed);
}

/// The kernel is about to unmask IRQs (idle) or return to user mode: the
/// masked stretch that began at [`masked_begin`] ends.
pub fn masked_end() {
    let since = MASKED_SINCE.swap(0, Ordering::Relaxed);
    if since != 0 {
        MASKED.fetch_max(arch::counter().saturating_sub(since), Ordering::Relaxed);
    }
}

/// The peaks in µs; `reset` starts new ones from now.
pub fn peaks(reset: bool) -> abi::LatencyPeaks {
    let take = |a: &AtomicU64| {
        ticks_to_us(if reset {
            a.swap(0, Ordering::Relaxed)
        } else {
            a.load(Ordering::Relaxed)
        })
    };
    abi::LatencyPeaks {
        timer_irq_late_us: take(&TIMER_LATE),
        wake_late_us: take(&WAKE_LATE),
        irqs_masked_us: take(&MASKED),
    }
}
