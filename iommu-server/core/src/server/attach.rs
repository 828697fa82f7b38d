//! `Attach`: pointing a stream at its client's domain, and making that
//! domain (ASID, stage-1 table, CD, IOVA window within the device's DMA
//! mask) on the client's first attach.
//!
//! It must never point a stream at anything but abort unless the client
//! presented the device's capability (its StreamID) and no other client
//! owns the stream; never point it at bypass unless the client is in
//! bypass (only a benchmark client gets there, see `policy`); never let a
//! narrower device into a domain sized for a wider one (IOVAs already
//! handed out might not be reachable by it); and never leave a stream
//! live when its CFGI_STE failed (it goes back to abort).

use abi::{Iova, PhysAddr};
use iommu_api::{ApiError, ClientQuota, Response};
use pgtable::{Config as TableConfig, LargestLeaf, PageTable};
use smmuv3::cd::{self, CdConfig};
use smmuv3::cmd::Command;
use smmuv3::ste::{self, SteOptions};

use super::ReplyBytes;
use super::dispatch::reply_bytes;
use super::hw::{HwTables, SmmuHw};
use super::quota::{QuotaTables, domain_reservation};
use super::state::{BusMap, Domain, Mappings, RECORDS_PRESIZED, Translated};
use super::strtab::{self, StrtabError};
use super::types::Presented;
use super::{DOMAIN_MAIR, MAX_IAS, MIN_IAS, Server};
use crate::iova::{IovaAllocator, IovaError};
use crate::policy::InvalidationPolicy;

impl<H: SmmuHw, R> Server<H, R> {
    pub(super) fn attach(
        &mut self,
        badge: u32,
        dma_bits: u8,
        presented: Option<Presented>,
    ) -> Result<ReplyBytes, ApiError> {
        let dev = presented.ok_or(ApiError::NoDevice)?;
        let sid = dev.sid;
        if dma_bits == 0 || dma_bits > 64 {
            return Err(ApiError::Malformed);
        }
        if !self.strtab.covers(sid) {
            return Err(ApiError::NoDevice);
        }
        match self.streams.get(&sid.0) {
            Some(&owner) if owner == badge => {
                return Ok(reply_bytes(&Response::Attached { sid }));
            }
            Some(_) => return Err(ApiError::AlreadyAttached),
            None => {}
        }
        let client = self.clients.get(&badge).ok_or(ApiError::NotPermitted)?;
        if let Some(d) = &client.domain
            && dma_bits < d.dma_bits
        {
            // The window was sized for a wider device; IOVAs already
            // handed out might not be reachable by this one.
            return Err(ApiError::NotPermitted);
        }
        let policy = client.policy;
        let quota = client.quota;
        let new_domain = client.domain.is_none();
        // The heap it records into, reserved before anything changes: the
        // stream's owner and the client's list of streams, and a new
        // domain's IOVA allocator and mapping records.
        if self.streams.try_reserve(1).is_err()
            || self
                .clients
                .get_mut(&badge)
                .is_some_and(|c| c.sids.try_reserve(1).is_err())
        {
            return Err(ApiError::NoMemory);
        }
        let heap = match new_domain && policy != InvalidationPolicy::Bypass {
            true => {
                self.asids.reserve()?;
                Some(self.domain_heap(dma_bits, &quota)?)
            }
            false => None,
        };
        let ste_addr = self.strtab.ensure(&mut self.hw, sid).map_err(|e| match e {
            StrtabError::NoMemory => ApiError::NoMemory,
            StrtabError::OutOfRange => ApiError::NoDevice,
        })?;
        if new_domain {
            let d = self.new_domain(dma_bits, heap, &quota)?;
            if let Some(c) = self.clients.get_mut(&badge) {
                c.domain = Some(d);
            }
        }
        let cd_addr = self
            .clients
            .get(&badge)
            .and_then(|c| c.domain.as_ref())
            .map(|d| d.tr.as_ref().map(|t| t.cd));
        let opts = SteOptions::for_pcie(&self.features);
        let words = match cd_addr {
            _ if policy == InvalidationPolicy::Bypass => ste::bypass(opts),
            Some(Some(cd)) => ste::s1_translate(cd, opts).map_err(|_| ApiError::Hardware)?,
            Some(None) | None => return Err(ApiError::NotAttached),
        };
        // Hitless: the abort STE ignores words 1..; word 0 flips it.
        strtab::write_live(&mut self.hw, ste_addr, &words);
        self.stats.cfgi_commands += 1;
        let cfgi = Command::CfgiSte { sid, leaf: false }.encode();
        if self.run(&[cfgi]).is_err() {
            // Put the stream back to abort; the domain stays until the
            // client dies (its CD may be cached until a sync succeeds).
            strtab::write_abort(&mut self.hw, ste_addr);
            let _ = self.run(&[cfgi]);
            return Err(ApiError::Hardware);
        }
        // Room was reserved above.
        self.streams.insert(sid.0, badge);
        if let Some(c) = self.clients.get_mut(&badge) {
            c.sids.push(sid);
        }
        Ok(reply_bytes(&Response::Attached { sid }))
    }

