//! Time: the kernel's view ([`time`], [`sleep`]) and the architected
//! virtual counter read directly at EL0 ([`counter`]), for timing short
//! intervals without a syscall.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{CNTVCT_EL0, Readable};
use abi::{SysResult, Sysno};

use crate::raw::check;
use crate::sys::syscall;

/// The counter and its frequency: `(ticks, hz)`.
pub fn time() -> SysResult<(u64, u64)> {
    check(syscall(Sysno::Time as u64, [0; 6])).map(|r| (r[1], r[2]))
}

/// Blocks for at least `us` microseconds.
pub fn sleep(us: u64) -> SysResult<()> {
    check(syscall(Sysno::Sleep as u64, [us, 0, 0, 0, 0, 0])).map(|_| ())
}

/// CNTVCT_EL0, read at EL0 (the kernel enables EL0 access), after an ISB
/// so that it is not read ahead of earlier instructions. Its frequency is
/// the `hz` of [`time`].
pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}
