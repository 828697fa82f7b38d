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
//! sync that covers its last use; never point a stream at anything but
//! abort unless a client that presented the device's capability attached
//! it; never let a stream bypass translation unless its client is the
//! benchmark client ([`TrustLevel::Bench`]) and switched itself into
//! bypass; never panic on client input or device state; and never read a
//! clock (time is passed in). A refused request changes nothing.
//!
//! # Runtime policy switching (the benchmark client only)
//!
//! `SetPolicy` is refused with `NotPermitted` to every client but a
//! [`TrustLevel::Bench`] one, and with `Busy` while the client has a live
//! mapping; otherwise the client's pending invalidations are completed
//! first (its earlier unmaps finish, its deferred window closes), then:
//! - between `Strict`, `StrictPerUnmap` and `Deferred`: only how its later
//!   unmaps are invalidated changes;
//! - into `Bypass`: each attached STE becomes Config = bypass (word 0 in
//!   one store, CFGI_STE, one sync, then the stage-1 fields of word 1 are
//!   cleared); `Map` then answers the buffer's bus address (= physical; a
//!   range that is not physically contiguous is `NotContiguous`, one the
//!   device cannot address `IovaExhausted`) and `Unmap` only forgets it;
//! - out of `Bypass`: the domain's stage-1 part (kept from before, or
//!   made now) is pointed at again (words 1.. then word 0, CFGI_STE, one
//!   sync), so nothing that was reachable in bypass translates any more.
//!
//! `ResetStats` (benchmark client only, same flush first) zeroes the
//! client's counters. [`Server::charge`] and [`Server::charge_flush`]
//! credit the task's measured handling time to clients (`server_ticks`).

mod hw;
mod requests;
mod strtab;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use abi::{Asid, Iova, PAGE_SHIFT, PAGE_SIZE, PhysAddr, StreamId};
use iommu_api::{ApiError, Dir, Extent, FaultRecord, List, MSG_MAX, Request, Response, Stats};
use pgtable::{Attrs, Config as TableConfig, LargestLeaf, PageTable, TableMemory, Unmapped};
use smmuv3::cd::{self, CdConfig};
use smmuv3::cmd::Command;
use smmuv3::evt::{Event, EventKind};
use smmuv3::idr::Features;
use smmuv3::regs::StrtabCfg;
use smmuv3::ste::{self, SteOptions};

use crate::engine::{
    ClientId, Engine, EngineConfig, FlushPlan, Invalidation, IovaRange, LeafLevel, Released,
    ReplyAction, SyncSeq, UnmapHint,
};
use crate::iova::IovaAllocator;
use crate::policy::{InvalidationPolicy, TrustLevel};

use hw::HwTables;
pub use hw::{HwError, SmmuHw};
use strtab::{StreamTable, StrtabError};

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
    /// Lowest IOVA of every domain (page aligned, non-zero: IOVA 0 stays
    /// unmapped so that a zeroed descriptor faults).
    pub iova_base: u64,
    /// Coalesced fault records kept per client until it drains them.
    pub fault_records_kept: usize,
    /// Command choice; `None` derives it from IDR3.RIL.
    pub engine: Option<EngineConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            quarantine_after: 16,
            iova_base: 0x10_0000,
            fault_records_kept: 64,
            engine: None,
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

/// What [`Server::handle`] did with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Handled<R> {
    /// Answer now with these bytes (the token is handed back).
    Reply(R, Vec<u8>),
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

/// What is released after an unmap's covering sync.
struct Payload<R> {
    badge: u32,
    /// The IOVA block of an unmap (start, pages asked of the allocator).
    iova: Option<(Iova, u64)>,
    /// More IOVA blocks (a failed map's).
    iovas: Vec<(Iova, u64)>,
    /// Single table pages.
    tables: Vec<PhysAddr>,
    /// A CD page.
    cd: Option<PhysAddr>,
    /// An ASID to recycle.
    asid: Option<Asid>,
    /// STEs (now abort) whose other words are cleared after the sync.
    aborted: Vec<PhysAddr>,
    /// A held reply and the response it gets.
    reply: Option<(R, Vec<u8>)>,
    /// Walk-cache regions this unmap made stale (freed tables).
    stale_walks: Vec<(u8, u64)>,
}

impl<R> Payload<R> {
    fn new(badge: u32) -> Self {
        Self {
            badge,
            iova: None,
            iovas: Vec::new(),
            tables: Vec::new(),
            cd: None,
            asid: None,
            aborted: Vec::new(),
            reply: None,
            stale_walks: Vec::new(),
        }
    }
}

/// The engine ranges of one unmap token: inline for the usual single run.
enum Ranges {
    One([IovaRange; 1]),
    Many(Vec<IovaRange>),
}

impl Ranges {
    fn of(tok: &Unmapped<Iova>) -> Self {
        let range = |x: &pgtable::UnmappedRange<Iova>| IovaRange::new(x.start, x.len >> PAGE_SHIFT);
        match tok.ranges() {
            [one] => Self::One([range(one)]),
            many => Self::Many(many.iter().map(range).collect()),
        }
    }

    fn as_slice(&self) -> &[IovaRange] {
        match self {
            Self::One(r) => r,
            Self::Many(v) => v,
        }
    }
}

struct Mapping {
    len: u64,
    block: Iova,
    pages: u64,
}

struct Translated {
    asid: Asid,
    table: PageTable<Iova>,
    cd: PhysAddr,
    iova: IovaAllocator,
    /// (level, input address >> that level's shift) of table descriptors
    /// cleared because the table below was freed, until the covering sync:
    /// a walk cache may still hold the old table there, so a map that
    /// links a new table in such a region must wait for that sync.
    stale_walks: BTreeMap<(u8, u64), u32>,
}

/// The walk-cache keys above `va` (levels 0..=2).
fn walk_keys(va: u64) -> impl Iterator<Item = (u8, u64)> {
    (0u8..=2).map(move |l| (l, va >> pgtable::desc::level_shift(l)))
}

