//! The server's internal state: a client, its domain and the domain's
//! stage-1 part (ASID, table, CD, IOVA window, and the walk-cache regions
//! made stale by freed tables), its mappings, the ASID pool, and what an
//! unmap releases once its covering sync completed ([`Payload`]); the
//! server's construction, accessors and client registration.
//!
//! It must never let a stream start anywhere but abort (the stream table
//! is built aborting and every configuration and TLB entry invalidated
//! before the task enables the SMMU), never register a client in bypass
//! or with a policy weaker than its trust level allows, and never hand
//! out an ASID still in use (one is recycled only through a [`Payload`],
//! after its domain's teardown sync).

use alloc::string::String;
use alloc::vec::Vec;

use abi::{Asid, Iova, PAGE_SIZE, PhysAddr, StreamId};
use iommu_api::{ApiError, ClientQuota, Response};
use pgtable::{PageTable, TableMemory};
use smmuv3::cmd::Command;
use smmuv3::regs::StrtabCfg;

use super::ReplyBytes;
use super::Server;
use super::dispatch::{error_bytes, reply_bytes};
use super::hw::{HwError, SmmuHw};
use super::spare::Pool;
use super::strtab::StreamTable;
use super::types::{Phase, ServerConfig, ServerError, ServerStats};
use crate::engine::{ClientId, Engine, EngineConfig};
use crate::fault_ledger::{FaultLedger, QuarantineReason};
use crate::iova::IovaAllocator;
use crate::policy::{InvalidationPolicy, TrustLevel};
use crate::sorted::SortedMap;

/// What is released after an unmap's covering sync.
pub(super) struct Payload<R> {
    pub(super) badge: u32,
    /// The IOVA block of an unmap (start, pages asked of the allocator).
    pub(super) iova: Option<(Iova, u64)>,
    /// More IOVA blocks (a failed map's).
    pub(super) iovas: Vec<(Iova, u64)>,
    /// Single table pages.
    pub(super) tables: Vec<PhysAddr>,
    /// A client's teardown: what it releases waits in the dead client's
    /// record ([`Client::teardown`]), so that every unmap's payload, which
    /// the engine moves, stays small, and a death allocates nothing.
    pub(super) teardown: bool,
    /// A held reply and the answer it gets.
    pub(super) reply: Option<(R, Answer)>,
    /// Walk-cache regions this unmap made stale (freed tables).
    pub(super) stale_walks: StaleKeys,
    /// Frames the unmapped entries reached: unpinned after the sync.
    pub(super) unpins: FrameList,
}

/// What a client's teardown releases after its sync: its domain's table,
/// CD and ASID, the frames its mappings reached (the domain's own records,
/// moved here rather than copied), and its streams' STEs.
#[derive(Default)]
pub(super) struct Teardown {
    /// The domain's stage-1 table, freed page by page.
    pub(super) table: Option<PageTable<Iova>>,
    /// Its translated mappings, whose frames are unpinned.
    pub(super) mappings: Mappings,
    /// Its bypass mappings, whose frames are unpinned.
    pub(super) bus: BusMap,
    /// A CD page.
    pub(super) cd: Option<PhysAddr>,
    /// An ASID to recycle.
    pub(super) asid: Option<Asid>,
    /// STEs (now abort) whose other words are cleared after the sync.
    pub(super) aborted: Vec<PhysAddr>,
    /// Pool pages a torn-down domain had reserved (`quota`), given back
    /// with its tables and CD.
    pub(super) reserved: u64,
}

impl<R> Payload<R> {
    pub(super) fn new(badge: u32) -> Self {
        Self {
            badge,
            iova: None,
            iovas: Vec::new(),
            tables: Vec::new(),
            teardown: false,
            reply: None,
            stale_walks: StaleKeys::None,
            unpins: FrameList::Empty,
        }
    }
}

/// The answer of a held `Unmap` reply, kept as what it says (8 bytes) in
/// the engine's entry and encoded only when the reply goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Answer {
    /// `Unmapped { faults_pending }`.
    Unmapped(u32),
    /// An error.
    Error(ApiError),
}

