//! The one-range paths of `Map` and `Unmap`: one buffer per request, the
//! I/O path's usual call. Each makes the same checks, in the same order,
//! with the same answers, and the same changes as the general handler
//! (`map`, `unmap`), but reaches the client at the index `handle` found
//! it at (no second search; checked, and handed to the general handler
//! if it is not there), keeps no per-range bookkeeping, and builds what
//! it hands on where it is used. A request they do not take (a bypass
//! client, a domain without its stage-1 part, a map while walk-cache
//! regions await their sync) goes to the general handler before anything
//! is checked or changed.
//!
//! They keep every rule of `map` and `unmap` (see those modules): a map
//! reaches only granted, pinned frames, passes the quota before anything
//! changes, reserves its frame list and record before taking an IOVA, and
//! rolls a failed write back through the allocator and the unpin batch
//! exactly as the general path does; an unmap reserves the engine's room
//! and its stale-walk bookkeeping (refused with `NoMemory`, nothing
//! changed, without them), clears the entries, then hands the IOVA block,
//! freed tables, frames and held reply to the engine, and a strict
//! client's reply is held until the covering sync.

use alloc::vec::Vec;

use abi::{Iova, PAGE_SHIFT, PAGE_SIZE};
use iommu_api::{ApiError, Dir, Extent, List, Response};
use pgtable::{Attrs, TableMemory};

use super::dispatch::error_bytes;
use super::few::Few;
use super::hw::{HwTables, SmmuHw};
use super::quota::{self, QuotaTables, Use};
use super::state::{
    Answer, Attached, Client, FrameList, Mapping, Payload, StaleKeys, note_stale, stale_room,
    stop_key, table_room,
};
use super::types::{Grant, Handled};
use super::unmap::{MERGE_PAGES, leaf_level, release_share};
use super::{MAIR_NORMAL, ReplyBytes, Server};
use crate::engine::{ClientId, EngineError, IovaRange, UnmapHint, Unmapping};
use crate::iova::IovaError;
use crate::policy::InvalidationPolicy;

/// Pages of one 2 MiB block (as `map`): a shorter range is mapped by pages.
const BLOCK_PAGES: u64 = 512;

/// How a one-range map ended, for the part that needs the whole server.
enum MapEnd {
    Done(ReplyBytes),
    /// Pinned, nothing written: unpin now.
    Unpin(ApiError),
    /// The write failed: the IOVA block went back at once (nothing was
    /// written), spare tables and the pins go now.
    RolledBack(ApiError),
}