/// Where a software walk for `va` stops at an invalid table-level
/// descriptor (a table below it was freed), as a walk-cache key.
fn stop_key<M: TableMemory>(mem: &M, table: &PageTable<Iova>, va: u64) -> Option<(u8, u64)> {
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

struct Domain {
    dma_bits: u8,
    /// The stage-1 part. `None` only for a domain made while its client
    /// was in bypass; kept (idle, every mapping gone and invalidated)
    /// while a benchmark client is in bypass.
    tr: Option<Translated>,
    /// Returned IOVA -> mapping (translated policies).
    mappings: BTreeMap<u64, Mapping>,
    /// Bypass mappings: (bus address, length) -> how many times mapped.
    bus: BTreeMap<(u64, u64), u32>,
}

impl Domain {
    fn has_live_mappings(&self) -> bool {
        !self.mappings.is_empty() || !self.bus.is_empty()
    }
}

struct Client {
    name: String,
    policy: InvalidationPolicy,
    trust: TrustLevel,
    domain: Option<Domain>,
    sids: Vec<StreamId>,
    quarantined: bool,
    faults: BTreeMap<(u32, u64), FaultRecord>,
    fault_records: u64,
    distinct_faults: u32,
    /// Doorbells rung for batches its unmaps took part in.
    doorbells: u64,
    /// Counter ticks charged to it by the task.
    ticks: u64,
}

/// ASIDs 1..=max, recycled after their domain's teardown sync.
struct AsidPool {
    next: u32,
    max: u32,
    free: Vec<u16>,
}

impl AsidPool {
    fn alloc(&mut self) -> Option<Asid> {
        if let Some(a) = self.free.pop() {
            return Some(Asid(a));
        }
        if self.next > self.max {
            return None;
        }
        let a = self.next as u16;
        self.next += 1;
        Some(Asid(a))
    }
    fn release(&mut self, a: Asid) {
        self.free.push(a.0);
    }
}

/// The IOMMU server's state. See the module documentation.
pub struct Server<H, R> {
    hw: H,
    features: Features,
    cfg: ServerConfig,
    strtab: StreamTable,
    engine: Engine<Payload<R>>,
    clients: BTreeMap<u32, Client>,
    /// StreamID -> owning badge.
    streams: BTreeMap<u32, u32>,
    asids: AsidPool,
    /// Released held replies for the next `poll`.
    outbox: Vec<(R, Vec<u8>)>,
    /// Replies of dead clients, for `client_died`.
    dropped: Vec<(R, Vec<u8>)>,
    /// `Flush` requests waiting for their client's pending work.
    flush_waiters: Vec<(u32, R)>,
    /// A plan whose commands or sync failed: retried by `poll`.
    unsynced: Option<SyncSeq>,
    last_now: u64,
    stats: ServerStats,
    /// Clients whose unmaps the plans issued by the last `poll` covered.
    flushed: Vec<u32>,
}

fn reply_bytes(r: &Response<'_>) -> Vec<u8> {
    let mut buf = [0u8; MSG_MAX];
    match r.encode(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(e) => error_bytes(e),
    }
}

fn error_bytes(e: ApiError) -> Vec<u8> {
    let mut buf = [0u8; MSG_MAX];
    let n = Response::encode_error(e, &mut buf);
    buf[..n].to_vec()
}

/// A client's stage-1 state and its mappings, or `NotAttached`.
fn translated_mut(
    clients: &mut BTreeMap<u32, Client>,
    badge: u32,
) -> Result<(&mut Translated, &mut BTreeMap<u64, Mapping>), ApiError> {
    match clients.get_mut(&badge) {
        Some(Client {
            domain:
                Some(Domain {
                    tr: Some(tr),
                    mappings,
                    ..
                }),
            ..
        }) => Ok((tr, mappings)),
        _ => Err(ApiError::NotAttached),
    }
}

fn leaf_level(level: Option<u8>) -> LeafLevel {
    match level {
        Some(1) => LeafLevel::L1,
        Some(2) => LeafLevel::L2,
        Some(3) => LeafLevel::L3,
        _ => LeafLevel::Any,
    }
}

/// Up to [`SMALL_LIST`] items on the stack: a request's per-range
/// bookkeeping without a heap allocation. `push` past the end is ignored
/// (callers check the count first).
struct Few<T> {
    items: [T; SMALL_LIST],
    len: usize,
}

impl<T: Copy> Few<T> {
    fn new(fill: T) -> Self {
        Self {
            items: [fill; SMALL_LIST],
            len: 0,
        }
    }

    fn push(&mut self, item: T) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = item;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }
}

/// The physically contiguous runs of `frames`, as index ranges `(i, j)`.
fn contiguous_runs(frames: &[PhysAddr]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    core::iter::from_fn(move || {
        if i >= frames.len() {
            return None;
        }
        let mut j = i + 1;
        while j < frames.len() && frames[j].get() == frames[j - 1].get() + PAGE_SIZE {
            j += 1;
        }
        let run = (i, j);
        i = j;
        Some(run)
    })
}

/// A map entry, checked against the grant.
#[derive(Clone, Copy, Default)]
struct Planned {
    /// Index of the first granted page.
    first: usize,
    pages: u64,
    offset_in_page: u64,
    len: u64,
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
            clients: BTreeMap::new(),
            streams: BTreeMap::new(),
            asids: AsidPool {
                next: 1,
                max: if features.asid16 { 0xffff } else { 0xff },
                free: Vec::new(),
            },
            outbox: Vec::new(),
            dropped: Vec::new(),
            flush_waiters: Vec::new(),
            unsynced: None,
            last_now: 0,
            stats: ServerStats::default(),
            flushed: Vec::new(),
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

