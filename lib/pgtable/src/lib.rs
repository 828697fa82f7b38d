//! VMSAv8-64 stage-1 translation tables with the 4 KiB granule, one
//! implementation for both users of the format: the kernel (each task's CPU
//! address space, TTBR0_EL1, indexed by `VirtAddr`) and the IOMMU server
//! (each client's SMMUv3 stage-1 domain, CD.TTB0, indexed by `Iova`). The
//! two differ only in the [`Attrs`] they ask for.
//!
//! This crate owns the descriptor format and the walks. It never touches
//! hardware registers, never issues TLB maintenance, and never frees a
//! page: table memory is reached through the caller's [`TableMemory`], and
//! pages leaving a table travel back to the caller in an [`Unmapped`] token
//! (or from [`PageTable::destroy`]) to be freed after invalidation.
//!
//! The x86-64 4-level format (the kernel's task spaces on x86_64) is the
//! same walker over [`x86::X86Memory`], which converts each descriptor at
//! the table-memory boundary.
//!
//! What callers set:
//! - Kernel: `Config::new(48, pa_bits)` (or 39), [`Attrs::user_data`] /
//!   [`Attrs::user_code`] with nG = 1 for task memory; blocks may be
//!   forbidden with [`LargestLeaf::Page`].
//! - IOMMU server: `Config::new(cd_ias, smmu_oas)` and [`Attrs::dma`]: AP\[1\]
//!   = 1 so a transaction of either PnU is allowed, AP\[2\] = 0 only when the
//!   device may write, XN, nG = 1 (entries tagged with the domain's ASID),
//!   AF = 1 always (no HTTU on QEMU's SMMU).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod config;
mod counts;
pub mod desc;
mod error;
mod memory;
mod run;
mod table;
mod token;
mod unmap;
pub mod x86;

#[cfg(test)]
mod tests;

pub use config::{Config, InputAddress, LargestLeaf};
pub use desc::{Access, Attrs, Shareability};
pub use error::{MapError, NewError, UnmapError};
pub use memory::TableMemory;
pub use table::{PageTable, Translation};
pub use token::{Unmapped, UnmappedRange};