impl Answer {
    /// The reply's bytes.
    pub(super) fn bytes(self) -> ReplyBytes {
        match self {
            Self::Unmapped(faults_pending) => reply_bytes(&Response::Unmapped { faults_pending }),
            Self::Error(e) => error_bytes(e),
        }
    }
}

/// The walk-cache keys (level, address >> that level's shift) an unmap
/// made stale: one inline (an IOVA block under 2 MiB is naturally aligned,
/// so its freed tables leave one stale region), more in a vector whose
/// room is reserved before the unmap clears anything
/// ([`StaleKeys::with_room`]).
pub(super) enum StaleKeys {
    None,
    One((u8, u64)),
    Many(Vec<(u8, u64)>),
}

impl StaleKeys {
    /// Room for `n` keys (none from the heap for one), or `None`. (Not
    /// through [`StaleKeys::with_room_in`] and a pool of none: that cost
    /// the one-range unmap 26 instructions.)
    #[inline(always)]
    pub(super) fn with_room(n: usize) -> Option<Self> {
        if n <= 1 {
            return Some(Self::None);
        }
        let mut v = Vec::new();
        v.try_reserve_exact(n).ok()?;
        Some(Self::Many(v))
    }

    pub(super) fn as_slice(&self) -> &[(u8, u64)] {
        match self {
            Self::None => &[],
            Self::One(k) => core::slice::from_ref(k),
            Self::Many(v) => v,
        }
    }

    pub(super) fn contains(&self, k: &(u8, u64)) -> bool {
        self.as_slice().contains(k)
    }

    /// [`StaleKeys::with_room`], its list (for more than one) taken from
    /// `pool`; `NoMemory` if the heap cannot hold it.
    #[inline(always)]
    pub(super) fn with_room_in(n: usize, pool: &mut Pool<(u8, u64)>) -> Result<Self, ApiError> {
        Ok(if n <= 1 {
            Self::None
        } else {
            Self::Many(pool.take(n)?)
        })
    }

    /// Its list, if it has one, back to `pool`.
    #[inline]
    pub(super) fn give_back(self, pool: &mut Pool<(u8, u64)>) {
        if let Self::Many(v) = self {
            pool.put(v);
        }
    }

    /// Adds `k` within the reserved room; `false` (nothing added) past it.
    pub(super) fn push(&mut self, k: (u8, u64)) -> bool {
        match self {
            Self::None => *self = Self::One(k),
            Self::Many(v) if v.len() < v.capacity() => v.push(k),
            _ => return false,
        }
        true
    }
}

/// Walk-cache regions of the 2 MiB steps of `len` bytes at `va`: the most
/// stale keys an unmap of them can leave (one per step, see `stop_key`).
pub(super) fn stale_room(va: u64, len: u64) -> usize {
    let last = va.saturating_add(len.max(1) - 1);
    ((last >> 21) - (va >> 21) + 1) as usize
}

/// Table pages below the root that an unmap of `len` bytes at `va` can
/// free: one per last-level, level-2 and level-1 table region it touches.
pub(super) fn table_room(va: u64, len: u64) -> usize {
    let last = va.saturating_add(len.max(1) - 1);
    [21u32, 30, 39]
        .iter()
        .map(|&s| ((last >> s) - (va >> s) + 1) as usize)
        .sum()
}

/// Records a stale walk-cache key of an unmap: counted in the domain (room
/// reserved before the unmap cleared anything) and listed in its payload,
/// which takes it back after the covering sync. A key the payload has no
/// room for (never, by the reservations) stays counted for good: maps
/// there flush first, which is slow but never unsafe.
pub(super) fn note_stale(
    walks: &mut hashbrown::HashMap<(u8, u64), u32>,
    keys: &mut StaleKeys,
    k: (u8, u64),
) {
    if keys.contains(&k) {
        return;
    }
    // Unlisted, the count is never taken back: the region stays stale.
    let _listed = keys.push(k);
    *walks.entry(k).or_insert(0) += 1;
}

