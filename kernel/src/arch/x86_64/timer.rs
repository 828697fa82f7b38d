//! The time base on x86_64: the TSC, its frequency calibrated once at boot
//! against the PIT's channel 2 (the gate method; the PIT is only used for
//! that), and the system tick: the local APIC timer in one-shot mode,
//! re-armed every [`TICK_US`] or earlier for a deadline, counting ticks.
//! Must never sleep or take a lock that task context may hold.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

/// The PIT's input clock [Intel 8254 datasheet].
const PIT_HZ: u64 = 1_193_182;
/// Calibration length in PIT ticks (10 ms).
const CALIBRATION_TICKS: u64 = PIT_HZ / 100;
/// Upper bound on the calibration loop (turns), in case the PIT is absent.
const MAX_TURNS: u64 = 100_000_000;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// The time-stamp counter.
pub fn tsc() -> u64 {
    // SAFETY: RDTSC only reads the counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The TSC's frequency in Hz (0 before [`calibrate`]).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// Measures the TSC against 10 ms of PIT channel 2, three times, and
/// keeps the median (under emulation one run can be far off).
pub fn calibrate() {
    let mut runs = [0u64; 3];
    for r in runs.iter_mut() {
        *r = measure().unwrap_or(0);
    }
    runs.sort_unstable();
    TSC_HZ.store(runs[1], Ordering::Relaxed);
}

/// TSC ticks per second over one 10 ms PIT count, or `None` if the PIT
/// never reached its count.
fn measure() -> Option<u64> {
    let mut gate: Port<u8> = Port::new(0x61);
    let mut command: Port<u8> = Port::new(0x43);
    let mut ch2: Port<u8> = Port::new(0x42);
    // SAFETY: ports 0x61 (channel 2 gate, speaker off), 0x43 and 0x42 (the
    // PIT's channel 2) are used by nothing else in this kernel; channel 2
    // drives only the PC speaker, which stays off.
    let (ticks, turns) = unsafe {
        let g = gate.read();
        gate.write((g & !0x02) | 0x01);
        // Channel 2, lobyte/hibyte, mode 0 (interrupt on terminal count).
        command.write(0xb0);
        ch2.write((CALIBRATION_TICKS & 0xff) as u8);
        ch2.write((CALIBRATION_TICKS >> 8) as u8);
        let t0 = tsc();
        let mut n = 0;
        // OUT2 (port 0x61 bit 5) goes high when the count reaches zero.
        while gate.read() & 0x20 == 0 && n < MAX_TURNS {
            n += 1;
        }
        (tsc() - t0, n)
    };
    (turns < MAX_TURNS).then(|| ticks * PIT_HZ / CALIBRATION_TICKS)
}

/// Tick period.
pub const TICK_US: u64 = 10_000;

static TICKS: AtomicU64 = AtomicU64::new(0);
/// When the next periodic tick is due (TSC ticks).
static NEXT_TICK: AtomicU64 = AtomicU64::new(0);
/// The deadline the APIC timer is armed for (TSC ticks; MAX: none).
static PROGRAMMED: AtomicU64 = AtomicU64::new(u64::MAX);
/// Writes of the one-shot count since boot
/// (`abi::KernelCounters::timer_writes`).
static WRITES: AtomicU64 = AtomicU64::new(0);
/// The APIC timer's frequency (divide by 1), calibrated against the TSC.
static APIC_HZ: AtomicU64 = AtomicU64::new(0);

/// The APIC timer's frequency in Hz.
pub fn apic_hz() -> u64 {
    APIC_HZ.load(Ordering::Relaxed)
}

/// Measures the APIC timer against 10 ms of TSC, then arms the first tick.
pub fn start() {
    super::apic::one_shot(u32::MAX);
    let t0 = tsc();
    let wait = tsc_hz() / 100;
    while tsc() - t0 < wait {
        core::hint::spin_loop();
    }
    let counted = u64::from(u32::MAX - super::apic::current_count());
    let elapsed = (tsc() - t0).max(1);
    super::apic::one_shot(0);
    APIC_HZ.store(counted * tsc_hz() / elapsed, Ordering::Relaxed);
    NEXT_TICK.store(
        tsc() + crate::timeout::us_to_ticks(TICK_US),
        Ordering::Relaxed,
    );
    program(None);
}

/// Handles the timer interrupt: counts a tick if one was due and moves the
/// next one on, then re-arms.
pub fn on_interrupt() {
    let now = tsc();
    let armed = PROGRAMMED.load(Ordering::Relaxed);
    if armed != u64::MAX {
        crate::latency::note_timer_late(now.saturating_sub(armed));
    }
    if now >= NEXT_TICK.load(Ordering::Relaxed) {
        TICKS.fetch_add(1, Ordering::Relaxed);
        NEXT_TICK.store(
            now + crate::timeout::us_to_ticks(TICK_US),
            Ordering::Relaxed,
        );
    }
    PROGRAMMED.store(u64::MAX, Ordering::Relaxed);
    program(None);
}

/// Arms the next interrupt at the next tick or at `deadline` (TSC ticks),
/// whichever comes first; a no-op if that is already armed.
pub fn program(deadline: Option<u64>) {
    let next_tick = NEXT_TICK.load(Ordering::Relaxed);
    let want = deadline.map_or(next_tick, |d| d.min(next_tick));
    if PROGRAMMED.swap(want, Ordering::Relaxed) == want {
        return;
    }
    let delta = u128::from(want.saturating_sub(tsc()));
    let count = delta * u128::from(apic_hz()) / u128::from(tsc_hz().max(1));
    // A deadline already passed still gets an interrupt (count 1).
    super::apic::one_shot(count.clamp(1, u128::from(u32::MAX)) as u32);
    WRITES.fetch_add(1, Ordering::Relaxed);
}

/// Writes of the one-shot count since boot.
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
    let start = tsc();
    let _ = crate::timeout::poll_until(&mut crate::timeout::Counter, 10 * n * TICK_US, || {
        (ticks() - start_ticks >= n).then_some(())
    });
    (
        ticks() - start_ticks,
        crate::timeout::ticks_to_us(tsc() - start),
    )
}
