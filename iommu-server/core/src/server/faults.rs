//! Counters and faults: a client's `Stats` and public view, the task's
//! time charging (`server_ticks`), event-queue records attributed by
//! StreamID and noted in the client's ledger (`crate::fault_ledger`:
//! coalesced per (StreamID, page), bounded, with the quarantine decision
//! taken record by record), event-queue overflows charged to a client,
//! a monitor's read of any client's counters (`ClientStats`),
//! `Faults` draining, demotion of a faulting deferred client to strict,
//! and quarantine.
//!
//! It must never attribute a fault to a client that does not own the
//! stream, never keep more than `fault_records_kept` records per client,
//! never quarantine without sending every stream of the client to abort
//! (its mappings stay until it dies; `dispatch` refuses its requests but
//! `Stats` and `Faults`), and never answer a demoted client while its
//! deferred unmaps are pending (`dispatch` completes the demotion first).
//! A demotion is never undone (`policy` refuses `SetPolicy` back to a
//! deferred or bypass policy).

use alloc::vec::Vec;

use abi::{PhysAddr, StreamId};
use iommu_api::{ApiError, List, Response, Stats, level};
use smmuv3::cmd::Command;
use smmuv3::evt::Event;

use super::ReplyBytes;
use super::Server;
use super::dispatch::{error_bytes, reply_bytes};
use super::hw::SmmuHw;
use super::strtab;
use super::types::{ClientInfo, FaultReport, OverflowCharge, Phase};
use crate::engine::ClientId;
use crate::fault_ledger::{Fault, QuarantineReason, Thresholds};
use crate::policy::InvalidationPolicy;

impl<H: SmmuHw, R> Server<H, R> {
    /// Credits `ticks` counter ticks of server time to client `badge`:
    /// `pin_ticks` of them (at most all) spent in the kernel's pin calls,
    /// as [`Phase::Pins`], the rest on `phase` (the task measures around
    /// [`Server::handle`] and charges the caller). Unknown badges are
    /// ignored.
    pub fn charge(&mut self, badge: u32, phase: Phase, ticks: u64, pin_ticks: u64) {
        if let Some(c) = self.clients.get_mut(&badge) {
            let pin_ticks = pin_ticks.min(ticks);
            c.ticks = c.ticks.saturating_add(ticks);
            c.phase_ticks.add(phase, ticks - pin_ticks);
            c.phase_ticks.add(Phase::Pins, pin_ticks);
        }
    }

    /// Credits `ticks` spent in the last [`Server::poll`], of which
    /// `pin_ticks` in the kernel's unpin calls, to the clients whose
    /// unmaps its flushes covered, each part split evenly (the remainder
    /// one tick each to the lowest badges), so that the clients'
    /// `server_ticks` add up to the time measured. Nothing is charged when
    /// that poll issued no flush.
    pub fn charge_flush(&mut self, ticks: u64, pin_ticks: u64) {
        let covered = core::mem::take(&mut self.flushed);
        let pin_ticks = pin_ticks.min(ticks);
        for (phase, ticks) in [(Phase::Flush, ticks - pin_ticks), (Phase::Pins, pin_ticks)] {
            let n = covered.len() as u64;
            if n == 0 {
                return;
            }
            let (share, mut extra) = (ticks / n, ticks % n);
            for &b in &covered {
                let one = u64::from(extra > 0);
                extra -= one;
                self.charge(b, phase, share + one, 0);
            }
        }
    }

    /// The clients whose unmaps the flushes of the last [`Server::poll`]
    /// covered, ascending.
    pub fn last_flush_clients(&self) -> &[u32] {
        &self.flushed
    }

