//! Scheduler probe task: shows that the scheduler preempts a task that
//! never makes a syscall. Roles (`arg("role")`):
//! - `spinner`: wakes the `worker` (same priority), then spins for
//!   `arg("ms")` milliseconds without a syscall, then checks that the
//!   worker ran during the spin (it sends the counter value at which it
//!   ran), which it can only have done if the tick took the CPU away.
//! - `worker`: waits for the spinner's go, reports when it ran, exits.
//! - `sleeper`: higher priority; sleeps `arg("naps")` times 5 ms while the
//!   spinner spins and checks each wake-up came within two ticks.
//! - `simd`: holds a pattern of its own (`arg("seed")`) in v0..v31 over
//!   `arg("rounds")` yields and preemptions by another `simd` task of the
//!   same priority and checks every register still holds it: the kernel
//!   keeps each task's FP/SIMD registers.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

use userlib::{TaskInfo, log};

userlib::entry!(main);

/// The notification bits the worker may set in the spinner (systems/sched.toml).
const SPINNER_BITS: u64 = 0x7fff_ffff_ffff_ffff;
/// Nap length of the sleeper.
const NAP_US: u64 = 5_000;
/// Latest acceptable wake-up after a nap: two 10 ms scheduler ticks.
const LATE_LIMIT_US: u64 = 20_000;

fn main(info: &TaskInfo<'static>) -> i32 {
    match info.arg("role") {
        Some("spinner") => spinner(info),
        Some("worker") => worker(info),
        Some("sleeper") => sleeper(info),
        Some("simd") => simd(info),
        other => {
            log!("sched-probe: unknown role {other:?}");
            1
        }
    }
}

fn hz() -> u64 {
    userlib::time().map(|(_, hz)| hz).unwrap_or(0).max(1)
}

fn spinner(info: &TaskInfo<'_>) -> i32 {
    let ms = userlib::arg_u64(info, "ms", 200).unwrap_or(200);
    let Some(go) = info.cap("worker") else {
        log!("spinner: needs capability `worker`");
        return 1;
    };
    let hz = hz();
    let start = userlib::counter();
    // The worker (same priority) becomes ready now; from here on this task
    // makes no syscall until `end`, so the worker can only run if the tick
    // takes the CPU away.
    if let Err(e) = userlib::notify(go, 1) {
        log!("spinner: notify refused: {e}");
        return 1;
    }
    let end = start + ms * hz / 1000;
    while userlib::counter() < end {
        core::hint::spin_loop();
    }
    // The worker sent the counter value at which it ran, as (value << 1) | 1.
    match userlib::wait(0) {
        Ok(bits) if bits & 1 == 1 && (start..end).contains(&(bits >> 1)) => {
            let at_ms = ((bits >> 1) - start) * 1000 / hz;
            log!(
                "spinner: spun {ms} ms without a syscall; the worker ran {at_ms} ms into it: preempted"
            );
            0
        }
        other => {
            log!(
                "spinner: spun {ms} ms; the worker did not run during the spin ({other:?}): no preemption"
            );
            1
        }
    }
}

fn worker(info: &TaskInfo<'_>) -> i32 {
    let Some(cap) = info.cap("spinner") else {
        log!("worker: needs capability `spinner`");
        return 1;
    };
    // Wait for the spinner's go, then report when this task got the CPU.
    if let Err(e) = userlib::wait(abi::syscall::FOREVER) {
        log!("worker: wait refused: {e}");
        return 1;
    }
    let now = userlib::counter();
    if let Err(e) = userlib::notify(cap, ((now << 1) | 1) & SPINNER_BITS) {
        log!("worker: notify refused: {e}");
        return 1;
    }
    log!("worker: ran while the spinner spun");
    0
}

fn sleeper(info: &TaskInfo<'_>) -> i32 {
    let naps = userlib::arg_u64(info, "naps", 10).unwrap_or(10);
    let hz = hz();
    let mut worst_us = 0;
    for _ in 0..naps {
        let before = userlib::counter();
        if let Err(e) = userlib::sleep(NAP_US) {
            log!("sleeper: sleep refused: {e}");
            return 1;
        }
        let slept_us = (userlib::counter() - before) * 1_000_000 / hz;
        if slept_us < NAP_US {
            log!("sleeper: woke after {slept_us} us, before its {NAP_US} us nap ended");
            return 1;
        }
        worst_us = worst_us.max(slept_us - NAP_US);
    }
    if worst_us > LATE_LIMIT_US {
        log!("sleeper: a wake-up came {worst_us} us late (limit {LATE_LIMIT_US} us)");
        return 1;
    }
    log!(
        "sleeper: {naps} naps of {NAP_US} us over a spinning lower-priority task, worst lateness {worst_us} us"
    );
    0
}

fn simd(info: &TaskInfo<'_>) -> i32 {
    let seed = userlib::arg_u64(info, "seed", 1).unwrap_or(1);
    let rounds = userlib::arg_u64(info, "rounds", 10).unwrap_or(10);
    // Distinct in every register, every byte lane and every task.
    let pattern: [u128; 32] = core::array::from_fn(|i| {
        let lane = (seed << 8 | i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (u128::from(lane) << 64) | u128::from(!lane)
    });
    // 12 ms per round: more than the 10 ms tick, so the other task runs.
    let held = userlib::task::hold_vector_registers(&pattern, rounds, 12_000);
    let differs = |i: &usize| held[*i] != pattern[*i];
    match (0..32).find(differs) {
        None => {
            log!("simd: v0..v31 held this task's values over {rounds} yields and preemptions");
            0
        }
        Some(first) => {
            log!(
                "simd: {} of 32 vector registers changed behind this task's back (first v{first}: {:#x}, expected {:#x})",
                (0..32).filter(differs).count(),
                held[first],
                pattern[first]
            );
            1
        }
    }
}