/// A list of frames: a one-page mapping's inline (no heap allocation on
/// the hot path), longer ones on the heap.
pub(super) enum FrameList {
    Empty,
    One(PhysAddr),
    Many(Vec<PhysAddr>),
}

impl FrameList {
    /// A copy of `frames`, or `None` if the heap cannot hold it (never an
    /// infallible growth on client input). Always inlined: as a call (as
    /// the one-range map's other changes made it) it cost a one-page map
    /// about 25 instructions more.
    #[inline(always)]
    pub(super) fn try_copy(frames: &[PhysAddr]) -> Option<Self> {
        Some(match frames {
            [] => Self::Empty,
            [one] => Self::One(*one),
            many => {
                let mut v = Vec::new();
                v.try_reserve_exact(many.len()).ok()?;
                v.extend_from_slice(many);
                Self::Many(v)
            }
        })
    }

    /// The frames of `v`, inline if there is one.
    pub(super) fn from_vec(v: Vec<PhysAddr>) -> Self {
        match v.as_slice() {
            [] => Self::Empty,
            [one] => Self::One(*one),
            _ => Self::Many(v),
        }
    }

    pub(super) fn as_slice(&self) -> &[PhysAddr] {
        match self {
            Self::Empty => &[],
            Self::One(f) => core::slice::from_ref(f),
            Self::Many(v) => v,
        }
    }

    /// Moves its frames to the end of `out` (callers reserve the room);
    /// returns its emptied list, if it had one (for a [`Pool`]).
    pub(super) fn append_to(&mut self, out: &mut Vec<PhysAddr>) -> Option<Vec<PhysAddr>> {
        match core::mem::replace(self, Self::Empty) {
            Self::Empty => None,
            Self::One(f) => {
                out.push(f);
                None
            }
            Self::Many(mut v) => {
                out.append(&mut v);
                Some(v)
            }
        }
    }
}

/// A bypass domain's mappings: (bus address, length) -> how many times
/// mapped, sorted by key, grown only within room reserved with
/// [`BusMap::try_reserve`].
#[derive(Default)]
pub(super) struct BusMap(Vec<((u64, u64), u32)>);

impl BusMap {
    /// Room for `n` more mappings, or `Err`.
    pub(super) fn try_reserve(&mut self, n: usize) -> Result<(), ()> {
        self.0.try_reserve(n).map_err(|_| ())
    }

    /// One more mapping of `key` (room reserved; without it, a new key is
    /// not recorded, which only a caller that did not reserve can see).
    pub(super) fn add(&mut self, key: (u64, u64)) {
        match self.0.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(at) => {
                if let Some((_, n)) = self.0.get_mut(at) {
                    *n = n.saturating_add(1);
                }
            }
            Err(at) if self.0.len() < self.0.capacity() => self.0.insert(at, (key, 1)),
            Err(_) => {}
        }
    }

    /// One mapping of `key` fewer.
    pub(super) fn take(&mut self, key: (u64, u64)) {
        if let Ok(at) = self.0.binary_search_by_key(&key, |(k, _)| *k) {
            match self.0.get_mut(at) {
                Some((_, n)) if *n > 1 => *n -= 1,
                _ => {
                    self.0.remove(at);
                }
            }
        }
    }

    pub(super) fn contains_key(&self, key: &(u64, u64)) -> bool {
        self.0.binary_search_by_key(key, |(k, _)| *k).is_ok()
    }

    /// Whether some mapping starts at `start` (whatever its length).
    pub(super) fn any_at(&self, start: u64) -> bool {
        let at = self.0.partition_point(|((s, _), _)| *s < start);
        self.0.get(at).is_some_and(|((s, _), _)| *s == start)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every (key, times mapped), by key.
    pub(super) fn iter(&self) -> impl Iterator<Item = ((u64, u64), u32)> + '_ {
        self.0.iter().copied()
    }
}

/// A domain's live translated mappings by returned IOVA: a hash table (a
/// map and an unmap each look one up; nothing needs them in order), grown
/// only with `try_reserve`.
pub(super) type Mappings = hashbrown::HashMap<u64, Mapping>;

