//! `Unmap`: checking the ranges, clearing the mappings' entries (one walk
//! for each run of them that follow each other in IOVA, as a batch mapped
//! in one request does) and handing the whole request to the invalidation
//! engine as one unmap, the held reply (strict policies) riding on it; in
//! bypass, forgetting bus addresses.
//!
//! It must never free anything itself: the IOVA block, the freed tables
//! and the walk-cache regions they made stale travel in a [`Payload`],
//! released only after the covering sync (see `flush`); never let a strict
//! client's reply out before that sync; never change anything on a
//! refused request (every check runs first: `check_ranges`, or for a
//! translated client `spans_of` as it gathers the spans); and never grow
//! the heap infallibly: everything it records once the first entry is
//! cleared (the engine's room for its unmaps, the lists of ranges, frames,
//! IOVA blocks, freed tables and stale walk-cache keys) is reserved with
//! `try_reserve` before that (`NoMemory`, nothing changed).

use alloc::vec::Vec;

use abi::{Asid, Iova, PAGE_SHIFT, PAGE_SIZE, PhysAddr};
use iommu_api::{ApiError, Extent, List, Response};
use pgtable::{TableMemory, Unmapped};
use smmuv3::cmd::Command;

use super::dispatch::{error_bytes, reply_bytes};
use super::few::Few;
use super::hw::{HwTables, SmmuHw};
use super::state::{
    Answer, Domain, FrameList, Mapping, Packed, Payload, StaleKeys, note_stale, stale_room,
    stop_key, table_room,
};
use super::types::Handled;
use super::{SMALL_LIST, Server};
use crate::engine::{ClientId, EngineError, IovaRange, LeafLevel, UnmapHint, UnmapRoom, Unmapping};
use crate::policy::InvalidationPolicy;

/// Spans of this many pages or more may be mapped by blocks: each is
/// cleared alone, exactly as it was mapped; shorter ones that follow each
/// other in IOVA are cleared as one run.
pub(super) const MERGE_PAGES: u64 = 512;

/// What one engine unmap carries: the runs cleared for it, their engine
/// ranges (`ranges` of them from `first_range` in the request's list),
/// and the payload released after its sync.
struct Group<R> {
    payload: Payload<R>,
    /// Its room in the engine, reserved before anything was cleared.
    room: UnmapRoom,
    first_range: usize,
    ranges: usize,
    /// The leaf level of every run, or `Any` if they differ.
    level: Option<LeafLevel>,
    tables_freed: bool,
    mappings: u64,
}

impl<R> Group<R> {
    fn new(badge: u32) -> Self {
        Self {
            payload: Payload::new(badge),
            room: UnmapRoom::default(),
            first_range: 0,
            ranges: 0,
            level: None,
            tables_freed: false,
            mappings: 0,
        }
    }

    /// Adds a cleared run: its leaf level, its table frees, its ranges
    /// (appended to `all`, which has room for them).
    fn add_run(&mut self, tok: &Unmapped<Iova>, all: &mut Few<IovaRange>) {
        let level = leaf_level(tok.leaf_level());
        self.level = Some(match self.level {
            Some(l) if l != level => LeafLevel::Any,
            _ => level,
        });
        self.tables_freed |= tok.needs_walk_invalidation();
        for x in tok.ranges() {
            all.push(IovaRange::new(x.start, x.len >> PAGE_SHIFT));
            self.ranges += 1;
        }
    }
}

/// One mapping of an unmap request: its key, the pages of its IOVA block,
/// and how many frames it reaches.
#[derive(Clone, Copy, Default)]
pub(super) struct Span {
    key: u64,
    page: u64,
    pages: u64,
    frames: usize,
}

impl Span {
    /// Whether `next` follows this span in IOVA and both are cleared in
    /// one walk (a span a block may map stays alone, cleared exactly as it
    /// was mapped).
    fn joins(&self, next: &Span) -> bool {
        self.pages < MERGE_PAGES
            && next.pages < MERGE_PAGES
            && self.page + self.pages * PAGE_SIZE == next.page
    }
}

