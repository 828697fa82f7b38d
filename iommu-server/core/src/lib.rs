//! The IOMMU server's pure core: per-domain IOVA allocation ([`iova`]), the
//! invalidation policies a client's trust level selects ([`policy`]) and the
//! invalidation engine that batches IOTLB maintenance across every client
//! ([`engine`]), each client's fault ledger with the quarantine decision
//! ([`fault_ledger`]), and how far ahead the server flushes deferred
//! windows around a call ([`lead`]).
//!
//! [`server`] puts them together with the page tables and the SMMU
//! encodings into the server's whole logic, generic over the hardware
//! ([`server::SmmuHw`]) so that host tests run it on a software SMMU.
//!
//! It owns decisions, never registers: it reads no clock (time is passed
//! in), touches hardware only through [`server::SmmuHw`], and never panics
//! on client input or device state.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod engine;
pub mod fault_ledger;
pub mod iova;
pub mod lead;
pub mod policy;
pub mod server;
mod sorted;

pub use engine::{
    ClientId, ClientStats, Engine, EngineConfig, EngineError, EngineStats, FlushPlan, FlushUrgency,
    Invalidation, IovaRange, LeafLevel, PurgeOutcome, Refused, Released, Reply, ReplyAction,
    SyncSeq, UnmapHint, UnmapOutcome, UnmapRoom, Unmapping,
};
pub use iova::{IovaAllocator, IovaError};
pub use lead::Lead;
pub use policy::{InvalidationPolicy, PolicyError, TrustLevel};
