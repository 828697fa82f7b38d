//! `Map`: checking every range against the call's grant, then answering
//! bus addresses (bypass) or allocating IOVAs and writing the stage-1
//! entries of each range in one walk (`PageTable::map_pages` on the
//! granted frames; `PageTable::map`, which may use blocks, for a
//! contiguous range of a block or more).
//!
//! It must never map a frame the caller did not grant (every range lies
//! within the grant; every frame is page aligned and within the output
//! size); never change anything on a refused request (every check comes
//! first); never link a new table where a freed one may still sit in a
//! walk cache before that unmap's sync (it flushes first); and never free
//! what a failed map wrote before the invalidation that covers it (the
//! undo goes through the engine like any unmap); never let a client past
//! its quota (`quota`: live mappings, mapped bytes and IOVA space are
//! checked with the rest, before anything changes; table pages are counted
//! as they are taken, a map that would pass them is rolled back like one
//! the pool refused), and never grow the heap infallibly on client input
//! (the frame lists, the per-range bookkeeping past four ranges, the
//! mapping records and the IOVA allocator's bookkeeping are reserved with
//! `try_reserve` before the frames are pinned).

use alloc::vec::Vec;

use abi::{Asid, Iova, PAGE_SHIFT, PAGE_SIZE, PhysAddr};
use iommu_api::{ApiError, Dir, Extent, List, Response};
use pgtable::{Attrs, TableMemory};
use smmuv3::cmd::Command;

use super::ReplyBytes;
use super::few::Few;
use super::hw::{HwTables, SmmuHw};
use super::quota::{self, QuotaTables, Use};
use super::state::{
    Attached, Client, FrameList, Mapping, Packed, Payload, Translated, table_room, translated_mut,
    walk_keys,
};
use super::types::Grant;
use super::{MAIR_NORMAL, SMALL_LIST, Server};
use crate::engine::{ClientId, IovaRange, LeafLevel, UnmapHint};
use crate::iova::IovaError;
use crate::policy::InvalidationPolicy;

/// Whether `frames` are physically contiguous.
fn contiguous(frames: &[PhysAddr]) -> bool {
    frames
        .windows(2)
        .all(|w| w[1].get() == w[0].get().wrapping_add(PAGE_SIZE))
}

/// Pages of one 2 MiB block: a shorter range can only be mapped by pages.
const BLOCK_PAGES: usize = 512;

/// A map entry, checked against the grant.
#[derive(Clone, Copy, Default)]
pub(super) struct Planned {
    /// Index of the first granted page.
    first: usize,
    pages: u64,
    offset_in_page: u64,
    len: u64,
}

/// A `Map` request that passed every check; nothing has changed yet.
struct MapPlan<'g> {
    grant: Grant<'g>,
    planned: Few<Planned>,
    writable: bool,
    /// The client is in bypass: it gets bus addresses.
    bypass: bool,
    /// The domain's device DMA width (what bypass addresses must fit).
    dma_bits: u8,
    /// Several ranges, none a block may map: they share one IOVA block,
    /// laid out one after the other, and are written in one walk.
    packed: bool,
}

impl<'g> MapPlan<'g> {
    /// The granted frames a planned range covers.
    fn frames(&self, p: &Planned) -> &'g [PhysAddr] {
        self.grant
            .frames
            .get(p.first..p.first + p.pages as usize)
            .unwrap_or(&[])
    }

    /// The pages of every planned range (what the engine counts as mapped).
    fn pages(&self) -> u64 {
        self.planned.as_slice().iter().map(|p| p.pages).sum()
    }

    /// Counts the mapped plan against the quota: a domain's `live`
    /// mappings and `mapped_bytes`.
    fn count(&self, live: &mut u64, mapped_bytes: &mut u64) {
        *live += self.planned.len() as u64;
        *mapped_bytes += self.pages() * PAGE_SIZE;
    }
}

