//! A host-side software SMMUv3 for testing the IOMMU server: stage-1
//! translation with the 4 KiB granule, configuration caches (L1STD, STE,
//! CD), an IOTLB and a walk cache that behave like QEMU's emulated caches,
//! command execution, event records, and a detector that counts every
//! translation answered from a cache that memory no longer agrees with.
//!
//! This crate owns the model and nothing else. It decodes structures and
//! commands with the `smmuv3` crate's decoders (tested on their own) and
//! walks tables with its own walker ([`walk`]), never with the `pgtable`
//! crate it is meant to check. It must never be linked into a task, never
//! touch hardware, and never make up for a missing invalidation: cached
//! state is used until the server's commands remove it.
//!
//! Modelling choices:
//! - Structures with V == 0 or ILLEGAL ones are not cached (QEMU caches
//!   only decoded configurations); abort and bypass STEs are. CFGI_STE
//!   drops the STE and the CD cached through it [SMMUv3 §4.3.1]; with
//!   Leaf == 0 also the L1STD.
//! - The IOTLB caches successful translations only, tagged by ASID (not by
//!   StreamID: two streams sharing an ASID share entries). A TLBI by VA
//!   drops every entry of the ASID overlapping its range, ignoring TTL.
//! - The walk cache keeps the level-3 table of each (ASID, 2 MiB region);
//!   TLBI by VA with Leaf == 0, by ASID or of everything drops it, a
//!   Leaf == 1 TLBI does not. Higher-level table pointers are not cached.
//! - Permissions: `AP[2]` and `APTable[1]` make writes fault; `AP[1]` and
//!   `APTable[0]` (unprivileged access) are ignored, as QEMU checks only
//!   `AP[2]`; XN is ignored (no instruction fetches).
//! - Faults record one event per faulting transaction (QEMU writes one per
//!   4 bytes); CD.R == 0 suppresses translation-fault records.
#![forbid(unsafe_code)]

pub mod mem;
mod model;
mod tlb;
pub mod walk;

pub use mem::{PhysMem, SparseMem};
pub use model::{CmdError, Fault, ModelConfig, ModelStats, SmmuModel, StaleHit};
pub use smmuv3::regs::StrtabFormat;
pub use smmuv3::ste::Split;