/// Mapping records a translated domain's table is sized for when the
/// domain is made (its quota's mappings, up to this); past that it grows
/// fallibly.
pub(super) const RECORDS_PRESIZED: u64 = 4096;

/// A live translated mapping, keyed by its IOVA: it lies in the IOVA
/// block that starts at the key's page ([`Mapping::block`]).
pub(super) struct Mapping {
    pub(super) len: u64,
    /// The IOVA block it shares with the other ranges of its `Map` request
    /// (a key of [`Translated::packed`]), or 0: its own block.
    pub(super) packed: u64,
    /// The frames it reaches, pinned in the kernel at map time.
    pub(super) frames: FrameList,
}

impl Mapping {
    /// The pages of the mapping at `iova`: its first page and how many
    /// (for a mapping of its own block, the block asked of the allocator).
    pub(super) fn block(&self, iova: u64) -> (Iova, u64) {
        let offset = iova & (PAGE_SIZE - 1);
        (
            Iova::new(iova - offset),
            (offset + self.len).div_ceil(PAGE_SIZE),
        )
    }
}

pub(super) struct Translated {
    pub(super) asid: Asid,
    pub(super) table: PageTable<Iova>,
    pub(super) cd: PhysAddr,
    pub(super) iova: IovaAllocator,
    /// (level, input address >> that level's shift) of table descriptors
    /// cleared because the table below was freed, until the covering sync:
    /// a walk cache may still hold the old table there, so a map that
    /// links a new table in such a region must wait for that sync. Room
    /// for an unmap's keys is reserved before it clears anything.
    pub(super) stale_walks: hashbrown::HashMap<(u8, u64), u32>,
    /// Table pages its table holds (root and spares included), and freed
    /// ones until their sync released them: at most its quota.
    pub(super) table_pages: u64,
    /// Pool pages reserved for this domain when it was made (its quota of
    /// table pages and its CD).
    pub(super) reserved: u64,
    /// IOVA blocks that a `Map` of several ranges shares among them, by
    /// first address: the pages asked of the allocator and the ranges
    /// still mapped in it. The block goes back (after the covering sync)
    /// with its last range; grown only with `try_reserve`.
    pub(super) packed: hashbrown::HashMap<u64, Packed>,
}

/// A shared IOVA block (see [`Translated::packed`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct Packed {
    pub(super) pages: u64,
    pub(super) live: u32,
}

/// The walk-cache keys above `va` (levels 0..=2).
pub(super) fn walk_keys(va: u64) -> impl Iterator<Item = (u8, u64)> {
    (0u8..=2).map(move |l| (l, va >> pgtable::desc::level_shift(l)))
}

/// Where a software walk for `va` stops at an invalid table-level
/// descriptor (a table below it was freed), as a walk-cache key.
pub(super) fn stop_key<M: TableMemory>(
    mem: &M,
    table: &PageTable<Iova>,
    va: u64,
) -> Option<(u8, u64)> {
    use pgtable::desc::{Descriptor, decode, level_index, level_shift};
    let mut t = table.root();
    let mut level = table.config().start_level();
    while level < 3 {
        match decode(level, mem.read(t, level_index(va, level))) {
            Descriptor::Table(next) => {
                t = next;
                level += 1;
            }
            Descriptor::Invalid => return Some((level, va >> level_shift(level))),
            Descriptor::Leaf { .. } => return None,
        }
    }
    None
}

pub(super) struct Domain {
    pub(super) dma_bits: u8,
    /// The stage-1 part. `None` only for a domain made while its client
    /// was in bypass; kept (idle, every mapping gone and invalidated)
    /// while a benchmark client is in bypass.
    pub(super) tr: Option<Translated>,
    /// Returned IOVA -> mapping (translated policies).
    pub(super) mappings: Mappings,
    /// Bypass mappings: (bus address, length) -> how many times mapped.
    pub(super) bus: BusMap,
    /// Live mappings (translated and bypass, each repeat counted).
    pub(super) live: u64,
    /// Bytes those mappings map (whole pages).
    pub(super) mapped_bytes: u64,
}