/// What [`Server::reserve_map`] set aside for a map.
struct MapRoom {
    /// Each mapping's frame list (translated maps).
    lists: Few<FrameList>,
    /// The reply's IOVAs.
    iovas: Few<Iova>,
}

/// Why a pinned map failed, and so when its pins go.
enum Failed {
    /// Nothing was written: unpin at once.
    Unwritten(ApiError),
    /// Entries were written and cleared: the rollback's payload unpins
    /// after the covering sync.
    RolledBack(ApiError),
}

/// What undoing a failed map's written runs left for the engine.
struct Undone<R> {
    asid: Asid,
    /// The runs cleared, to invalidate.
    ranges: Vec<IovaRange>,
    /// Clearing them freed tables (walk caches need invalidating too).
    freed_tables: bool,
    /// Tables the failed map allocated but never linked.
    spare: Vec<PhysAddr>,
    /// The freed tables, released after the covering sync.
    payload: Payload<R>,
}

impl<H: SmmuHw, R> Server<H, R> {
    pub(super) fn map(
        &mut self,
        now: u64,
        badge: u32,
        dir: Dir,
        ranges: List<'_, Extent>,
        grant: Option<Grant<'_>>,
    ) -> Result<ReplyBytes, ApiError> {
        let plan = self.plan_map(badge, dir, ranges, grant)?;
        // The heap it needs, reserved before anything changes (the pin
        // included): a refusal is `NoMemory` and changes nothing.
        let room = self.reserve_map(badge, &plan)?;
        // Every frame a mapping will reach is pinned first (one call): a
        // single range's frames are a slice of the grant, several are
        // gathered.
        let mut gathered: Vec<PhysAddr> = Vec::new();
        let frames = match plan.planned.as_slice() {
            [one] => plan.frames(one),
            many => {
                gathered = self.spare.frames.take(plan.pages() as usize)?;
                gathered.extend(many.iter().flat_map(|p| plan.frames(p).iter().copied()));
                &gathered
            }
        };
        let done = if self.hw.pin(frames).is_err() {
            self.stats.pin_refusals += 1;
            Err(ApiError::NotGranted)
        } else {
            self.stats.pin_calls += 1;
            self.stats.pinned_frames += frames.len() as u64;
            match self.map_pinned(now, badge, &plan, frames, room) {
                Ok(reply) => Ok(reply),
                Err(Failed::Unwritten(e)) => {
                    // Nothing maps them: unpin now.
                    self.unpin_now(frames);
                    Err(e)
                }
                // The rollback's payload unpins them after the covering sync.
                Err(Failed::RolledBack(e)) => Err(e),
            }
        };
        // The scratch lists go back for the next batch.
        self.spare.frames.put(gathered);
        plan.planned.give_back(&mut self.spare.planned);
        done
    }

    /// Everything a map will record, reserved before anything changes:
    /// the reply's IOVAs and, translated, each mapping's frame list, room
    /// for the records (the quota bounds their count), the shared block's
    /// record and the IOVA allocator's bookkeeping of the blocks.
    fn reserve_map(&mut self, badge: u32, plan: &MapPlan<'_>) -> Result<MapRoom, ApiError> {
        let n = plan.planned.len();
        let iovas = Few::with_spare(n, || Iova::new(0), &mut self.spare.iovas)?;
        if plan.bypass {
            let domain = self.clients.get_mut(&badge).and_then(|c| c.domain.as_mut());
            if domain.is_some_and(|d| d.bus.try_reserve(n).is_err()) {
                return Err(ApiError::NoMemory);
            }
            return Ok(MapRoom {
                lists: Few::inline(0, || FrameList::Empty),
                iovas,
            });
        }
        let mut lists = Few::with_spare(n, || FrameList::Empty, &mut self.spare.lists)?;
        for p in plan.planned.as_slice() {
            lists.push(FrameList::try_copy(plan.frames(p)).ok_or(ApiError::NoMemory)?);
        }
        let (tr, mappings) = translated_mut(&mut self.clients, badge)?;
        let blocks = if plan.packed { 1 } else { n };
        if mappings.try_reserve(n).is_err()
            || (plan.packed && tr.packed.try_reserve(1).is_err())
            || tr.iova.reserve(blocks).is_err()
        {
            return Err(ApiError::NoMemory);
        }
        Ok(MapRoom { lists, iovas })
    }