impl<H: SmmuHw, R> Server<H, R> {
    /// `Map` of one range by the client at `slot` of the server's table;
    /// `None` hands it to the general path (nothing was checked or
    /// changed).
    pub(super) fn map_one(
        &mut self,
        slot: usize,
        badge: u32,
        dir: Dir,
        r: Extent,
        grant: Option<Grant<'_>>,
    ) -> Option<Result<ReplyBytes, ApiError>> {
        let Self {
            clients,
            hw,
            engine,
            stats,
            features,
            ..
        } = self;
        let Attached {
            quota,
            policy,
            tr,
            mappings,
            live,
            mapped_bytes,
            ..
        } = clients.at_mut(slot, &badge)?.attached()?;
        if policy == InvalidationPolicy::Bypass || !tr.stale_walks.is_empty() {
            return None;
        }
        // The checks of `plan_map`, in its order.
        let end = (|| {
            let grant = grant.ok_or(ApiError::NotGranted)?;
            let oas_limit = 1u64 << features.oas_bits.min(56);
            if grant
                .frames
                .iter()
                .any(|f| !f.is_page_aligned() || f.get() >= oas_limit)
            {
                return Err(ApiError::NotGranted);
            }
            if r.len == 0 {
                return Err(ApiError::ZeroLength);
            }
            let end = r.end().ok_or(ApiError::NotGranted)?;
            if end > grant.len {
                return Err(ApiError::NotGranted);
            }
            let grant_off = grant.va & (PAGE_SIZE - 1);
            let first_byte = grant_off.checked_add(r.start).ok_or(ApiError::NotGranted)?;
            let last_byte = grant_off.checked_add(end - 1).ok_or(ApiError::NotGranted)?;
            let first = first_byte >> PAGE_SHIFT;
            let last = last_byte >> PAGE_SHIFT;
            let frames = grant
                .frames
                .get(first as usize..=last as usize)
                .ok_or(ApiError::NotGranted)?;
            let pages = last - first + 1;
            let iova_bytes = pages
                .checked_next_power_of_two()
                .unwrap_or(u64::MAX)
                .saturating_mul(PAGE_SIZE);
            let held = Use {
                mappings: *live,
                mapped_bytes: *mapped_bytes,
                iova_bytes: tr.iova.in_use_bytes(),
            };
            let more = Use {
                mappings: 1,
                mapped_bytes: pages * PAGE_SIZE,
                iova_bytes,
            };
            quota::check(quota, held, more)?;
            Ok((frames, pages, first_byte & (PAGE_SIZE - 1)))
        })();
        let (frames, pages, offset) = match end {
            Ok(v) => v,
            Err(e) => return Some(Err(e)),
        };
        // Its frame list, its record and its IOVA block's bookkeeping
        // reserved before anything changes (the pin included).
        let reserved = match (FrameList::try_copy(frames), mappings.try_reserve(1)) {
            (Some(list), Ok(())) if tr.iova.reserve(1).is_ok() => list,
            _ => return Some(Err(ApiError::NoMemory)),
        };
        // Every frame it will reach is pinned first (one call).
        if hw.pin(frames).is_err() {
            stats.pin_refusals += 1;
            return Some(Err(ApiError::NotGranted));
        }
        stats.pin_calls += 1;
        stats.pinned_frames += frames.len() as u64;
        let list = reserved;
        let end = match tr.iova.alloc(pages) {
            Err(e) => MapEnd::Unpin(match e {
                IovaError::NoMemory => ApiError::NoMemory,
                _ => ApiError::IovaExhausted,
            }),
            Ok(block) => {
                let left = quota.table_pages.saturating_sub(tr.table_pages);
                let mut mem = QuotaTables::new(HwTables(&mut *hw), left);
                let attrs = Attrs::dma(MAIR_NORMAL, dir.device_writes());
                let written = match frames {
                    [first, ..]
                        if pages >= BLOCK_PAGES
                            && frames
                                .windows(2)
                                .all(|w| w[1].get() == w[0].get().wrapping_add(PAGE_SIZE)) =>
                    {
                        tr.table
                            .map(&mut mem, block, *first, pages * PAGE_SIZE, attrs)
                    }
                    _ => tr.table.map_pages(&mut mem, block, frames, attrs),
                };
                tr.table_pages += mem.allocated;
                mem.allocated = 0;
                if written.is_err() {
                    let why = if mem.over_quota {
                        ApiError::QuotaExceeded
                    } else {
                        ApiError::NoMemory
                    };
                    // All or nothing: nothing was written, so nothing
                    // can be cached. Tables the walk took but never
                    // linked, the IOVA block and the pins go now.
                    let spare = tr.table.take_spare_tables();
                    mem.barrier();
                    tr.table_pages = tr.table_pages.saturating_sub(spare.len() as u64);
                    for p in spare {
                        hw.free_pages(p, 1);
                    }
                    let _ = tr.iova.free(block, pages);
                    MapEnd::RolledBack(why)
                } else {
                    mem.barrier();
                    let iova = Iova::new(block.get() + offset);
                    // Room was reserved above; the count was checked
                    // against the quota, which `add_client` reserved
                    // heap for.
                    mappings.entry(iova.get()).insert(Mapping {
                        len: r.len,
                        packed: 0,
                        frames: list,
                    });
                    *live += 1;
                    *mapped_bytes += pages * PAGE_SIZE;
                    let _ = engine.note_map(ClientId(badge), pages);
                    // One IOVA always fits inline.
                    match ReplyBytes::mapped_one(iova) {
                        Some(b) => MapEnd::Done(b),
                        None => {
                            let iovas = [iova];
                            let reply = Response::Mapped {
                                iovas: iommu_api::List::new(&iovas),
                            };
                            MapEnd::Done(super::dispatch::reply_bytes(&reply))
                        }
                    }
                }
            }
        };
        Some(match end {
            MapEnd::Done(b) => Ok(b),
            MapEnd::Unpin(e) | MapEnd::RolledBack(e) => {
                self.unpin_now(frames);
                Err(e)
            }
        })
    }

