//! The invalidation engine shared by every client of the IOMMU server: it
//! collects pending unmaps, decides when they are flushed (by each client's
//! [`InvalidationPolicy`]), plans the commands that invalidate them with one
//! `Sync` shared by all, and releases each unmap's payload (held reply, IOVA,
//! freed table pages) only once the sync covering it has completed.
//!
//! It owns that ordering and the per-client counters. It must never release
//! a payload before the completion of a sync issued after its unmap, never
//! read a clock (time is passed in as microseconds), never touch hardware or
//! an allocator, and never panic on client input: refused requests hand their
//! payload back and change nothing. It never grows the heap infallibly on an
//! unmap: room for the entry (in its queue, and in the next plan's list when
//! it fills a deferred queue) is reserved with `try_reserve` first, and a
//! caller that must not be refused once it has cleared entries reserves it
//! before clearing ([`Engine::reserve_unmap`]).
//!
//! Lifecycle: [`Engine::unmap`] -> ([`Engine::next_deadline`]) ->
//! [`Engine::plan_flush`] -> the caller issues the [`FlushPlan`]'s commands
//! -> [`Engine::sync_completed`] -> the caller acts on each [`Released`].

mod commands;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use abi::{Asid, Iova, PAGE_SHIFT, PAGE_SIZE};

use crate::policy::InvalidationPolicy;
use crate::sorted::SortedMap;
pub use commands::MAX_COMMANDS_PER_ASID;
use commands::{Frames, Scope};

/// A client of the IOMMU server (a driver task), as the server names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u32);

/// The sequence number of a planned `Sync`. Plans are numbered from 1 in
/// issue order; completing one completes every earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncSeq(u64);

impl SyncSeq {
    /// Wraps a raw sequence number.
    pub const fn new(raw: u64) -> Self {
        Self(raw)
    }
    /// The raw sequence number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

/// A run of whole pages starting at a page-aligned IOVA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IovaRange {
    /// First byte (page aligned).
    pub start: Iova,
    /// Length in pages (non-zero).
    pub pages: u64,
}

impl IovaRange {
    /// A range of `pages` pages from `start`.
    pub const fn new(start: Iova, pages: u64) -> Self {
        Self { start, pages }
    }

    /// `[start_pfn, end_pfn)`, or `None` if misaligned, empty or overflowing.
    fn frames(self) -> Option<(u64, u64)> {
        if !self.start.is_page_aligned() || self.pages == 0 {
            return None;
        }
        let bytes = self.pages.checked_mul(PAGE_SIZE)?;
        self.start.get().checked_add(bytes)?;
        let s = self.start.get() >> PAGE_SHIFT;
        Some((s, s + self.pages))
    }
}

/// Translation-table level of the leaf entries an unmap cleared (4 KiB
/// granule), used as the TLBI's TTL hint; `Any` means "unknown, no hint".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum LeafLevel {
    /// No hint (TTL = 0).
    Any = 0,
    /// Level-1 blocks (1 GiB).
    L1 = 1,
    /// Level-2 blocks (2 MiB).
    L2 = 2,
    /// Level-3 pages (4 KiB).
    L3 = 3,
}

impl LeafLevel {
    /// Pages covered by one leaf entry at this level (1 for `Any`).
    pub const fn span_pages(self) -> u64 {
        match self {
            Self::Any | Self::L3 => 1,
            Self::L2 => 512,
            Self::L1 => 512 * 512,
        }
    }
}

/// What the page-table walker knows about an unmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmapHint {
    /// Level of every leaf entry cleared; `Any` if mixed or unknown.
    pub leaf_level: LeafLevel,
    /// Whether table pages were freed, so walk caches must be invalidated
    /// too (no leaf-only TLBI, no TTL hint).
    pub tables_freed: bool,
}

impl UnmapHint {
    /// 4 KiB pages cleared, no table freed: the cheapest hinted TLBIs.
    pub const PAGES: Self = Self {
        leaf_level: LeafLevel::L3,
        tables_freed: false,
    };
    /// Nothing known: always correct, never the cheapest.
    pub const UNKNOWN: Self = Self {
        leaf_level: LeafLevel::Any,
        tables_freed: true,
    };
}

/// An abstract SMMU invalidation command, to be encoded by the SMMU layer
/// (`TLBI_NH_VA`, range `TLBI_NH_VA`, `TLBI_NH_ASID`, `CMD_SYNC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// Invalidate the entry translating `iova` (one leaf entry of `pages`
    /// pages at level `ttl`; with `leaf == false` also walk-cache entries).
    TlbiVa {
        /// Domain tag.
        asid: Asid,
        /// Address inside the entry to invalidate.
        iova: Iova,
        /// Pages this command is expected to cover (the leaf's span).
        pages: u64,
        /// TTL hint (with TG = 4 KiB); `Any` = no hint.
        ttl: LeafLevel,
        /// Leaf-only invalidation (walk caches kept).
        leaf: bool,
    },
    /// Invalidate `[iova, iova + pages)`; `pages` is always `NUM << SCALE`
    /// with `1 <= NUM <= 31` and `SCALE <= 31`, so it encodes in one command.
    TlbiRange {
        /// Domain tag.
        asid: Asid,
        /// First page of the range.
        iova: Iova,
        /// Pages in the range.
        pages: u64,
        /// TTL hint (with TG = 4 KiB); `Any` = no hint.
        ttl: LeafLevel,
        /// Leaf-only invalidation (walk caches kept).
        leaf: bool,
    },
    /// Invalidate everything tagged with `asid`, walk caches included.
    TlbiAsid {
        /// Domain tag.
        asid: Asid,
    },
    /// Wait until every command issued before it has completed.
    Sync,
}

impl Invalidation {
    /// Whether this is a TLBI (not a `Sync`).
    pub const fn is_tlbi(&self) -> bool {
        !matches!(self, Self::Sync)
    }
}

/// Commands to issue, in order, behind one doorbell. The last command is a
/// `Sync`; its completion is reported with [`Engine::sync_completed`]`(seq)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushPlan {
    /// Sequence number of the plan's final `Sync`.
    pub seq: SyncSeq,
    /// The commands, ending in `Invalidation::Sync`.
    pub commands: Vec<Invalidation>,
    /// For each `Sync` in `commands`, in order: the clients whose unmaps
    /// the commands before it (back to the previous `Sync`) invalidate,
    /// ascending, each once.
    pub participants: Vec<Vec<ClientId>>,
}