    /// A map whose frames are pinned: `frames`, every range's in order.
    fn map_pinned(
        &mut self,
        now: u64,
        badge: u32,
        plan: &MapPlan<'_>,
        frames: &[PhysAddr],
        room: MapRoom,
    ) -> Result<ReplyBytes, Failed> {
        let MapRoom {
            mut lists,
            mut iovas,
        } = room;
        if plan.bypass {
            return self
                .map_bypass(badge, plan, iovas)
                .map_err(Failed::Unwritten);
        }
        let n = plan.planned.len();
        // IOVAs for every range (never mapped yet: freed at once on error).
        let (tr, _) = translated_mut(&mut self.clients, badge).map_err(Failed::Unwritten)?;
        let blocks = if plan.packed {
            alloc_packed(tr, plan.pages())
        } else {
            alloc_blocks(tr, plan.planned.as_slice())
        }
        .map_err(Failed::Unwritten)?;
        // A new table where a freed one may still sit in a walk cache would
        // be invisible until that unmap's sync: flush first.
        if links_stale_walk(tr, blocks.as_slice()) && self.flush_now(now, badge).is_err() {
            // Nothing written yet: the blocks go back at once.
            if let Ok((tr, _)) = translated_mut(&mut self.clients, badge) {
                for &(b, n) in blocks.as_slice() {
                    let _ = tr.iova.free(b, n);
                }
            }
            return Err(Failed::Unwritten(ApiError::NoMemory));
        }
        // One lookup for the writes and the bookkeeping that follows.
        let Some(Attached {
            quota,
            tr,
            mappings,
            live,
            mapped_bytes,
            ..
        }) = self.clients.get_mut(&badge).and_then(Client::attached)
        else {
            return Err(Failed::Unwritten(ApiError::NotAttached));
        };
        let left = quota.table_pages.saturating_sub(tr.table_pages);
        let mut mem = QuotaTables::new(HwTables(&mut self.hw), left);
        let written = match blocks.as_slice() {
            // All or nothing: a failure wrote nothing (index 0).
            [(block, _)] if plan.packed => tr
                .table
                .map_pages(
                    &mut mem,
                    *block,
                    frames,
                    Attrs::dma(MAIR_NORMAL, plan.writable),
                )
                .map_err(|_| 0),
            blocks => write_runs(tr, &mut mem, plan, blocks),
        };
        tr.table_pages += mem.allocated;
        mem.allocated = 0;
        if let Err(failed) = written {
            let why = if mem.over_quota {
                ApiError::QuotaExceeded
            } else {
                ApiError::NoMemory
            };
            let Some(room) = RollbackRoom::reserve(plan, blocks.as_slice(), failed, frames) else {
                // No heap to record the rollback for the engine: it is
                // done now, behind one sync.
                let asid = tr.asid;
                let spare = tr.table.take_spare_tables();
                tr.table_pages = tr.table_pages.saturating_sub(spare.len() as u64);
                let mut tokens: [Option<pgtable::Unmapped<Iova>>; SMALL_LIST] =
                    core::array::from_fn(|_| None);
                let mut stranded = false;
                let written = plan.planned.as_slice().iter().zip(blocks.as_slice());
                for (slot, (p, (block, _))) in tokens.iter_mut().zip(written.take(failed)) {
                    match tr.table.unmap_exact(&mut mem, *block, p.pages * PAGE_SIZE) {
                        Ok(tok) => *slot = Some(tok),
                        Err(_) => stranded = true,
                    }
                }
                mem.barrier();
                for p in spare {
                    self.hw.free_pages(p, 1);
                }
                self.roll_back_synced(badge, asid, blocks.as_slice(), tokens, stranded, frames);
                return Err(Failed::RolledBack(why));
            };
            let undone = undo_runs(tr, &mut mem, plan, blocks.as_slice(), failed, badge, room);
            tr.table_pages = tr.table_pages.saturating_sub(undone.spare.len() as u64);
            self.roll_back_map(now, badge, undone);
            return Err(Failed::RolledBack(why));
        }
        tr.table_pages += mem.allocated;
        mem.barrier();
        // A packed request's ranges lie one after the other in its block.
        let shared = blocks.as_slice().first().filter(|_| plan.packed).copied();
        let mut next_page = shared.map_or(0, |(b, _)| b.get());
        for (k, (p, frames)) in plan
            .planned
            .as_slice()
            .iter()
            .zip(
                lists
                    .as_mut_slice()
                    .iter_mut()
                    .map(|l| core::mem::replace(l, FrameList::Empty)),
            )
            .enumerate()
        {
            let page = match shared {
                Some(_) => {
                    let at = next_page;
                    next_page += p.pages * PAGE_SIZE;
                    at
                }
                None => blocks.as_slice().get(k).map_or(0, |(b, _)| b.get()),
            };
            let iova = Iova::new(page + p.offset_in_page);
            // Room was reserved above; the count was checked against the
            // quota (`plan_map`), which `add_client` reserved heap for.
            mappings.insert(
                iova.get(),
                Mapping {
                    len: p.len,
                    packed: shared.map_or(0, |(b, _)| b.get()),
                    frames,
                },
            );
            iovas.push(iova);
        }
        if let Some((block, pages)) = shared {
            // Room was reserved above.
            tr.packed.insert(
                block.get(),
                Packed {
                    pages,
                    live: n as u32,
                },
            );
        }
        plan.count(live, mapped_bytes);
        let _ = self.engine.note_map(ClientId(badge), plan.pages());
        let reply = self.reply_bytes(&Response::Mapped {
            iovas: List::new(iovas.as_slice()),
        });
        lists.give_back(&mut self.spare.lists);
        iovas.give_back(&mut self.spare.iovas);
        Ok(reply)
    }

