//! NVMe encodings and the driver's pure logic, host-tested: controller
//! registers ([`regs`]), submission and completion entries ([`cmd`]), ring
//! and command-id arithmetic ([`queue`]), PRP construction ([`prp`]),
//! identify data ([`identify`]) and the driver's DMA-memory plan
//! ([`layout`]). Citations are to the NVM Express Base Specification 2.0
//! (`NVMe-2.0`) and the NVM Command Set Specification 1.0 (`NVM-CS-1.0`).
//!
//! It must never touch hardware, read time (times are passed in) or
//! panic on anything a device wrote: every decoder is total.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod cmd;
pub mod identify;
pub mod layout;
pub mod prp;
pub mod queue;
pub mod regs;

/// A queue identifier: 0 is the admin queue pair [NVMe-2.0 §3.3.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueId(pub u16);

impl QueueId {
    /// The admin submission/completion queue pair.
    pub const ADMIN: QueueId = QueueId(0);
}

/// A command identifier, unique among a submission queue's commands in
/// flight [NVMe-2.0 §4.2, CDW0.CID].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid(pub u16);

/// A namespace identifier [NVMe-2.0 §3.2.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nsid(pub u32);
