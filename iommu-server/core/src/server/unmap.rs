//! `Unmap`: checking the ranges, clearing each mapping's entries and
//! handing each unmap to the invalidation engine, the held reply (strict
//! policies) riding on the last one; in bypass, forgetting bus addresses.
//!
//! It must never free anything itself: the IOVA block, the freed tables
//! and the walk-cache regions they made stale travel in a [`Payload`],
//! released only after the covering sync (see `flush`); never let a strict
//! client's reply out before that sync; and never change anything on a
//! refused request (`check_unmap` runs first).

use alloc::vec::Vec;

use abi::{Asid, Iova, PAGE_SHIFT, PAGE_SIZE};
use iommu_api::{ApiError, Extent, List, Response};
use pgtable::{TableMemory, Unmapped};
use smmuv3::cmd::Command;

use super::dispatch::{error_bytes, reply_bytes};
use super::hw::{HwTables, SmmuHw};
use super::state::{FrameList, Payload, stop_key};
use super::types::Handled;
use super::{SMALL_LIST, Server};
use crate::engine::{ClientId, IovaRange, LeafLevel, UnmapHint};
use crate::policy::InvalidationPolicy;

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

fn leaf_level(level: Option<u8>) -> LeafLevel {
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
        if let Err(e) = self.check_unmap(badge, ranges) {
            return Handled::Reply(reply, error_bytes(e));
        }
        let Some(client) = self.clients.get_mut(&badge) else {
            return Handled::Reply(reply, error_bytes(ApiError::NotPermitted));
        };
        let holds = client.policy.holds_reply();
        let bypass = client.policy == InvalidationPolicy::Bypass;
        // An unmap changes no fault record: the count is read once here.
        let faults_pending = client.ledger.kept() as u32;
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
                domain.live = domain.live.saturating_sub(1);
                domain.mapped_bytes = domain.mapped_bytes.saturating_sub(pages * PAGE_SIZE);
                let _ = self.engine.note_unmap(ClientId(badge), pages);
                // Nothing translated, nothing to wait for.
                self.unpins.extend(super::map::bus_frames(r.start, r.len));
            }
            self.flush_unpins();
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
            // Removed only once its entries are cleared (a refused
            // clear keeps it, and never reinserts into the table).
            let Some((block, pages)) = domain.mappings.get(&r.start).map(|m| m.block(r.start))
            else {
                continue;
            };
            let Ok(tok) = tr.table.unmap_exact(&mut mem, block, pages * PAGE_SIZE) else {
                // Not reachable for a range unmapped exactly as it was
                // mapped (no block split); stop consistently.
                failure = Some(ApiError::NoMemory);
                break;
            };
            let tok: Unmapped<Iova> = tok;
            let frames = domain
                .mappings
                .remove(&r.start)
                .map_or(FrameList::Empty, |m| m.frames);
            let mut payload = Payload::new(badge);
            payload.iova = Some((block, pages));
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
            domain.live = domain.live.saturating_sub(1);
            domain.mapped_bytes = domain.mapped_bytes.saturating_sub(pages * PAGE_SIZE);
            payload.unpins = frames;
            if let Some(prev) = last.replace((rs, hint, payload)) {
                earlier.push(prev);
            }
        }
        mem.barrier();
        let response = match failure {
            None => self.reply_bytes(&Response::Unmapped { faults_pending }),
            Some(e) => error_bytes(e),
        };
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
            // Not reachable for a registered live client with checked
            // ranges. Stay safe: invalidate the ASID now, then release.
            let cmd = Command::TlbiNhAsid { vmid: 0, asid }.encode();
            self.stats.tlbi_commands += 1;
            if self.run(&[cmd]).is_ok() {
                self.release_now(refused.payload);
            }
        }
    }
}
