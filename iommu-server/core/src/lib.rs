//! The IOMMU server's pure core: per-domain IOVA allocation ([`iova`]), the
//! invalidation policies a client's trust level selects ([`policy`]) and the
//! invalidation engine that batches IOTLB maintenance across every client
//! ([`engine`]).
//!
//! It owns decisions, never hardware: it reads no clock (time is passed in),
//! touches no register, encodes no SMMU command and never panics on client
//! input. Its outputs are abstract [`engine::Invalidation`] commands that the
//! server's hardware layer encodes and issues.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod engine;
pub mod iova;
pub mod policy;

pub use engine::{
    ClientId, ClientStats, Engine, EngineConfig, EngineError, EngineStats, FlushPlan, FlushUrgency,
    Invalidation, IovaRange, LeafLevel, PurgeOutcome, Refused, Released, Reply, ReplyAction,
    SyncSeq, UnmapHint, UnmapOutcome,
};
pub use iova::{IovaAllocator, IovaError};
pub use policy::{InvalidationPolicy, PolicyError, TrustLevel};