impl FlushPlan {
    /// Number of `Sync` commands in the plan.
    pub fn syncs(&self) -> usize {
        self.commands.iter().filter(|c| !c.is_tlbi()).count()
    }
    /// Number of TLBI commands in the plan.
    pub fn tlbis(&self) -> usize {
        self.commands.iter().filter(|c| c.is_tlbi()).count()
    }
}

/// With range invalidation, ranges of one ASID at most this many pages
/// apart are invalidated as one (256 KiB of gap). A deferred queue's
/// ranges come from several unmaps whose IOVAs interleave with live ones
/// (a deferred unmap's IOVAs return to the allocator only after its
/// flush): before merging, the benchmark's deferred flushes took ten range
/// commands where strict ones took one.
pub const MERGE_GAP_PAGES: u64 = 64;

/// How the engine chooses commands. See [`EngineConfig::for_smmu`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// The SMMU supports range invalidation (IDR3.RIL).
    pub range_invalidation: bool,
    /// Past this many merged pages for one ASID in one batch, emit one
    /// `TlbiAsid` instead.
    pub asid_wide_after_pages: u64,
    /// Past this many commands for one ASID in one batch, emit one
    /// `TlbiAsid` instead (capped at [`MAX_COMMANDS_PER_ASID`]).
    pub asid_wide_after_commands: usize,
    /// When a plan is made anyway, also drain every deferred flush queue
    /// into it (shorter stale windows, same number of syncs).
    pub piggyback_deferred: bool,
    /// Ranges of one ASID this many pages apart or closer are invalidated
    /// as one range, gap included: invalidating a live translation only
    /// costs a refill, while every command costs the SMMU (and QEMU's
    /// model a walk of its whole IOTLB). 0: only touching ranges merge.
    pub merge_gap_pages: u64,
}

impl EngineConfig {
    /// Defaults for an SMMU with or without RIL: without it, Linux's bound
    /// of 512 per-page TLBIs per ASID and no gap merging (each gap page
    /// would cost a command); with it, ranges are cheap so only the command
    /// bound applies, and ranges up to [`MERGE_GAP_PAGES`] apart merge.
    /// Piggybacking is on.
    pub const fn for_smmu(range_invalidation: bool) -> Self {
        Self {
            range_invalidation,
            asid_wide_after_pages: if range_invalidation { u64::MAX } else { 512 },
            asid_wide_after_commands: 512,
            piggyback_deferred: true,
            merge_gap_pages: if range_invalidation {
                MERGE_GAP_PAGES
            } else {
                0
            },
        }
    }
}

/// Why the engine refused a request. Codes are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum EngineError {
    /// The client is not registered.
    UnknownClient = 1,
    /// The client is already registered.
    ClientExists = 2,
    /// A range is misaligned, empty or overflows.
    InvalidRange = 3,
    /// The client's domain bypasses translation: nothing to invalidate.
    BypassDomain = 4,
    /// `sync_completed` with a sequence number never issued.
    UnknownSequence = 5,
    /// The client was purged; it can make no more requests.
    ClientPurged = 6,
    /// The client still has unmaps awaiting their sync.
    ClientBusy = 7,
    /// The heap could not hold the entry (nothing changed).
    NoMemory = 8,
}

impl EngineError {
    /// The stable numeric code of this error.
    pub const fn code(self) -> u16 {
        self as u16
    }
}

/// What one engine unmap covers ([`Engine::unmap_mappings`],
/// [`Engine::unmap_reserved`]); each of its mappings counts as an unmap,
/// and as one of a deferred queue's N.
#[derive(Clone, Copy, Debug)]
pub struct Unmapping<'a> {
    /// The client whose unmap it is.
    pub client: ClientId,
    /// The ASID of the domain the ranges were cleared from.
    pub asid: Asid,
    /// The cleared ranges.
    pub ranges: &'a [IovaRange],
    /// What the walker saw of them (leaf level, tables freed).
    pub hint: UnmapHint,
    /// How many mappings they were.
    pub mappings: u64,
}

/// Room for one unmap, reserved before the caller clears any entry
/// ([`Engine::reserve_unmap`]) and spent by [`Engine::unmap_reserved`]: the
/// list of its ranges when it has several (one is kept inline), and its
/// entry's slot in the engine's queues.
#[derive(Debug, Default)]
pub struct UnmapRoom {
    frames: Vec<(u64, u64)>,
}

impl UnmapRoom {
    /// Room for the list of an unmap of `ranges` ranges (none needed for
    /// one), without a queue slot: for the second and later unmaps whose
    /// slots one [`Engine::reserve_unmap`] reserved. `NoMemory` if the
    /// heap cannot hold it.
    pub fn for_ranges(ranges: usize) -> Result<Self, EngineError> {
        let mut frames = Vec::new();
        if ranges > 1 {
            frames
                .try_reserve_exact(ranges)
                .map_err(|_| EngineError::NoMemory)?;
        }
        Ok(Self { frames })
    }
}

/// A refused request: the error, and the payload handed back untouched.
#[derive(Debug, PartialEq, Eq)]
pub struct Refused<P> {
    /// Why.
    pub error: EngineError,
    /// The payload that was passed in.
    pub payload: P,
}

/// When the client gets its reply to an unmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Reply now (deferred client).
    Now,
    /// Hold the reply; it comes back in a [`Released`] with
    /// [`ReplyAction::Send`] after the covering sync.
    AfterSync,
}

/// When the server should call [`Engine::plan_flush`] after a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushUrgency {
    /// Before handling anything else (per-unmap baseline, purge).
    Immediately,
    /// Once the requests already waiting in the inbox are handled, so that
    /// they share the sync.
    EndOfBatch,
    /// By this time (µs), unless another flush happens first.
    At(u64),
}

/// What the server does after an accepted unmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmapOutcome {
    /// When to reply.
    pub reply: Reply,
    /// When to flush.
    pub flush: FlushUrgency,
}

/// What to do with a released unmap's reply handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyAction {
    /// A held strict reply: send it now.
    Send,
    /// Deferred: the reply went out at unmap time.
    AlreadySent,
    /// The client was purged: drop the reply, just free.
    Drop,
}

