//! The server's public types: why it could not start or take a client,
//! its tunables, a call's grant and presented capability, what handling a
//! request produced, fault reports, server-wide counters and a client's
//! public view. Re-exported unchanged as `iommu_core::server::*`.
//!
//! Plain data, no logic beyond [`ReplyBytes`]' choice of inline or heap
//! storage: it must never hold or reach server state, and
//! never renumber a [`ServerError`] code (they are stable). Anything
//! changed here changes the crate's public API, which the task and the
//! tools use.

use alloc::vec::Vec;

use abi::{Iova, PhysAddr, StreamId};
use iommu_api::{ClientQuota, Response, Stats};
use smmuv3::evt::EventKind;

use super::spare::Pool;

#[cfg(doc)]
use super::Server;
use crate::engine::EngineConfig;
use crate::fault_ledger::QuarantineReason;
use crate::policy::{InvalidationPolicy, TrustLevel};

/// Why the server could not start or take a client. Codes are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ServerError {
    /// The SMMU lacks stage 1 with AArch64 4 KiB tables.
    Unsupported = 1,
    /// No memory for the stream table.
    NoMemory = 2,
    /// The initial invalidation failed.
    Hardware = 3,
    /// The policy is weaker than the client's trust level allows.
    NotPermitted = 4,
    /// A client with that badge exists.
    ClientExists = 5,
    /// The client's quota does not fit the heap budget left.
    HeapBudget = 6,
}

impl ServerError {
    /// The stable numeric code.
    pub const fn code(self) -> u16 {
        self as u16
    }
}

/// Tunables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// A client is quarantined once it has more than this many distinct
    /// (StreamID, page) faults.
    pub quarantine_after: u32,
    /// A client is quarantined once this many fault records were
    /// attributed to it, whatever their pages (a flood on one page).
    pub quarantine_records: u64,
    /// Lowest IOVA of every domain (page aligned, non-zero: IOVA 0 stays
    /// unmapped so that a zeroed descriptor faults).
    pub iova_base: u64,
    /// Coalesced fault records kept per client until it drains them.
    pub fault_records_kept: usize,
    /// Command choice; `None` derives it from IDR3.RIL.
    pub engine: Option<EngineConfig>,
    /// Quota of an untrusted client (strict policies).
    pub quota_untrusted: ClientQuota,
    /// Quota of a trusted client (deferred policies).
    pub quota_trusted: ClientQuota,
    /// Quota of the benchmark client.
    pub quota_bench: ClientQuota,
    /// Pool pages every domain's tables and CD may reserve together; each
    /// domain reserves its quota's worth when it is made. `None`: no
    /// bound (host tests whose memory is ample).
    pub table_budget: Option<u64>,
    /// Heap bytes every client's quota may reserve together (see
    /// `quota::heap_bytes`); a client that does not fit is not
    /// registered. `None`: no bound.
    pub heap_budget: Option<u64>,
    /// `Map` and `Unmap` requests of one range take their one-range paths
    /// (the default); `false` sends every request through the general
    /// handlers, as the property tests do to hold both to the same
    /// properties. Either way the answers and changes are the same.
    pub one_range_paths: bool,
}

impl ServerConfig {
    /// The quota of a client of `trust`.
    pub const fn quota(&self, trust: TrustLevel) -> ClientQuota {
        match trust {
            TrustLevel::Untrusted => self.quota_untrusted,
            TrustLevel::Trusted => self.quota_trusted,
            TrustLevel::Bench => self.quota_bench,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            quarantine_after: 16,
            // 64 faulted 4 KiB transfers (QEMU writes ~1,025 records each).
            quarantine_records: 65_536,
            iova_base: 0x10_0000,
            fault_records_kept: 64,
            engine: None,
            quota_untrusted: ClientQuota::default_for(TrustLevel::Untrusted),
            quota_trusted: ClientQuota::default_for(TrustLevel::Trusted),
            quota_bench: ClientQuota::default_for(TrustLevel::Bench),
            table_budget: None,
            heap_budget: None,
            one_range_paths: true,
        }
    }
}

