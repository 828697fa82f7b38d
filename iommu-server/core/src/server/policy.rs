//! The benchmark client's runtime policy switching (`SetPolicy`) and
//! counter reset (`ResetStats`).
//!
//! It must never let a stream bypass translation unless its client is the
//! benchmark client ([`TrustLevel::Bench`]) and switched itself into
//! bypass, and never switch a client that has a live mapping or pending
//! invalidations: nothing reachable before a switch stays reachable
//! after it.
//!
//! # Runtime policy switching (the benchmark client only)
//!
//! `SetPolicy` is refused with `NotPermitted` to every client but a
//! [`TrustLevel::Bench`] one, and with `Busy` while the client has a live
//! mapping; otherwise the client's pending invalidations are completed
//! first (its earlier unmaps finish, its deferred window closes), then:
//! - between `Strict`, `StrictPerUnmap` and `Deferred`: only how its later
//!   unmaps are invalidated changes;
//! - into `Bypass`: each attached STE becomes Config = bypass (word 0 in
//!   one store, CFGI_STE, one sync, then the stage-1 fields of word 1 are
//!   cleared); `Map` then answers the buffer's bus address (= physical; a
//!   range that is not physically contiguous is `NotContiguous`, one the
//!   device cannot address `IovaExhausted`) and `Unmap` only forgets it;
//! - out of `Bypass`: the domain's stage-1 part (kept from before, or
//!   made now) is pointed at again (words 1.. then word 0, CFGI_STE, one
//!   sync), so nothing that was reachable in bypass translates any more.
//!
//! A benchmark client demoted to strict after a fault of its device
//! (`faults`) is refused (`NotPermitted`) a `SetPolicy` to deferred or
//! bypass: demotion is never undone; the strict policies stay open to it.
//!
//! `ResetStats` (benchmark client only, same flush first) zeroes the
//! client's counters. [`Server::charge`] and [`Server::charge_flush`]
//! credit the task's measured handling time to clients (`server_ticks`).

use alloc::vec::Vec;

use abi::{PhysAddr, StreamId};
use iommu_api::{ApiError, Response};
use smmuv3::cmd::Command;
use smmuv3::ste::{self, SteOptions};

use super::ReplyBytes;
use super::Server;
use super::dispatch::reply_bytes;
use super::hw::SmmuHw;
use super::state::{Client, Domain};
use super::strtab;
use crate::engine::ClientId;
use crate::policy::{InvalidationPolicy, TrustLevel};

impl<H: SmmuHw, R> Server<H, R> {
    /// The benchmark client, or `NotPermitted`.
    fn bench_client(&self, badge: u32) -> Result<&Client, ApiError> {
        match self.clients.get(&badge) {
            Some(c) if c.trust == TrustLevel::Bench => Ok(c),
            _ => Err(ApiError::NotPermitted),
        }
    }

    /// Completes every pending invalidation of `badge` now (its deferred
    /// queue too). `Hardware` if the SMMU failed to.
    fn settle(&mut self, now: u64, badge: u32) -> Result<(), ApiError> {
        let queued = self.engine.queued(ClientId(badge)).unwrap_or(0);
        if self.pending(badge) != 0 || queued != 0 {
            self.flush_now(now, badge)?;
        }
        if self.pending(badge) != 0 {
            return Err(ApiError::Hardware);
        }
        Ok(())
    }

    pub(super) fn set_policy(
        &mut self,
        now: u64,
        badge: u32,
        policy: InvalidationPolicy,
    ) -> Result<ReplyBytes, ApiError> {
        let c = self.bench_client(badge)?;
        policy
            .check_permitted(c.trust)
            .map_err(|_| ApiError::NotPermitted)?;
        // A demotion is never undone automatically, nor by the client:
        // after a fault only the strict policies remain.
        if c.demoted
            && matches!(
                policy,
                InvalidationPolicy::Deferred { .. } | InvalidationPolicy::Bypass
            )
        {
            return Err(ApiError::NotPermitted);
        }
        if c.domain.as_ref().is_some_and(Domain::has_live_mappings) {
            return Err(ApiError::Busy);
        }
        let old = c.policy;
        self.settle(now, badge)?;
        if old == policy {
            return Ok(reply_bytes(&Response::PolicySet));
        }
        let bypass = InvalidationPolicy::Bypass;
        if old == bypass {
            self.ensure_translated(badge)?;
        }
        self.engine
            .set_policy(ClientId(badge), policy)
            .map_err(|_| ApiError::Busy)?;
        if (old == bypass) != (policy == bypass)
            && let Err(e) = self.retarget_streams(badge, policy == bypass)
        {
            let _ = self.engine.set_policy(ClientId(badge), old);
            return Err(e);
        }
        if let Some(c) = self.clients.get_mut(&badge) {
            c.policy = policy;
        }
        Ok(reply_bytes(&Response::PolicySet))
    }