/// An unmap whose covering sync has completed: its IOVAs and table pages
/// may be reused now.
#[derive(Debug, PartialEq, Eq)]
pub struct Released<P> {
    /// Whose unmap.
    pub client: ClientId,
    /// What to do with the reply.
    pub reply: ReplyAction,
    /// When the unmap was accepted (µs).
    pub unmapped_at: u64,
    /// The payload given to [`Engine::unmap`].
    pub payload: P,
}

/// What [`Engine::purge`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurgeOutcome {
    /// Queued entries forced into the next flush (teardown included).
    pub forced: usize,
    /// Entries already issued, awaiting their sync.
    pub in_flight: usize,
    /// Always `Immediately`: the dead client's memory waits on this flush.
    pub flush: FlushUrgency,
}

/// Per-client counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Map requests counted with [`Engine::note_map`].
    pub maps: u64,
    /// Pages mapped.
    pub mapped_pages: u64,
    /// Unmaps accepted.
    pub unmaps: u64,
    /// Pages unmapped.
    pub unmapped_pages: u64,
    /// TLBI commands issued for this client's ASIDs in batches it took part
    /// in (a command shared by two clients of one ASID counts for both).
    pub tlbi_commands: u64,
    /// Syncs this client's unmaps took part in.
    pub syncs: u64,
    /// Pages unmapped but not yet released.
    pub pages_pending: u64,
    /// Unmaps not yet released.
    pub entries_pending: u64,
    /// Deferred unmaps released (each had a stale window).
    pub stale_windows: u64,
    /// Longest stale window: unmap to covering sync completion (µs).
    pub max_stale_us: u64,
    /// Sum of stale windows (µs), for the mean.
    pub total_stale_us: u64,
    /// Longest time a strict reply was held (µs).
    pub max_held_us: u64,
}

/// Engine-wide counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Plans made.
    pub plans: u64,
    /// `Sync` commands planned.
    pub syncs: u64,
    /// `TlbiVa` commands planned.
    pub tlbi_va: u64,
    /// `TlbiRange` commands planned.
    pub tlbi_range: u64,
    /// `TlbiAsid` commands planned.
    pub tlbi_asid: u64,
    /// Unmaps accepted.
    pub unmaps: u64,
    /// Unmaps released.
    pub released: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Strict,
    PerUnmap,
    Deferred,
    Teardown,
}

struct Entry<P> {
    client: ClientId,
    kind: Kind,
    scope: Scope,
    pages: u64,
    unmapped_at: u64,
    payload: P,
}

impl<P> Entry<P> {
    /// An entry of `client`'s, unmapped at `now`; its kind is its
    /// client's policy's, set when it is accepted (`Engine::enqueue`).
    #[inline(always)]
    fn new(now: u64, client: ClientId, scope: Scope, pages: u64, payload: P) -> Self {
        Self {
            client,
            kind: Kind::Teardown,
            scope,
            pages,
            unmapped_at: now,
            payload,
        }
    }
}

struct Client<P> {
    policy: InvalidationPolicy,
    stats: ClientStats,
    /// Deferred flush queue, oldest first; never holding more than
    /// `max_entries` mappings.
    queue: VecDeque<Entry<P>>,
    /// The mappings `queue` holds.
    queued_mappings: u64,
    purged: bool,
}

struct Batch<P> {
    seq: u64,
    /// Last accepted first: released from the end, growing nothing.
    entries: Vec<Entry<P>>,
}

/// The invalidation engine. `P` is the server's payload per unmap.
pub struct Engine<P> {
    config: EngineConfig,
    clients: SortedMap<ClientId, Client<P>>,
    /// Entries for the next plan.
    ready: Vec<Entry<P>>,
    /// Earliest `unmapped_at` in `ready`.
    ready_oldest: Option<u64>,
    /// Issued plans awaiting completion, oldest first.
    in_flight: VecDeque<Batch<P>>,
    /// Sequence number of the next plan.
    next_seq: u64,
    stats: EngineStats,
    /// Lists a plan is built in, kept for the next (see [`PlanLists`]).
    lists: PlanLists,
}

/// The lists a plan is built in and the lists a plan hands out (given
/// back with [`Engine::recycle`]), kept from one plan to the next,
/// cleared, with their room: once they have grown to the largest plan
/// yet, planning allocates nothing (each was growing from nothing at
/// every plan, a dozen heap allocations per flush). Every growth is
/// still reserved with `try_reserve` first.
#[derive(Debug, Default)]
struct PlanLists {
    choice: commands::Lists,
    /// (client, ASID) pairs of the shared sync.
    pairs: Vec<(ClientId, Asid)>,
    /// Per client: TLBI commands and syncs to count once the plan is made.
    counted: Vec<(ClientId, u64, u64)>,
    /// A plan's command list.
    commands: Vec<Invalidation>,
    /// A plan's list of participant lists, empty.
    segments: Vec<Vec<ClientId>>,
    /// Participant lists, empty, at most [`SPARE_SEGMENTS`].
    spare: Vec<Vec<ClientId>>,
}

/// Participant lists kept for the next plans: a plan has one per
/// per-unmap entry and one for the shared sync.
const SPARE_SEGMENTS: usize = 16;

impl PlanLists {
    /// An empty participant list, with room for `n`.
    fn segment(&mut self, n: usize) -> Result<Vec<ClientId>, EngineError> {
        let mut v = self.spare.pop().unwrap_or_default();
        v.try_reserve(n).map_err(|_| EngineError::NoMemory)?;
        Ok(v)
    }