/// The call's grant as the kernel delivered it.
#[derive(Clone, Copy, Debug)]
pub struct Grant<'a> {
    /// Physical frame of each granted page, from the page holding `va`.
    pub frames: &'a [PhysAddr],
    /// The caller's address of the grant's first byte (page offset kept).
    pub va: u64,
    /// Granted bytes.
    pub len: u64,
}

/// The PCI capability presented with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Presented {
    /// Requester ID (bus << 8 | dev << 3 | fn).
    pub rid: u32,
    /// Its StreamID (from the device tree's `iommu-map`).
    pub sid: StreamId,
}

/// Bytes a reply holds inline: every answer on the I/O path (`Mapped`
/// with up to six IOVAs, `Unmapped`, an error) without a heap allocation.
pub const REPLY_INLINE: usize = 56;

/// A reply's encoded bytes (read them as a `&[u8]`): inline up to
/// [`REPLY_INLINE`], on the heap beyond.
#[derive(Clone)]
pub struct ReplyBytes(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; REPLY_INLINE] },
    Heap(Vec<u8>),
}

impl ReplyBytes {
    /// A copy of `bytes`, or `None` if it needs the heap and the heap
    /// cannot hold it.
    pub fn try_from_slice(bytes: &[u8]) -> Option<Self> {
        Self::try_from_slice_in(bytes, &mut Pool::new(0))
    }

    /// [`ReplyBytes::try_from_slice`], its heap bytes (if it needs them)
    /// taken from `pool`.
    pub(super) fn try_from_slice_in(bytes: &[u8], pool: &mut Pool<u8>) -> Option<Self> {
        if bytes.len() > REPLY_INLINE {
            let mut v = pool.take(bytes.len()).ok()?;
            v.extend_from_slice(bytes);
            return Some(Self(Repr::Heap(v)));
        }
        Some(Self::inline(bytes))
    }

    /// Its heap bytes, if it has them (for a [`Pool`]).
    pub(super) fn into_heap(self) -> Option<Vec<u8>> {
        match self.0 {
            Repr::Heap(v) => Some(v),
            Repr::Inline { .. } => None,
        }
    }

    /// `r` encoded straight into the inline bytes, or `None` if it is
    /// longer than [`REPLY_INLINE`] (or does not encode): then encode it
    /// into a message buffer and copy it ([`ReplyBytes::try_from_slice`]).
    pub fn encode_inline(r: &Response<'_>) -> Option<Self> {
        let mut bytes = [0u8; REPLY_INLINE];
        let len = r.encode_into(&mut bytes).ok()?;
        Some(Self(Repr::Inline {
            len: len as u8,
            bytes,
        }))
    }

    /// `Mapped` of one IOVA, inline (always fits): what
    /// [`ReplyBytes::encode_inline`] makes of it, through the protocol's
    /// one-IOVA encoder.
    pub(crate) fn mapped_one(iova: Iova) -> Option<Self> {
        let mut bytes = [0u8; REPLY_INLINE];
        let len = Response::encode_mapped_one(iova, &mut bytes).ok()?;
        Some(Self(Repr::Inline {
            len: len as u8,
            bytes,
        }))
    }

    /// The first [`REPLY_INLINE`] bytes of `bytes`, inline.
    pub(crate) fn inline(bytes: &[u8]) -> Self {
        let len = bytes.len().min(REPLY_INLINE);
        let mut inline = [0u8; REPLY_INLINE];
        inline[..len].copy_from_slice(&bytes[..len]);
        Self(Repr::Inline {
            len: len as u8,
            bytes: inline,
        })
    }
}

impl core::ops::Deref for ReplyBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(v) => v,
        }
    }
}

impl PartialEq for ReplyBytes {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl Eq for ReplyBytes {}

impl AsRef<[u8]> for ReplyBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl core::fmt::Debug for ReplyBytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// What [`Server::handle`] did with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled<R> {
    /// Answer now with these bytes (the token is handed back).
    Reply(R, ReplyBytes),
    /// The reply is held; it comes back from [`Server::poll`].
    Held,
}