/// One range of the shared IOVA block at `block` is gone: the block, if
/// that was its last.
pub(super) fn release_share(
    packed: &mut hashbrown::HashMap<u64, Packed>,
    block: u64,
) -> Option<(Iova, u64)> {
    release_shares(packed, block, 1)
}

/// `n` ranges of the shared IOVA block at `block` are gone (one lookup
/// for the ranges of a block unmapped together): the block, if they were
/// its last.
fn release_shares(
    packed: &mut hashbrown::HashMap<u64, Packed>,
    block: u64,
    n: u32,
) -> Option<(Iova, u64)> {
    let share = packed.get_mut(&block)?;
    share.live = share.live.saturating_sub(n);
    if share.live > 0 {
        return None;
    }
    packed.remove(&block).map(|p| (Iova::new(block), p.pages))
}

/// A released IOVA block into a gathered payload: its first block, then
/// the list (reserved for one per span but the first).
fn place_block(
    first: &mut Option<(Iova, u64)>,
    more: &mut Vec<(Iova, u64)>,
    block: Option<(Iova, u64)>,
) {
    match block {
        Some(b) if first.is_none() => *first = Some(b),
        Some(b) => more.push(b),
        None => {}
    }
}

pub(super) fn leaf_level(level: Option<u8>) -> LeafLevel {
    match level {
        Some(1) => LeafLevel::L1,
        Some(2) => LeafLevel::L2,
        Some(3) => LeafLevel::L3,
        _ => LeafLevel::Any,
    }
}

