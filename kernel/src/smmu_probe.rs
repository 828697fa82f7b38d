//! Boot-time discovery of the SMMUv3: reads its ID registers (read-only,
//! no side effects) and decodes them with the `smmuv3` crate for the boot
//! report. It never writes an SMMU register: the IOMMU server task is the
//! SMMU's only owner.

use kernel_core::dt::Smmu;
use smmuv3::idr::Features;
use smmuv3::regs;

use crate::mmio::{Mmio, Reg};

/// What the ID registers say.
pub struct Probe {
    /// Raw IDR0..IDR5.
    pub idr: [u32; 6],
    /// Raw AIDR.
    pub aidr: u32,
    /// Decoded features, or why they could not be decoded.
    pub features: Result<Features, smmuv3::Error>,
}

/// Reads and decodes the ID registers of `smmu`.
pub fn probe(smmu: &Smmu) -> Probe {
    let mmio = Mmio::new(smmu.regs.base, smmu.regs.size as usize);
    let read = |r: Reg<u32>| mmio.read(r);
    let idr = regs::IDRS.map(read);
    let aidr = read(regs::AIDR);
    Probe {
        idr,
        aidr,
        features: Features::decode(idr, aidr),
    }
}
