//! Counters and faults: a client's `Stats` and public view, the task's
//! time charging (`server_ticks`), event-queue records attributed by
//! StreamID and coalesced per (StreamID, page), `Faults` draining, and
//! quarantine.
//!
//! It must never attribute a fault to a client that does not own the
//! stream, never keep more than `fault_records_kept` records per client,
//! and never quarantine without sending every stream of the client to
//! abort (its mappings stay until it dies; `dispatch` refuses its
//! requests but `Stats` and `Faults`).

use alloc::vec::Vec;

use abi::{Iova, PAGE_SHIFT, PhysAddr, StreamId};
use iommu_api::{ApiError, FaultRecord, List, Response, Stats};
use smmuv3::cmd::Command;
use smmuv3::evt::Event;

use super::Server;
use super::dispatch::{error_bytes, reply_bytes};
use super::hw::SmmuHw;
use super::strtab;
use super::types::{ClientInfo, FaultReport};
use crate::engine::ClientId;

impl<H: SmmuHw, R> Server<H, R> {
    /// Credits `ticks` counter ticks of server time to client `badge` (the
    /// task measures around [`Server::handle`] and charges the caller).
    /// Unknown badges are ignored.
    pub fn charge(&mut self, badge: u32, ticks: u64) {
        if let Some(c) = self.clients.get_mut(&badge) {
            c.ticks = c.ticks.saturating_add(ticks);
        }
    }

    /// Credits `ticks` spent in the last [`Server::poll`] to the clients
    /// whose unmaps its flushes covered, split evenly (the remainder one
    /// tick each to the lowest badges), so that the clients' `server_ticks`
    /// add up to the time measured. Nothing is charged when that poll
    /// issued no flush.
    pub fn charge_flush(&mut self, ticks: u64) {
        let covered = core::mem::take(&mut self.flushed);
        let n = covered.len() as u64;
        if n == 0 {
            return;
        }
        let (share, mut extra) = (ticks / n, ticks % n);
        for b in covered {
            let one = u64::from(extra > 0);
            extra -= one;
            self.charge(b, share + one);
        }
    }

    /// The clients whose unmaps the flushes of the last [`Server::poll`]
    /// covered, ascending.
    pub fn last_flush_clients(&self) -> &[u32] {
        &self.flushed
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

    pub(super) fn drain_faults(&mut self, badge: u32) -> Vec<u8> {
        let Some(c) = self.clients.get_mut(&badge) else {
            return error_bytes(ApiError::NotPermitted);
        };
        let mut out = Vec::new();
        while out.len() < iommu_api::MAX_FAULT_RECORDS {
            match c.faults.pop_first() {
                Some((_, r)) => out.push(r),
                None => break,
            }
        }
        reply_bytes(&Response::Faults {
            records: List::new(&out),
        })
    }

    /// Takes one event-queue record: attributes it by StreamID to the
    /// owning client, coalesces it per (StreamID, page), and quarantines
    /// the client (its streams to abort) once it has more than
    /// `quarantine_after` distinct faults. `None` for records no client
    /// owns.
    pub fn on_event(&mut self, record: [u64; 4]) -> Option<FaultReport> {
        self.stats.events += 1;
        let e = Event::decode(&record);
        let Some(&badge) = self.streams.get(&e.sid.0) else {
            self.stats.unattributed_events += 1;
            return None;
        };
        let c = self.clients.get_mut(&badge)?;
        c.fault_records += 1;
        let key = (e.sid.0, e.input_addr >> PAGE_SHIFT);
        let first = match c.faults.get_mut(&key) {
            Some(r) => {
                r.count = r.count.saturating_add(1);
                false
            }
            None => {
                if c.faults.len() < self.cfg.fault_records_kept {
                    c.faults.insert(
                        key,
                        FaultRecord {
                            sid: e.sid,
                            kind: u16::from(e.kind.id()),
                            write: !e.rnw,
                            iova: Iova::new(e.input_addr),
                            count: 1,
                        },
                    );
                }
                c.distinct_faults = c.distinct_faults.saturating_add(1);
                true
            }
        };
        let quarantined_now =
            first && !c.quarantined && c.distinct_faults > self.cfg.quarantine_after;
        if quarantined_now {
            self.quarantine(badge);
        }
        Some(FaultReport {
            badge,
            sid: e.sid,
            kind: e.kind,
            iova: e.input_addr,
            write: !e.rnw,
            first,
            quarantined_now,
        })
    }

    /// Sends every stream of `badge` to abort (CFGI_STE + one sync). Its
    /// mappings stay until it dies; its requests are refused.
    fn quarantine(&mut self, badge: u32) {
        let Some(c) = self.clients.get_mut(&badge) else {
            return;
        };
        c.quarantined = true;
        self.stats.quarantines += 1;
        let sids = c.sids.clone();
        let (cmds, stes) = self.abort_streams(&sids);
        if self.run(&cmds).is_ok() {
            for a in stes {
                strtab::clear_tail(&mut self.hw, a);
            }
        }
    }

    /// Writes abort into each stream's STE word 0; returns the commands
    /// that make the SMMU forget the old configuration (to be followed by
    /// a sync) and the STEs whose other words to clear after it.
    pub(super) fn abort_streams(&mut self, sids: &[StreamId]) -> (Vec<[u64; 2]>, Vec<PhysAddr>) {
        let mut cmds = Vec::new();
        let mut stes = Vec::new();
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