impl Domain {
    pub(super) fn has_live_mappings(&self) -> bool {
        !self.mappings.is_empty() || !self.bus.is_empty()
    }
}

pub(super) struct Client {
    pub(super) name: String,
    pub(super) policy: InvalidationPolicy,
    pub(super) trust: TrustLevel,
    /// What it may hold (from its trust level, `ServerConfig`).
    pub(super) quota: ClientQuota,
    pub(super) domain: Option<Domain>,
    pub(super) sids: Vec<StreamId>,
    pub(super) quarantined: bool,
    /// It died: its teardown is under way ([`Server::teardown_complete`]).
    pub(super) dead: bool,
    /// What its teardown releases after the covering sync (a payload
    /// whose `teardown` is set points here).
    pub(super) teardown: Option<Teardown>,
    /// Its faults, coalesced per (StreamID, page), and the quarantine
    /// decision (`crate::fault_ledger`).
    pub(super) ledger: FaultLedger,
    /// Fault records attributed to it since its last `ResetStats`.
    pub(super) fault_records: u64,
    /// Demoted to strict after a fault of its device (it was deferred);
    /// never undone.
    pub(super) demoted: bool,
    /// Why it was quarantined, if by its faults.
    pub(super) quarantine_reason: Option<QuarantineReason>,
    /// Event-queue overflows charged to it.
    pub(super) overflows: u64,
    /// Doorbells rung for batches its unmaps took part in.
    pub(super) doorbells: u64,
    /// Counter ticks charged to it by the task, in all and by phase.
    pub(super) ticks: u64,
    pub(super) phase_ticks: PhaseTicks,
}

/// A client's server time by what it was spent on (see [`Phase`]).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PhaseTicks {
    pub(super) map: u64,
    pub(super) unmap: u64,
    pub(super) flush: u64,
    pub(super) pins: u64,
}

impl PhaseTicks {
    fn get_mut(&mut self, phase: Phase) -> Option<&mut u64> {
        match phase {
            Phase::Map => Some(&mut self.map),
            Phase::Unmap => Some(&mut self.unmap),
            Phase::Flush => Some(&mut self.flush),
            Phase::Pins => Some(&mut self.pins),
            Phase::Other => None,
        }
    }

    /// Adds `ticks` to `phase` (nothing for [`Phase::Other`]).
    pub(super) fn add(&mut self, phase: Phase, ticks: u64) {
        if let Some(t) = self.get_mut(phase) {
            *t = t.saturating_add(ticks);
        }
    }
}

/// ASIDs 1..=max, recycled after their domain's teardown sync.
pub(super) struct AsidPool {
    next: u32,
    max: u32,
    /// Recycled ASIDs; room for every ASID ever handed out is reserved
    /// when it is, so that a release (after a teardown's sync, which
    /// cannot be refused) never grows the heap.
    free: Vec<u16>,
}

impl AsidPool {
    /// An ASID: `TooMany` when all are in use, `NoMemory` when the heap
    /// cannot hold the room to recycle a new one.
    pub(super) fn alloc(&mut self) -> Result<Asid, ApiError> {
        if let Some(a) = self.free.pop() {
            return Ok(Asid(a));
        }
        if self.next > self.max {
            return Err(ApiError::TooMany);
        }
        // After it, `next` ASIDs have been handed out.
        self.free
            .try_reserve((self.next as usize).saturating_sub(self.free.len()))
            .map_err(|_| ApiError::NoMemory)?;
        let a = self.next as u16;
        self.next += 1;
        Ok(Asid(a))
    }
    /// Room to recycle the next new ASID, so that [`AsidPool::alloc`]
    /// grows nothing; `NoMemory` if the heap cannot hold it.
    pub(super) fn reserve(&mut self) -> Result<(), ApiError> {
        if self.free.is_empty() && self.next <= self.max {
            self.free
                .try_reserve((self.next as usize).saturating_sub(self.free.len()))
                .map_err(|_| ApiError::NoMemory)?;
        }
        Ok(())
    }

