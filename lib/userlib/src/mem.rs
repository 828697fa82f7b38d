//! Memory the kernel maps on request: DMA memory ([`DmaBuffer`]) and device
//! memory ([`DeviceRegion`]). Both are reached only by volatile accesses
//! of one scalar at a time, never as Rust slices, because a device may
//! read or write them at any moment.

use abi::{PAGE_SIZE, SysResult, Sysno};

use crate::ipc::Grant;
use crate::sys::Region;

pub use mmio::{Reg, Value};

/// Allocates `pages` zeroed, contiguous pages within the task's DMA quota;
/// returns `(va, len)`. Prefer [`DmaBuffer::alloc`], which keeps the
/// mapping usable from safe code.
pub fn dma_alloc(pages: u64) -> SysResult<(u64, u64)> {
    DmaBuffer::alloc(pages).map(|b| (b.va(), b.len()))
}

/// Maps the MMIO region the capability `cap` names; returns `(va, len)`.
/// Prefer [`DeviceRegion::mmio`].
pub fn mmio_map(cap: u32) -> SysResult<(u64, u64)> {
    DeviceRegion::mmio(cap).map(|r| (r.va(), r.len()))
}

/// Maps memory BAR `bar` of the PCI function `cap` names; returns
/// `(va, len)`. Prefer [`DeviceRegion::pci_bar`].
pub fn pci_map_bar(cap: u32, bar: u32) -> SysResult<(u64, u64)> {
    DeviceRegion::pci_bar(cap, bar).map(|r| (r.va(), r.len()))
}

/// DMA-able memory owned by this task (from `dma_alloc`). It may be
/// granted to a server and then read or written by a device, so every
/// access is one volatile load or store; out-of-range or unaligned
/// offsets give `None`.
#[derive(Debug)]
pub struct DmaBuffer(Region);

impl DmaBuffer {
    /// Allocates `pages` zeroed pages.
    pub fn alloc(pages: u64) -> SysResult<DmaBuffer> {
        Region::map(Sysno::DmaAlloc, [pages, 0, 0, 0, 0, 0]).map(DmaBuffer)
    }

    /// Its virtual address in this task.
    pub fn va(&self) -> u64 {
        self.0.va()
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether it is empty (never, for a successful allocation).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Its physical address: known only to the holder of the SMMU-owner
    /// capability (the IOMMU server); `None` for every other task.
    pub fn phys(&self) -> Option<abi::PhysAddr> {
        (self.0.pa() != 0).then(|| abi::PhysAddr::new(self.0.pa()))
    }

    /// Its length in pages.
    pub fn pages(&self) -> u64 {
        self.0.len() / PAGE_SIZE
    }

    /// A grant of the whole buffer, for [`crate::call`].
    pub fn grant(&self) -> Grant {
        Grant::range(self.va(), self.len())
    }

    /// One volatile load at `offset`.
    pub fn read<T: Value>(&self, offset: u64) -> Option<T> {
        self.0.read(Reg::at(usize::try_from(offset).ok()?))
    }

    /// One volatile store at `offset`.
    pub fn write<T: Value>(&mut self, offset: u64, value: T) -> Option<()> {
        self.0.write(Reg::at(usize::try_from(offset).ok()?), value)
    }

    /// Copies `src` in at `offset`: volatile stores, eight bytes at a
    /// time where aligned (memory is little-endian), bytes at the edges.
    pub fn copy_in(&mut self, offset: u64, src: &[u8]) -> Option<()> {
        let end = offset.checked_add(src.len() as u64)?;
        if end > self.len() {
            return None;
        }
        let mut i = 0;
        while i < src.len() {
            let at = offset + i as u64;
            match src.get(i..i + 8) {
                Some(w) if at.is_multiple_of(8) => {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(w);
                    self.write(at, u64::from_le_bytes(word))?;
                    i += 8;
                }
                _ => {
                    self.write(at, src[i])?;
                    i += 1;
                }
            }
        }
        Some(())
    }

    /// Copies bytes from `offset` into `dst`: volatile loads, eight bytes
    /// at a time where aligned, bytes at the edges.
    pub fn copy_out(&self, offset: u64, dst: &mut [u8]) -> Option<()> {
        let end = offset.checked_add(dst.len() as u64)?;
        if end > self.len() {
            return None;
        }
        let mut i = 0;
        while i < dst.len() {
            let at = offset + i as u64;
            if at.is_multiple_of(8) && i + 8 <= dst.len() {
                let word: u64 = self.read(at)?;
                dst[i..i + 8].copy_from_slice(&word.to_le_bytes());
                i += 8;
            } else {
                dst[i] = self.read(at)?;
                i += 1;
            }
        }
        Some(())
    }
}

/// Makes every store to DMA memory made so far visible to devices before
/// any later access, e.g. before the MMIO write that tells a device to read
/// what was just written (a doorbell). For coherent devices this is all
/// that is needed.
pub fn publish_to_device() {
    crate::sys::dsb_st();
}

/// Device registers mapped for this task (an MMIO capability or a PCI
/// BAR): single volatile accesses of shared [`Reg`] declarations;
/// out-of-range or unaligned registers give `None`.
#[derive(Debug)]
pub struct DeviceRegion(Region);

impl DeviceRegion {
    /// Maps the MMIO region the capability `cap` names.
    pub fn mmio(cap: u32) -> SysResult<DeviceRegion> {
        Region::map(Sysno::MmioMap, [cap as u64, 0, 0, 0, 0, 0]).map(DeviceRegion)
    }

    /// Maps memory BAR `bar` of the PCI function the capability `cap`
    /// names.
    pub fn pci_bar(cap: u32, bar: u32) -> SysResult<DeviceRegion> {
        Region::map(Sysno::PciMapBar, [cap as u64, bar as u64, 0, 0, 0, 0]).map(DeviceRegion)
    }

    /// Its virtual address in this task.
    pub fn va(&self) -> u64 {
        self.0.va()
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// One volatile load of `reg`.
    pub fn read<T: Value>(&self, reg: Reg<T>) -> Option<T> {
        self.0.read(reg)
    }

    /// One volatile store of `value` to `reg`.
    pub fn write<T: Value>(&mut self, reg: Reg<T>, value: T) -> Option<()> {
        self.0.write(reg, value)
    }
}
