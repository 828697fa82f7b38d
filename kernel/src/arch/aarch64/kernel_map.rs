//! The kernel's final address space (TTBR1): the image mapped by section
//! (text read-only executable, rodata read-only, data and bss read-write,
//! never writable and executable), all RAM read-write non-executable in the
//! linear map, and every device window the device tree names as
//! Device-nGnRE non-executable. Built with the shared `pgtable` crate.
//! Must never map anything EL0-accessible.

use abi::{PAGE_SIZE, PhysAddr, VirtAddr};
use kernel_core::dt::{PciSpace, Platform, Region};
use pgtable::{Attrs, Config, MapError, PageTable, Shareability};

use super::mmu::{LINEAR_BASE, MAIR_DEVICE, MAIR_NORMAL};
use crate::mm::{LinearTableMemory, image_layout, virt_to_phys};

/// The TTBR1 table is indexed by the offset from LINEAR_BASE: the linear
/// map's VA − LINEAR_BASE is exactly the physical address.
fn linear(pa: PhysAddr) -> VirtAddr {
    VirtAddr::new(pa.get())
}

const KERNEL_TEXT: Attrs = Attrs {
    pxn: false,
    ..Attrs::kernel_data(MAIR_NORMAL, false)
};
const KERNEL_RO: Attrs = Attrs::kernel_data(MAIR_NORMAL, false);
const KERNEL_RW: Attrs = Attrs::kernel_data(MAIR_NORMAL, true);
const DEVICE: Attrs = Attrs {
    shareability: Shareability::Outer,
    ..Attrs::kernel_data(MAIR_DEVICE, true)
};

/// Why the kernel map could not be built.
pub enum KernelMapError {
    /// The page-table library refused a mapping.
    Map(&'static str, MapError),
    /// No frame for the root table.
    NoMemory,
}

impl core::fmt::Display for KernelMapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map(what, e) => write!(f, "mapping {what}: {e:?}"),
            Self::NoMemory => f.write_str("no memory for the root table"),
        }
    }
}

/// The kernel's TTBR1 tables.
pub struct KernelMap {
    table: PageTable<VirtAddr>,
}

/// Builds the kernel's TTBR1 tables for `platform`.
pub fn build(platform: &Platform<'_>, output_bits: u8) -> Result<KernelMap, KernelMapError> {
    let mem = &mut LinearTableMemory;
    let mut pt: PageTable<VirtAddr> =
        PageTable::new(mem, Config::new(48, output_bits)).map_err(|_| KernelMapError::NoMemory)?;
    let mut map = |what: &'static str,
                   start: PhysAddr,
                   end: PhysAddr,
                   attrs: Attrs|
     -> Result<(), KernelMapError> {
        let start = start.align_down(PAGE_SIZE);
        let end = end.align_up(PAGE_SIZE).unwrap_or(end);
        if end > start {
            pt.map(mem, linear(start), start, end.get() - start.get(), attrs)
                .map_err(|e| KernelMapError::Map(what, e))?;
        }
        Ok(())
    };

    let l = image_layout();
    let p = |va: VirtAddr| virt_to_phys(va);
    map("kernel text", p(l.start), p(l.text_end), KERNEL_TEXT)?;
    map("kernel rodata", p(l.text_end), p(l.rodata_end), KERNEL_RO)?;
    // Data and bss, then the kernel stack above an unmapped guard page (an
    // overflow faults instead of corrupting .bss).
    map("kernel data", p(l.rodata_end), p(l.stack_guard), KERNEL_RW)?;
    let guard_end = PhysAddr::new(p(l.stack_guard).get() + PAGE_SIZE);
    map("kernel stack", guard_end, p(l.end), KERNEL_RW)?;
    for r in platform.memory.iter() {
        let end = r.end().unwrap_or(PhysAddr::new(u64::MAX));
        // RAM around the image.
        let (img_s, img_e) = (p(l.start), p(l.end));
        map("ram", r.base, end.min(img_s).max(r.base), KERNEL_RW)?;
        map("ram", img_e.max(r.base).min(end), end, KERNEL_RW)?;
    }

    // Devices: every window the device tree names.
    let pci_windows = platform.pci.iter().flat_map(|h| {
        h.windows
            .iter()
            .filter(|w| matches!(w.space, PciSpace::Mem32 | PciSpace::Io))
            .map(|w| {
                let r = Region {
                    base: w.cpu_addr,
                    size: w.size,
                };
                ("pci window", r)
            })
    });
    let devices = platform
        .uart
        .map(|u| ("uart", u))
        .into_iter()
        .chain(
            platform
                .gic
                .iter()
                .flat_map(|g| [("gicd", g.gicd), ("gicr", g.gicr)]),
        )
        .chain(platform.smmu.as_ref().map(|s| ("smmu", s.regs)))
        .chain(platform.pci.as_ref().map(|h| ("ecam", h.ecam)))
        .chain(pci_windows);
    for (what, r) in devices {
        map(what, r.base, r.end().unwrap_or(r.base), DEVICE)?;
    }
    Ok(KernelMap { table: pt })
}

impl KernelMap {
    /// The root table, for TTBR1_EL1.
    pub fn root(&self) -> PhysAddr {
        self.table.root()
    }

    /// Walks every page of the image: (executable pages, writable pages,
    /// pages both writable and executable — which must be none).
    pub fn image_permissions(&self) -> (usize, usize, usize) {
        let l = image_layout();
        let (mut x, mut w, mut wx) = (0, 0, 0);
        let mut va = l.start.get();
        while va < l.end.get() {
            if let Some(t) = self
                .table
                .translate(&LinearTableMemory, VirtAddr::new(va - LINEAR_BASE))
            {
                let exec = !t.attrs.pxn;
                let writable = t.attrs.access.writable();
                x += usize::from(exec);
                w += usize::from(writable);
                wx += usize::from(exec && writable);
            }
            va += PAGE_SIZE;
        }
        (x, w, wx)
    }
}