    pub(super) fn release(&mut self, a: Asid) {
        // Within the room reserved by `alloc`.
        if self.free.len() < self.free.capacity() || self.free.try_reserve(1).is_ok() {
            self.free.push(a.0);
        }
    }
}

/// A client's parts that the map and unmap paths use together, borrowed at
/// once from one lookup ([`Client::attached`]).
pub(super) struct Attached<'a> {
    pub(super) quota: &'a ClientQuota,
    pub(super) policy: InvalidationPolicy,
    pub(super) ledger: &'a mut FaultLedger,
    pub(super) tr: &'a mut Translated,
    pub(super) mappings: &'a mut Mappings,
    pub(super) live: &'a mut u64,
    pub(super) mapped_bytes: &'a mut u64,
}

impl Client {
    /// Its quota, policy, fault ledger and translated domain, if it has a
    /// stage-1 domain.
    pub(super) fn attached(&mut self) -> Option<Attached<'_>> {
        let Client {
            quota,
            policy,
            ledger,
            domain:
                Some(Domain {
                    tr: Some(tr),
                    mappings,
                    live,
                    mapped_bytes,
                    ..
                }),
            ..
        } = self
        else {
            return None;
        };
        Some(Attached {
            quota,
            policy: *policy,
            ledger,
            tr,
            mappings,
            live,
            mapped_bytes,
        })
    }
}

/// A client's stage-1 state and its mappings, or `NotAttached`.
pub(super) fn translated_mut(
    clients: &mut SortedMap<u32, Client>,
    badge: u32,
) -> Result<(&mut Translated, &mut Mappings), ApiError> {
    clients
        .get_mut(&badge)
        .and_then(Client::attached)
        .map(|a| (a.tr, a.mappings))
        .ok_or(ApiError::NotAttached)
}

impl<H: SmmuHw, R> Server<H, R> {
    /// Builds the stream table (every stream aborts), invalidates every
    /// configuration and TLB entry (CFGI_ALL, TLBI_NSNH_ALL, one sync).
    /// The task then programs STRTAB_BASE/_CFG from [`Server::strtab`] and
    /// enables the SMMU.
    pub fn new(mut hw: H, cfg: ServerConfig) -> Result<Self, ServerError> {
        let features = *hw.features();
        if !features.supports_stage1_aarch64_4k() {
            return Err(ServerError::Unsupported);
        }
        let mut zeroed = Vec::new();
        zeroed
            .try_reserve_exact(iommu_api::MSG_MAX)
            .map_err(|_| ServerError::NoMemory)?;
        zeroed.resize(iommu_api::MSG_MAX, 0);
        let strtab = StreamTable::new(&mut hw, &features).map_err(|_| ServerError::NoMemory)?;
        let engine_cfg = cfg
            .engine
            .unwrap_or_else(|| EngineConfig::for_smmu(features.ril));
        let mut s = Self {
            hw,
            features,
            cfg,
            strtab,
            engine: Engine::new(engine_cfg),
            clients: SortedMap::new(),
            streams: hashbrown::HashMap::new(),
            asids: AsidPool {
                next: 1,
                max: if features.asid16 { 0xffff } else { 0xff },
                free: Vec::new(),
            },
            outbox: Vec::new(),
            dropped: Vec::new(),
            flush_waiters: Vec::new(),
            unsynced: None,
            unreleased: None,
            last_now: 0,
            stats: ServerStats::default(),
            flushed: Vec::new(),
            unpins: Vec::new(),
            cmds: Vec::new(),
            table_reserved: 0,
            heap_reserved: 0,
            monitors: Vec::new(),
            zeroed,
            spare: super::spare::Spares::new(),
        };
        s.invalidate_all().map_err(|_| ServerError::Hardware)?;
        Ok(s)
    }

