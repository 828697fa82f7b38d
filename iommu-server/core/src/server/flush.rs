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
//! a full stage-1 invalidation); never answer a `Flush` while its
//! client has pending work; and never grow the heap infallibly: a plan
//! the heap cannot hold becomes an invalidation of everything
//! (`Engine::plan_full`), the release of a completed sync stops when the
//! heap has no room for a reply and resumes at the next poll
//! (`unreleased`), and frames are unpinned at once when the unpin batch
//! cannot grow.

use alloc::vec::Vec;

use abi::PhysAddr;
use iommu_api::{ApiError, Response};
use smmuv3::cmd::Command;

use super::ReplyBytes;
use super::Server;
use super::dispatch::{error_bytes, reply_bytes};
use super::hw::HwTables;
use super::hw::{self, HwError, SmmuHw};
use super::state::{Payload, Teardown};
use super::strtab;
use super::types::Handled;
#[cfg(doc)]
use crate::engine::Engine;
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
        let immediate = (self.unsynced.is_some()
            || self.unreleased.is_some()
            || !self.outbox.is_empty()
            || !self.flush_waiters.is_empty())
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
        self.deferred_deadline().is_some_and(|d| d <= now_us)
    }

    /// When the first deferred client's window must close (µs, its age
    /// bound less the flush lead); `None` if no deferred unmap waits.
    pub fn deferred_deadline(&self) -> Option<u64> {
        self.engine.deferred_deadline()
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
        let mut out = Vec::new();
        self.poll_into(now_us, lead_us, &mut out);
        out
    }

    /// [`Server::poll_ahead`], its replies put in `out`, a list the
    /// caller keeps from one poll to the next: into an empty `out` they
    /// are swapped, so that its room becomes the server's for the next
    /// replies and a poll allocates nothing; behind what `out` holds they
    /// are appended if the heap has room, and otherwise wait for the next
    /// poll ([`Server::next_deadline`] is then now).
    pub fn poll_into(&mut self, now_us: u64, lead_us: u64, out: &mut Vec<(R, ReplyBytes)>) {
        self.last_now = self.last_now.max(now_us);
        let now = self.last_now;
        self.flushed.clear();
        self.retry_unsynced(now);
        self.retry_unreleased(now);
        // The engine's plan looks at the time only to see what is due.
        if self.unsynced.is_none() {
            self.plan_and_issue(now, now.saturating_add(lead_us), Vec::new());
        }
        self.answer_flushes();
        if out.is_empty() {
            core::mem::swap(out, &mut self.outbox);
        } else if out.try_reserve(self.outbox.len()).is_ok() {
            out.append(&mut self.outbox);
        }
    }

    /// Flushes everything pending now (the client's deferred queue too).
    /// `NoMemory`, having flushed nothing, if the heap cannot hold the
    /// client's queue in the plan, or the replies whatever the flush
    /// releases may carry (so that all of it is released at once).
    pub(super) fn flush_now(&mut self, now: u64, badge: u32) -> Result<(), ApiError> {
        let n = usize::try_from(self.engine.pending_entries()).unwrap_or(usize::MAX);
        if self.outbox.try_reserve(n).is_err() || self.dropped.try_reserve(n).is_err() {
            return Err(ApiError::NoMemory);
        }
        if let Err(EngineError::NoMemory) = self.engine.expedite(ClientId(badge)) {
            return Err(ApiError::NoMemory);
        }
        self.retry_unsynced(now);
        self.retry_unreleased(now);
        if self.unsynced.is_none() {
            self.plan_and_issue(now, now, Vec::new());
        }
        Ok(())
    }

    /// Plans what is due at `due_at` and issues it behind `prefix`; when
    /// the heap cannot hold the plan, invalidates all of stage 1 and every
    /// cached configuration instead ([`Engine::plan_full`], completed as
    /// a retried plan is), which covers whatever was ready.
    pub(super) fn plan_and_issue(&mut self, now: u64, due_at: u64, prefix: Vec<[u64; 2]>) {
        match self.engine.try_plan_flush(due_at) {
            Ok(Some(plan)) => self.issue(now, plan, prefix),
            Ok(None) => {}
            Err(_) => {
                if let Some(seq) = self.engine.plan_full() {
                    self.unsynced = Some(seq);
                    self.retry_unsynced(now);
                }
            }
        }
    }

    /// Answers each `Flush` whose client has nothing pending any more, in
    /// place (the list grows nothing); one the outbox has no room for
    /// waits for the next poll.
    fn answer_flushes(&mut self) {
        let mut i = 0;
        while i < self.flush_waiters.len() {
            let badge = self.flush_waiters[i].0;
            if self.pending(badge) == 0 && self.outbox.try_reserve(1).is_ok() {
                let (_, r) = self.flush_waiters.remove(i);
                self.outbox.push((r, reply_bytes(&Response::Flushed)));
            } else {
                i += 1;
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
    /// The commands are encoded into `prefix`, grown once, fallibly: if
    /// the heap cannot hold them, the plan is retried at once as a failed
    /// one is, behind an invalidation of everything.
    pub(super) fn issue(&mut self, now: u64, plan: FlushPlan, prefix: Vec<[u64; 2]>) {
        let mut batch = match prefix.is_empty() {
            true => core::mem::take(&mut self.cmds),
            false => prefix,
        };
        // One command per invalidation (none for a sync).
        if batch.try_reserve(plan.commands.len()).is_err() {
            self.unsynced = Some(plan.seq);
            self.retry_unsynced(now);
            return;
        }
        let mut segments = plan.participants.iter();
        for inv in &plan.commands {
            if let Invalidation::Sync = inv {
                let participants = segments.next().into_iter().flatten();
                for ClientId(b) in participants.clone() {
                    // Only the charging of the flush's time reads it: a
                    // client the heap cannot list is not charged.
                    if let Err(at) = self.flushed.binary_search(b)
                        && self.flushed.try_reserve(1).is_ok()
                    {
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
        let seq = plan.seq;
        self.engine.recycle(plan);
        if batch.capacity() > self.cmds.capacity() {
            batch.clear();
            self.cmds = batch;
        }
        self.complete(now, seq);
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

    /// Releases what the completed sync of plan `seq` covered, one unmap
    /// at a time, each only once the outbox and the list of dropped
    /// replies have room for its reply: without that room the rest waits
    /// for the next poll (`unreleased`), never lost, never grown into.
    fn complete(&mut self, now: u64, seq: SyncSeq) {
        self.unreleased = None;
        loop {
            if self.outbox.try_reserve(1).is_err() || self.dropped.try_reserve(1).is_err() {
                self.unreleased = Some(seq);
                break;
            }
            match self.engine.next_released(now, seq) {
                Ok(Some(r)) => self.release(r),
                Ok(None) | Err(_) => break,
            }
        }
        self.flush_unpins();
    }

    /// Goes on releasing what a completed sync covered, if `complete`
    /// had to stop.
    pub(super) fn retry_unreleased(&mut self, now: u64) {
        if let Some(seq) = self.unreleased {
            self.complete(now, seq);
        }
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
        self.stats.unpin_calls += 1;
        self.stats.unpinned_frames += self.unpins.len() as u64;
        self.hw.unpin(&self.unpins);
        self.unpins.clear();
    }

    fn release(&mut self, r: Released<Payload<R>>) {
        let Released {
            reply, mut payload, ..
        } = r;
        if let Some((rep, answer)) = payload.reply.take() {
            let rep = (rep, answer.bytes());
            match reply {
                ReplyAction::Send | ReplyAction::AlreadySent => self.outbox.push(rep),
                ReplyAction::Drop => self.dropped.push(rep),
            }
        }
        self.release_payload(payload);
    }

    /// Frees what a payload holds; its covering sync has completed. Its
    /// frames join the next unpin batch ([`Server::flush_unpins`]), or,
    /// when the heap cannot hold them there, are unpinned at once. Its
    /// reply (a failed map's has none) goes to the outbox, which has room
    /// for it (`complete`, `release_now`).
    pub(super) fn release_payload(&mut self, p: Payload<R>) {
        // Taken apart: its lists go back to the pools as they are emptied.
        let Payload {
            badge,
            iova,
            iovas,
            tables,
            teardown,
            reply,
            stale_walks,
            mut unpins,
        } = p;
        let frames = unpins.as_slice().len();
        if self.unpins.try_reserve(frames).is_ok() {
            if let Some(list) = unpins.append_to(&mut self.unpins) {
                self.spare.frames.put(list);
            }
        } else {
            self.unpin_now(unpins.as_slice());
        }
        if let Some((rep, answer)) = reply {
            self.outbox.push((rep, answer.bytes()));
        }
        if let Some(tr) = self
            .clients
            .get_mut(&badge)
            .and_then(|c| c.domain.as_mut())
            .and_then(|d| d.tr.as_mut())
        {
            for (b, n) in iova.iter().chain(&iovas) {
                let _ = tr.iova.free(*b, *n);
            }
            // Freed tables count against the quota until now.
            tr.table_pages = tr.table_pages.saturating_sub(tables.len() as u64);
            for k in stale_walks.as_slice() {
                if let Some(c) = tr.stale_walks.get_mut(k) {
                    *c -= 1;
                    if *c == 0 {
                        tr.stale_walks.remove(k);
                    }
                }
            }
        }
        self.spare.blocks.put(iovas);
        stale_walks.give_back(&mut self.spare.keys);
        for &t in &tables {
            self.hw.free_pages(t, 1);
        }
        self.spare.frames.put(tables);
        if teardown && let Some(t) = self.clients.get_mut(&badge).and_then(|c| c.teardown.take()) {
            self.release_teardown(t);
        }
    }

    /// Frees what a dead client's domain held; the sync covering its
    /// streams' abort and its ASID's invalidation has completed. Grows
    /// nothing: the table is freed page by page as it is walked, and the
    /// frames join the unpin batch where the heap has room, else are
    /// unpinned at once.
    fn release_teardown(&mut self, t: Teardown) {
        let Teardown {
            table,
            mappings,
            bus,
            cd,
            asid,
            aborted,
            reserved,
        } = t;
        for m in mappings.values() {
            self.unpin_after_sync(m.frames.as_slice());
        }
        for ((addr, len), n) in bus.iter() {
            for _ in 0..n {
                self.release_bus_pins(addr, len);
            }
        }
        if let Some(table) = table {
            table.destroy_with(&mut HwTables(&mut self.hw), |mem, page| {
                mem.0.free_pages(page, 1);
            });
        }
        if let Some(cd) = cd {
            self.hw.free_pages(cd, 1);
        }
        if let Some(a) = asid {
            self.asids.release(a);
        }
        self.table_reserved = self.table_reserved.saturating_sub(reserved);
        for a in &aborted {
            strtab::clear_tail(&mut self.hw, *a);
        }
    }

    /// The pins of one bypass mapping of `len` bytes at bus address `bus`
    /// (nothing translated it: nothing to wait for), through
    /// [`Server::unpin_after_sync`] in stack-sized batches: no list of its
    /// frames is built.
    pub(super) fn release_bus_pins(&mut self, bus: u64, len: u64) {
        let mut batch = [PhysAddr::new(0); 32];
        let mut k = 0;
        for f in super::map::bus_frames(bus, len) {
            batch[k] = f;
            k += 1;
            if k == batch.len() {
                self.unpin_after_sync(&batch);
                k = 0;
            }
        }
        self.unpin_after_sync(&batch[..k]);
    }

    /// Frames whose covering sync completed: into the unpin batch, or, if
    /// the heap cannot hold them there, unpinned at once.
    fn unpin_after_sync(&mut self, frames: &[PhysAddr]) {
        if frames.is_empty() {
            return;
        }
        if self.unpins.try_reserve(frames.len()).is_ok() {
            self.unpins.extend_from_slice(frames);
        } else {
            self.unpin_now(frames);
        }
    }
}
