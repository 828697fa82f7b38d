//! Hardware projection of the NVMe benchmark: replays the operations counted
//! per I/O in a QEMU run (IPC round trips, TLBI commands, CMD_SYNCs,
//! command-queue doorbells, map and unmap requests) through a latency model
//! of a real Arm server with an SMMUv3 and an NVMe SSD, and reports projected
//! IOPS, the ratio to bypass and where the CPU time goes.
//!
//! It owns the latency model ([`Model`], its defaults and their sources, see
//! `MODEL.md` beside this crate) and its calibration against the published
//! Linux measurement ([`calibration`]). It must never present a projection as
//! a measurement, never read wall-clock time from the QEMU run (under
//! emulation only the counts mean anything), and never tune a default to make
//! a mode look better: the SMMU's costs are anchored to Linux's strict / lazy
//! figures, not to this system's results.
//!
//! Host-only; called by `cargo xtask bench`.

#![forbid(unsafe_code)]

pub mod calibration;
mod counts;
mod model;
mod project;

pub use counts::{Counts, Key};
pub use model::{Model, ModelError};
pub use project::{Bound, Breakdown, Projection, project, project_all};

/// The benchmark mode of a point: the invalidation policy the driver ran
/// under. Its names (`bypass`, `strict-per-unmap`, `strict`, `deferred`,
/// `deferred:<entries>:<age_us>`) are the system description's, parsed by
/// the policy's own `FromStr`.
pub use iommu_api::InvalidationPolicy as Mode;