impl<H: SmmuHw, R> Server<H, R> {
    pub(super) fn unmap(
        &mut self,
        now: u64,
        badge: u32,
        ranges: List<'_, Extent>,
        reply: R,
    ) -> Handled<R> {
        // A translated client's mappings are looked up once, while its
        // spans are gathered (`spans_of`, the same checks in the same
        // order); a bypass client's are checked here.
        let checked = match self.clients.get(&badge) {
            None => Err(ApiError::NotPermitted),
            Some(c) => match &c.domain {
                None => Err(ApiError::NotAttached),
                Some(d) if c.policy == InvalidationPolicy::Bypass || d.tr.is_none() => {
                    check_ranges(d, c.policy, ranges)
                }
                Some(_) => Ok(()),
            },
        };
        if let Err(e) = checked {
            return Handled::Reply(reply, error_bytes(e));
        }
        let Some(client) = self.clients.get_mut(&badge) else {
            return Handled::Reply(reply, error_bytes(ApiError::NotPermitted));
        };
        let policy = client.policy;
        let holds = policy.holds_reply();
        let bypass = policy == InvalidationPolicy::Bypass;
        // An unmap changes no fault record: the count is read once here.
        let faults_pending = client.ledger.kept() as u32;
        let Some(domain) = client.domain.as_mut() else {
            return Handled::Reply(reply, error_bytes(ApiError::NotAttached));
        };
        if bypass {
            // Nothing was translated, nothing to invalidate: forget the
            // ranges, count them, and let their frames go at once.
            for r in ranges.iter() {
                domain.bus.take((r.start, r.len));
                let pages = ((r.start & (PAGE_SIZE - 1)) + r.len).div_ceil(PAGE_SIZE);
                domain.live = domain.live.saturating_sub(1);
                domain.mapped_bytes = domain.mapped_bytes.saturating_sub(pages * PAGE_SIZE);
                let _ = self.engine.note_unmap(ClientId(badge), pages);
            }
            for r in ranges.iter() {
                self.release_bus_pins(r.start, r.len);
            }
            self.flush_unpins();
            return Handled::Reply(reply, reply_bytes(&Response::Unmapped { faults_pending }));
        }
        let Some(tr) = domain.tr.as_mut() else {
            return Handled::Reply(reply, error_bytes(ApiError::NotAttached));
        };
        let asid = tr.asid;
        // Everything the request can need, reserved before anything
        // changes (never an infallible growth on client input): its
        // mappings' page spans in IOVA order, the engine ranges (one per
        // run of pages, up to three per range a block maps), the IOVA
        // blocks and the frames to release after the sync.
        let n = ranges.len();
        // The per-unmap baseline syncs every mapping alone: one engine
        // unmap each, cleared alone. Every other policy hands the whole
        // request over as one.
        let each = policy == InvalidationPolicy::StrictPerUnmap;
        let Ok(mut span_list) = Few::with_spare(n, Span::default, &mut self.spare.spans) else {
            // A refused request answers its first error as the checks
            // would have, then `NoMemory`.
            let e = check_ranges(domain, policy, ranges).err();
            return Handled::Reply(reply, error_bytes(e.unwrap_or(ApiError::NoMemory)));
        };
        let blocks = match spans_of(&domain.mappings, ranges, &mut span_list) {
            Ok(blocks) => blocks,
            Err(e) => return Handled::Reply(reply, error_bytes(e)),
        };
        let spans = span_list.as_mut_slice();
        // One span keeps its own frame list and needs no list of IOVA
        // blocks; more are gathered.
        let gather = !each && spans.len() > 1;
        // What the reservations need, in one pass: the room for engine
        // ranges (up to three for a span a block may map, one for each run
        // of the others; one per span in the per-unmap baseline, whose
        // spans are each their own run), the frames, the stale walk-cache
        // keys, the tables the runs may free, and the spans a block may
        // map. (The IOVA blocks that may go back came with the spans.)
        let span_room = |s: &Span| if s.pages < MERGE_PAGES { 1 } else { 3 };
        let joined = |a: &Span, b: &Span| !each && a.joins(b);
        let keys = |s: &Span| stale_room(s.page, s.pages * PAGE_SIZE);
        let (mut room, mut total_frames, mut all_keys) = (0, 0, 0);
        let (mut tables, mut big) = (0, 0);
        let mut prev: Option<&Span> = None;
        for s in spans.iter() {
            if prev.is_none_or(|p| !joined(p, s)) {
                room += span_room(s);
            }
            total_frames += s.frames;
            all_keys += keys(s);
            tables += table_room(s.page, s.pages * PAGE_SIZE);
            big += usize::from(s.pages >= MERGE_PAGES);
            prev = Some(s);
        }
        let mut frames: Vec<PhysAddr> = Vec::new();
        let mut iovas: Vec<(Iova, u64)> = Vec::new();
        let mut alone: Vec<Group<R>> = Vec::new();
        // Each group's room in the engine and for its stale walk-cache
        // keys (the per-unmap baseline: one group per span, in order;
        // otherwise one for the whole request), and the domain's room for
        // those keys: past the first clear the unmap cannot be refused.
        let mut groups: Vec<(UnmapRoom, StaleKeys)> = Vec::new();
        let mut single: Option<(UnmapRoom, StaleKeys)> = None;
        let mut tokens: Vec<Unmapped<Iova>> = Vec::new();
        let reserved = (|| {
            let engine_ranges = Few::with_capacity(room, || IovaRange::new(Iova::new(0), 0))?;
            let oom = |_| ApiError::NoMemory;
            if gather {
                frames = self.spare.frames.take(total_frames)?;
                iovas = self.spare.blocks.take(blocks.saturating_sub(1))?;
            }
            let unmaps = if each { spans.len() } else { 1 };
            let first = self
                .engine
                .reserve_unmap(ClientId(badge), unmaps, if each { 0 } else { room })
                .map_err(|e| match e {
                    EngineError::NoMemory => ApiError::NoMemory,
                    _ => ApiError::NotPermitted,
                })?;
            if each {
                alone.try_reserve_exact(spans.len()).map_err(oom)?;
                groups.try_reserve_exact(spans.len()).map_err(oom)?;
                for s in spans.iter().rev() {
                    let room =
                        UnmapRoom::for_ranges(span_room(s)).map_err(|_| ApiError::NoMemory)?;
                    let stale = StaleKeys::with_room(keys(s)).ok_or(ApiError::NoMemory)?;
                    groups.push((room, stale));
                }
            } else {
                let stale = StaleKeys::with_room_in(all_keys, &mut self.spare.keys)?;
                single = Some((first, stale));
            }
            tr.stale_walks
                .try_reserve(all_keys)
                .map_err(|_| ApiError::NoMemory)?;
            // A span a block may map is cleared alone by the page table's
            // general walk: its token's room (last span first).
            if big > 0 {
                tokens.try_reserve_exact(big).map_err(oom)?;
            }
            for s in spans.iter().rev().filter(|s| s.pages >= MERGE_PAGES) {
                let t = table_room(s.page, s.pages * PAGE_SIZE);
                tokens.push(pgtable::Unmapped::with_room(3, t).ok_or(ApiError::NoMemory)?);
            }
            Ok(engine_ranges)
        })();
        let mut engine_ranges = match reserved {
            Ok(r) => r,
            Err(e) => return Handled::Reply(reply, error_bytes(e)),
        };
        let mut mem = HwTables(&mut self.hw);
        let mut group = Group::new(badge);
        if let Some((room, stale)) = single.take().or_else(|| groups.pop()) {
            group.room = room;
            group.payload.stale_walks = stale;
        }
        if !each && spans.len() > 1 {
            // The tables every run may free, listed in one payload.
            match self.spare.frames.take(tables) {
                Ok(room) => group.payload.tables = room,
                Err(e) => return Handled::Reply(reply, error_bytes(e)),
            }
        }
        let mut failure = None;
        let mut at = 0;
        while at < spans.len() {
            // A run: spans that follow each other in IOVA (a batch mapped
            // in one request usually does), cleared in one walk. A span a
            // block may map stays alone, cleared exactly as it was mapped.
            let mut end = at + 1;
            while end < spans.len() && joined(&spans[end - 1], &spans[end]) {
                end += 1;
            }
            let (first, last) = (spans[at], spans[end - 1]);
            let len = last.page + last.pages * PAGE_SIZE - first.page;
            let room = if first.pages >= MERGE_PAGES {
                tokens.pop()
            } else {
                None
            };
            let cleared = match room {
                Some(room) => tr
                    .table
                    .unmap_exact_in(&mut mem, Iova::new(first.page), len, room),
                None => tr.table.unmap_exact(&mut mem, Iova::new(first.page), len),
            };
            let Ok(tok) = cleared else {
                // Not reachable for ranges unmapped exactly as they were
                // mapped (no block split); stop consistently: the runs
                // before are unmapped, this one and those after untouched.
                failure = Some(ApiError::NoMemory);
                break;
            };
            let tok: Unmapped<Iova> = tok;
            group.add_run(&tok, &mut engine_ranges);
            if tok.needs_walk_invalidation() {
                for x in tok.ranges() {
                    let (a, end) = (x.start.get(), x.start.get() + x.len);
                    let mut va = a;
                    while va < end {
                        if let Some(k) = stop_key(&mem, &tr.table, va) {
                            note_stale(&mut tr.stale_walks, &mut group.payload.stale_walks, k);
                        }
                        va = (va | ((1 << 21) - 1)) + 1;
                    }
                }
            }
            // Within the room reserved above (or the token's own list).
            let mut freed = tok.into_freed_tables();
            if group.payload.tables.is_empty() && group.payload.tables.capacity() < freed.len() {
                group.payload.tables = freed;
            } else {
                group.payload.tables.append(&mut freed);
            }
            // Removed only once their entries are cleared (a refused
            // clear keeps them, and never reinserts into the table).
            // Consecutive ranges of one shared block (a batch mapped in
            // one request) give it back with one lookup.
            let mut share: Option<(u64, u32)> = None;
            for s in &spans[at..end] {
                let m = domain.mappings.remove(&s.key);
                domain.live = domain.live.saturating_sub(1);
                domain.mapped_bytes = domain.mapped_bytes.saturating_sub(s.pages * PAGE_SIZE);
                group.mappings += 1;
                // Its IOVA block goes back after the sync: its own, or a
                // shared one with the last of its ranges.
                let block = match (m.as_ref().map_or(0, |m| m.packed), share) {
                    (0, _) => Some((Iova::new(s.page), s.pages)),
                    (shared, Some((b, n))) if b == shared => {
                        share = Some((b, n + 1));
                        None
                    }
                    (shared, before) => {
                        share = Some((shared, 1));
                        before.and_then(|(b, n)| release_shares(&mut tr.packed, b, n))
                    }
                };
                if !gather {
                    group.payload.iova = block;
                    if let Some(m) = m {
                        group.payload.unpins = m.frames;
                    }
                } else {
                    if let Some(m) = m {
                        frames.extend_from_slice(m.frames.as_slice());
                    }
                    place_block(&mut group.payload.iova, &mut iovas, block);
                }
            }
            if let Some((b, n)) = share {
                let block = release_shares(&mut tr.packed, b, n);
                if gather {
                    place_block(&mut group.payload.iova, &mut iovas, block);
                } else {
                    group.payload.iova = block;
                }
            }
            if each {
                let mut next = Group::new(badge);
                if let Some((room, stale)) = groups.pop() {
                    next.room = room;
                    next.payload.stale_walks = stale;
                }
                alone.push(core::mem::replace(&mut group, next));
                group.first_range = engine_ranges.len();
            }
            at = end;
        }
        mem.barrier();
        span_list.give_back(&mut self.spare.spans);
        let response = match failure {
            None => Answer::Unmapped(faults_pending),
            Some(e) => Answer::Error(e),
        };
        if gather {
            group.payload.iovas = iovas;
            group.payload.unpins = FrameList::from_vec(frames);
        }
        let engine_ranges = engine_ranges.as_slice();
        // The held reply rides on the last engine unmap.
        let held = holds && (group.mappings > 0 || !alone.is_empty());
        let mut last = Some(group).filter(|g| g.mappings > 0);
        if last.is_none() {
            last = alone.pop();
        }
        if !alone.is_empty() {
            for g in alone {
                let _ = self.hand_over(now, badge, asid, engine_ranges, g);
            }
        }
        match last {
            Some(mut g) if held => {
                g.payload.reply = Some((reply, response));
                match self.hand_over(now, badge, asid, engine_ranges, g) {
                    Some((reply, response)) => Handled::Reply(reply, response.bytes()),
                    None => Handled::Held,
                }
            }
            Some(g) => {
                let _ = self.hand_over(now, badge, asid, engine_ranges, g);
                Handled::Reply(reply, response.bytes())
            }
            // Nothing was cleared: nothing to wait for.
            None => Handled::Reply(reply, response.bytes()),
        }
    }