    /// Every check of a map, changing nothing: the client, its domain, the
    /// grant, and each range (non-empty, within the grant, no overlap).
    fn plan_map<'g>(
        &mut self,
        badge: u32,
        dir: Dir,
        ranges: List<'_, Extent>,
        grant: Option<Grant<'g>>,
    ) -> Result<MapPlan<'g>, ApiError> {
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
        let mut planned = Few::with_spare(ranges.len(), Planned::default, &mut self.spare.planned)?;
        let mut spans = Few::with_spare(ranges.len(), || (0u64, 0u64), &mut self.spare.extents)?;
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
        let sorted = spans.as_mut_slice();
        sorted.sort_unstable();
        let overlap = sorted.windows(2).any(|w| w[1].0 < w[0].1);
        spans.give_back(&mut self.spare.extents);
        if overlap {
            return Err(ApiError::Overlap);
        }
        let bypass = client.policy == InvalidationPolicy::Bypass;
        let bytes: u64 = planned.as_slice().iter().map(|p| p.pages * PAGE_SIZE).sum();
        let now = Use {
            mappings: domain.live,
            mapped_bytes: domain.mapped_bytes,
            iova_bytes: domain.tr.as_ref().map_or(0, |t| t.iova.in_use_bytes()),
        };
        let packed = planned.len() > 1
            && planned
                .as_slice()
                .iter()
                .all(|p| p.pages < BLOCK_PAGES as u64);
        // The IOVA allocator hands out power-of-two blocks: one for a
        // packed request, one per range otherwise.
        let pow2 = |pages: u64| {
            pages
                .checked_next_power_of_two()
                .unwrap_or(u64::MAX)
                .saturating_mul(PAGE_SIZE)
        };
        let iova_bytes = if packed {
            pow2(bytes / PAGE_SIZE)
        } else {
            planned
                .as_slice()
                .iter()
                .fold(0u64, |sum, p| sum.saturating_add(pow2(p.pages)))
        };
        let more = Use {
            mappings: planned.len() as u64,
            mapped_bytes: bytes,
            // A bypass map takes no IOVA space.
            iova_bytes: if bypass { 0 } else { iova_bytes },
        };
        quota::check(&client.quota, now, more)?;
        Ok(MapPlan {
            grant,
            planned,
            writable: dir.device_writes(),
            bypass,
            dma_bits: domain.dma_bits,
            packed,
        })
    }

    /// A bypass map: answers each range's bus (= physical) address and
    /// counts it; nothing is written.
    fn map_bypass(
        &mut self,
        badge: u32,
        plan: &MapPlan<'_>,
        mut iovas: Few<Iova>,
    ) -> Result<ReplyBytes, ApiError> {
        // Bypass: the device uses bus (= physical) addresses, which it
        // must be able to drive in full.
        let dma_mask = match plan.dma_bits {
            64.. => u64::MAX,
            b => (1u64 << b) - 1,
        };
        for p in plan.planned.as_slice() {
            let f = plan.frames(p);
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
        for (iova, p) in iovas.as_slice().iter().zip(plan.planned.as_slice()) {
            // Bounded like the translated mappings: the count was checked
            // against the quota (`plan_map`); room reserved (`reserve_map`).
            domain.bus.add((iova.get(), p.len));
        }
        plan.count(&mut domain.live, &mut domain.mapped_bytes);
        let _ = self.engine.note_map(ClientId(badge), plan.pages());
        let reply = self.reply_bytes(&Response::Mapped {
            iovas: List::new(iovas.as_slice()),
        });
        iovas.give_back(&mut self.spare.iovas);
        Ok(reply)
    }

    /// The rollback's second half, once [`undo_runs`] cleared what a
    /// failed map wrote: frees the tables it never linked, then hands the
    /// cleared runs to the engine like any unmap (they may be cached), so
    /// that its IOVAs and the tables clearing freed are released only
    /// after the covering sync; at once if nothing was written.
    fn roll_back_map(&mut self, now: u64, badge: u32, undone: Undone<R>) {
        let Undone {
            asid,
            ranges,
            freed_tables,
            spare,
            payload,
        } = undone;
        for p in spare {
            self.hw.free_pages(p, 1);
        }
        if ranges.is_empty() {
            self.release_now(payload);
        } else {
            let hint = UnmapHint {
                leaf_level: LeafLevel::Any,
                tables_freed: freed_tables,
            };
            self.queue_unmap(now, badge, asid, &ranges, hint, payload);
        }
    }
}

