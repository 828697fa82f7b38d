//! The server's view of the hardware: the [`SmmuHw`] trait the task
//! implements over MMIO and its DMA memory (and host tests over a software
//! SMMU), the adapter that lets `pgtable` build domain tables in that
//! memory, and the encoding of the engine's abstract invalidations into
//! SMMU commands. It never waits or touches registers itself.

use alloc::vec::Vec;

use abi::{Asid, PhysAddr};
use pgtable::TableMemory;
use smmuv3::cmd::{Command, Granule, TlbiVa};
use smmuv3::idr::Features;

use crate::engine::{Invalidation, LeafLevel};

/// Why the hardware layer failed a submission or a sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwError {
    /// A bounded wait (queue space, CMD_SYNC completion) timed out.
    Timeout,
    /// The SMMU stopped on an illegal command (CMDQ_CONS.ERR code).
    CommandError(u8),
    /// The kernel refused to pin a frame (not DMA memory of a live task).
    PinRefused,
}

/// What the server needs from the SMMU and its memory. The task implements
/// it over MMIO and DMA-visible frames; host tests over `smmu-model`.
pub trait SmmuHw {
    /// The decoded ID registers.
    fn features(&self) -> &Features;
    /// `count` zeroed, physically contiguous 4 KiB pages aligned to their
    /// total size, readable by the SMMU; `None` when out of memory.
    fn alloc_pages(&mut self, count: usize) -> Option<PhysAddr>;
    /// Returns pages from [`SmmuHw::alloc_pages`].
    fn free_pages(&mut self, pa: PhysAddr, count: usize);
    /// One 64-bit load from table memory.
    fn read_u64(&self, pa: PhysAddr) -> u64;
    /// One single-copy-atomic 64-bit store to table memory.
    fn write_u64(&mut self, pa: PhysAddr, value: u64);
    /// Makes every earlier table write visible to the SMMU (DSB for a
    /// coherent SMMU, clean to PoC + DSB otherwise).
    fn publish(&mut self);
    /// Queues `cmds` (waiting, bounded, for room) behind ONE doorbell.
    fn submit(&mut self, cmds: &[[u64; 2]]) -> Result<(), HwError>;
    /// Queues a CMD_SYNC behind everything submitted and waits (bounded)
    /// for its completion.
    fn sync(&mut self) -> Result<(), HwError>;
    /// Queues `cmds` and a CMD_SYNC behind them and waits (bounded) for
    /// the sync; returns the doorbells it rang. By default a doorbell for
    /// the commands (if any) and one for the sync; hardware that can ring
    /// once for both should.
    fn submit_and_sync(&mut self, cmds: &[[u64; 2]]) -> Result<u64, HwError> {
        let mut doorbells = 1;
        if !cmds.is_empty() {
            self.submit(cmds)?;
            doorbells += 1;
        }
        self.sync()?;
        Ok(doorbells)
    }
    /// Pins `frames` in the kernel before they are mapped: no frame a
    /// mapping may reach returns to the allocator. All or nothing. The
    /// server calls it at most once per `Map` request.
    fn pin(&mut self, frames: &[PhysAddr]) -> Result<(), HwError>;
    /// Unpins frames whose unmap's covering sync has completed. The server
    /// calls it at most once per completed sync batch.
    fn unpin(&mut self, frames: &[PhysAddr]);
}

/// `pgtable`'s door into SMMU-visible memory: descriptors through
/// [`SmmuHw::read_u64`]/[`SmmuHw::write_u64`], table pages from
/// [`SmmuHw::alloc_pages`], barriers through [`SmmuHw::publish`].
pub(crate) struct HwTables<'a, H>(pub(crate) &'a mut H);

fn slot(table: PhysAddr, index: usize) -> PhysAddr {
    PhysAddr::new(table.get().wrapping_add((index as u64 & 511) * 8))
}

impl<H: SmmuHw> TableMemory for HwTables<'_, H> {
    fn read(&self, table: PhysAddr, index: usize) -> u64 {
        self.0.read_u64(slot(table, index))
    }
    fn write(&mut self, table: PhysAddr, index: usize, value: u64) {
        self.0.write_u64(slot(table, index), value);
    }
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        self.0.alloc_pages(1)
    }
    fn barrier(&mut self) {
        self.0.publish();
    }
}

/// Appends the SMMU command(s) for one engine TLBI to `out`: range TLBIs
/// with TG = 4K and the TTL hint when the SMMU has RIL (so QEMU does not
/// scan its IOTLB), one unhinted TLBI per entry without it, and an
/// ASID-wide TLBI for anything that would not encode legally (always
/// correct, never cheaper). `Sync` appends nothing: the caller issues it.
pub(crate) fn encode(inv: &Invalidation, f: &Features, out: &mut Vec<[u64; 2]>) {
    let hinted = |asid: Asid, iova, num: u64, scale: u32, ttl: LeafLevel, leaf: bool| TlbiVa {
        vmid: 0,
        asid,
        addr: iova,
        leaf,
        tg: Some(Granule::G4K),
        ttl: ttl as u8,
        num: num.saturating_sub(1) as u8,
        scale: scale as u8,
    };
    let (asid, cmd) = match *inv {
        Invalidation::Sync => return,
        Invalidation::TlbiAsid { asid } => (asid, Command::TlbiNhAsid { vmid: 0, asid }),
        Invalidation::TlbiVa {
            asid,
            iova,
            ttl,
            leaf,
            ..
        } => {
            let t = if f.ril && ttl != LeafLevel::Any {
                hinted(asid, iova, 1, 0, ttl, leaf)
            } else {
                TlbiVa::page(asid, iova, leaf, false)
            };
            (asid, Command::TlbiNhVa(t))
        }
        Invalidation::TlbiRange {
            asid,
            iova,
            pages,
            ttl,
            leaf,
        } => {
            let scale = pages.trailing_zeros();
            let num = pages.checked_shr(scale).unwrap_or(0);
            let t = if !f.ril || (pages == 1 && ttl == LeafLevel::Any) {
                // One page without hints, or no range support: per page.
                if pages == 1 {
                    TlbiVa::page(asid, iova, leaf, false)
                } else {
                    out.push(Command::TlbiNhAsid { vmid: 0, asid }.encode());
                    return;
                }
            } else {
                hinted(asid, iova, num, scale, ttl, leaf)
            };
            if !(1..=31).contains(&num) || scale > 31 {
                out.push(Command::TlbiNhAsid { vmid: 0, asid }.encode());
                return;
            }
            (asid, Command::TlbiNhVa(t))
        }
    };
    if cmd.check().is_ok() {
        out.push(cmd.encode());
    } else {
        out.push(Command::TlbiNhAsid { vmid: 0, asid }.encode());
    }
}