    /// Hands one group of cleared runs to the engine as one unmap. If the
    /// engine refuses it (not reachable: its room was reserved), the ASID
    /// is invalidated now and the held reply, if any, comes back to be
    /// answered at once.
    #[inline]
    fn hand_over(
        &mut self,
        now: u64,
        badge: u32,
        asid: Asid,
        engine_ranges: &[IovaRange],
        g: Group<R>,
    ) -> Option<(R, Answer)> {
        let hint = UnmapHint {
            leaf_level: g.level.unwrap_or(LeafLevel::Any),
            tables_freed: g.tables_freed,
        };
        let ranges = engine_ranges
            .get(g.first_range..g.first_range + g.ranges)
            .unwrap_or(&[]);
        let u = Unmapping {
            client: ClientId(badge),
            asid,
            ranges,
            hint,
            mappings: g.mappings,
        };
        if let Err(refused) = self.engine.unmap_reserved(now, u, g.payload, g.room) {
            let mut payload = refused.payload;
            let reply = payload.reply.take();
            self.unmap_refused(asid, payload);
            return reply;
        }
        None
    }
}

/// The checks of an unmap's ranges in `domain`, in order: each range's
/// (empty, unknown, of another length), then no start twice. Changes
/// nothing.
#[inline]
fn check_ranges(
    domain: &Domain,
    policy: InvalidationPolicy,
    ranges: List<'_, Extent>,
) -> Result<(), ApiError> {
    for r in ranges.iter() {
        if policy != InvalidationPolicy::Bypass {
            span_of(&domain.mappings, r)?;
        } else if r.len == 0 {
            return Err(ApiError::ZeroLength);
        } else if !domain.bus.contains_key(&(r.start, r.len)) {
            return Err(if domain.bus.any_at(r.start) {
                ApiError::LengthMismatch
            } else {
                ApiError::UnknownIova
            });
        }
    }
    no_start_twice(ranges)
}