impl<H: SmmuHw, R> Server<H, R> {
    /// A rollback with no heap to record it: the written runs are cleared
    /// (their `tokens`), then one TLBI of the ASID and a sync, then their
    /// freed tables, the IOVA blocks and the pins go at once. A run that
    /// could not be cleared (`stranded`), or a failed sync, leaves the
    /// blocks taken and the frames pinned: a leak, never a reuse.
    fn roll_back_synced(
        &mut self,
        badge: u32,
        asid: Asid,
        blocks: &[(Iova, u64)],
        tokens: [Option<pgtable::Unmapped<Iova>>; SMALL_LIST],
        stranded: bool,
        frames: &[PhysAddr],
    ) {
        self.stats.tlbi_commands += 1;
        let tlbi = Command::TlbiNhAsid { vmid: 0, asid }.encode();
        if self.run(&[tlbi]).is_err() || stranded {
            return;
        }
        let mut freed = 0u64;
        for tok in tokens.into_iter().flatten() {
            for t in tok.into_freed_tables() {
                self.hw.free_pages(t, 1);
                freed += 1;
            }
        }
        if let Ok((tr, _)) = translated_mut(&mut self.clients, badge) {
            tr.table_pages = tr.table_pages.saturating_sub(freed);
            for &(b, n) in blocks {
                let _ = tr.iova.free(b, n);
            }
        }
        self.unpin_now(frames);
    }
}