    /// The commands and participant lists of a plan covering `entries`
    /// (one own sync per per-unmap entry, then one shared by the rest),
    /// leaving in `counted` what each client's counters gain. Every list
    /// is reserved with `try_reserve`; `NoMemory` changes nothing the
    /// engine relies on (the lists are scratch).
    fn plan<P>(
        &mut self,
        config: &EngineConfig,
        entries: &[Entry<P>],
    ) -> Result<(Vec<Invalidation>, Vec<Vec<ClientId>>), EngineError> {
        let entries = entries.iter();
        let oom = |_| EngineError::NoMemory;
        let mut commands = core::mem::take(&mut self.commands);
        let mut segments = core::mem::take(&mut self.segments);
        self.counted.clear();
        let per_unmap = entries.clone().filter(|e| e.kind == Kind::PerUnmap).count();
        let shared = || entries.clone().filter(|e| e.kind != Kind::PerUnmap);
        let shared_n = shared().count();
        segments
            .try_reserve(per_unmap + usize::from(shared_n > 0))
            .map_err(oom)?;

        // The baseline: each per-unmap entry with its own sync.
        for e in entries.clone().filter(|e| e.kind == Kind::PerUnmap) {
            commands::choose(config, [&e.scope], &mut commands, &mut self.choice)
                .map_err(|_| EngineError::NoMemory)?;
            commands.try_reserve(1).map_err(oom)?;
            commands.push(Invalidation::Sync);
            let mut alone = self.segment(1)?;
            alone.push(e.client);
            segments.push(alone);
            let tlbis = self.choice.counts.iter().map(|(_, n)| *n as u64).sum();
            self.counted.try_reserve(1).map_err(oom)?;
            self.counted.push((e.client, tlbis, 1));
        }
        // Everything else shares the final sync.
        if shared_n > 0 {
            commands::choose(
                config,
                shared().map(|e| &e.scope),
                &mut commands,
                &mut self.choice,
            )
            .map_err(|_| EngineError::NoMemory)?;
            commands.try_reserve(1).map_err(oom)?;
            commands.push(Invalidation::Sync);
            let asids = shared()
                .map(|e| match &e.scope {
                    Scope::Ranges { .. } => 1,
                    Scope::Asids(asids) => asids.len(),
                })
                .sum();
            let mut participants = self.segment(shared_n)?;
            let pairs = &mut self.pairs;
            pairs.clear();
            pairs.try_reserve(asids).map_err(oom)?;
            for e in shared() {
                participants.push(e.client);
                match &e.scope {
                    Scope::Ranges { asid, .. } => pairs.push((e.client, *asid)),
                    Scope::Asids(asids) => pairs.extend(asids.iter().map(|a| (e.client, *a))),
                }
            }
            pairs.sort_unstable();
            pairs.dedup();
            participants.sort_unstable();
            participants.dedup();
            let counted = &mut self.counted;
            counted
                .try_reserve(pairs.len() + participants.len())
                .map_err(oom)?;
            let counts = &self.choice.counts;
            for &(client, asid) in pairs.iter() {
                if let Ok(i) = counts.binary_search_by_key(&asid, |&(a, _)| a) {
                    counted.push((client, counts[i].1 as u64, 0));
                }
            }
            for client in &participants {
                counted.push((*client, 0, 1));
            }
            segments.push(participants);
        }
        Ok((commands, segments))
    }
}