/// A translated unmap's checks (those of [`check_ranges`], in its order)
/// with each range's span gathered as its mapping is found: one lookup
/// per range. `spans` has room for every range, and holds them sorted by
/// IOVA. Returns how many IOVA blocks the ranges may give back, at most:
/// each range's own block, and each shared block once for every stretch of
/// its ranges in the request (never fewer than the distinct blocks,
/// whatever the order).
fn spans_of(
    mappings: &hashbrown::HashMap<u64, Mapping>,
    ranges: List<'_, Extent>,
    spans: &mut Few<Span>,
) -> Result<usize, ApiError> {
    let (mut blocks, mut last) = (0, 0);
    for r in ranges.iter() {
        let (span, packed) = span_of(mappings, r)?;
        blocks += usize::from(packed == 0 || packed != last);
        last = packed;
        spans.push(span);
    }
    // In IOVA order (a span's page is its start's, rounded down), where
    // a start given twice lies next to itself: no pairwise check, no
    // second sort of the starts.
    let sorted = spans.as_mut_slice();
    sorted.sort_unstable_by_key(|s| s.key);
    if sorted.windows(2).any(|w| w[0].key == w[1].key) {
        return Err(ApiError::Overlap);
    }
    Ok(blocks)
}

/// One range of a translated unmap, checked (empty, unknown, of another
/// length: in that order), as the span of its mapping, with the shared
/// IOVA block it is a range of (`Mapping::packed`, 0 for its own).
fn span_of(
    mappings: &hashbrown::HashMap<u64, Mapping>,
    r: Extent,
) -> Result<(Span, u64), ApiError> {
    if r.len == 0 {
        return Err(ApiError::ZeroLength);
    }
    let m = mappings.get(&r.start).ok_or(ApiError::UnknownIova)?;
    if m.len != r.len {
        return Err(ApiError::LengthMismatch);
    }
    let (block, pages) = m.block(r.start);
    let span = Span {
        key: r.start,
        page: block.get(),
        pages,
        frames: m.frames.as_slice().len(),
    };
    Ok((span, m.packed))
}

