//! The time base on x86_64: the TSC, its frequency calibrated once at boot
//! against the PIT's channel 2 (the gate method; the PIT is only used for
//! that). Owns the PIT during calibration. Timer interrupts (the local
//! APIC's one-shot deadlines) are not brought up yet.

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

/// Programs the next timer interrupt at `deadline`. No timer interrupt is
/// brought up on x86_64 yet, and nothing that needs one runs (no tasks).
pub fn program(_deadline: Option<u64>) {}
