//! The calling task's own life: [`exit`] and [`yield_now`]; and what the
//! kernel tells any task about the machine ([`kernel_integrity`]) or a
//! monitor about its memory ([`frame_stats`]).

use abi::{FrameCounts, SysResult, Sysno};

use crate::raw::check;
use crate::sys::syscall;

/// Ends the calling task with `code` (x0, sign-extended). Never returns.
pub fn exit(code: i32) -> ! {
    let _ = syscall(Sysno::Exit as u64, [code as i64 as u64, 0, 0, 0, 0, 0]);
    // The kernel never resumes an exited task; if it ever did, stay put.
    loop {
        let _ = yield_now();
    }
}

/// Whether the kernel's code and read-only data are unchanged since boot,
/// and their checksum now.
pub fn kernel_integrity() -> SysResult<(bool, u64)> {
    check(syscall(Sysno::Integrity as u64, [0; 6])).map(|r| (r[1] == 1, r[2]))
}

/// The kernel's frame ledger by state (only with a monitor capability).
pub fn frame_stats(monitor_cap: u32) -> SysResult<FrameCounts> {
    check(syscall(
        Sysno::FrameStats as u64,
        [u64::from(monitor_cap), 0, 0, 0, 0, 0],
    ))
    .map(|r| FrameCounts::from_regs([r[1], r[2], r[3]]))
}

/// Yields the CPU to another ready task of equal priority.
pub fn yield_now() -> SysResult<()> {
    check(syscall(Sysno::Yield as u64, [0; 6])).map(|_| ())
}

/// Holds a pattern in the vector registers over `rounds` yields and
/// preemptions (each round spins `spin_us`) and returns what the registers
/// held afterwards: a probe of the kernel's FP/SIMD context switching.
pub fn hold_vector_registers(pattern: &[u128; 32], rounds: u64, spin_us: u64) -> [u128; 32] {
    let hz = crate::time().map(|(_, hz)| hz).unwrap_or(1).max(1);
    crate::sys::hold_vector_registers(pattern, rounds, spin_us * hz / 1_000_000)
}
