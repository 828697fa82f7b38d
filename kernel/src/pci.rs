//! PCI configuration access through the device tree's ECAM window, and the
//! boot-time bring-up of every function (BARs sized and assigned from the
//! host bridge's windows, memory decode on). The enumeration logic lives in
//! `kernel_core::pci`; this module only does the accesses. It must never
//! enable bus mastering: a device may DMA only once the IOMMU server has
//! enabled the SMMU and attached its stream.

use kernel_core::dt::PciHost;
use kernel_core::pci::{self, Bdf, ConfigSpace, Enumeration, PciError};

use hermit_sync::{InterruptSpinMutex, OnceCell};

use crate::mmio::{Mmio, Reg};

/// The ECAM window, mapped as device memory.
pub struct Ecam {
    mmio: Mmio,
    bus_start: u8,
}

impl Ecam {
    /// The ECAM window of `host`.
    pub fn new(host: &PciHost) -> Self {
        Self {
            mmio: Mmio::new(host.ecam.base, host.ecam.size as usize),
            bus_start: host.bus_start,
        }
    }

    fn reg(&self, bdf: Bdf, offset: u16) -> Option<Reg<u32>> {
        bdf.ecam_offset(self.bus_start, offset & !3)
            .map(|o| Reg::at(o as usize))
    }
}

impl ConfigSpace for Ecam {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        // A function outside the window reads as absent (all ones).
        self.reg(bdf, offset)
            .map_or(u32::MAX, |r| self.mmio.read(r))
    }

    fn write32(&mut self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(r) = self.reg(bdf, offset) {
            self.mmio.write(r, value);
        }
    }
}

static ECAM: OnceCell<InterruptSpinMutex<Ecam>> = OnceCell::new();

/// Enumerates the host bridge's bus, assigns BARs and enables memory
/// decode (not bus mastering). Keeps the ECAM window for later accesses
/// on drivers' behalf.
pub fn bring_up(host: &PciHost) -> Result<Enumeration, PciError> {
    let mut ecam = Ecam::new(host);
    let en = pci::configure(&mut ecam, host, false);
    let _ = ECAM.set(InterruptSpinMutex::new(ecam));
    en
}

/// A 32-bit configuration read of `bdf` (all ones if there is no ECAM).
pub fn config_read(bdf: Bdf, offset: u16) -> u32 {
    ECAM.get()
        .map_or(u32::MAX, |e| e.lock().read32(bdf, offset))
}

/// A 32-bit configuration write to `bdf`.
pub fn config_write(bdf: Bdf, offset: u16, value: u32) {
    if let Some(e) = ECAM.get() {
        e.lock().write32(bdf, offset, value);
    }
}
