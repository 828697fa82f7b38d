//! IPC benchmark task: times `arg("calls")` (default 20000) round trips of
//! an 8-byte message to the echo server with the EL0 counter, after 100
//! warm-up calls, and logs mean, p50, p99 and max in counter ticks. It
//! reports figures; it checks nothing but that every call succeeds.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

use userlib::{TaskInfo, log};

userlib::entry!(main);

/// Calls made before timing starts.
const WARMUP: usize = 100;

fn main(info: &TaskInfo<'static>) -> i32 {
    let Some(echo) = info.cap("echo") else {
        log!("ipc-bench: needs capability `echo`");
        return 1;
    };
    let calls = match userlib::arg_u64(info, "calls", 20_000) {
        Ok(n) if n > 0 => n as usize,
        _ => {
            log!("ipc-bench: bad calls argument {:?}", info.arg("calls"));
            return 1;
        }
    };
    let hz = match userlib::time() {
        Ok((_, hz)) if hz > 0 => hz,
        Ok(_) => {
            log!("ipc-bench: kernel reports a 0 Hz counter");
            return 1;
        }
        Err(e) => {
            log!("ipc-bench: time refused: {e}");
            return 1;
        }
    };
    // Baseline: a syscall that does no IPC (trap, dispatch, return).
    let null_start = userlib::counter();
    for _ in 0..calls {
        let _ = userlib::time();
    }
    let null_mean = userlib::counter().wrapping_sub(null_start) / calls as u64;
    log!("ipc-bench: null syscall (time) mean {null_mean} ticks over {calls} calls");

    let mut ticks: Vec<u64> = Vec::with_capacity(calls);
    let mut reply = [0u8; 8];
    for i in 0..WARMUP + calls {
        let msg = (i as u64).to_le_bytes();
        let start = userlib::counter();
        let result = userlib::call(echo, &msg, &mut reply, None, None);
        let end = userlib::counter();
        match result {
            Ok(8) => {}
            Ok(n) => {
                log!("ipc-bench: call {i}: reply of {n} bytes, expected 8");
                return 1;
            }
            Err(e) => {
                log!("ipc-bench: call {i} refused: {e}");
                return 1;
            }
        }
        if i >= WARMUP {
            ticks.push(end.wrapping_sub(start));
        }
    }
    ticks.sort_unstable();
    let n = ticks.len();
    let total: u128 = ticks.iter().map(|&t| t as u128).sum();
    let mean = total / n as u128;
    let mean_ns = total * 1_000_000_000 / (n as u128 * hz as u128);
    // Nearest-rank percentiles.
    let pct = |p: usize| ticks[(n * p).div_ceil(100).clamp(1, n) - 1];
    log!(
        "ipc-bench: {n} calls, mean {mean} ticks, p50 {}, p99 {}, max {} ticks; counter {hz} Hz (mean {mean_ns} ns)",
        pct(50),
        pct(99),
        ticks[n - 1]
    );
    0
}