    /// `Unmap` of `ranges`, whose one range is `r`, by the client at
    /// `slot` of the server's table. A request it does not take goes to
    /// the general path from here (nothing was checked or changed), so
    /// that either answer is built where the caller's is (a `Result`
    /// around it was copied out and matched once more).
    pub(super) fn unmap_one(
        &mut self,
        now: u64,
        slot: usize,
        badge: u32,
        ranges: List<'_, Extent>,
        r: Extent,
        reply: R,
    ) -> Handled<R> {
        let Self {
            clients,
            hw,
            engine,
            ..
        } = self;
        let Some(Attached {
            policy,
            ledger,
            tr,
            mappings,
            live,
            mapped_bytes,
            ..
        }) = clients.at_mut(slot, &badge).and_then(Client::attached)
        else {
            return self.unmap(now, badge, ranges, reply);
        };
        if policy == InvalidationPolicy::Bypass {
            return self.unmap(now, badge, ranges, reply);
        }
        // The checks of `span_of` (unmap.rs), in its order.
        if r.len == 0 {
            return Handled::Reply(reply, error_bytes(ApiError::ZeroLength));
        }
        let hashbrown::hash_map::Entry::Occupied(record) = mappings.entry(r.start) else {
            return Handled::Reply(reply, error_bytes(ApiError::UnknownIova));
        };
        if record.get().len != r.len {
            return Handled::Reply(reply, error_bytes(ApiError::LengthMismatch));
        }
        // An unmap changes no fault record: the count is read once here.
        let faults_pending = ledger.kept() as u32;
        let asid = tr.asid;
        let (block, pages) = record.get().block(r.start);
        // Everything the engine and the stale-walk bookkeeping will need,
        // reserved before an entry is cleared: past that point the unmap
        // cannot be refused.
        let room = if pages < MERGE_PAGES { 1 } else { 3 };
        let keys = stale_room(block.get(), pages * PAGE_SIZE);
        // (Each in turn, refused with nothing changed; no tuple of them is
        // built and moved.)
        let engine_room = match engine.reserve_unmap(ClientId(badge), 1, room) {
            Ok(r) => r,
            Err(e) => {
                let e = match e {
                    EngineError::NoMemory => ApiError::NoMemory,
                    _ => ApiError::NotPermitted,
                };
                return Handled::Reply(reply, error_bytes(e));
            }
        };
        let no_memory = |reply| Handled::Reply(reply, error_bytes(ApiError::NoMemory));
        if tr.stale_walks.try_reserve(keys).is_err() {
            return no_memory(reply);
        }
        let Some(stale) = StaleKeys::with_room(keys) else {
            return no_memory(reply);
        };
        let mut mem = HwTables(&mut *hw);
        let cleared = if pages >= MERGE_PAGES {
            // A range a block may map is cleared by the page table's
            // general walk: its token's room, reserved too.
            let Some(room) =
                pgtable::Unmapped::with_room(3, table_room(block.get(), pages * PAGE_SIZE))
            else {
                return no_memory(reply);
            };
            tr.table
                .unmap_exact_in(&mut mem, block, pages * PAGE_SIZE, room)
        } else {
            tr.table.unmap_exact(&mut mem, block, pages * PAGE_SIZE)
        };
        // Read where it is (the token is about 100 bytes; moving it out of
        // its `Result` was a copy per unmap), consumed below.
        let tok = match &cleared {
            Ok(tok) => tok,
            Err(_) => {
                // Not reachable for a range unmapped exactly as it was
                // mapped; the record stays, nothing was cleared.
                mem.barrier();
                return Handled::Reply(reply, error_bytes(ApiError::NoMemory));
            }
        };
        // The usual single range needs no list.
        let one;
        let mut few;
        let ranges: &[IovaRange] = match tok.ranges() {
            [x] => {
                one = [IovaRange::new(x.start, x.len >> PAGE_SHIFT)];
                &one
            }
            all => {
                // At most three (`room`): inline, nothing to refuse after
                // the clear.
                few = Few::inline(room, || IovaRange::new(Iova::new(0), 0));
                for x in all {
                    few.push(IovaRange::new(x.start, x.len >> PAGE_SHIFT));
                }
                few.as_slice()
            }
        };
        let hint = UnmapHint {
            leaf_level: leaf_level(tok.leaf_level()),
            tables_freed: tok.needs_walk_invalidation(),
        };
        // What the sync releases is gathered in locals and the payload
        // built once, where it goes to the engine (built empty and filled
        // in, each field's old value was checked for a drop, and the
        // whole was copied once more).
        let mut stale_walks = stale;
        if hint.tables_freed {
            for x in tok.ranges() {
                let (a, end) = (x.start.get(), x.start.get() + x.len);
                let mut va = a;
                while va < end {
                    if let Some(k) = stop_key(&mem, &tr.table, va) {
                        note_stale(&mut tr.stale_walks, &mut stale_walks, k);
                    }
                    va = (va | ((1 << 21) - 1)) + 1;
                }
            }
        }
        // (`cleared` is `Ok`: an `Err` returned above.)
        let tables = cleared
            .map(pgtable::Unmapped::into_freed_tables)
            .unwrap_or_default();
        // Removed only once its entries are cleared.
        let (_, m) = record.remove_entry();
        *live = live.saturating_sub(1);
        *mapped_bytes = mapped_bytes.saturating_sub(pages * PAGE_SIZE);
        // Its IOVA block goes back after the sync: its own, or a shared
        // one with the last of its ranges.
        let iova = match m.packed {
            0 => Some((block, pages)),
            shared => release_share(&mut tr.packed, shared),
        };
        mem.barrier();
        let response = Answer::Unmapped(faults_pending);
        let (held, answer) = if policy.holds_reply() {
            (Some((reply, response)), None)
        } else {
            (None, Some((reply, response)))
        };
        let frames = m.frames;
        // Built where the engine's entry is (see `unmap_reserved_with`).
        let payload = move || Payload {
            badge,
            iova,
            iovas: Vec::new(),
            tables,
            teardown: false,
            reply: held,
            stale_walks,
            unpins: frames,
        };
        let u = Unmapping {
            client: ClientId(badge),
            asid,
            ranges,
            hint,
            mappings: 1,
        };
        if let Err(refused) = engine.unmap_reserved_with(now, u, payload, engine_room) {
            // Not reachable (its room was reserved): answered now, after
            // an invalidation of the whole ASID.
            let mut payload = refused.payload;
            let answer = payload.reply.take().or(answer);
            self.unmap_refused(asid, payload);
            return match answer {
                Some((reply, response)) => Handled::Reply(reply, response.bytes()),
                None => Handled::Held,
            };
        }
        match answer {
            Some((reply, response)) => Handled::Reply(reply, response.bytes()),
            None => Handled::Held,
        }
    }
}
