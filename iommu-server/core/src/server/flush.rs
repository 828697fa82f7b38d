//! Flushing: the `Flush` request, [`Server::poll`] and its deadline,
//! issuing the engine's plans (one doorbell and one CMD_SYNC shared by
//! every client), retrying a failed sync, and releasing what a completed
//! sync covered: held replies, IOVAs, table pages, CDs, ASIDs, and the
//! other words of aborted STEs.
//!
//! It must never release an IOVA, a table page, a CD or an ASID, nor unpin
//! a frame, before the sync that covers its last use (`release_payload`,
//! the only place they are freed, runs for a completed sync only; its
//! frames are unpinned in one batch per completed sync, `flush_unpins`); never complete a plan
//! whose commands or sync failed (it stays unsynced, and is retried with
//! a full stage-1 invalidation); and never answer a `Flush` while its
//! client has pending work.

use alloc::vec::Vec;

use abi::PhysAddr;
use iommu_api::{ApiError, Response};
use smmuv3::cmd::Command;

use super::ReplyBytes;
use super::Server;
use super::dispatch::{error_bytes, reply_bytes};
use super::hw::{self, HwError, SmmuHw};
use super::state::Payload;
use super::strtab;
use super::types::Handled;
use crate::engine::{
    ClientId, EngineError, FlushPlan, Invalidation, Released, ReplyAction, SyncSeq,
};

impl<H: SmmuHw, R> Server<H, R> {
    pub(super) fn flush(&mut self, badge: u32, reply: R) -> Handled<R> {
        // Room to hold the reply first: a refusal changes nothing.
        if self.flush_waiters.try_reserve(1).is_err() {
            return Handled::Reply(reply, error_bytes(ApiError::NoMemory));
        }
        match self.engine.expedite(ClientId(badge)) {
            Ok(_) => {}
            Err(EngineError::NoMemory) => {
                return Handled::Reply(reply, error_bytes(ApiError::NoMemory));
            }
            Err(_) => return Handled::Reply(reply, error_bytes(ApiError::NotPermitted)),
        }
        if self.pending(badge) == 0 {
            return Handled::Reply(reply, reply_bytes(&Response::Flushed));
        }
        self.flush_waiters.push((badge, reply));
        Handled::Held
    }

    pub(super) fn pending(&self, badge: u32) -> u64 {
        self.engine
            .client_stats(ClientId(badge))
            .map_or(0, |s| s.entries_pending)
    }

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

    /// Whether a deferred client's window must close by `now_us`: the task
    /// then flushes at once, even while calls keep arriving, so that a busy
    /// queue never stretches a deferred window past its bound (strict work
    /// still waits for the queue to empty, which is what lets clients
    /// share a sync).
    pub fn deferred_due(&self, now_us: u64) -> bool {
        self.engine.deferred_deadline().is_some_and(|d| d <= now_us)
    }

    /// Issues whatever invalidation is due with one doorbell per sync (one
    /// sync shared by every client, except the per-unmap baseline), then
    /// releases what it covered. Returns the held replies now due.
    pub fn poll(&mut self, now_us: u64) -> Vec<(R, ReplyBytes)> {
        self.poll_ahead(now_us, 0)
    }

    /// [`Server::poll`], and deferred queues whose window would close
    /// within `lead_us` flushed now too (earlier than due, never later):
    /// for a task that knows it will not run again before then.
    pub fn poll_ahead(&mut self, now_us: u64, lead_us: u64) -> Vec<(R, ReplyBytes)> {
        self.last_now = self.last_now.max(now_us);
        let now = self.last_now;
        self.flushed.clear();
        self.retry_unsynced(now);
        // The engine's plan looks at the time only to see what is due.
        if self.unsynced.is_none()
            && let Some(plan) = self.engine.plan_flush(now.saturating_add(lead_us))
        {
            self.issue(now, plan, Vec::new());
        }
        self.answer_flushes();
        core::mem::take(&mut self.outbox)
    }

