//! The SMMUv3 hardware layer of an SMMU owner task: the registers and
//! queues (`smmu`) and the DMA page pool the SMMU's tables and queues
//! live in (`pool`). Used by the IOMMU server task, and in-process by the
//! ceiling benchmark (benches/ceiling). It decides nothing about clients
//! or mappings (that is `iommu_core::server`) and must never be linked
//! into a task that does not hold the SMMU-owner capability.
#![no_std]
#![forbid(unsafe_code)]

pub mod pool;
pub mod smmu;

pub use pool::{Pool, PoolError};
pub use smmu::{BringUpError, EVTQ_LOG2, Found, HwCounters, Smmu};