impl<P> Engine<P> {
    /// An engine with no clients.
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            clients: SortedMap::new(),
            ready: Vec::new(),
            ready_oldest: None,
            in_flight: VecDeque::new(),
            next_seq: 1,
            stats: EngineStats::default(),
            lists: PlanLists::default(),
        }
    }

    /// Takes back an issued plan's lists, emptied, for the next plans
    /// (see [`PlanLists`]); dropping a plan instead is also correct.
    pub fn recycle(&mut self, plan: FlushPlan) {
        let FlushPlan {
            mut commands,
            mut participants,
            ..
        } = plan;
        let l = &mut self.lists;
        commands.clear();
        if commands.capacity() > l.commands.capacity() {
            l.commands = commands;
        }
        for mut v in participants.drain(..) {
            if l.spare.len() < SPARE_SEGMENTS && l.spare.try_reserve(1).is_ok() {
                v.clear();
                l.spare.push(v);
            }
        }
        if participants.capacity() > l.segments.capacity() {
            l.segments = participants;
        }
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Registers a client with its policy.
    pub fn register(
        &mut self,
        client: ClientId,
        policy: InvalidationPolicy,
    ) -> Result<(), EngineError> {
        if self.clients.contains_key(&client) {
            return Err(EngineError::ClientExists);
        }
        self.clients.insert(
            client,
            Client {
                policy,
                stats: ClientStats::default(),
                queue: VecDeque::new(),
                queued_mappings: 0,
                purged: false,
            },
        );
        Ok(())
    }

    /// Forgets a client with nothing pending, returning its final counters.
    pub fn remove_client(&mut self, client: ClientId) -> Result<ClientStats, EngineError> {
        let c = self
            .clients
            .get(&client)
            .ok_or(EngineError::UnknownClient)?;
        if c.stats.entries_pending != 0 {
            return Err(EngineError::ClientBusy);
        }
        let stats = c.stats;
        self.clients.remove(&client);
        Ok(stats)
    }

    /// Changes a client's policy. Refused with [`EngineError::ClientBusy`]
    /// while any of its unmaps awaits its sync (flush them first: the
    /// policy an unmap was accepted under decides its reply and window).
    pub fn set_policy(
        &mut self,
        client: ClientId,
        policy: InvalidationPolicy,
    ) -> Result<(), EngineError> {
        let c = self.live_client(client)?;
        if c.stats.entries_pending != 0 || !c.queue.is_empty() {
            return Err(EngineError::ClientBusy);
        }
        c.policy = policy;
        Ok(())
    }

    /// A client's policy.
    pub fn policy(&self, client: ClientId) -> Option<InvalidationPolicy> {
        self.clients.get(&client).map(|c| c.policy)
    }

    /// Zeroes a client's counters, keeping the gauges of what is still
    /// pending (`pages_pending`, `entries_pending`).
    pub fn reset_stats(&mut self, client: ClientId) -> Result<(), EngineError> {
        let c = self.live_client(client)?;
        c.stats = ClientStats {
            pages_pending: c.stats.pages_pending,
            entries_pending: c.stats.entries_pending,
            ..ClientStats::default()
        };
        Ok(())
    }

    /// Counts an unmap that needs no invalidation (a bypass client's: the
    /// device never used a translation), so that every unmap is counted.
    pub fn note_unmap(&mut self, client: ClientId, pages: u64) -> Result<(), EngineError> {
        let c = self.live_client(client)?;
        c.stats.unmaps += 1;
        c.stats.unmapped_pages = c.stats.unmapped_pages.saturating_add(pages);
        Ok(())
    }

    /// Counts a map of `pages` pages (the hook for the map path).
    pub fn note_map(&mut self, client: ClientId, pages: u64) -> Result<(), EngineError> {
        let c = self.live_client(client)?;
        c.stats.maps += 1;
        c.stats.mapped_pages = c.stats.mapped_pages.saturating_add(pages);
        Ok(())
    }

    /// Accepts an unmap whose page-table entries are already cleared:
    /// `ranges` in domain `asid`, `hint` from the walker. The payload comes
    /// back from [`Engine::sync_completed`] once a sync covering the unmap
    /// has completed.
    pub fn unmap(
        &mut self,
        now: u64,
        client: ClientId,
        asid: Asid,
        ranges: &[IovaRange],
        hint: UnmapHint,
        payload: P,
    ) -> Result<UnmapOutcome, Refused<P>> {
        let u = Unmapping {
            client,
            asid,
            ranges,
            hint,
            mappings: 1,
        };
        self.unmap_mappings(now, u, payload)
    }

    /// [`Engine::unmap`] of `mappings` mappings at once (a request's
    /// ranges, cleared together): one entry, one payload, one held reply,
    /// counted as `mappings` unmaps and, in a deferred queue, as
    /// `mappings` of its `max_entries` (so a batch never stretches the
    /// queue's bound). The per-unmap baseline syncs each entry alone:
    /// give it one mapping per call.
    pub fn unmap_mappings(
        &mut self,
        now: u64,
        u: Unmapping<'_>,
        payload: P,
    ) -> Result<UnmapOutcome, Refused<P>> {
        let room = match self.reserve_unmap(u.client, 1, u.ranges.len()) {
            Ok(room) => room,
            Err(error) => return Err(refuse(error, payload)),
        };
        self.unmap_reserved(now, u, payload, room)
    }

    /// Reserves room for `unmaps` more unmaps of `client` (each entry's
    /// slot in the queue its policy puts it in, and in the next plan's
    /// list should it fill its client's deferred queue), the first of
    /// which has `ranges` ranges; the [`UnmapRoom`] goes to
    /// [`Engine::unmap_reserved`]. With the room reserved, those unmaps
    /// grow nothing (as long as no other request of the engine's runs in
    /// between). `NoMemory` (nothing changed) if the heap cannot hold it;
    /// an unknown or purged client is refused as [`Engine::unmap`] would.
    pub fn reserve_unmap(
        &mut self,
        client: ClientId,
        unmaps: usize,
        ranges: usize,
    ) -> Result<UnmapRoom, EngineError> {
        let c = live_client(&mut self.clients, client)?;
        let oom = |_| EngineError::NoMemory;
        let ready_room = match c.policy {
            InvalidationPolicy::Deferred { .. } => {
                c.queue.try_reserve(unmaps).map_err(oom)?;
                // A queue that fills moves whole into the next plan.
                c.queue.len() + unmaps
            }
            _ => unmaps,
        };
        self.ready.try_reserve(ready_room).map_err(oom)?;
        self.in_flight.try_reserve(1).map_err(oom)?;
        UnmapRoom::for_ranges(ranges)
    }

    /// [`Engine::unmap_mappings`] in room reserved by
    /// [`Engine::reserve_unmap`] (`room` must be from that call, for at
    /// least `ranges.len()` ranges, or this may be refused with `NoMemory`).
    // Always inlined: as a call, the payload was copied into its argument
    // (a `memcpy` per one-page unmap in the host bench `hot_paths`).
    #[inline(always)]
    pub fn unmap_reserved(
        &mut self,
        now: u64,
        u: Unmapping<'_>,
        payload: P,
        room: UnmapRoom,
    ) -> Result<UnmapOutcome, Refused<P>> {
        self.unmap_reserved_with(now, u, move || payload, room)
    }

    /// [`Engine::unmap_reserved`] of the payload `payload` makes, which
    /// it calls once, where the entry is built (or, refused, where the
    /// refusal is): a payload built by the caller and moved in was copied
    /// on the way (a `memcpy` per one-page unmap in the host bench
    /// `hot_paths`).
    #[inline(always)]
    pub fn unmap_reserved_with(
        &mut self,
        now: u64,
        u: Unmapping<'_>,
        payload: impl FnOnce() -> P,
        room: UnmapRoom,
    ) -> Result<UnmapOutcome, Refused<P>> {
        let Unmapping {
            client,
            asid,
            ranges,
            hint,
            mappings,
        } = u;
        let mut pages = 0u64;
        let frames = match ranges {
            // The usual one range: checked once, kept inline.
            [one] => match one.frames() {
                Some((s, e)) => {
                    pages = e - s;
                    Frames::One((s, e))
                }
                None => return Err(refuse(EngineError::InvalidRange, payload())),
            },
            many => {
                for r in many {
                    match r.frames() {
                        Some((s, e)) => pages = pages.saturating_add(e - s),
                        None => return Err(refuse(EngineError::InvalidRange, payload())),
                    }
                }
                let mut v = room.frames;
                if v.try_reserve_exact(many.len()).is_err() {
                    return Err(refuse(EngineError::NoMemory, payload()));
                }
                v.extend(many.iter().filter_map(|r| r.frames()));
                Frames::Many(v)
            }
        };
        let scope = Scope::Ranges {
            asid,
            ranges: frames,
            hint,
        };
        // The entry is built here, where the payload is, and handed on
        // whole: one move of the payload rather than one into `enqueue`'s
        // argument and another into the entry.
        self.enqueue(
            Entry::new(now, client, scope, pages, payload()),
            mappings.max(1),
        )
    }

    /// Accepts the invalidation of everything in domain `asid` (a domain
    /// retired while the client lives), with the client's policy.
    pub fn unmap_asid(
        &mut self,
        now: u64,
        client: ClientId,
        asid: Asid,
        payload: P,
    ) -> Result<UnmapOutcome, Refused<P>> {
        let mut asids = Vec::new();
        if asids.try_reserve_exact(1).is_err() {
            return Err(refuse(EngineError::NoMemory, payload));
        }
        asids.push(asid);
        self.enqueue(Entry::new(now, client, Scope::Asids(asids), 0, payload), 1)
    }

    /// A client died: its queued unmaps are forced into the next flush, with
    /// an ASID-wide invalidation of each of `teardown_asids` carrying
    /// `payload` (the torn-down domain's table pages). Held replies of the
    /// client come back as [`ReplyAction::Drop`]; it can make no more
    /// requests, and is forgotten with [`Engine::remove_client`] once idle.
    /// `NoMemory`, changing nothing, if the heap cannot hold the entry and
    /// the queue it joins (the caller then invalidates by itself).
    pub fn purge(
        &mut self,
        now: u64,
        client: ClientId,
        teardown_asids: &[Asid],
        payload: P,
    ) -> Result<PurgeOutcome, Refused<P>> {
        let c = match live_client(&mut self.clients, client) {
            Ok(c) => c,
            Err(error) => return Err(refuse(error, payload)),
        };
        let mut asids = Vec::new();
        if self.ready.try_reserve(c.queue.len() + 1).is_err()
            || self.in_flight.try_reserve(1).is_err()
            || asids.try_reserve_exact(teardown_asids.len()).is_err()
        {
            return Err(refuse(EngineError::NoMemory, payload));
        }
        asids.extend_from_slice(teardown_asids);
        c.purged = true;
        c.stats.entries_pending += 1;
        ready_queue(
            &mut self.ready,
            &mut self.ready_oldest,
            &mut c.queue,
            &mut c.queued_mappings,
        );
        let forced = self.ready.iter().filter(|e| e.client == client).count() + 1;
        self.push_ready(Entry {
            client,
            kind: Kind::Teardown,
            scope: Scope::Asids(asids),
            pages: 0,
            unmapped_at: now,
            payload,
        });
        self.stats.unmaps += 1;
        let in_flight = self
            .in_flight
            .iter()
            .flat_map(|b| &b.entries)
            .filter(|e| e.client == client)
            .count();
        Ok(PurgeOutcome {
            forced,
            in_flight,
            flush: FlushUrgency::Immediately,
        })
    }

    /// Moves a client's deferred flush queue into the next plan (for a
    /// client that asked to have everything flushed now). Returns how many
    /// entries moved. Changes nothing for a client without a queue, nor
    /// when the heap cannot hold the plan's longer list (`NoMemory`).
    pub fn expedite(&mut self, client: ClientId) -> Result<usize, EngineError> {
        let c = live_client(&mut self.clients, client)?;
        self.ready
            .try_reserve(c.queue.len())
            .map_err(|_| EngineError::NoMemory)?;
        Ok(ready_queue(
            &mut self.ready,
            &mut self.ready_oldest,
            &mut c.queue,
            &mut c.queued_mappings,
        ))
    }

    /// The time (µs) by which [`Engine::plan_flush`] must be called: the
    /// oldest ready entry (already due) or the oldest deferred entry plus
    /// its client's `max_age_us`, less the flush's lead ([`flush_at`]).
    /// `None` if nothing waits.
    pub fn next_deadline(&self) -> Option<u64> {
        let queues = self.clients.values().filter_map(|c| {
            let front = c.queue.front()?;
            Some(flush_at(front.unmapped_at, c.policy))
        });
        self.ready_oldest.into_iter().chain(queues).min()
    }

    /// When the oldest deferred unmap's window must close (its age bound
    /// less the flush lead), over the deferred clients only; `None` if no
    /// deferred unmap is pending.
    pub fn deferred_deadline(&self) -> Option<u64> {
        self.clients
            .values()
            .filter(|c| matches!(c.policy, InvalidationPolicy::Deferred { .. }))
            .filter_map(|c| Some(flush_at(c.queue.front()?.unmapped_at, c.policy)))
            .min()
    }

    /// Whether a flush is due at `now`.
    pub fn flush_due(&self, now: u64) -> bool {
        self.next_deadline().is_some_and(|d| d <= now)
    }

    /// Plans a flush of every ready entry and every due deferred queue (all
    /// deferred queues if piggybacking). `None` if nothing is due, or if
    /// the heap cannot hold the plan (see [`Engine::try_plan_flush`]). The
    /// plan ends in one `Sync` shared by all, preceded by one own sync per
    /// `StrictPerUnmap` entry.
    pub fn plan_flush(&mut self, now: u64) -> Option<FlushPlan> {
        self.try_plan_flush(now).ok().flatten()
    }

    /// [`Engine::plan_flush`], refused with `NoMemory` if the heap cannot
    /// hold the plan (every list it builds is reserved with `try_reserve`).
    /// A refusal changes nothing but the due deferred queues (all of them,
    /// when piggybacking), which have joined the ready list: due at once
    /// from then on. The caller may then invalidate everything instead
    /// ([`Engine::plan_full`]).
    pub fn try_plan_flush(&mut self, now: u64) -> Result<Option<FlushPlan>, EngineError> {
        let oom = |_| EngineError::NoMemory;
        let due = |c: &Client<P>| {
            c.queue.front().is_some_and(|f| {
                flush_at(f.unmapped_at, c.policy) <= now
                    || c.queued_mappings >= max_entries(c.policy) as u64
            })
        };
        let any_due = self.clients.values().any(due);
        if self.ready.is_empty() && !any_due {
            return Ok(None);
        }
        let piggyback = self.config.piggyback_deferred;
        let moves = |c: &&Client<P>| piggyback || due(c);
        let moving: usize = self
            .clients
            .values()
            .filter(moves)
            .map(|c| c.queue.len())
            .sum();
        self.ready.try_reserve(moving).map_err(oom)?;
        self.in_flight.try_reserve(1).map_err(oom)?;
        // The queues that move join the ready list first (its room was
        // reserved above), so that the plan walks one list. A plan the
        // heap then refuses leaves them there: they are flushed with the
        // next plan, which is due at once (earlier than their windows,
        // never later).
        for c in self.clients.values_mut() {
            if piggyback || due(c) {
                ready_queue(
                    &mut self.ready,
                    &mut self.ready_oldest,
                    &mut c.queue,
                    &mut c.queued_mappings,
                );
            }
        }
        let (commands, segments) = self.lists.plan(&self.config, &self.ready)?;
        // The plan is made: now the counters count.
        for &(client, tlbis, syncs) in &self.lists.counted {
            if let Some(c) = self.clients.get_mut(&client) {
                c.stats.tlbi_commands += tlbis;
                c.stats.syncs += syncs;
            }
        }
        for cmd in &commands {
            match cmd {
                Invalidation::TlbiVa { .. } => self.stats.tlbi_va += 1,
                Invalidation::TlbiRange { .. } => self.stats.tlbi_range += 1,
                Invalidation::TlbiAsid { .. } => self.stats.tlbi_asid += 1,
                Invalidation::Sync => self.stats.syncs += 1,
            }
        }
        // Room in flight was reserved above.
        let seq = self.put_in_flight();
        Ok(Some(FlushPlan {
            seq: SyncSeq(seq),
            commands,
            participants: segments,
        }))
    }

    /// The plan of last resort, when the heap cannot hold a
    /// [`FlushPlan`]: every ready entry (and every deferred queue the
    /// next plan's list has room for) is covered by one sync behind an
    /// invalidation of everything, which the caller issues (all of stage
    /// 1 and every cached configuration), then completes `seq` as for any
    /// plan. Grows nothing: the entries stay in their list, and the room
    /// for the plan in flight is kept by every unmap. `None` if nothing is
    /// ready, or if that room is missing after all.
    pub fn plan_full(&mut self) -> Option<SyncSeq> {
        for c in self.clients.values_mut() {
            if self.ready.capacity() - self.ready.len() >= c.queue.len() {
                ready_queue(
                    &mut self.ready,
                    &mut self.ready_oldest,
                    &mut c.queue,
                    &mut c.queued_mappings,
                );
            }
        }
        if self.ready.is_empty() || self.in_flight.len() == self.in_flight.capacity() {
            return None;
        }
        for (id, c) in self.clients.iter_mut() {
            if self.ready.iter().any(|e| e.client == *id) {
                c.stats.syncs += 1;
                c.stats.tlbi_commands += 1;
            }
        }
        self.stats.syncs += 1;
        Some(SyncSeq(self.put_in_flight()))
    }

    /// Makes every ready entry a plan in flight under the next sequence
    /// number, which it returns; the caller has room in `in_flight` for
    /// it. The entries are kept last accepted first, so that releasing
    /// them from the end grows nothing.
    fn put_in_flight(&mut self) -> u64 {
        self.stats.plans += 1;
        let seq = self.next_seq;
        self.next_seq += 1;
        self.ready_oldest = None;
        let mut entries = core::mem::take(&mut self.ready);
        entries.reverse();
        self.in_flight.push_back(Batch { seq, entries });
        seq
    }

    /// The sync of plan `seq` completed at `now` (and with it every earlier
    /// plan): returns the released unmaps, oldest plan first. Completing an
    /// already completed plan releases nothing; a sequence number never
    /// issued is refused. (Its list grows infallibly: the server releases
    /// one at a time with [`Engine::next_released`].)
    pub fn sync_completed(
        &mut self,
        now: u64,
        seq: SyncSeq,
    ) -> Result<Vec<Released<P>>, EngineError> {
        let mut released = Vec::new();
        while let Some(r) = self.next_released(now, seq)? {
            released.push(r);
        }
        Ok(released)
    }

    /// The next unmap that the completed sync of plan `seq` (and with it
    /// every earlier plan) released, oldest plan first, in the order they
    /// were accepted; `None` once there is none. One at a time, growing
    /// nothing: the caller may stop and come back for the rest later (the
    /// sync stays completed). A sequence number never issued is refused.
    pub fn next_released(
        &mut self,
        now: u64,
        seq: SyncSeq,
    ) -> Result<Option<Released<P>>, EngineError> {
        if seq.0 == 0 || seq.0 >= self.next_seq {
            return Err(EngineError::UnknownSequence);
        }
        while let Some(batch) = self.in_flight.front_mut() {
            if batch.seq > seq.0 {
                break;
            }
            // A batch's entries are kept last first (`in_flight`).
            if let Some(e) = batch.entries.pop() {
                return Ok(Some(self.release(now, e)));
            }
            if let Some(batch) = self.in_flight.pop_front() {
                // The emptied vector's room serves the next plan's
                // entries: the ready queue does not grow again from
                // nothing after each plan.
                if self.ready.is_empty() && self.ready.capacity() < batch.entries.capacity() {
                    self.ready = batch.entries;
                }
            }
        }
        Ok(None)
    }

    /// A client's counters.
    pub fn client_stats(&self, client: ClientId) -> Option<&ClientStats> {
        self.clients.get(&client).map(|c| &c.stats)
    }

    /// Engine-wide counters.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Unmaps accepted and not yet released, over every client (the most
    /// a flush can release).
    pub fn pending_entries(&self) -> u64 {
        self.clients.values().map(|c| c.stats.entries_pending).sum()
    }

    /// Length of a client's deferred flush queue.
    pub fn queued(&self, client: ClientId) -> Option<usize> {
        self.clients.get(&client).map(|c| c.queue.len())
    }

    /// Plans issued and not yet completed.
    pub fn plans_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn live_client(&mut self, client: ClientId) -> Result<&mut Client<P>, EngineError> {
        live_client(&mut self.clients, client)
    }

    /// Accepts `entry` (its kind is set here from its client's policy),
    /// counted as `mappings` unmaps.
    fn enqueue(&mut self, mut entry: Entry<P>, mappings: u64) -> Result<UnmapOutcome, Refused<P>> {
        let (now, pages) = (entry.unmapped_at, entry.pages);
        let c = match live_client(&mut self.clients, entry.client) {
            Ok(c) => c,
            Err(error) => return Err(refuse(error, entry.payload)),
        };
        let kind = match c.policy {
            InvalidationPolicy::Strict => Kind::Strict,
            InvalidationPolicy::StrictPerUnmap => Kind::PerUnmap,
            InvalidationPolicy::Deferred { .. } => Kind::Deferred,
            InvalidationPolicy::Bypass => {
                return Err(refuse(EngineError::BypassDomain, entry.payload));
            }
        };
        entry.kind = kind;
        // Room first (none is taken when the caller reserved it): a
        // refusal changes nothing.
        let room = match kind {
            Kind::Deferred => {
                c.queue.try_reserve(1).is_ok() && {
                    let fills =
                        c.queued_mappings.saturating_add(mappings) >= max_entries(c.policy) as u64;
                    !fills || self.ready.try_reserve(c.queue.len() + 1).is_ok()
                }
            }
            _ => self.ready.try_reserve(1).is_ok(),
        } && self.in_flight.try_reserve(1).is_ok();
        if !room {
            return Err(refuse(EngineError::NoMemory, entry.payload));
        }
        c.stats.unmaps += mappings;
        c.stats.unmapped_pages = c.stats.unmapped_pages.saturating_add(pages);
        c.stats.pages_pending = c.stats.pages_pending.saturating_add(pages);
        c.stats.entries_pending += 1;
        let outcome = match kind {
            Kind::Deferred => {
                c.queue.push_back(entry);
                c.queued_mappings = c.queued_mappings.saturating_add(mappings);
                if c.queued_mappings >= max_entries(c.policy) as u64 {
                    // Full: hand the whole queue to the next flush.
                    ready_queue(
                        &mut self.ready,
                        &mut self.ready_oldest,
                        &mut c.queue,
                        &mut c.queued_mappings,
                    );
                    UnmapOutcome {
                        reply: Reply::Now,
                        flush: FlushUrgency::EndOfBatch,
                    }
                } else {
                    let oldest = c.queue.front().map_or(now, |f| f.unmapped_at);
                    let deadline = flush_at(oldest, c.policy);
                    UnmapOutcome {
                        reply: Reply::Now,
                        flush: FlushUrgency::At(deadline),
                    }
                }
            }
            Kind::PerUnmap => {
                self.push_ready(entry);
                UnmapOutcome {
                    reply: Reply::AfterSync,
                    flush: FlushUrgency::Immediately,
                }
            }
            Kind::Strict | Kind::Teardown => {
                self.push_ready(entry);
                UnmapOutcome {
                    reply: Reply::AfterSync,
                    flush: FlushUrgency::EndOfBatch,
                }
            }
        };
        self.stats.unmaps += mappings;
        Ok(outcome)
    }

    /// Adds a ready entry (its room was reserved).
    fn push_ready(&mut self, e: Entry<P>) {
        self.ready_oldest = Some(
            self.ready_oldest
                .map_or(e.unmapped_at, |o| o.min(e.unmapped_at)),
        );
        self.ready.push(e);
    }

    fn release(&mut self, now: u64, e: Entry<P>) -> Released<P> {
        let window = now.saturating_sub(e.unmapped_at);
        let mut reply = match e.kind {
            Kind::Deferred => ReplyAction::AlreadySent,
            Kind::Strict | Kind::PerUnmap => ReplyAction::Send,
            Kind::Teardown => ReplyAction::Drop,
        };
        if let Some(c) = self.clients.get_mut(&e.client) {
            let s = &mut c.stats;
            s.pages_pending = s.pages_pending.saturating_sub(e.pages);
            s.entries_pending = s.entries_pending.saturating_sub(1);
            if e.kind == Kind::Deferred {
                s.stale_windows += 1;
                s.max_stale_us = s.max_stale_us.max(window);
                s.total_stale_us = s.total_stale_us.saturating_add(window);
            } else {
                s.max_held_us = s.max_held_us.max(window);
            }
            if c.purged && reply == ReplyAction::Send {
                reply = ReplyAction::Drop;
            }
        }
        self.stats.released += 1;
        Released {
            client: e.client,
            reply,
            unmapped_at: e.unmapped_at,
            payload: e.payload,
        }
    }
}

