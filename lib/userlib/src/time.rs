//! Time: the kernel's view ([`time`], [`sleep`]), the architecture's
//! counter read directly in user mode ([`counter`]), for timing short
//! intervals without a syscall, and [`Counter`], that counter as the clock
//! of the shared bounded wait [`mmio::poll_until`]. Never waits without a
//! deadline.

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

/// The architecture's counter read directly in user mode (CNTVCT_EL0 on
/// aarch64, the TSC on x86_64). Its frequency is the `hz` of [`time`].
pub fn counter() -> u64 {
    crate::sys::counter()
}

/// [`counter`] as a [`mmio::Clock`] for [`mmio::poll_until`]: spins between
/// polls, or sleeps if made with [`Counter::sleeping`].
#[derive(Clone, Copy, Debug)]
pub struct Counter {
    hz: u64,
    pause_us: u64,
}

impl Counter {
    /// The counter at `hz` ticks per second (the `hz` of [`time`]; at
    /// least 1); spins between polls.
    pub fn new(hz: u64) -> Counter {
        Counter {
            hz: hz.max(1),
            pause_us: 0,
        }
    }

    /// The counter at the frequency the kernel reports (1 Hz if it does
    /// not answer, which only makes waits coarser).
    pub fn from_kernel() -> Counter {
        Counter::new(time().map(|(_, hz)| hz).unwrap_or(1))
    }

    /// The same clock, sleeping `us` microseconds between polls instead of
    /// spinning.
    pub fn sleeping(self, us: u64) -> Counter {
        Counter {
            pause_us: us,
            ..self
        }
    }

    /// Ticks per second.
    pub fn hz(&self) -> u64 {
        self.hz
    }

    /// Ticks in `us` microseconds (saturating).
    pub fn ticks(&self, us: u64) -> u64 {
        mmio::us_to_ticks(us, self.hz)
    }

    /// Microseconds in `ticks` counter ticks.
    pub fn micros(&self, ticks: u64) -> u64 {
        mmio::ticks_to_us(ticks, self.hz)
    }
}

impl mmio::Clock for Counter {
    fn now(&mut self) -> u64 {
        counter()
    }
    fn hz(&self) -> u64 {
        self.hz
    }
    fn pause(&mut self) {
        if self.pause_us == 0 {
            core::hint::spin_loop();
        } else {
            let _ = sleep(self.pause_us);
        }
    }
}