    /// Server-wide counters.
    pub fn server_stats(&self) -> ServerStats {
        self.stats
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
        if self.clients.contains_key(&badge) {
            return Err(ServerError::ClientExists);
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
                domain: None,
                sids: Vec::new(),
                quarantined: false,
                faults: BTreeMap::new(),
                fault_records: 0,
                distinct_faults: 0,
                doorbells: 0,
                ticks: 0,
            },
        );
        Ok(())
    }

    /// Credits `ticks` counter ticks of server time to client `badge` (the
    /// task measures around [`Server::handle`] and charges the caller).
    /// Unknown badges are ignored.
    pub fn charge(&mut self, badge: u32, ticks: u64) {
        if let Some(c) = self.clients.get_mut(&badge) {
            c.ticks = c.ticks.saturating_add(ticks);
        }
    }

    /// Credits `ticks` spent in the last [`Server::poll`] to the clients
    /// whose unmaps its flushes covered, split evenly (the remainder one
    /// tick each to the lowest badges), so that the clients' `server_ticks`
    /// add up to the time measured. Nothing is charged when that poll
    /// issued no flush.
    pub fn charge_flush(&mut self, ticks: u64) {
        let covered = core::mem::take(&mut self.flushed);
        let n = covered.len() as u64;
        if n == 0 {
            return;
        }
        let (share, mut extra) = (ticks / n, ticks % n);
        for b in covered {
            let one = u64::from(extra > 0);
            extra -= one;
            self.charge(b, share + one);
        }
    }

    /// The clients whose unmaps the flushes of the last [`Server::poll`]
    /// covered, ascending.
    pub fn last_flush_clients(&self) -> &[u32] {
        &self.flushed
    }

    /// Handles one call. Replies now, or holds the reply (strict unmaps,
    /// flushes) until [`Server::poll`] has completed the covering sync.
    pub fn handle(
        &mut self,
        now_us: u64,
        badge: u32,
        msg: &[u8],
        grant: Option<Grant<'_>>,
        presented: Option<Presented>,
        reply: R,
    ) -> Handled<R> {
        self.last_now = self.last_now.max(now_us);
        let now = self.last_now;
        let req = match Request::decode(msg) {
            Ok(r) => r,
            Err(e) => return Handled::Reply(reply, error_bytes(e)),
        };
        let Some(client) = self.clients.get(&badge) else {
            return Handled::Reply(reply, error_bytes(ApiError::NotPermitted));
        };
        if client.quarantined && !matches!(req, Request::Stats | Request::Faults) {
            return Handled::Reply(reply, error_bytes(ApiError::Quarantined));
        }
        req.dispatch(requests::Call {
            server: self,
            now,
            badge,
            grant,
            presented,
            reply,
        })
    }

    // ------------------------------------------------------------------
    // Attach.

    fn attach(
        &mut self,
        badge: u32,
        dma_bits: u8,
        presented: Option<Presented>,
    ) -> Result<Vec<u8>, ApiError> {
        let dev = presented.ok_or(ApiError::NoDevice)?;
        let sid = dev.sid;
        if dma_bits == 0 || dma_bits > 64 {
            return Err(ApiError::Malformed);
        }
        if !self.strtab.covers(sid) {
            return Err(ApiError::NoDevice);
        }
        match self.streams.get(&sid.0) {
            Some(&owner) if owner == badge => {
                return Ok(reply_bytes(&Response::Attached { sid }));
            }
            Some(_) => return Err(ApiError::AlreadyAttached),
            None => {}
        }
        let client = self.clients.get(&badge).ok_or(ApiError::NotPermitted)?;
        if let Some(d) = &client.domain
            && dma_bits < d.dma_bits
        {
            // The window was sized for a wider device; IOVAs already
            // handed out might not be reachable by this one.
            return Err(ApiError::NotPermitted);
        }
        let policy = client.policy;
        let new_domain = client.domain.is_none();
        let ste_addr = self.strtab.ensure(&mut self.hw, sid).map_err(|e| match e {
            StrtabError::NoMemory => ApiError::NoMemory,
            StrtabError::OutOfRange => ApiError::NoDevice,
        })?;
        if new_domain {
            let d = self.new_domain(dma_bits, policy == InvalidationPolicy::Bypass)?;
            if let Some(c) = self.clients.get_mut(&badge) {
                c.domain = Some(d);
            }
        }
        let cd_addr = self
            .clients
            .get(&badge)
            .and_then(|c| c.domain.as_ref())
            .map(|d| d.tr.as_ref().map(|t| t.cd));
        let opts = SteOptions::for_pcie(&self.features);
        let words = match cd_addr {
            _ if policy == InvalidationPolicy::Bypass => ste::bypass(opts),
            Some(Some(cd)) => ste::s1_translate(cd, opts).map_err(|_| ApiError::Hardware)?,
            Some(None) | None => return Err(ApiError::NotAttached),
        };
        // Hitless: the abort STE ignores words 1..; word 0 flips it.
        strtab::write_live(&mut self.hw, ste_addr, &words);
        self.stats.cfgi_commands += 1;
        let cfgi = Command::CfgiSte { sid, leaf: false }.encode();
        if self.run(&[cfgi]).is_err() {
            // Put the stream back to abort; the domain stays until the
            // client dies (its CD may be cached until a sync succeeds).
            strtab::write_abort(&mut self.hw, ste_addr);
            let _ = self.run(&[cfgi]);
            return Err(ApiError::Hardware);
        }
        self.streams.insert(sid.0, badge);
        if let Some(c) = self.clients.get_mut(&badge) {
            c.sids.push(sid);
        }
        Ok(reply_bytes(&Response::Attached { sid }))
    }

    fn new_domain(&mut self, dma_bits: u8, bypass: bool) -> Result<Domain, ApiError> {
        if bypass {
            return Ok(Domain {
                dma_bits,
                tr: None,
                mappings: BTreeMap::new(),
                bus: BTreeMap::new(),
            });
        }
        let ias = dma_bits.clamp(MIN_IAS, MAX_IAS);
        let oas = self.features.oas_bits.clamp(32, 48);
        let dma_mask = if dma_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << dma_bits) - 1
        };
        let iova = IovaAllocator::new(
            Iova::new(self.cfg.iova_base),
            Iova::new((1u64 << ias) - 1),
            dma_mask,
        )
        .map_err(|_| ApiError::NotPermitted)?;
        let asid = self.asids.alloc().ok_or(ApiError::TooMany)?;
        let config = TableConfig::new(ias, oas).with_largest_leaf(LargestLeaf::Block2M);
        let table = match PageTable::new(&mut HwTables(&mut self.hw), config) {
            Ok(t) => t,
            Err(_) => {
                self.asids.release(asid);
                return Err(ApiError::NoMemory);
            }
        };
        let words = cd::build(
            &CdConfig {
                asid,
                ttb0: table.root(),
                mair: DOMAIN_MAIR,
                input_bits: ias,
                affd: false,
            },
            &self.features,
        );
        let cd_page = self.hw.alloc_pages(1);
        let (Ok(words), Some(cd_page)) = (words, cd_page) else {
            // Never reachable by the SMMU: free at once.
            if let Some(p) = cd_page {
                self.hw.free_pages(p, 1);
            }
            for p in table.destroy(&HwTables(&mut self.hw)) {
                self.hw.free_pages(p, 1);
            }
            self.asids.release(asid);
            return Err(ApiError::NoMemory);
        };
        for (i, w) in words.iter().enumerate().rev() {
            self.hw
                .write_u64(PhysAddr::new(cd_page.get() + 8 * i as u64), *w);
        }
        self.hw.publish();
        Ok(Domain {
            dma_bits,
            tr: Some(Translated {
                asid,
                table,
                cd: cd_page,
                iova,
                stale_walks: BTreeMap::new(),
            }),
            mappings: BTreeMap::new(),
            bus: BTreeMap::new(),
        })
    }

    // ------------------------------------------------------------------
    // Map.

    fn map(
        &mut self,
        now: u64,
        badge: u32,
        dir: Dir,
        ranges: List<'_, Extent>,
        grant: Option<Grant<'_>>,
    ) -> Result<Vec<u8>, ApiError> {
        let client = self.clients.get(&badge).ok_or(ApiError::NotPermitted)?;
        let domain = client.domain.as_ref().ok_or(ApiError::NotAttached)?;
        let grant = grant.ok_or(ApiError::NotGranted)?;
        let oas_limit = 1u64 << self.features.oas_bits.min(56);
        if grant
            .frames
            .iter()
            .any(|f| !f.is_page_aligned() || f.get() >= oas_limit)
        {
            return Err(ApiError::NotGranted);
        }
        // Check every range first: nothing changes on a refusal.
        if ranges.len() > SMALL_LIST {
            return Err(ApiError::Malformed);
        }
        let mut planned = Few::new(Planned::default());
        let mut spans = Few::new((0u64, 0u64));
        let grant_off = grant.va & (PAGE_SIZE - 1);
        for r in ranges.iter() {
            if r.len == 0 {
                return Err(ApiError::ZeroLength);
            }
            let end = r.end().ok_or(ApiError::NotGranted)?;
            if end > grant.len {
                return Err(ApiError::NotGranted);
            }
            let first_byte = grant_off.checked_add(r.start).ok_or(ApiError::NotGranted)?;
            let last_byte = grant_off.checked_add(end - 1).ok_or(ApiError::NotGranted)?;
            let first = first_byte >> PAGE_SHIFT;
            let last = last_byte >> PAGE_SHIFT;
            if last >= grant.frames.len() as u64 {
                return Err(ApiError::NotGranted);
            }
            spans.push((r.start, end));
            planned.push(Planned {
                first: first as usize,
                pages: last - first + 1,
                offset_in_page: first_byte & (PAGE_SIZE - 1),
                len: r.len,
            });
        }
        let spans = spans.as_mut_slice();
        spans.sort_unstable();
        if spans.windows(2).any(|w| w[1].0 < w[0].1) {
            return Err(ApiError::Overlap);
        }
        let frames = |p: &Planned| {
            grant
                .frames
                .get(p.first..p.first + p.pages as usize)
                .unwrap_or(&[])
        };
        let writable = dir.device_writes();
        if client.policy == InvalidationPolicy::Bypass {
            // Bypass: the device uses bus (= physical) addresses, which it
            // must be able to drive in full.
            let dma_mask = match domain.dma_bits {
                64.. => u64::MAX,
                b => (1u64 << b) - 1,
            };
            let mut iovas = Few::new(Iova::new(0));
            for p in planned.as_slice() {
                let f = frames(p);
                let contiguous = f
                    .windows(2)
                    .all(|w| w[1].get() == w[0].get().wrapping_add(PAGE_SIZE));
                let base = match f.first() {
                    Some(base) if contiguous => base.get() + p.offset_in_page,
                    _ => return Err(ApiError::NotContiguous),
                };
                if base
                    .checked_add(p.len - 1)
                    .is_none_or(|last| last > dma_mask)
                {
                    return Err(ApiError::IovaExhausted);
                }
                iovas.push(Iova::new(base));
            }
            let Some(domain) = self.clients.get_mut(&badge).and_then(|c| c.domain.as_mut()) else {
                return Err(ApiError::NotAttached);
            };
            for (iova, p) in iovas.as_slice().iter().zip(planned.as_slice()) {
                let n = domain.bus.entry((iova.get(), p.len)).or_insert(0);
                *n = n.saturating_add(1);
            }
            let pages = planned.as_slice().iter().map(|p| p.pages).sum();
            let _ = self.engine.note_map(ClientId(badge), pages);
            return Ok(reply_bytes(&Response::Mapped {
                iovas: List::new(iovas.as_slice()),
            }));
        }
        // IOVAs for every range (never mapped yet: freed at once on error).
        let (tr, _) = translated_mut(&mut self.clients, badge)?;
        let mut blocks = Few::new((Iova::new(0), 0u64));
        for p in planned.as_slice() {
            match tr.iova.alloc(p.pages) {
                Ok(b) => blocks.push((b, p.pages)),
                Err(_) => {
                    for &(b, n) in blocks.as_slice() {
                        let _ = tr.iova.free(b, n);
                    }
                    return Err(ApiError::IovaExhausted);
                }
            }
        }
        // A new table where a freed one may still sit in a walk cache would
        // be invisible until that unmap's sync: flush first.
        let stale = !tr.stale_walks.is_empty()
            && blocks.as_slice().iter().any(|(b, n)| {
                let (mut va, end) = (b.get(), b.get() + n * PAGE_SIZE);
                while va < end {
                    if walk_keys(va).any(|k| tr.stale_walks.contains_key(&k)) {
                        return true;
                    }
                    va = (va | ((1 << 21) - 1)) + 1;
                }
                false
            });
        if stale {
            self.flush_now(now, badge);
        }
        let (tr, mappings) = translated_mut(&mut self.clients, badge)?;
        // Write the entries, one physically contiguous run at a time.
        let attrs = Attrs::dma(MAIR_NORMAL, writable);
        let mut mem = HwTables(&mut self.hw);
        // Where a map failed: (range, first frame of the failed run).
        let mut failed = None;
        'outer: for (k, (p, (block, _))) in
            planned.as_slice().iter().zip(blocks.as_slice()).enumerate()
        {
            let f = frames(p);
            for (i, j) in contiguous_runs(f) {
                let va = Iova::new(block.get() + (i as u64) * PAGE_SIZE);
                let len = (j - i) as u64 * PAGE_SIZE;
                if tr.table.map(&mut mem, va, f[i], len, attrs).is_err() {
                    failed = Some((k, i));
                    break 'outer;
                }
            }
        }
        if let Some((fk, fi)) = failed {
            let spare = tr.table.take_spare_tables();
            // Undo what was written (every run before the failed one); it
            // may be cached (speculative walks), so it goes through the
            // engine like any unmap.
            let mut done = Vec::new();
            for (k, (p, (block, _))) in planned.as_slice().iter().zip(blocks.as_slice()).enumerate()
            {
                for (i, j) in contiguous_runs(frames(p)) {
                    if (k, i) >= (fk, fi) {
                        break;
                    }
                    let va = Iova::new(block.get() + (i as u64) * PAGE_SIZE);
                    done.push((va, (j - i) as u64 * PAGE_SIZE));
                }
                if k >= fk {
                    break;
                }
            }
            let mut payload = Payload::new(badge);
            let mut ranges = Vec::new();
            let mut freed_tables = false;
            for (va, len) in done {
                if let Ok(tok) = tr.table.unmap_exact(&mut mem, va, len) {
                    freed_tables |= tok.needs_walk_invalidation();
                    ranges.push(IovaRange::new(va, len >> PAGE_SHIFT));
                    payload.tables.extend(tok.into_freed_tables());
                }
            }
            mem.barrier();
            let asid = tr.asid;
            for p in spare {
                self.hw.free_pages(p, 1);
            }
            payload.iovas = blocks.as_slice().to_vec();
            if ranges.is_empty() {
                self.release_payload(payload);
            } else {
                let hint = UnmapHint {
                    leaf_level: LeafLevel::Any,
                    tables_freed: freed_tables,
                };
                self.queue_unmap(now, badge, asid, &ranges, hint, payload);
            }
            return Err(ApiError::NoMemory);
        }
        mem.barrier();
        let mut iovas = Few::new(Iova::new(0));
        for (p, (block, pages)) in planned.as_slice().iter().zip(blocks.as_slice()) {
            let iova = Iova::new(block.get() + p.offset_in_page);
            mappings.insert(
                iova.get(),
                Mapping {
                    len: p.len,
                    block: *block,
                    pages: *pages,
                },
            );
            iovas.push(iova);
        }
        let pages = planned.as_slice().iter().map(|p| p.pages).sum();
        let _ = self.engine.note_map(ClientId(badge), pages);
        Ok(reply_bytes(&Response::Mapped {
            iovas: List::new(iovas.as_slice()),
        }))
    }

    // ------------------------------------------------------------------
    // Unmap and flush.

    fn unmap(&mut self, now: u64, badge: u32, ranges: List<'_, Extent>, reply: R) -> Handled<R> {
        if let Err(e) = self.check_unmap(badge, ranges) {
            return Handled::Reply(reply, error_bytes(e));
        }
        let Some(client) = self.clients.get_mut(&badge) else {
            return Handled::Reply(reply, error_bytes(ApiError::NotPermitted));
        };
        let holds = client.policy.holds_reply();
        let bypass = client.policy == InvalidationPolicy::Bypass;
        let Some(domain) = client.domain.as_mut() else {
            return Handled::Reply(reply, error_bytes(ApiError::NotAttached));
        };
        if bypass {
            // Nothing was translated, nothing to invalidate: forget the
            // ranges, count them.
            for r in ranges.iter() {
                let key = (r.start, r.len);
                match domain.bus.get_mut(&key) {
                    Some(n) if *n > 1 => *n -= 1,
                    _ => {
                        domain.bus.remove(&key);
                    }
                }
                let pages = ((r.start & (PAGE_SIZE - 1)) + r.len).div_ceil(PAGE_SIZE);
                let _ = self.engine.note_unmap(ClientId(badge), pages);
            }
            let faults_pending = client.faults.len() as u32;
            return Handled::Reply(reply, reply_bytes(&Response::Unmapped { faults_pending }));
        }
        let Some(tr) = domain.tr.as_mut() else {
            return Handled::Reply(reply, error_bytes(ApiError::NotAttached));
        };
        let asid = tr.asid;
        let mut mem = HwTables(&mut self.hw);
        // The held reply rides on the last unmap; the earlier ones wait in
        // `earlier` (no allocation for the usual single range).
        let mut earlier: Vec<(Ranges, UnmapHint, Payload<R>)> = Vec::new();
        let mut last: Option<(Ranges, UnmapHint, Payload<R>)> = None;
        let mut failure = None;
        for r in ranges.iter() {
            let Some(m) = domain.mappings.get(&r.start) else {
                continue;
            };
            let tok: Unmapped<Iova> =
                match tr.table.unmap_exact(&mut mem, m.block, m.pages * PAGE_SIZE) {
                    Ok(t) => t,
                    Err(_) => {
                        // Not reachable for a range unmapped exactly as it
                        // was mapped (no block split); stop consistently.
                        failure = Some(ApiError::NoMemory);
                        break;
                    }
                };
            let mut payload = Payload::new(badge);
            payload.iova = Some((m.block, m.pages));
            let hint = UnmapHint {
                leaf_level: leaf_level(tok.leaf_level()),
                tables_freed: tok.needs_walk_invalidation(),
            };
            let rs = Ranges::of(&tok);
            if tok.needs_walk_invalidation() {
                for x in tok.ranges() {
                    let (a, end) = (x.start.get(), x.start.get() + x.len);
                    let mut va = a;
                    while va < end {
                        if let Some(k) = stop_key(&mem, &tr.table, va)
                            && !payload.stale_walks.contains(&k)
                        {
                            payload.stale_walks.push(k);
                            *tr.stale_walks.entry(k).or_insert(0) += 1;
                        }
                        va = (va | ((1 << 21) - 1)) + 1;
                    }
                }
            }
            payload.tables = tok.into_freed_tables();
            domain.mappings.remove(&r.start);
            if let Some(prev) = last.replace((rs, hint, payload)) {
                earlier.push(prev);
            }
        }
        mem.barrier();
        let faults_pending = self
            .clients
            .get(&badge)
            .map_or(0, |c| c.faults.len() as u32);
        let response = failure.map_or_else(
            || reply_bytes(&Response::Unmapped { faults_pending }),
            error_bytes,
        );
        for (rs, hint, payload) in earlier {
            self.queue_unmap(now, badge, asid, rs.as_slice(), hint, payload);
        }
        match last {
            Some((rs, hint, mut payload)) if holds => {
                payload.reply = Some((reply, response));
                self.queue_unmap(now, badge, asid, rs.as_slice(), hint, payload);
                Handled::Held
            }
            Some((rs, hint, payload)) => {
                self.queue_unmap(now, badge, asid, rs.as_slice(), hint, payload);
                Handled::Reply(reply, response)
            }
            None => Handled::Reply(reply, response),
        }
    }

    /// Every check of an unmap, changing nothing.
    fn check_unmap(&self, badge: u32, ranges: List<'_, Extent>) -> Result<(), ApiError> {
        let client = self.clients.get(&badge).ok_or(ApiError::NotPermitted)?;
        let domain = client.domain.as_ref().ok_or(ApiError::NotAttached)?;
        for r in ranges.iter() {
            if r.len == 0 {
                return Err(ApiError::ZeroLength);
            }
            if client.policy == InvalidationPolicy::Bypass {
                if !domain.bus.contains_key(&(r.start, r.len)) {
                    let same_start = domain.bus.range((r.start, 0)..=(r.start, u64::MAX));
                    return Err(if same_start.count() > 0 {
                        ApiError::LengthMismatch
                    } else {
                        ApiError::UnknownIova
                    });
                }
            } else {
                let m = domain.mappings.get(&r.start).ok_or(ApiError::UnknownIova)?;
                if m.len != r.len {
                    return Err(ApiError::LengthMismatch);
                }
            }
        }
        if ranges.len() <= SMALL_LIST {
            // A few entries (one per I/O usually): compare pairwise rather
            // than allocate a sorted copy.
            for (i, r) in ranges.iter().enumerate() {
                if ranges.iter().take(i).any(|q| q.start == r.start) {
                    return Err(ApiError::Overlap);
                }
            }
            return Ok(());
        }
        let mut keys: Vec<u64> = ranges.iter().map(|r| r.start).collect();
        keys.sort_unstable();
        if keys.windows(2).any(|w| w[0] == w[1]) {
            return Err(ApiError::Overlap);
        }
        Ok(())
    }

    /// Hands an unmap whose entries are already cleared to the engine.
    fn queue_unmap(
        &mut self,
        now: u64,
        badge: u32,
        asid: Asid,
        ranges: &[IovaRange],
        hint: UnmapHint,
        payload: Payload<R>,
    ) {
        if let Err(refused) = self
            .engine
            .unmap(now, ClientId(badge), asid, ranges, hint, payload)
        {
            // Not reachable for a registered live client with checked
            // ranges. Stay safe: invalidate the ASID now, then release.
            let cmd = Command::TlbiNhAsid { vmid: 0, asid }.encode();
            self.stats.tlbi_commands += 1;
            if self.run(&[cmd]).is_ok() {
                self.release_payload(refused.payload);
            }
        }
    }

    fn flush(&mut self, badge: u32, reply: R) -> Handled<R> {
        if self.engine.expedite(ClientId(badge)).is_err() {
            return Handled::Reply(reply, error_bytes(ApiError::NotPermitted));
        }
        if self.pending(badge) == 0 {
            return Handled::Reply(reply, reply_bytes(&Response::Flushed));
        }
        self.flush_waiters.push((badge, reply));
        Handled::Held
    }

    fn pending(&self, badge: u32) -> u64 {
        self.engine
            .client_stats(ClientId(badge))
            .map_or(0, |s| s.entries_pending)
    }

    // ------------------------------------------------------------------
    // Policy switching and counters (the benchmark client).

    /// The benchmark client, or `NotPermitted`.
    fn bench_client(&self, badge: u32) -> Result<&Client, ApiError> {
        match self.clients.get(&badge) {
            Some(c) if c.trust == TrustLevel::Bench => Ok(c),
            _ => Err(ApiError::NotPermitted),
        }
    }

    /// Completes every pending invalidation of `badge` now (its deferred
    /// queue too). `Hardware` if the SMMU failed to.
    fn settle(&mut self, now: u64, badge: u32) -> Result<(), ApiError> {
        let queued = self.engine.queued(ClientId(badge)).unwrap_or(0);
        if self.pending(badge) != 0 || queued != 0 {
            self.flush_now(now, badge);
        }
        if self.pending(badge) != 0 {
            return Err(ApiError::Hardware);
        }
        Ok(())
    }

    fn set_policy(
        &mut self,
        now: u64,
        badge: u32,
        policy: InvalidationPolicy,
    ) -> Result<Vec<u8>, ApiError> {
        let c = self.bench_client(badge)?;
        policy
            .check_permitted(c.trust)
            .map_err(|_| ApiError::NotPermitted)?;
        if c.domain.as_ref().is_some_and(Domain::has_live_mappings) {
            return Err(ApiError::Busy);
        }
        let old = c.policy;
        self.settle(now, badge)?;
        if old == policy {
            return Ok(reply_bytes(&Response::PolicySet));
        }
        let bypass = InvalidationPolicy::Bypass;
        if old == bypass {
            self.ensure_translated(badge)?;
        }
        self.engine
            .set_policy(ClientId(badge), policy)
            .map_err(|_| ApiError::Busy)?;
        if (old == bypass) != (policy == bypass)
            && let Err(e) = self.retarget_streams(badge, policy == bypass)
        {
            let _ = self.engine.set_policy(ClientId(badge), old);
            return Err(e);
        }
        if let Some(c) = self.clients.get_mut(&badge) {
            c.policy = policy;
        }
        Ok(reply_bytes(&Response::PolicySet))
    }

    /// Gives a domain made in bypass its stage-1 part (ASID, table, CD,
    /// IOVA window) before the client leaves bypass.
    fn ensure_translated(&mut self, badge: u32) -> Result<(), ApiError> {
        let dma_bits = match self.clients.get(&badge).and_then(|c| c.domain.as_ref()) {
            Some(d) if d.tr.is_none() => d.dma_bits,
            _ => return Ok(()),
        };
        let made = self.new_domain(dma_bits, false)?;
        if let Some(d) = self.clients.get_mut(&badge).and_then(|c| c.domain.as_mut()) {
            d.tr = made.tr;
        }
        Ok(())
    }

    /// Points every attached stream of `badge` at bypass or back at its
    /// domain's CD, hitlessly, with one CFGI_STE each and one sync. On a
    /// failure the previous configuration is written back.
    fn retarget_streams(&mut self, badge: u32, to_bypass: bool) -> Result<(), ApiError> {
        let Some(c) = self.clients.get(&badge) else {
            return Err(ApiError::NotPermitted);
        };
        if c.sids.is_empty() {
            return Ok(());
        }
        let sids = c.sids.clone();
        let opts = SteOptions::for_pcie(&self.features);
        let cd = c
            .domain
            .as_ref()
            .and_then(|d| d.tr.as_ref())
            .map(|t| t.cd)
            .ok_or(ApiError::NotAttached)?;
        let s1 = ste::s1_translate(cd, opts).map_err(|_| ApiError::Hardware)?;
        let by = ste::bypass(opts);
        let (from, to) = if to_bypass { (s1, by) } else { (by, s1) };
        let stes: Vec<(StreamId, PhysAddr)> = sids
            .iter()
            .filter_map(|&sid| Some((sid, self.strtab.ste(sid)?)))
            .collect();
        let cmds: Vec<[u64; 2]> = stes
            .iter()
            .map(|&(sid, _)| Command::CfgiSte { sid, leaf: false }.encode())
            .collect();
        for &(_, a) in &stes {
            if to_bypass {
                // Word 0 alone: bypass ignores the stage-1 fields of
                // word 1, which are cleared once the SMMU forgot them.
                strtab::write_word0(&mut self.hw, a, to[0]);
            } else {
                // Bypass ignores the stage-1 fields: words 1.. first.
                strtab::write_live(&mut self.hw, a, &to);
            }
        }
        self.stats.cfgi_commands += cmds.len() as u64;
        if self.run(&cmds).is_err() {
            for &(_, a) in &stes {
                strtab::write_word0(&mut self.hw, a, from[0]);
            }
            // Going to stage 1, words 1.. now hold its fields, which
            // bypass ignores: only word 0 needed putting back.
            self.stats.cfgi_commands += cmds.len() as u64;
            let _ = self.run(&cmds);
            return Err(ApiError::Hardware);
        }
        if to_bypass {
            for &(_, a) in &stes {
                strtab::write_tail(&mut self.hw, a, &to);
            }
        }
        Ok(())
    }

    fn reset_stats(&mut self, now: u64, badge: u32) -> Result<Vec<u8>, ApiError> {
        self.bench_client(badge)?;
        self.settle(now, badge)?;
        self.engine
            .reset_stats(ClientId(badge))
            .map_err(|_| ApiError::NotPermitted)?;
        if let Some(c) = self.clients.get_mut(&badge) {
            c.fault_records = 0;
            c.doorbells = 0;
            c.ticks = 0;
        }
        Ok(reply_bytes(&Response::StatsReset))
    }

    // ------------------------------------------------------------------
    // Stats and faults.

    /// A client's counters, as the `Stats` request reports them.
    pub fn stats(&self, badge: u32) -> Option<Stats> {
        let c = self.clients.get(&badge)?;
        let e = self
            .engine
            .client_stats(ClientId(badge))
            .copied()
            .unwrap_or_default();
        let iova_bytes_in_use = c
            .domain
            .as_ref()
            .and_then(|d| d.tr.as_ref())
            .map_or(0, |t| t.iova.in_use_bytes());
        Some(Stats {
            maps: e.maps,
            unmaps: e.unmaps,
            tlbi_commands: e.tlbi_commands,
            syncs: e.syncs,
            faults: c.fault_records,
            iova_bytes_in_use,
            pending_unmaps: e.entries_pending,
            max_stale_window_us: e.max_stale_us,
            doorbells: c.doorbells,
            server_ticks: c.ticks,
        })
    }

    /// Every registered client, by badge.
    pub fn clients(&self) -> impl Iterator<Item = ClientInfo<'_>> + '_ {
        self.clients.iter().map(|(&badge, c)| ClientInfo {
            badge,
            name: &c.name,
            policy: c.policy,
            trust: c.trust,
            sids: &c.sids,
            quarantined: c.quarantined,
            stats: self.stats(badge).unwrap_or_default(),
        })
    }

    fn drain_faults(&mut self, badge: u32) -> Vec<u8> {
        let Some(c) = self.clients.get_mut(&badge) else {
            return error_bytes(ApiError::NotPermitted);
        };
        let mut out = Vec::new();
        while out.len() < iommu_api::MAX_FAULT_RECORDS {
            match c.faults.pop_first() {
                Some((_, r)) => out.push(r),
                None => break,
            }
        }
        reply_bytes(&Response::Faults {
            records: List::new(&out),
        })
    }

    /// Takes one event-queue record: attributes it by StreamID to the
    /// owning client, coalesces it per (StreamID, page), and quarantines
    /// the client (its streams to abort) once it has more than
    /// `quarantine_after` distinct faults. `None` for records no client
    /// owns.
    pub fn on_event(&mut self, record: [u64; 4]) -> Option<FaultReport> {
        self.stats.events += 1;
        let e = Event::decode(&record);
        let Some(&badge) = self.streams.get(&e.sid.0) else {
            self.stats.unattributed_events += 1;
            return None;
        };
        let c = self.clients.get_mut(&badge)?;
        c.fault_records += 1;
        let key = (e.sid.0, e.input_addr >> PAGE_SHIFT);
        let first = match c.faults.get_mut(&key) {
            Some(r) => {
                r.count = r.count.saturating_add(1);
                false
            }
            None => {
                if c.faults.len() < self.cfg.fault_records_kept {
                    c.faults.insert(
                        key,
                        FaultRecord {
                            sid: e.sid,
                            kind: u16::from(e.kind.id()),
                            write: !e.rnw,
                            iova: Iova::new(e.input_addr),
                            count: 1,
                        },
                    );
                }
                c.distinct_faults = c.distinct_faults.saturating_add(1);
                true
            }
        };
        let quarantined_now =
            first && !c.quarantined && c.distinct_faults > self.cfg.quarantine_after;
        if quarantined_now {
            self.quarantine(badge);
        }
        Some(FaultReport {
            badge,
            sid: e.sid,
            kind: e.kind,
            iova: e.input_addr,
            write: !e.rnw,
            first,
            quarantined_now,
        })
    }

    /// Sends every stream of `badge` to abort (CFGI_STE + one sync). Its
    /// mappings stay until it dies; its requests are refused.
    fn quarantine(&mut self, badge: u32) {
        let Some(c) = self.clients.get_mut(&badge) else {
            return;
        };
        c.quarantined = true;
        self.stats.quarantines += 1;
        let sids = c.sids.clone();
        let (cmds, stes) = self.abort_streams(&sids);
        if self.run(&cmds).is_ok() {
            for a in stes {
                strtab::clear_tail(&mut self.hw, a);
            }
        }
    }

    /// Writes abort into each stream's STE word 0; returns the commands
    /// that make the SMMU forget the old configuration (to be followed by
    /// a sync) and the STEs whose other words to clear after it.
    fn abort_streams(&mut self, sids: &[StreamId]) -> (Vec<[u64; 2]>, Vec<PhysAddr>) {
        let mut cmds = Vec::new();
        let mut stes = Vec::new();
        for &sid in sids {
            if let Some(a) = self.strtab.ste(sid) {
                strtab::write_abort(&mut self.hw, a);
                cmds.push(Command::CfgiSte { sid, leaf: false }.encode());
                stes.push(a);
            }
        }
        self.stats.cfgi_commands += cmds.len() as u64;
        (cmds, stes)
    }

    // ------------------------------------------------------------------
    // Flushing.

    /// When [`Server::poll`] must next run (µs): a deferred queue's age
    /// bound, or at once for queued strict work, a retried sync, or
    /// replies waiting to go out.
    pub fn next_deadline(&self) -> Option<u64> {
        let immediate =
            (self.unsynced.is_some() || !self.outbox.is_empty() || !self.flush_waiters.is_empty())
                .then_some(self.last_now);
        match (self.engine.next_deadline(), immediate) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Issues whatever invalidation is due with one doorbell per sync (one
    /// sync shared by every client, except the per-unmap baseline), then
    /// releases what it covered. Returns the held replies now due.
    pub fn poll(&mut self, now_us: u64) -> Vec<(R, Vec<u8>)> {
        self.last_now = self.last_now.max(now_us);
        let now = self.last_now;
        self.flushed.clear();
        self.retry_unsynced(now);
        if self.unsynced.is_none()
            && let Some(plan) = self.engine.plan_flush(now)
        {
            self.issue(now, plan, Vec::new());
        }
        self.answer_flushes();
        core::mem::take(&mut self.outbox)
    }

    /// Flushes everything pending now (the client's deferred queue too).
    fn flush_now(&mut self, now: u64, badge: u32) {
        let _ = self.engine.expedite(ClientId(badge));
        self.retry_unsynced(now);
        if self.unsynced.is_none()
            && let Some(plan) = self.engine.plan_flush(now)
        {
            self.issue(now, plan, Vec::new());
        }
    }

    fn answer_flushes(&mut self) {
        let waiters = core::mem::take(&mut self.flush_waiters);
        for (badge, r) in waiters {
            if self.pending(badge) == 0 {
                self.outbox.push((r, reply_bytes(&Response::Flushed)));
            } else {
                self.flush_waiters.push((badge, r));
            }
        }
    }

    /// After a failed submission or sync: invalidate all of stage 1 (some
    /// TLBIs may not have run) and sync; on success the plan completes.
    fn retry_unsynced(&mut self, now: u64) {
        let Some(seq) = self.unsynced else {
            return;
        };
        self.stats.tlbi_commands += 1;
        if self.run(&[Command::TlbiNhAll { vmid: 0 }.encode()]).is_ok() {
            self.unsynced = None;
            self.complete(now, seq);
        }
    }

    /// Submits `prefix` and the plan's commands, one doorbell and one sync
    /// per `Sync` in the plan, then completes it.
    fn issue(&mut self, now: u64, plan: FlushPlan, prefix: Vec<[u64; 2]>) {
        let mut batch = prefix;
        let mut segments = plan.participants.iter();
        for inv in &plan.commands {
            if let Invalidation::Sync = inv {
                // One doorbell for the batch (if any), one for the sync.
                let doorbells = u64::from(!batch.is_empty()) + 1;
                for ClientId(b) in segments.next().into_iter().flatten() {
                    if let Some(c) = self.clients.get_mut(b) {
                        c.doorbells = c.doorbells.saturating_add(doorbells);
                    }
                    if let Err(at) = self.flushed.binary_search(b) {
                        self.flushed.insert(at, *b);
                    }
                }
                if self.run(&batch).is_err() {
                    self.unsynced = Some(plan.seq);
                    return;
                }
                batch.clear();
            } else {
                let before = batch.len();
                hw::encode(inv, &self.features, &mut batch);
                self.stats.tlbi_commands += (batch.len() - before) as u64;
            }
        }
        self.complete(now, plan.seq);
    }

    /// One doorbell for `cmds` (if any), then one sync.
    fn run(&mut self, cmds: &[[u64; 2]]) -> Result<(), HwError> {
        if !cmds.is_empty() {
            self.stats.doorbells += 1;
            if let Err(e) = self.hw.submit(cmds) {
                self.stats.hw_errors += 1;
                return Err(e);
            }
        }
        self.stats.syncs += 1;
        self.hw.sync().inspect_err(|_| self.stats.hw_errors += 1)
    }

    fn complete(&mut self, now: u64, seq: SyncSeq) {
        let Ok(released) = self.engine.sync_completed(now, seq) else {
            return;
        };
        for r in released {
            self.release(r);
        }
    }

    fn release(&mut self, r: Released<Payload<R>>) {
        let Released {
            reply, mut payload, ..
        } = r;
        if let Some(rep) = payload.reply.take() {
            match reply {
                ReplyAction::Send | ReplyAction::AlreadySent => self.outbox.push(rep),
                ReplyAction::Drop => self.dropped.push(rep),
            }
        }
        self.release_payload(payload);
    }

    /// Frees what a payload holds; its covering sync has completed.
    fn release_payload(&mut self, mut p: Payload<R>) {
        if let Some(rep) = p.reply.take() {
            self.outbox.push(rep);
        }
        if let Some(tr) = self
            .clients
            .get_mut(&p.badge)
            .and_then(|c| c.domain.as_mut())
            .and_then(|d| d.tr.as_mut())
        {
            for (b, n) in p.iova.iter().chain(&p.iovas) {
                let _ = tr.iova.free(*b, *n);
            }
            for k in &p.stale_walks {
                if let Some(c) = tr.stale_walks.get_mut(k) {
                    *c -= 1;
                    if *c == 0 {
                        tr.stale_walks.remove(k);
                    }
                }
            }
        }
        for t in p.tables {
            self.hw.free_pages(t, 1);
        }
        if let Some(cd) = p.cd {
            self.hw.free_pages(cd, 1);
        }
        if let Some(a) = p.asid {
            self.asids.release(a);
        }
        for a in p.aborted {
            strtab::clear_tail(&mut self.hw, a);
        }
    }

    // ------------------------------------------------------------------
    // Death.

    /// A client died: its streams go to abort, its whole domain is
    /// invalidated (CFGI_STE per stream, TLBI_NH_ASID, one sync shared
    /// with whatever else was pending), and its tables, CD, IOVAs and ASID
    /// are freed after that sync. Returns its held replies for the task to
    /// drop; other clients' replies released by the same sync come from
    /// the next [`Server::poll`]. Then the task may answer the death notice.
    pub fn client_died(&mut self, badge: u32) -> Vec<(R, Vec<u8>)> {
        let now = self.last_now;
        let Some(c) = self.clients.get_mut(&badge) else {
            return Vec::new();
        };
        let sids = core::mem::take(&mut c.sids);
        let domain = c.domain.take();
        c.quarantined = true;
        let waiters = core::mem::take(&mut self.flush_waiters);
        for (b, r) in waiters {
            if b == badge {
                self.dropped.push((r, reply_bytes(&Response::Flushed)));
            } else {
                self.flush_waiters.push((b, r));
            }
        }
        for sid in &sids {
            self.streams.remove(&sid.0);
        }
        let (cmds, stes) = self.abort_streams(&sids);
        let mut payload = Payload::new(badge);
        payload.aborted = stes;
        let mut asids = Vec::new();
        if let Some(Domain { tr: Some(tr), .. }) = domain {
            payload.tables = tr.table.destroy(&HwTables(&mut self.hw));
            payload.cd = Some(tr.cd);
            payload.asid = Some(tr.asid);
            asids.push(tr.asid);
        }
        match self.engine.purge(now, ClientId(badge), &asids, payload) {
            Ok(_) => {
                // Also finish any earlier plan whose sync failed.
                self.retry_unsynced(now);
                match self.engine.plan_flush(now) {
                    Some(plan) if self.unsynced.is_none() => self.issue(now, plan, cmds),
                    Some(plan) => {
                        // The SMMU is failing: keep everything; poll retries.
                        self.unsynced = Some(plan.seq);
                    }
                    None => {}
                }
            }
            Err(refused) => {
                // Unknown to the engine (cannot happen): invalidate directly.
                let mut all = cmds;
                for a in &asids {
                    all.push(Command::TlbiNhAsid { vmid: 0, asid: *a }.encode());
                }
                if self.run(&all).is_ok() {
                    self.release_payload(refused.payload);
                }
            }
        }
        if self.pending(badge) == 0 {
            let _ = self.engine.remove_client(ClientId(badge));
            self.clients.remove(&badge);
        }
        core::mem::take(&mut self.dropped)
    }
}