/// A fault attributed to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultReport {
    /// The owning client.
    pub badge: u32,
    /// The device.
    pub sid: StreamId,
    /// The event type.
    pub kind: EventKind,
    /// The faulting input address.
    pub iova: u64,
    /// A write access.
    pub write: bool,
    /// The first record of a new (StreamID, page) entry (worth logging).
    pub first: bool,
    /// This fault made the server quarantine the client.
    pub quarantined_now: bool,
    /// Why, when `quarantined_now`.
    pub reason: Option<QuarantineReason>,
    /// This fault demoted a trusted client to strict: its policy before.
    /// Its pending deferred unmaps were flushed (or, if the SMMU failed
    /// to, are flushed before its next reply).
    pub demoted_from: Option<InvalidationPolicy>,
    /// Records attributed to the client so far (lost ones included).
    pub records: u64,
    /// Of those, records counted as lost to event-queue overflows.
    pub lost: u64,
    /// Distinct (StreamID, page) faults counted so far.
    pub pages: u32,
}

/// What [`Server::on_event_overflow`](super::Server::on_event_overflow)
/// charged to a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverflowCharge {
    /// The client owning the stream whose records were being drained.
    pub badge: u32,
    /// The lost records made the server quarantine the client.
    pub quarantined_now: bool,
    /// Records attributed to the client so far (lost ones included).
    pub records: u64,
    /// Of those, records counted as lost to overflows.
    pub lost: u64,
    /// Distinct (StreamID, page) faults counted so far.
    pub pages: u32,
}

/// Server-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Doorbells (`submit` calls).
    pub doorbells: u64,
    /// CMD_SYNCs issued.
    pub syncs: u64,
    /// TLBI commands issued.
    pub tlbi_commands: u64,
    /// CFGI commands issued.
    pub cfgi_commands: u64,
    /// Event records seen.
    pub events: u64,
    /// Event records for StreamIDs no client owns.
    pub unattributed_events: u64,
    /// Failed submissions or syncs.
    pub hw_errors: u64,
    /// Clients quarantined.
    pub quarantines: u64,
    /// Frames pinned in the kernel (one per mapped page).
    pub pinned_frames: u64,
    /// Pin calls (at most one per `Map`).
    pub pin_calls: u64,
    /// Frames unpinned after their covering sync.
    pub unpinned_frames: u64,
    /// Unpin calls (at most one per completed sync batch).
    pub unpin_calls: u64,
    /// Maps refused because the kernel would not pin a frame.
    pub pin_refusals: u64,
    /// Event-queue overflows the task reported (`Server::on_event_overflow`).
    pub event_overflows: u64,
    /// Trusted clients demoted to strict after a fault.
    pub demotions: u64,
}

/// A client as [`Server::clients`] shows it.
#[derive(Clone, Copy, Debug)]
pub struct ClientInfo<'a> {
    /// Badge.
    pub badge: u32,
    /// Name from the system description.
    pub name: &'a str,
    /// Invalidation policy.
    pub policy: InvalidationPolicy,
    /// Trust level.
    pub trust: TrustLevel,
    /// Attached streams.
    pub sids: &'a [StreamId],
    /// Quarantined after faults.
    pub quarantined: bool,
    /// Counters.
    pub stats: Stats,
}

/// What server time charged to a client was spent on: the `Stats` phase
/// counters (`map_ticks`, `unmap_ticks`, `flush_ticks`, `pin_ticks`; the
/// rest of `server_ticks` is [`Phase::Other`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Handling its `Map` requests, less the kernel's pin calls.
    Map,
    /// Handling its `Unmap` requests, less the kernel's unpin calls.
    Unmap,
    /// Its share of the flushes that covered its unmaps, less unpins.
    Flush,
    /// The kernel's pin and unpin calls for its frames.
    Pins,
    /// Every other request.
    Other,
}

impl Phase {
    /// The phase of a request with `op` (the protocol's op code).
    pub fn of_request(msg: &[u8]) -> Phase {
        match iommu_api::request_op(msg) {
            Some(iommu_api::Op::Map) => Phase::Map,
            Some(iommu_api::Op::Unmap) => Phase::Unmap,
            _ => Phase::Other,
        }
    }
}
