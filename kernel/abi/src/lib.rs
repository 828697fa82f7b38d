//! The kernel's ABI: the one definition of every value that crosses the
//! kernel/task boundary: address and identifier newtypes, syscall numbers
//! and argument blocks, error codes, the fixed address-space layout.
//!
//! Both the kernel and every task use this crate. It must never contain
//! behaviour that only one side needs, and it never uses `unsafe`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod addr;
mod codes;
pub mod error;
pub mod ids;
pub mod syscall;

pub use addr::{Iova, PAGE_SHIFT, PAGE_SIZE, PhysAddr, VirtAddr};
pub use error::{Error, SysResult};
pub use ids::{Asid, StreamId};
pub use syscall::{
    FrameCounts, KERNEL_STATS_HEAD_BYTES, KERNEL_STATS_RESET_PEAKS, KernelCounters, LatencyPeaks,
    Sysno, TASK_NAME_MAX, TASK_TIME_BYTES,
};