fn live_client<P>(
    clients: &mut SortedMap<ClientId, Client<P>>,
    client: ClientId,
) -> Result<&mut Client<P>, EngineError> {
    match clients.get_mut(&client) {
        None => Err(EngineError::UnknownClient),
        Some(c) if c.purged => Err(EngineError::ClientPurged),
        Some(c) => Ok(c),
    }
}

/// Moves a deferred queue, whole, into the next plan (`ready`, whose
/// earliest `unmapped_at` is `oldest`); returns how many entries moved.
/// Callers reserve room in `ready` first, except `plan_flush`, whose
/// growth is not a request's (see its documentation).
fn ready_queue<P>(
    ready: &mut Vec<Entry<P>>,
    oldest: &mut Option<u64>,
    queue: &mut VecDeque<Entry<P>>,
    queued_mappings: &mut u64,
) -> usize {
    *queued_mappings = 0;
    let n = queue.len();
    if let Some(t) = queue.iter().map(|e| e.unmapped_at).min() {
        *oldest = Some(oldest.map_or(t, |o| o.min(t)));
    }
    ready.extend(queue.drain(..));
    n
}

fn refuse<P>(error: EngineError, payload: P) -> Refused<P> {
    Refused { error, payload }
}

/// Most of a deferred queue's age bound that its flush starts early by
/// ([`flush_lead_us`]), in µs.
pub const FLUSH_LEAD_MAX_US: u64 = 500;

