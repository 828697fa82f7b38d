//! A client's death: its streams go to abort, its whole domain is
//! invalidated with one sync shared with whatever else was pending, and
//! its tables, CD, IOVAs and ASID are freed after that sync; its held
//! replies go back to the task to drop.
//!
//! It must never free a dead client's tables, CD, IOVAs or ASID, nor
//! unpin the frames its mappings reached, before the sync that follows its
//! streams' abort and its ASID's invalidation (they wait in the dead
//! client's record, released through a [`Payload`] the engine carries);
//! never forget the client while it has pending invalidations; and never
//! grow the heap infallibly (a death cannot be refused: the domain moves
//! whole into the teardown record, and what the heap cannot hold falls
//! back to invalidating at once).

use alloc::vec::Vec;

use iommu_api::Response;
use smmuv3::cmd::Command;

use super::ReplyBytes;
use super::Server;
use super::dispatch::reply_bytes;
use super::hw::SmmuHw;
use super::state::{Payload, Teardown};
use crate::engine::ClientId;

impl<H: SmmuHw, R> Server<H, R> {
    /// A client died: its streams go to abort, its whole domain is
    /// invalidated (CFGI_STE per stream, TLBI_NH_ASID, one sync shared
    /// with whatever else was pending), and its tables, CD, IOVAs and ASID
    /// are freed after that sync. Returns its held replies for the task to
    /// drop; other clients' replies released by the same sync come from
    /// the next [`Server::poll`]. Then the task may answer the death notice.
    pub fn client_died(&mut self, badge: u32) -> Vec<(R, ReplyBytes)> {
        let now = self.last_now;
        let Some(c) = self.clients.get_mut(&badge) else {
            return Vec::new();
        };
        let sids = core::mem::take(&mut c.sids);
        let domain = c.domain.take();
        c.quarantined = true;
        c.dead = true;
        // Its waiting `Flush`es go back to be dropped (one the heap has no
        // room for is answered by a later poll instead, as its client has
        // nothing pending then).
        let mut i = 0;
        while i < self.flush_waiters.len() {
            if self.flush_waiters[i].0 == badge && self.dropped.try_reserve(1).is_ok() {
                let (_, r) = self.flush_waiters.remove(i);
                self.dropped.push((r, reply_bytes(&Response::Flushed)));
            } else {
                i += 1;
            }
        }
        for sid in &sids {
            self.streams.remove(&sid.0);
        }
        let (cmds, stes) = self.abort_streams(&sids);
        // The domain moves, whole, into the teardown record: nothing is
        // copied, nothing allocated.
        let mut teardown = Teardown {
            aborted: stes,
            ..Teardown::default()
        };
        let mut asid = None;
        if let Some(d) = domain {
            teardown.mappings = d.mappings;
            teardown.bus = d.bus;
            if let Some(tr) = d.tr {
                teardown.cd = Some(tr.cd);
                teardown.asid = Some(tr.asid);
                teardown.reserved = tr.reserved;
                teardown.table = Some(tr.table);
                asid = Some(tr.asid);
            }
        }
        if let Some(c) = self.clients.get_mut(&badge) {
            c.teardown = Some(teardown);
        }
        let mut payload = Payload::new(badge);
        payload.teardown = true;
        match self
            .engine
            .purge(now, ClientId(badge), asid.as_slice(), payload)
        {
            Ok(_) => {
                // Also finish any earlier plan whose sync failed.
                self.retry_unsynced(now);
                if self.unsynced.is_none() {
                    self.plan_and_issue(now, now, cmds);
                } else if let Ok(Some(plan)) = self.engine.try_plan_flush(now) {
                    // The SMMU is failing: keep everything; poll retries.
                    self.unsynced = Some(plan.seq);
                } else if let Some(seq) = self.engine.plan_full() {
                    self.unsynced = Some(seq);
                }
            }
            Err(refused) => {
                // The engine could not take it (the heap could not hold
                // the entry): invalidate directly, then release.
                let mut done = self.run(&cmds).is_ok();
                if let Some(a) = asid {
                    self.stats.tlbi_commands += 1;
                    let tlbi = Command::TlbiNhAsid { vmid: 0, asid: a }.encode();
                    done &= self.run(&[tlbi]).is_ok();
                }
                if done {
                    self.release_now(refused.payload);
                } else if let Some(c) = self.clients.get_mut(&badge) {
                    // Nothing is released while the SMMU may still use it.
                    c.teardown = None;
                }
            }
        }
        if self.pending(badge) == 0
            && self
                .clients
                .get(&badge)
                .is_none_or(|c| c.teardown.is_none())
        {
            self.forget(badge);
        }
        core::mem::take(&mut self.dropped)
    }

    /// Forgets a dead client whose teardown is complete; its quota's heap
    /// is free for the next registration.
    fn forget(&mut self, badge: u32) {
        let _ = self.engine.remove_client(ClientId(badge));
        if let Some(c) = self.clients.remove(&badge) {
            let heap = super::quota::heap_bytes(&c.quota);
            self.heap_reserved = self.heap_reserved.saturating_sub(heap);
        }
    }

    /// Whether the teardown [`Server::client_died`] started for `badge`
    /// is complete: its streams' abort and its domain's invalidation were
    /// covered by a completed sync and its tables, CD and frames released.
    /// Only then may the task answer the death notice (the kernel then
    /// reuses the client's memory). While a sync fails it stays false, the
    /// streams stay at abort and nothing is released; [`Server::poll`]
    /// retries. When it turns true the client is forgotten.
    pub fn teardown_complete(&mut self, badge: u32) -> bool {
        match self.clients.get(&badge) {
            None => true,
            Some(c) if !c.dead => true,
            Some(_) if self.unsynced.is_none() && self.pending(badge) == 0 => {
                self.forget(badge);
                true
            }
            Some(_) => false,
        }
    }
}