/// `Overlap` if two ranges start at the same address. The starts are
/// sorted on the stack, each read from the message once (compared
/// pairwise, a batch of 32 took 496 comparisons, about 4,000
/// instructions). A message holds at most [`SMALL_LIST`] ranges: a longer
/// list is `Malformed`, as a map's is.
#[inline]
fn no_start_twice(ranges: List<'_, Extent>) -> Result<(), ApiError> {
    let mut starts = [0u64; SMALL_LIST];
    for (s, r) in starts.iter_mut().zip(ranges.iter()) {
        *s = r.start;
    }
    let starts = starts.get_mut(..ranges.len()).ok_or(ApiError::Malformed)?;
    starts.sort_unstable();
    if starts.windows(2).any(|w| w[0] == w[1]) {
        return Err(ApiError::Overlap);
    }
    Ok(())
}

impl<H: SmmuHw, R> Server<H, R> {
    /// Hands an unmap whose entries are already cleared to the engine.
    pub(super) fn queue_unmap(
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
            self.unmap_refused(asid, refused.payload);
        }
    }

    /// An unmap the engine refused (not reachable for a registered live
    /// client with checked ranges). Stays safe: invalidates the ASID now,
    /// then releases.
    pub(super) fn unmap_refused(&mut self, asid: Asid, payload: Payload<R>) {
        let cmd = Command::TlbiNhAsid { vmid: 0, asid }.encode();
        self.stats.tlbi_commands += 1;
        if self.run(&[cmd]).is_ok() {
            self.release_now(payload);
        }
    }
}