    /// CFGI_ALL + TLBI_NSNH_ALL + one sync (also for the task to call once
    /// the SMMU is enabled, if it wants belt and braces).
    pub fn invalidate_all(&mut self) -> Result<(), HwError> {
        self.stats.cfgi_commands += 1;
        self.stats.tlbi_commands += 1;
        self.run(&[Command::CfgiAll.encode(), Command::TlbiNsnhAll.encode()])
            .map(|_| ())
    }

    /// The stream table for SMMU_STRTAB_BASE (its address) and
    /// SMMU_STRTAB_BASE_CFG.
    pub fn strtab(&self) -> (PhysAddr, StrtabCfg) {
        (self.strtab.base(), self.strtab.cfg())
    }

    /// Register values: (SMMU_STRTAB_BASE with RA set when coherent,
    /// SMMU_STRTAB_BASE_CFG).
    pub fn strtab_registers(&self) -> Option<(u64, u32)> {
        let (base, cfg) = self.strtab();
        let b = smmuv3::regs::strtab_base(base, self.features.coherent, cfg).ok()?;
        Some((b, cfg.encode().ok()?))
    }

    /// Pages the stream table occupies.
    pub fn strtab_pages(&self) -> usize {
        self.strtab.pages()
    }

    /// The hardware (for tests and the task's register access).
    pub fn hw(&self) -> &H {
        &self.hw
    }

    /// The hardware, mutably.
    pub fn hw_mut(&mut self) -> &mut H {
        &mut self.hw
    }

    /// The tunables it runs with.
    pub fn config(&self) -> &ServerConfig {
        &self.cfg
    }

    /// Server-wide counters.
    pub fn server_stats(&self) -> ServerStats {
        self.stats
    }

    /// Registers a monitor from the system description (trust
    /// [`iommu_api::MONITOR`]): a caller that may read every client's
    /// counters with `ClientStats` and do nothing else. A badge cannot be
    /// both a client and a monitor.
    pub fn add_monitor(&mut self, badge: u32) -> Result<(), ServerError> {
        if self.clients.contains_key(&badge) || self.monitors.contains(&badge) {
            return Err(ServerError::ClientExists);
        }
        if self.monitors.len() >= super::MAX_MONITORS {
            return Err(ServerError::HeapBudget);
        }
        self.monitors
            .try_reserve(1)
            .map_err(|_| ServerError::NoMemory)?;
        self.monitors.push(badge);
        Ok(())
    }

    /// Registers a client from the system description. Untrusted clients
    /// get only strict policies; no client starts in bypass (a benchmark
    /// client may switch into it with `SetPolicy`).
    pub fn add_client(
        &mut self,
        badge: u32,
        name: &str,
        policy: InvalidationPolicy,
        trust: TrustLevel,
    ) -> Result<(), ServerError> {
        policy
            .check_permitted(trust)
            .map_err(|_| ServerError::NotPermitted)?;
        if policy == InvalidationPolicy::Bypass {
            return Err(ServerError::NotPermitted);
        }
        if self.clients.contains_key(&badge) || self.monitors.contains(&badge) {
            return Err(ServerError::ClientExists);
        }
        // The heap this client's quota can make the server hold is set
        // aside now, so that no client's use can exhaust the heap.
        let quota = self.cfg.quota(trust);
        let heap = super::quota::heap_bytes(&quota);
        let heap_total = self.heap_reserved.saturating_add(heap);
        if self.cfg.heap_budget.is_some_and(|b| heap_total > b) {
            return Err(ServerError::HeapBudget);
        }
        self.engine
            .register(ClientId(badge), policy)
            .map_err(|_| ServerError::ClientExists)?;
        self.clients.insert(
            badge,
            Client {
                name: String::from(name),
                policy,
                trust,
                quota,
                domain: None,
                sids: Vec::new(),
                quarantined: false,
                dead: false,
                teardown: None,
                ledger: FaultLedger::new(self.cfg.fault_records_kept),
                fault_records: 0,
                demoted: false,
                quarantine_reason: None,
                overflows: 0,
                doorbells: 0,
                ticks: 0,
                phase_ticks: PhaseTicks::default(),
            },
        );
        self.heap_reserved = heap_total;
        Ok(())
    }
}
