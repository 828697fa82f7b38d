//! The two binary formats that carry a system description from the host
//! tool to the running system:
//!
//! - [`image`]: the **boot image** QEMU loads into RAM beside the kernel:
//!   endpoints, tasks (ELF, info page, priority, DMA quota) and the
//!   capabilities each task starts with. The kernel decodes it.
//! - [`taskinfo`]: the **task info page**, mapped read-only into each task
//!   at [`abi::syscall::layout::TASK_INFO`]: its name, index, badge,
//!   capability names, arguments and clients. The task decodes it; the
//!   kernel only copies it.
//!
//! Each format has an encoder (host side, `alloc`) and a zero-copy decoder
//! that validates the whole input once in `parse` and never allocates.
//! This crate owns the byte layouts and their validation. It must never
//! panic on any input, never read outside the slice it was given, and never
//! know how the host tool spells a system description (that is `xtask`'s).
//! All integers are little-endian; each layout is written out once, in the
//! module doc of [`image`] and of [`taskinfo`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod bytes;
mod error;
pub mod image;
pub mod taskinfo;

pub use error::Error;
pub use image::{
    BootImage, BootImageBuilder, CapSpec, EndpointRecord, EndpointSpec, IrqSource, MmioRegion,
    SmmuIrq, TaskRecord, TaskSpec,
};
pub use taskinfo::{Client, TaskInfo, TaskInfoBuilder};