/// Room for a failed map's rollback through the engine, reserved before
/// anything written is cleared: the cleared runs, the tables clearing
/// frees, the IOVA blocks and the frames to release after the sync, and a
/// token with room for each run a block may map (whose clear takes the
/// page table's general walk).
struct RollbackRoom {
    ranges: Vec<IovaRange>,
    tables: Vec<PhysAddr>,
    iovas: Vec<(Iova, u64)>,
    frames: Vec<PhysAddr>,
    /// Last run first.
    tokens: Vec<pgtable::Unmapped<Iova>>,
}

impl RollbackRoom {
    /// Room for undoing the `failed` runs written of `plan` in `blocks`,
    /// pinned `frames`; `None` if the heap cannot hold it.
    fn reserve(
        plan: &MapPlan<'_>,
        blocks: &[(Iova, u64)],
        failed: usize,
        frames: &[PhysAddr],
    ) -> Option<Self> {
        let written = || plan.planned.as_slice().iter().zip(blocks).take(failed);
        let big = |p: &Planned| p.pages >= BLOCK_PAGES as u64;
        let tables = written()
            .map(|(p, (b, _))| table_room(b.get(), p.pages * PAGE_SIZE))
            .sum();
        let mut room = Self {
            ranges: Vec::new(),
            tables: Vec::new(),
            iovas: Vec::new(),
            frames: Vec::new(),
            tokens: Vec::new(),
        };
        room.ranges.try_reserve_exact(failed).ok()?;
        room.tables.try_reserve_exact(tables).ok()?;
        room.iovas.try_reserve_exact(blocks.len()).ok()?;
        room.frames.try_reserve_exact(frames.len()).ok()?;
        room.tokens
            .try_reserve_exact(written().filter(|(p, _)| big(p)).count())
            .ok()?;
        for (p, (b, _)) in written().filter(|(p, _)| big(p)).rev() {
            let t = table_room(b.get(), p.pages * PAGE_SIZE);
            room.tokens.push(pgtable::Unmapped::with_room(3, t)?);
        }
        Some(room)
    }
}

/// The frames a bypass mapping of `len` bytes at bus address `bus`
/// reaches (pinned at map time, unpinned at unmap).
pub(super) fn bus_frames(bus: u64, len: u64) -> impl Iterator<Item = PhysAddr> {
    let first = bus & !(PAGE_SIZE - 1);
    let end = bus.saturating_add(len);
    (first..end).step_by(PAGE_SIZE as usize).map(PhysAddr::new)
}

/// One IOVA block of `pages` pages for every range of a packed request.
fn alloc_packed(tr: &mut Translated, pages: u64) -> Result<Few<(Iova, u64)>, ApiError> {
    let mut blocks = Few::inline(1, || (Iova::new(0), 0));
    let block = tr.iova.alloc(pages).map_err(|e| match e {
        IovaError::NoMemory => ApiError::NoMemory,
        _ => ApiError::IovaExhausted,
    })?;
    blocks.push((block, pages));
    Ok(blocks)
}

/// An IOVA block for each planned range, or none (those taken are freed
/// at once: nothing was mapped in them yet).
fn alloc_blocks(tr: &mut Translated, planned: &[Planned]) -> Result<Few<(Iova, u64)>, ApiError> {
    let mut blocks = Few::with_capacity(planned.len(), || (Iova::new(0), 0u64))?;
    for p in planned {
        match tr.iova.alloc(p.pages) {
            Ok(b) => blocks.push((b, p.pages)),
            Err(e) => {
                for &(b, n) in blocks.as_slice() {
                    let _ = tr.iova.free(b, n);
                }
                return Err(match e {
                    IovaError::NoMemory => ApiError::NoMemory,
                    _ => ApiError::IovaExhausted,
                });
            }
        }
    }
    Ok(blocks)
}