    /// A monitor's `ClientStats`: the counters of the client at `index`
    /// in badge order, encoded as `ClientStatsOf`.
    pub(super) fn client_stats(&self, index: u32) -> Result<ReplyBytes, ApiError> {
        let badge = usize::try_from(index)
            .ok()
            .and_then(|i| self.clients.keys().nth(i))
            .copied()
            .ok_or(ApiError::NoSuchClient)?;
        let stats = self.stats(badge).ok_or(ApiError::NoSuchClient)?;
        Ok(reply_bytes(&Response::ClientStatsOf { badge, stats }))
    }

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
            map_ticks: c.phase_ticks.map,
            unmap_ticks: c.phase_ticks.unmap,
            flush_ticks: c.phase_ticks.flush,
            pin_ticks: c.phase_ticks.pins,
            mapped_bytes: c.domain.as_ref().map_or(0, |d| d.mapped_bytes),
            mappings: c.domain.as_ref().map_or(0, |d| d.live),
            table_pages: c
                .domain
                .as_ref()
                .and_then(|d| d.tr.as_ref())
                .map_or(0, |t| t.table_pages),
            quota_mapped_bytes: c.quota.mapped_bytes,
            quota_mappings: c.quota.mappings,
            quota_table_pages: c.quota.table_pages,
            quota_iova_bytes: c.quota.iova_bytes,
            level: if c.quarantined {
                level::QUARANTINED
            } else if c.demoted {
                level::DEMOTED
            } else {
                level::CONFIGURED
            },
            level_reason: match (c.quarantined, c.quarantine_reason) {
                (true, Some(QuarantineReason::DistinctPages)) => level::REASON_DISTINCT_PAGES,
                (true, Some(QuarantineReason::Records)) => level::REASON_RECORDS,
                (true, None) => level::REASON_NONE,
                (false, _) if c.demoted => level::REASON_FAULT,
                (false, _) => level::REASON_NONE,
            },
            event_overflows: c.overflows,
            fault_pages: u64::from(c.ledger.distinct()),
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

    pub(super) fn drain_faults(&mut self, badge: u32) -> ReplyBytes {
        let Some(c) = self.clients.get_mut(&badge) else {
            return error_bytes(ApiError::NotPermitted);
        };
        let Some(out) = c.ledger.try_drain(iommu_api::MAX_FAULT_RECORDS) else {
            return error_bytes(ApiError::NoMemory);
        };
        reply_bytes(&Response::Faults {
            records: List::new(&out),
        })
    }

    /// The quarantine thresholds of the configuration.
    fn thresholds(&self) -> Thresholds {
        Thresholds {
            distinct_pages: self.cfg.quarantine_after,
            records: self.cfg.quarantine_records,
        }
    }

    /// Takes one event-queue record: attributes it by StreamID to the
    /// owning client and notes it in the client's ledger (coalesced per
    /// (StreamID, page), bounded). A deferred client is demoted to strict
    /// at its first fault (its pending deferred unmaps flushed now); the
    /// client is quarantined (its streams to abort) at the record that
    /// passes a threshold: more than `quarantine_after` distinct pages, or
    /// `quarantine_records` records on any pages. The task calls this for
    /// each record as it drains, so the decision is taken during the
    /// drain. `None` for records no client owns.
    pub fn on_event(&mut self, record: [u64; 4]) -> Option<FaultReport> {
        self.stats.events += 1;
        let e = Event::decode(&record);
        let Some(&badge) = self.streams.get(&e.sid.0) else {
            self.stats.unattributed_events += 1;
            return None;
        };
        let th = self.thresholds();
        let c = self.clients.get_mut(&badge)?;
        c.fault_records = c.fault_records.saturating_add(1);
        let noted = c.ledger.note(
            Fault {
                sid: e.sid,
                kind: u16::from(e.kind.id()),
                write: !e.rnw,
                addr: e.input_addr,
            },
            &th,
        );
        let (records, lost, pages) = (c.ledger.total(), c.ledger.lost(), c.ledger.distinct());
        let quarantined_now = noted.quarantine.is_some() && !c.quarantined;
        let demote = !c.quarantined
            && !c.dead
            && !c.demoted
            && matches!(c.policy, InvalidationPolicy::Deferred { .. });
        let demoted_from = demote.then_some(c.policy);
        if demote {
            self.demote(badge);
        }
        if quarantined_now {
            if let Some(c) = self.clients.get_mut(&badge) {
                c.quarantine_reason = noted.quarantine;
            }
            self.quarantine(badge);
        }
        Some(FaultReport {
            badge,
            sid: e.sid,
            kind: e.kind,
            iova: e.input_addr,
            write: !e.rnw,
            first: noted.first,
            quarantined_now,
            reason: noted.quarantine.filter(|_| quarantined_now),
            demoted_from,
            records,
            lost,
            pages,
        })
    }

