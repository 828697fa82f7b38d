//! The IOMMU server's logic, generic over the hardware ([`SmmuHw`]) and
//! over the task's held-reply token `R`: clients and their domains (one
//! ASID, one stage-1 table, one CD and one IOVA window each), the stream
//! table, the protocol's requests ([`iommu_api`]), fault attribution and
//! quarantine, and client death. Unmaps only queue work in the
//! invalidation [`Engine`]; [`Server::poll`] issues it with one doorbell and
//! one CMD_SYNC shared by every client, then releases IOVAs, table pages
//! and held replies.
//!
//! It must never release an IOVA, a table page, a CD or an ASID before the
//! sync that covers its last use; never map a frame it has not pinned in
//! the kernel, nor unpin one before the sync that covers its unmap; never point a stream at anything but
//! abort unless a client that presented the device's capability attached
//! it; never let a stream bypass translation unless its client is the
//! benchmark client ([`TrustLevel::Bench`]) and switched itself into
//! bypass; never panic on client input or device state; and never read a
//! clock (time is passed in). A refused request changes nothing.
//!
//! # Layout
//!
//! [`Server`] is defined here; its methods are spread over one child
//! module per role, each of which states what it owns and the invariants
//! it keeps, beside the code that keeps them:
//! - `types`: the public types of the API (re-exported here);
//! - `state`: clients, domains, the ASID pool and what a sync releases;
//!   construction and client registration;
//! - `dispatch`: decoding a call and routing it; reply encoding;
//! - `requests`: the protocol's generated `Handler`, one method per
//!   request, each forwarding to its role's handler;
//! - `attach`: pointing a stream at a domain, making the domain;
//! - `map` and `unmap`: the requests that change a domain's mappings;
//! - `one`: their one-range paths (the I/O path's usual request), which
//!   hand anything else to them;
//! - `flush`: `Flush`, [`Server::poll`], issuing plans, and releasing what
//!   a completed sync covered (the only place anything is freed);
//! - `policy`: the benchmark client's policy switching and bypass;
//! - `faults`: counters, time charging, fault attribution, quarantine;
//! - `monitor`: a monitor's `Overview` (totals and client summaries);
//! - `quota`: per-client quotas, the table and heap reservations;
//! - `few` and `spare`: a request's short lists inline, and the heap lists
//!   batched requests reuse;
//! - `death`: a client's death.

mod attach;
mod death;
mod dispatch;
mod faults;
mod few;
mod flush;
mod hw;
mod map;
mod monitor;
mod one;
mod policy;
pub mod quota;
mod requests;
mod spare;
mod state;
mod strtab;
mod types;
mod unmap;

use alloc::vec::Vec;

use abi::PhysAddr;
use smmuv3::idr::Features;

use crate::engine::{Engine, SyncSeq};
#[cfg(doc)]
use crate::policy::TrustLevel;
use crate::sorted::SortedMap;

pub use hw::{HwError, SmmuHw};
use state::{AsidPool, Client, Payload};
use strtab::StreamTable;
pub use types::{
    ClientInfo, FaultReport, Grant, Handled, OverflowCharge, Phase, Presented, REPLY_INLINE,
    ReplyBytes, ServerConfig, ServerError, ServerStats,
};

/// MAIR of every domain: attribute 0 is Normal Write-Back (RW-allocate).
pub const DOMAIN_MAIR: u64 = 0xff;
/// The MAIR index DMA mappings use.
const MAIR_NORMAL: u8 = 0;
/// Up to this many ranges a request's checks and bookkeeping stay on the
/// stack (a protocol message holds at most `MAX_REQUEST_ENTRIES`).
const SMALL_LIST: usize = iommu_api::MAX_REQUEST_ENTRIES;
/// Narrowest and widest domain input sizes (CD.T0SZ limits without STT).
const MIN_IAS: u8 = 25;
const MAX_IAS: u8 = 48;

/// The IOMMU server's state. See the module documentation.
pub struct Server<H, R> {
    hw: H,
    features: Features,
    cfg: ServerConfig,
    strtab: StreamTable,
    engine: Engine<Payload<R>>,
    clients: SortedMap<u32, Client>,
    /// StreamID -> owning badge (grown with `try_reserve`).
    streams: hashbrown::HashMap<u32, u32>,
    asids: AsidPool,
    /// Released held replies for the next `poll`.
    outbox: Vec<(R, ReplyBytes)>,
    /// Replies of dead clients, for `client_died`.
    dropped: Vec<(R, ReplyBytes)>,
    /// `Flush` requests waiting for their client's pending work.
    flush_waiters: Vec<(u32, R)>,
    /// A plan whose commands or sync failed: retried by `poll`.
    unsynced: Option<SyncSeq>,
    /// A completed plan whose releases stopped for want of heap room for
    /// their replies: continued by `poll`.
    unreleased: Option<SyncSeq>,
    last_now: u64,
    stats: ServerStats,
    /// Clients whose unmaps the plans issued by the last `poll` covered.
    flushed: Vec<u32>,
    /// Frames whose covering sync completed, unpinned in one batch
    /// (`flush::flush_unpins`), then cleared, keeping its room.
    unpins: Vec<PhysAddr>,
    /// The encoded commands of the last plan issued, cleared, kept for
    /// the next (a plan's batch grew from nothing at every flush).
    cmds: Vec<[u64; 2]>,
    /// Pool pages reserved by every live domain (`quota`), at most
    /// `ServerConfig::table_budget`.
    table_reserved: u64,
    /// Heap reserved by every registered client's quota, at most
    /// `ServerConfig::heap_budget`.
    heap_reserved: u64,
    /// Badges of the monitors (at most [`MAX_MONITORS`]): they may read
    /// every client's counters and nothing else.
    monitors: Vec<u32>,
    /// A message buffer of zeros ([`iommu_api::MSG_MAX`] bytes) that the
    /// replies of maps and unmaps are encoded in, and left zeroed.
    zeroed: Vec<u8>,
    /// Lists the batched requests and their replies reuse.
    spare: spare::Spares,
}

/// Most monitors one server registers.
pub const MAX_MONITORS: usize = 8;
