//! The kernel's ABI: the one definition of every value that crosses the
//! kernel/task boundary (address and identifier newtypes, and, as the
//! microkernel grows, syscall numbers, message layout and error codes).
//!
//! Both the kernel and every task use this crate. It must never contain
//! behaviour that only one side needs, and it never uses `unsafe`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod addr;
pub mod ids;

pub use addr::{Iova, PAGE_SHIFT, PAGE_SIZE, PhysAddr, VirtAddr};
pub use ids::{Asid, StreamId};
