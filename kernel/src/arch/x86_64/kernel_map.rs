//! The kernel's final address space on x86_64, built with the `x86_64`
//! crate's page tables: the image at its link addresses by section (text
//! read-only executable, rodata read-only no-execute, data/bss and the
//! stack read-write no-execute, a guard page under the stack; never
//! writable and executable), and all RAM but the image read-write
//! no-execute in the linear map, and the local APIC's registers and the
//! MCFG's ECAM regions uncached.
//! Must never map anything user-accessible.

use abi::{PAGE_SIZE, PhysAddr, VirtAddr};
use kernel_core::dt::Platform;
use x86_64::structures::paging::mapper::{MapToError, Translate, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, PhysFrame,
    Size4KiB,
};

use super::mmu::{KERNEL_BASE, LINEAR_BASE};
use crate::mm::{frames, image_layout, virt_to_phys};

/// Page-table pages from the frame allocator, zeroed, owned by the kernel.
struct KernelFrames;

// SAFETY: every frame returned is freshly allocated, zeroed and owned by
// the kernel: no one else uses it.
unsafe impl FrameAllocator<Size4KiB> for KernelFrames {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let pa = frames::alloc_zeroed(1, kernel_core::ledger::Owner::Kernel)?;
        Some(PhysFrame::containing_address(x86_64::PhysAddr::new(
            pa.get(),
        )))
    }
}

/// Why the kernel map could not be built.
pub enum KernelMapError {
    /// The page-table code refused a mapping.
    Map(&'static str, u64),
    /// No frame for a table.
    NoMemory,
}

impl core::fmt::Display for KernelMapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Map(what, va) => write!(f, "mapping {what} at {va:#x} refused"),
            Self::NoMemory => f.write_str("no memory for page tables"),
        }
    }
}

/// The kernel's PML4.
pub struct KernelMap {
    root: PhysAddr,
}

/// The page-table view of the PML4 at `root`, through the linear map.
fn table(root: PhysAddr) -> OffsetPageTable<'static> {
    let pml4 = crate::mm::phys_to_virt(root).get() as *mut PageTable;
    // SAFETY: `root` is a PML4 page this module allocated (RAM, inside the
    // linear map, whose whole RAM the tables map at LINEAR_BASE); only this
    // module's callers touch it, one at a time (boot, one CPU).
    unsafe { OffsetPageTable::new(&mut *pml4, x86_64::VirtAddr::new(LINEAR_BASE)) }
}

const TEXT: F = F::PRESENT.union(F::GLOBAL);
const RODATA: F = F::PRESENT.union(F::GLOBAL).union(F::NO_EXECUTE);
const DATA: F = RODATA.union(F::WRITABLE);
const DEVICE: F = DATA.union(F::NO_CACHE).union(F::WRITE_THROUGH);

/// Builds the kernel map for `platform`'s RAM.
pub fn build(platform: &Platform<'_>, _pa_bits: u8) -> Result<KernelMap, KernelMapError> {
    let root = frames::alloc_zeroed(1, kernel_core::ledger::Owner::Kernel)
        .ok_or(KernelMapError::NoMemory)?;
    let mut pt = table(root);
    let mut map = |what: &'static str, va: u64, pa: u64, len: u64, flags: F| {
        let mut off = 0;
        while off < len {
            let page = Page::<Size4KiB>::containing_address(x86_64::VirtAddr::new(va + off));
            let frame = PhysFrame::containing_address(x86_64::PhysAddr::new(pa + off));
            // SAFETY: the new tables are not installed yet; each page maps
            // the frame the layout names, with the flags W^X allows.
            match unsafe { pt.map_to(page, frame, flags, &mut KernelFrames) } {
                Ok(flush) => flush.ignore(),
                Err(MapToError::FrameAllocationFailed) => return Err(KernelMapError::NoMemory),
                Err(_) => return Err(KernelMapError::Map(what, va + off)),
            }
            off += PAGE_SIZE;
        }
        Ok(())
    };
    let l = image_layout();
    let p = |v: VirtAddr| virt_to_phys(v).get();
    let span = |a: VirtAddr, b: VirtAddr| b.get() - a.get();
    map(
        "kernel text",
        l.start.get(),
        p(l.start),
        span(l.start, l.text_end),
        TEXT,
    )?;
    map(
        "kernel rodata",
        l.text_end.get(),
        p(l.text_end),
        span(l.text_end, l.rodata_end),
        RODATA,
    )?;
    map(
        "kernel data",
        l.rodata_end.get(),
        p(l.rodata_end),
        span(l.rodata_end, l.stack_guard),
        DATA,
    )?;
    let stack = l.stack_guard.get() + PAGE_SIZE;
    map(
        "kernel stack",
        stack,
        p(l.stack_guard) + PAGE_SIZE,
        l.end.get() - stack,
        DATA,
    )?;
    // RAM in the linear map, except the image's own frames (no writable
    // alias of its text).
    let (img_s, img_e) = (p(l.start), p(l.end));
    for r in platform.memory.iter() {
        let start = r.base.get().next_multiple_of(PAGE_SIZE);
        let end = r.end().unwrap_or(PhysAddr::new(u64::MAX)).get() & !(PAGE_SIZE - 1);
        for (s, e) in [(start, end.min(img_s)), (start.max(img_e), end)] {
            if e > s {
                map("ram", LINEAR_BASE + s, s, e - s, DATA)?;
            }
        }
    }
    // Every ECAM region the MCFG names, uncached, in the linear map (PCI
    // configuration space for the discovery report).
    if let Some(Ok(acpi)) = super::acpi::info() {
        for e in acpi.summary.ecam.iter() {
            let len = e.size();
            map("ecam", LINEAR_BASE + e.base, e.base, len, DEVICE)?;
        }
    }
    // The local APIC's registers, uncached, in the linear map.
    let apic = super::apic::base().get();
    map(
        "local apic",
        LINEAR_BASE + apic,
        apic,
        super::apic::MMIO_SIZE as u64,
        DEVICE,
    )?;
    Ok(KernelMap { root })
}

impl KernelMap {
    /// The PML4 (physical), for CR3.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// Walks every page of the image: (executable, writable, both).
    pub fn image_permissions(&self) -> (usize, usize, usize) {
        let pt = table(self.root);
        let l = image_layout();
        let (mut x, mut w, mut wx) = (0, 0, 0);
        let mut va = l.start.get();
        while va < l.end.get() {
            if let TranslateResult::Mapped { flags, .. } = pt.translate(x86_64::VirtAddr::new(va)) {
                let exec = !flags.contains(F::NO_EXECUTE);
                let writable = flags.contains(F::WRITABLE);
                x += usize::from(exec);
                w += usize::from(writable);
                wx += usize::from(exec && writable);
            }
            va += PAGE_SIZE;
        }
        (x, w, wx)
    }
}

const _: () = assert!(KERNEL_BASE > LINEAR_BASE);
