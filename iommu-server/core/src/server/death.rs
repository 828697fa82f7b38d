//! A client's death: its streams go to abort, its whole domain is
//! invalidated with one sync shared with whatever else was pending, and
//! its tables, CD, IOVAs and ASID are freed after that sync; its held
//! replies go back to the task to drop.
//!
//! It must never free a dead client's tables, CD, IOVAs or ASID, nor
//! unpin the frames its mappings reached, before the sync that follows its streams' abort and its ASID's invalidation
//! (they ride in a [`Payload`] through the engine), and never forget the
//! client while it has pending invalidations.

use alloc::boxed::Box;
use alloc::vec::Vec;

use iommu_api::Response;
use smmuv3::cmd::Command;

use super::ReplyBytes;
use super::Server;
use super::dispatch::reply_bytes;
use super::hw::{HwTables, SmmuHw};
use super::state::{Domain, Payload, Teardown};
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
        let mut teardown = Teardown {
            aborted: stes,
            ..Teardown::default()
        };
        let mut asids = Vec::new();
        if let Some(d) = &domain {
            for m in d.mappings.values() {
                payload.unpins.extend_from_slice(m.frames.as_slice());
            }
            for (&(bus, len), &n) in &d.bus {
                for _ in 0..n {
                    payload.unpins.extend(super::map::bus_frames(bus, len));
                }
            }
        }
        if let Some(Domain { tr: Some(tr), .. }) = domain {
            payload.tables = tr.table.destroy(&HwTables(&mut self.hw));
            teardown.cd = Some(tr.cd);
            teardown.asid = Some(tr.asid);
            teardown.reserved = tr.reserved;
            asids.push(tr.asid);
        }
        payload.teardown = Some(Box::new(teardown));
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
                    self.release_now(refused.payload);
                }
            }
        }
        if self.pending(badge) == 0 {
            let _ = self.engine.remove_client(ClientId(badge));
            if let Some(c) = self.clients.remove(&badge) {
                // Its quota's heap is free for the next registration.
                let heap = super::quota::heap_bytes(&c.quota);
                self.heap_reserved = self.heap_reserved.saturating_sub(heap);
            }
        }
        core::mem::take(&mut self.dropped)
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
                let _ = self.engine.remove_client(ClientId(badge));
                self.clients.remove(&badge);
                true
            }
            Some(_) => false,
        }
    }
}
