//! PCI configuration access through the device tree's ECAM window, and the
//! boot-time bring-up of every function (BARs sized and assigned from the
//! host bridge's windows, memory decode on). The enumeration logic lives in
//! `kernel_core::pci`; this module only does the accesses. It must never
//! enable bus mastering: a device may DMA only once the IOMMU server has
//! enabled the SMMU and attached its stream.

use kernel_core::dt::PciHost;
use kernel_core::pci::{self, Bdf, ConfigSpace, Enumeration, PciError};

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

/// Enumerates the host bridge's bus, assigns BARs and enables memory
/// decode (not bus mastering).
pub fn bring_up(host: &PciHost) -> Result<Enumeration, PciError> {
    let mut ecam = Ecam::new(host);
    pci::configure(&mut ecam, host, false)
}