    /// Gives a domain made in bypass its stage-1 part (ASID, table, CD,
    /// IOVA window) before the client leaves bypass.
    fn ensure_translated(&mut self, badge: u32) -> Result<(), ApiError> {
        let (dma_bits, quota) = match self.clients.get(&badge) {
            Some(c) => match &c.domain {
                Some(d) if d.tr.is_none() => (d.dma_bits, c.quota),
                _ => return Ok(()),
            },
            None => return Ok(()),
        };
        let heap = self.domain_heap(dma_bits, &quota)?;
        let made = self.new_domain(dma_bits, Some(heap), &quota)?;
        if let Some(d) = self.clients.get_mut(&badge).and_then(|c| c.domain.as_mut()) {
            d.tr = made.tr;
            // Empty (no live mapping may switch), and now sized.
            d.mappings = made.mappings;
        }
        Ok(())
    }

    /// Points every attached stream of `badge` at bypass or back at its
    /// domain's CD, hitlessly, with one CFGI_STE each and one sync. On a
    /// failure the previous configuration is written back.
    fn retarget_streams(&mut self, badge: u32, to_bypass: bool) -> Result<(), ApiError> {
        let Some(c) = self.clients.get(&badge) else {
            return Err(ApiError::NotPermitted);
        };
        if c.sids.is_empty() {
            return Ok(());
        }
        // Every list reserved before a STE changes.
        let n = c.sids.len();
        let mut stes: Vec<(StreamId, PhysAddr)> = Vec::new();
        let mut cmds: Vec<[u64; 2]> = Vec::new();
        if stes.try_reserve_exact(n).is_err() || cmds.try_reserve_exact(n).is_err() {
            return Err(ApiError::NoMemory);
        }
        let opts = SteOptions::for_pcie(&self.features);
        let cd = c
            .domain
            .as_ref()
            .and_then(|d| d.tr.as_ref())
            .map(|t| t.cd)
            .ok_or(ApiError::NotAttached)?;
        let s1 = ste::s1_translate(cd, opts).map_err(|_| ApiError::Hardware)?;
        let by = ste::bypass(opts);
        let (from, to) = if to_bypass { (s1, by) } else { (by, s1) };
        stes.extend(
            c.sids
                .iter()
                .filter_map(|&sid| Some((sid, self.strtab.ste(sid)?))),
        );
        cmds.extend(
            stes.iter()
                .map(|&(sid, _)| Command::CfgiSte { sid, leaf: false }.encode()),
        );
        for &(_, a) in &stes {
            if to_bypass {
                // Word 0 alone: bypass ignores the stage-1 fields of
                // word 1, which are cleared once the SMMU forgot them.
                strtab::write_word0(&mut self.hw, a, to[0]);
            } else {
                // Bypass ignores the stage-1 fields: words 1.. first.
                strtab::write_live(&mut self.hw, a, &to);
            }
        }
        self.stats.cfgi_commands += cmds.len() as u64;
        if self.run(&cmds).is_err() {
            for &(_, a) in &stes {
                strtab::write_word0(&mut self.hw, a, from[0]);
            }
            // Going to stage 1, words 1.. now hold its fields, which
            // bypass ignores: only word 0 needed putting back.
            self.stats.cfgi_commands += cmds.len() as u64;
            let _ = self.run(&cmds);
            return Err(ApiError::Hardware);
        }
        if to_bypass {
            for &(_, a) in &stes {
                strtab::write_tail(&mut self.hw, a, &to);
            }
        }
        Ok(())
    }

    pub(super) fn reset_stats(&mut self, now: u64, badge: u32) -> Result<ReplyBytes, ApiError> {
        self.bench_client(badge)?;
        self.settle(now, badge)?;
        self.engine
            .reset_stats(ClientId(badge))
            .map_err(|_| ApiError::NotPermitted)?;
        if let Some(c) = self.clients.get_mut(&badge) {
            c.fault_records = 0;
            c.doorbells = 0;
            c.ticks = 0;
            c.phase_ticks = Default::default();
        }
        Ok(reply_bytes(&Response::StatsReset))
    }
}