    /// The task found the event queue overflowed (records were lost):
    /// counts it, and charges it to the client owning `sid` (the stream of
    /// the records being drained when it happened), if any: an overflow
    /// more, and `lost` records (the task's estimate: no register says how
    /// many) noted in its ledger, where they count towards quarantine like
    /// drained ones. A flood fast enough to overflow the queue is thus not
    /// let off by what the SMMU dropped. `None` if no client owns `sid`.
    pub fn on_event_overflow(
        &mut self,
        sid: Option<StreamId>,
        lost: u64,
    ) -> Option<OverflowCharge> {
        self.stats.event_overflows += 1;
        let badge = *self.streams.get(&sid?.0)?;
        let th = self.thresholds();
        let c = self.clients.get_mut(&badge)?;
        c.overflows = c.overflows.saturating_add(1);
        let decided = c.ledger.note_lost(lost, &th);
        let quarantined_now = decided.is_some() && !c.quarantined;
        let charge = OverflowCharge {
            badge,
            quarantined_now,
            records: c.ledger.total(),
            lost: c.ledger.lost(),
            pages: c.ledger.distinct(),
        };
        if quarantined_now {
            c.quarantine_reason = decided;
            self.quarantine(badge);
        }
        Some(charge)
    }

    /// Demotes a deferred client to strict, for good: its policy becomes
    /// strict now (later unmaps hold their reply for the covering sync),
    /// and its pending deferred unmaps are flushed at once
    /// ([`Server::finish_demotion`]; if the SMMU fails that, the next
    /// request of the client retries it before it is answered).
    fn demote(&mut self, badge: u32) {
        let Some(c) = self.clients.get_mut(&badge) else {
            return;
        };
        c.demoted = true;
        c.policy = InvalidationPolicy::Strict;
        self.stats.demotions += 1;
        self.finish_demotion(badge);
    }

    /// Completes a demotion: flushes the client's deferred queue and
    /// pending unmaps, then switches its engine policy to strict. Whether
    /// it is complete (it is at once unless a sync failed). A client that
    /// was not demoted is complete.
    pub(super) fn finish_demotion(&mut self, badge: u32) -> bool {
        let id = ClientId(badge);
        if !self.clients.get(&badge).is_some_and(|c| c.demoted) {
            return true;
        }
        if !matches!(
            self.engine.policy(id),
            Some(InvalidationPolicy::Deferred { .. })
        ) {
            return true;
        }
        let queued = self.engine.queued(id).unwrap_or(0);
        if self.pending(badge) != 0 || queued != 0 {
            let now = self.last_now;
            let _ = self.flush_now(now, badge);
        }
        self.engine
            .set_policy(id, InvalidationPolicy::Strict)
            .is_ok()
    }

    /// Sends every stream of `badge` to abort (CFGI_STE + one sync). Its
    /// mappings stay until it dies; its requests are refused.
    fn quarantine(&mut self, badge: u32) {
        let Some(c) = self.clients.get_mut(&badge) else {
            return;
        };
        c.quarantined = true;
        self.stats.quarantines += 1;
        // Borrowed out of the client and put back: no copy.
        let sids = core::mem::take(&mut c.sids);
        let (cmds, stes) = self.abort_streams(&sids);
        if let Some(c) = self.clients.get_mut(&badge) {
            c.sids = sids;
        }
        if self.run(&cmds).is_ok() {
            for a in stes {
                strtab::clear_tail(&mut self.hw, a);
            }
        }
    }

    /// Writes abort into each stream's STE word 0; returns the commands
    /// that make the SMMU forget the old configuration (to be followed by
    /// a sync) and the STEs whose other words to clear after it. If the
    /// heap cannot hold those lists, the STEs are aborted all the same and
    /// every cached configuration is invalidated at once (CFGI_ALL and a
    /// sync); the lists come back empty (the other words stay: an abort
    /// STE ignores them).
    pub(super) fn abort_streams(&mut self, sids: &[StreamId]) -> (Vec<[u64; 2]>, Vec<PhysAddr>) {
        let mut cmds = Vec::new();
        let mut stes = Vec::new();
        if cmds.try_reserve_exact(sids.len()).is_err()
            || stes.try_reserve_exact(sids.len()).is_err()
        {
            for &sid in sids {
                if let Some(a) = self.strtab.ste(sid) {
                    strtab::write_abort(&mut self.hw, a);
                }
            }
            self.stats.cfgi_commands += 1;
            let _ = self.run(&[Command::CfgiAll.encode()]);
            return (Vec::new(), Vec::new());
        }
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
}