    /// The heap part of a translated domain for a device of `dma_bits`
    /// and a client of quota `quota`: its IOVA allocator and its mapping
    /// records' table, made before anything else changes.
    pub(super) fn domain_heap(
        &self,
        dma_bits: u8,
        quota: &ClientQuota,
    ) -> Result<(IovaAllocator, Mappings), ApiError> {
        let ias = dma_bits.clamp(MIN_IAS, MAX_IAS);
        let dma_mask = if dma_bits >= 64 {
            u64::MAX
        } else {
            (1u64 << dma_bits) - 1
        };
        let mut iova = IovaAllocator::new(
            Iova::new(self.cfg.iova_base),
            Iova::new((1u64 << ias) - 1),
            dma_mask,
        )
        .map_err(|e| match e {
            IovaError::NoMemory => ApiError::NoMemory,
            _ => ApiError::NotPermitted,
        })?;
        // The one-page cache holds as many blocks as the quota has
        // mappings: a client that maps up to its quota, unmaps it all and
        // maps again after the sync stays on the fast path.
        iova.reserve_page_cache(quota.mappings.min(RECORDS_PRESIZED) as usize)
            .map_err(|_| ApiError::NoMemory)?;
        // The mapping records' table, sized once for the quota's mappings
        // (up to `RECORDS_PRESIZED`): no growth, and no rehash, on a map.
        let mut mappings = Mappings::new();
        mappings
            .try_reserve(quota.mappings.min(RECORDS_PRESIZED) as usize)
            .map_err(|_| ApiError::NoMemory)?;
        Ok((iova, mappings))
    }

    /// A domain for a client of quota `quota`: in bypass without `heap`,
    /// else translated with `heap` from [`Server::domain_heap`]; a
    /// translated one reserves its table pages and CD from the pool's
    /// table budget first (refused with `NoMemory`, changing nothing, when
    /// the budget is taken).
    pub(super) fn new_domain(
        &mut self,
        dma_bits: u8,
        heap: Option<(IovaAllocator, Mappings)>,
        quota: &ClientQuota,
    ) -> Result<Domain, ApiError> {
        let Some((iova, mappings)) = heap else {
            return Ok(Domain {
                dma_bits,
                tr: None,
                mappings: Mappings::new(),
                bus: BusMap::default(),
                live: 0,
                mapped_bytes: 0,
            });
        };
        let ias = dma_bits.clamp(MIN_IAS, MAX_IAS);
        let oas = self.features.oas_bits.clamp(32, 48);
        let reserved = domain_reservation(quota);
        let reserved_total = self.table_reserved.saturating_add(reserved);
        if self.cfg.table_budget.is_some_and(|b| reserved_total > b) {
            return Err(ApiError::NoMemory);
        }
        let asid = self.asids.alloc()?;
        let config = TableConfig::new(ias, oas).with_largest_leaf(LargestLeaf::Block2M);
        let mut mem = QuotaTables::new(HwTables(&mut self.hw), quota.table_pages);
        let made = PageTable::new(&mut mem, config);
        let table_pages = mem.allocated;
        let table = match made {
            Ok(t) => t,
            Err(_) => {
                self.asids.release(asid);
                return Err(ApiError::NoMemory);
            }
        };
        let words = cd::build(
            &CdConfig {
                asid,
                ttb0: table.root(),
                mair: DOMAIN_MAIR,
                input_bits: ias,
                affd: false,
            },
            &self.features,
        );
        let cd_page = self.hw.alloc_pages(1);
        let (Ok(words), Some(cd_page)) = (words, cd_page) else {
            // Never reachable by the SMMU: free at once.
            if let Some(p) = cd_page {
                self.hw.free_pages(p, 1);
            }
            // Never reachable by the SMMU either: freed as it is walked.
            table.destroy_with(&mut HwTables(&mut self.hw), |mem, page| {
                mem.0.free_pages(page, 1);
            });
            self.asids.release(asid);
            return Err(ApiError::NoMemory);
        };
        for (i, w) in words.iter().enumerate().rev() {
            self.hw
                .write_u64(PhysAddr::new(cd_page.get() + 8 * i as u64), *w);
        }
        self.hw.publish();
        self.table_reserved = reserved_total;
        Ok(Domain {
            dma_bits,
            tr: Some(Translated {
                asid,
                table,
                cd: cd_page,
                iova,
                stale_walks: hashbrown::HashMap::new(),
                table_pages,
                reserved,
                packed: hashbrown::HashMap::new(),
            }),
            mappings,
            bus: BusMap::default(),
            live: 0,
            mapped_bytes: 0,
        })
    }
}