    /// Flushes everything pending now (the client's deferred queue too).
    pub(super) fn flush_now(&mut self, now: u64, badge: u32) {
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

    /// After a failed submission or sync: invalidate every cached
    /// configuration (the failed batch may have carried the CFGI_STE of
    /// streams put to abort: until it runs, a cached STE may still point
    /// at a CD and tables the plan frees) and all of stage 1 (some TLBIs
    /// may not have run), and sync; on success the plan completes.
    pub(super) fn retry_unsynced(&mut self, now: u64) {
        let Some(seq) = self.unsynced else {
            return;
        };
        self.stats.tlbi_commands += 1;
        let all = [
            Command::CfgiAll.encode(),
            Command::TlbiNhAll { vmid: 0 }.encode(),
        ];
        if self.run(&all).is_ok() {
            self.unsynced = None;
            self.complete(now, seq);
        }
    }

    /// Submits `prefix` and the plan's commands, one sync (behind the
    /// commands before it, one doorbell where the hardware allows) per
    /// `Sync` in the plan, then completes it.
    pub(super) fn issue(&mut self, now: u64, plan: FlushPlan, prefix: Vec<[u64; 2]>) {
        let mut batch = prefix;
        let mut segments = plan.participants.iter();
        for inv in &plan.commands {
            if let Invalidation::Sync = inv {
                let participants = segments.next().into_iter().flatten();
                for ClientId(b) in participants.clone() {
                    if let Err(at) = self.flushed.binary_search(b) {
                        self.flushed.insert(at, *b);
                    }
                }
                let Ok(doorbells) = self.run(&batch) else {
                    self.unsynced = Some(plan.seq);
                    return;
                };
                for ClientId(b) in participants {
                    if let Some(c) = self.clients.get_mut(b) {
                        c.doorbells = c.doorbells.saturating_add(doorbells);
                    }
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

    /// `cmds` (if any) and one sync behind them; returns the doorbells
    /// that took (one when the hardware rings once for both).
    pub(super) fn run(&mut self, cmds: &[[u64; 2]]) -> Result<u64, HwError> {
        self.stats.syncs += 1;
        match self.hw.submit_and_sync(cmds) {
            Ok(doorbells) => {
                self.stats.doorbells += doorbells;
                Ok(doorbells)
            }
            Err(e) => {
                self.stats.hw_errors += 1;
                Err(e)
            }
        }
    }

    fn complete(&mut self, now: u64, seq: SyncSeq) {
        let Ok(released) = self.engine.sync_completed(now, seq) else {
            return;
        };
        for r in released {
            self.release(r);
        }
        self.flush_unpins();
    }

    /// Releases a payload outside a sync's completion (nothing it holds is
    /// reachable: nothing was written, or its invalidation already ran),
    /// then unpins its frames.
    pub(super) fn release_now(&mut self, p: Payload<R>) {
        self.release_payload(p);
        self.flush_unpins();
    }

    /// Unpins `frames` now (nothing maps them), in one call, growing
    /// nothing: after the batch already waiting, if any.
    pub(super) fn unpin_now(&mut self, frames: &[PhysAddr]) {
        self.flush_unpins();
        if frames.is_empty() {
            return;
        }
        self.stats.unpin_calls += 1;
        self.stats.unpinned_frames += frames.len() as u64;
        self.hw.unpin(frames);
    }

    /// One unpin call for every frame whose covering sync completed.
    pub(super) fn flush_unpins(&mut self) {
        if self.unpins.is_empty() {
            return;
        }
        let batch = core::mem::take(&mut self.unpins);
        self.stats.unpin_calls += 1;
        self.stats.unpinned_frames += batch.len() as u64;
        self.hw.unpin(&batch);
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

    /// Frees what a payload holds; its covering sync has completed. Its
    /// frames join the next unpin batch ([`Server::flush_unpins`]).
    pub(super) fn release_payload(&mut self, mut p: Payload<R>) {
        p.unpins.append_to(&mut self.unpins);
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
            // Freed tables count against the quota until now.
            tr.table_pages = tr.table_pages.saturating_sub(p.tables.len() as u64);
            for k in p.stale_walks.as_slice() {
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
        if let Some(t) = p.teardown {
            if let Some(cd) = t.cd {
                self.hw.free_pages(cd, 1);
            }
            if let Some(a) = t.asid {
                self.asids.release(a);
            }
            self.table_reserved = self.table_reserved.saturating_sub(t.reserved);
            for a in &t.aborted {
                strtab::clear_tail(&mut self.hw, *a);
            }
        }
    }
}