/// Whether mapping `blocks` may link a table where a freed one may still
/// sit in a walk cache (a region awaiting its unmap's sync).
fn links_stale_walk(tr: &Translated, blocks: &[(Iova, u64)]) -> bool {
    !tr.stale_walks.is_empty()
        && blocks.iter().any(|(b, n)| {
            let (mut va, end) = (b.get(), b.get() + n * PAGE_SIZE);
            while va < end {
                if walk_keys(va).any(|k| tr.stale_walks.contains_key(&k)) {
                    return true;
                }
                va = (va | ((1 << 21) - 1)) + 1;
            }
            false
        })
}

/// Writes the entries of each range in one walk, without a barrier: a
/// range of at least a block's pages on contiguous frames through `map`
/// (which uses blocks where alignment allows), any other as a run of pages
/// (`map_pages`). Each range is all or nothing; on a failure, the index of
/// the range that failed: every range before it is written, none after.
fn write_runs<M: TableMemory>(
    tr: &mut Translated,
    mem: &mut M,
    plan: &MapPlan<'_>,
    blocks: &[(Iova, u64)],
) -> Result<(), usize> {
    let attrs = Attrs::dma(MAIR_NORMAL, plan.writable);
    for (k, (p, (block, _))) in plan.planned.as_slice().iter().zip(blocks).enumerate() {
        let f = plan.frames(p);
        let done = match f.first() {
            Some(&first) if f.len() >= BLOCK_PAGES && contiguous(f) => {
                tr.table
                    .map(mem, *block, first, f.len() as u64 * PAGE_SIZE, attrs)
            }
            _ => tr.table.map_pages(mem, *block, f, attrs),
        };
        if done.is_err() {
            return Err(k);
        }
    }
    Ok(())
}

/// The rollback's first half: clears every range [`write_runs`] wrote
/// before it failed at range `failed`, then a barrier. Frees nothing: see
/// [`Server::roll_back_map`].
fn undo_runs<M: TableMemory, R>(
    tr: &mut Translated,
    mem: &mut M,
    plan: &MapPlan<'_>,
    blocks: &[(Iova, u64)],
    failed: usize,
    badge: u32,
    room: RollbackRoom,
) -> Undone<R> {
    let RollbackRoom {
        mut ranges,
        mut tables,
        mut iovas,
        mut frames,
        mut tokens,
    } = room;
    let spare = tr.table.take_spare_tables();
    // Undo what was written (every range before the failed one); it
    // may be cached (speculative walks), so it goes through the
    // engine like any unmap.
    let mut payload = Payload::new(badge);
    let mut freed_tables = false;
    let mut stranded = false;
    let written = plan.planned.as_slice().iter().zip(blocks).take(failed);
    for (p, (block, _)) in written {
        let len = p.pages * PAGE_SIZE;
        // A run a block may map is cleared in the room reserved for it.
        let room = if p.pages >= BLOCK_PAGES as u64 {
            tokens.pop()
        } else {
            None
        };
        let done = match room {
            Some(room) => tr.table.unmap_exact_in(mem, *block, len, room),
            None => tr.table.unmap_exact(mem, *block, len),
        };
        match done {
            Ok(tok) => {
                freed_tables |= tok.needs_walk_invalidation();
                // Within the room reserved (`RollbackRoom::reserve`).
                ranges.push(IovaRange::new(*block, len >> PAGE_SHIFT));
                let mut freed = tok.into_freed_tables();
                if tables.capacity() - tables.len() >= freed.len() {
                    tables.append(&mut freed);
                }
            }
            Err(_) => stranded = true,
        }
    }
    mem.barrier();
    // A run left mapped keeps its frames pinned and the blocks taken (a
    // leak, never a reuse); otherwise all go back after the sync.
    if !stranded {
        iovas.extend_from_slice(blocks);
        for p in plan.planned.as_slice() {
            frames.extend_from_slice(plan.frames(p));
        }
    }
    payload.tables = tables;
    payload.iovas = iovas;
    payload.unpins = FrameList::from_vec(frames);
    Undone {
        asid: tr.asid,
        ranges,
        freed_tables,
        spare,
        payload,
    }
}