/// How long before its age bound `max_age_us` a deferred queue is flushed:
/// half the bound, at most [`FLUSH_LEAD_MAX_US`]. Waking the server,
/// planning the flush and waiting for its CMD_SYNC take time after the
/// deadline: under QEMU TCG the server's flush came 100 to 600 µs after
/// its deadline (docs/PLATFORM.md); starting that much early keeps the
/// stale window (unmap to completed sync) within the bound rather than
/// past it.
pub const fn flush_lead_us(max_age_us: u64) -> u64 {
    let half = max_age_us / 2;
    if half < FLUSH_LEAD_MAX_US {
        half
    } else {
        FLUSH_LEAD_MAX_US
    }
}

/// When a deferred queue whose oldest entry was unmapped at `unmapped_at`
/// is due (µs): its age bound less [`flush_lead_us`]. At once for the other
/// policies.
pub fn flush_at(unmapped_at: u64, policy: InvalidationPolicy) -> u64 {
    let age = max_age(policy);
    unmapped_at.saturating_add(age - flush_lead_us(age))
}

/// A deferred policy's age bound (0 for the others: due at once).
fn max_age(policy: InvalidationPolicy) -> u64 {
    match policy {
        InvalidationPolicy::Deferred { max_age_us, .. } => max_age_us,
        _ => 0,
    }
}

/// A deferred policy's queue bound, at least 1.
fn max_entries(policy: InvalidationPolicy) -> usize {
    match policy {
        InvalidationPolicy::Deferred { max_entries, .. } => (max_entries as usize).max(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests;
