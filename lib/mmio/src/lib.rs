//! Device-register access in one place, for the kernel, the tasks and the
//! host-tested encoding crates alike.
//!
//! - [`Reg`]: a register declared as data, a byte offset and a width (the
//!   type parameter), optionally named. Declaring registers needs no
//!   `unsafe`, so `forbid(unsafe_code)` crates (`smmuv3`, `nvme-core`,
//!   `virtio-core`) declare theirs with it and are tested on the host.
//! - [`Region`]: a base pointer and a length. The only code in the project
//!   that loads or stores device memory: one volatile access of the
//!   register's width per call, bounds- and alignment-checked, never a
//!   `&`/`&mut` to the memory. The kernel builds one from its linear map,
//!   userlib from a mapping the kernel returned.
//! - [`poll_until`]: the one bounded wait, generic over a [`Clock`] (the
//!   kernel and the tasks both read CNTVCT_EL0; tests use a fake clock).
//!
//! Why not an existing crate: `safe-mmio` shares our rule (never a
//! reference to MMIO) but describes a device as a `#[repr(C)]` struct of
//! field wrappers reached by projection macros. Our registers are offset
//! constants, and several are only known at run time (NVMe doorbells from
//! CAP.DSTRD, virtio structures from PCI capabilities, SMMU page-1
//! registers 64 KiB in), and the encoding crates must declare them without
//! depending on an access layer. `tock-registers` hands out references to
//! device memory, which we never do.
//!
//! This crate must never create a reference to device memory, never access
//! it other than by one volatile load or store of a sealed integer type,
//! and never wait without a deadline.
#![no_std]
#![deny(unsafe_code)]

mod reg;
#[allow(unsafe_code)]
mod region;
mod wait;

pub use reg::{Reg, Value};
pub use region::{OutOfRange, Region};
pub use wait::{Clock, TimedOut, poll_until, ticks_to_us, us_to_ticks};
