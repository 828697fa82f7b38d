//! The capability list: a bounded walk and decoders for MSI, MSI-X, PCI
//! Express and vendor-specific capabilities [PCI 3.0 §6.7, §6.8; PCIe 4.0
//! §7.5.3].
//!
//! It owns reading capability structures through [`ConfigSpace`]; it never
//! writes config space, and a looping or out-of-range list ends the walk
//! instead of hanging or panicking.

use super::{Bdf, ConfigSpace, regs};
use crate::bounded::BoundedVec;

/// Power management.
pub const CAP_PM: u8 = 0x01;
/// MSI.
pub const CAP_MSI: u8 = 0x05;
/// Vendor-specific (virtio puts its structures here).
pub const CAP_VENDOR: u8 = 0x09;
/// PCI Express.
pub const CAP_PCIE: u8 = 0x10;
/// MSI-X.
pub const CAP_MSIX: u8 = 0x11;

/// Most vendor-specific capabilities recorded per function (virtio has 5).
pub const MAX_VENDOR_CAPS: usize = 8;

/// Capabilities visited at most: 48 fit between 0x40 and 0x100.
const MAX_CAPS: usize = 48;

/// One entry of the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Capability ID.
    pub id: u8,
    /// Config-space offset of the capability header.
    pub offset: u16,
}

/// Iterator over a function's capability list.
pub struct Capabilities<'c, C: ConfigSpace + ?Sized> {
    cfg: &'c C,
    bdf: Bdf,
    next: u16,
    budget: usize,
}

impl<C: ConfigSpace + ?Sized> Iterator for Capabilities<'_, C> {
    type Item = Capability;

    fn next(&mut self) -> Option<Capability> {
        if self.next < 0x40 || self.budget == 0 {
            return None;
        }
        self.budget -= 1;
        let offset = self.next;
        let header = self.cfg.read16(self.bdf, offset);
        self.next = (header >> 8) & 0xfc;
        Some(Capability {
            id: header as u8,
            offset,
        })
    }
}

/// Walks `bdf`'s capability list (empty if the status register says there
/// is none).
pub fn capabilities<C: ConfigSpace + ?Sized>(cfg: &C, bdf: Bdf) -> Capabilities<'_, C> {
    let status = regs::Status(cfg.read16(bdf, regs::STATUS));
    let next = if status.has_capabilities() {
        u16::from(cfg.read8(bdf, regs::CAP_PTR) & 0xfc)
    } else {
        0
    };
    Capabilities {
        cfg,
        bdf,
        next,
        budget: MAX_CAPS,
    }
}

/// An MSI-X capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiX {
    /// Offset of the capability.
    pub offset: u16,
    /// Number of table entries (vectors).
    pub table_size: u16,
    /// BAR holding the vector table.
    pub table_bir: u8,
    /// Offset of the table inside that BAR.
    pub table_offset: u32,
    /// BAR holding the pending-bit array.
    pub pba_bir: u8,
    /// Offset of the PBA inside that BAR.
    pub pba_offset: u32,
}

/// An MSI capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Msi {
    /// Offset of the capability.
    pub offset: u16,
    /// Message address may be 64-bit.
    pub addr64: bool,
    /// Per-vector masking implemented.
    pub per_vector_mask: bool,
    /// Vectors the function can request (1..=32).
    pub max_vectors: u8,
}

impl Msi {
    /// Config offset of the dword holding the capability header (low half)
    /// and message control (high half).
    pub const fn control(&self) -> u16 {
        self.offset
    }

    /// Config offset of the message address (its low 32 bits).
    pub const fn address(&self) -> u16 {
        self.offset + 0x04
    }

    /// Config offset of the message address's high 32 bits, where the
    /// function has a 64-bit address.
    pub const fn address_high(&self) -> Option<u16> {
        if self.addr64 {
            Some(self.offset + 0x08)
        } else {
            None
        }
    }

    /// Config offset of the message data, after the address.
    pub const fn data(&self) -> u16 {
        if self.addr64 {
            self.offset + 0x0c
        } else {
            self.offset + 0x08
        }
    }

    /// Config offset of the per-vector mask bits, where implemented.
    pub const fn mask(&self) -> Option<u16> {
        if !self.per_vector_mask {
            None
        } else if self.addr64 {
            Some(self.offset + 0x10)
        } else {
            Some(self.offset + 0x0c)
        }
    }
}

/// A PCI Express capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PciExpress {
    /// Offset of the capability.
    pub offset: u16,
    /// Capability version.
    pub version: u8,
    /// Device/port type (0 endpoint, 9 root-complex integrated endpoint ...).
    pub port_type: u8,
}

/// A vendor-specific capability: where it is and how long it says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VendorCap {
    /// Offset of the capability.
    pub offset: u16,
    /// Its length byte (offset + 2).
    pub len: u8,
}

/// The capabilities a boot report and the drivers care about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSummary {
    /// Power-management capability offset.
    pub pm: Option<u16>,
    /// MSI.
    pub msi: Option<Msi>,
    /// MSI-X.
    pub msix: Option<MsiX>,
    /// PCI Express.
    pub pcie: Option<PciExpress>,
    /// Vendor-specific capabilities, in list order (extra ones dropped).
    pub vendor: BoundedVec<VendorCap, MAX_VENDOR_CAPS>,
}

/// Decodes the capabilities of `bdf` (the first of each kind wins).
pub fn summarize<C: ConfigSpace + ?Sized>(cfg: &C, bdf: Bdf) -> CapSummary {
    let mut s = CapSummary::default();
    for cap in capabilities(cfg, bdf) {
        let at = cap.offset;
        match cap.id {
            CAP_PM => {
                s.pm.get_or_insert(at);
            }
            CAP_MSI if s.msi.is_none() => {
                let ctrl = cfg.read16(bdf, at + 2);
                s.msi = Some(Msi {
                    offset: at,
                    addr64: ctrl & (1 << 7) != 0,
                    per_vector_mask: ctrl & (1 << 8) != 0,
                    max_vectors: 1 << ((ctrl >> 1) & 0x7).min(5),
                });
            }
            CAP_MSIX if s.msix.is_none() => {
                let ctrl = cfg.read16(bdf, at + 2);
                let table = cfg.read32(bdf, at + 4);
                let pba = cfg.read32(bdf, at + 8);
                s.msix = Some(MsiX {
                    offset: at,
                    table_size: (ctrl & 0x7ff) + 1,
                    table_bir: (table & 7) as u8,
                    table_offset: table & !7,
                    pba_bir: (pba & 7) as u8,
                    pba_offset: pba & !7,
                });
            }
            CAP_PCIE if s.pcie.is_none() => {
                let caps = cfg.read16(bdf, at + 2);
                s.pcie = Some(PciExpress {
                    offset: at,
                    version: (caps & 0xf) as u8,
                    port_type: ((caps >> 4) & 0xf) as u8,
                });
            }
            CAP_VENDOR => {
                let len = cfg.read8(bdf, at + 2);
                // Full: later vendor capabilities are not recorded.
                let _ = s.vendor.push(VendorCap { offset: at, len });
            }
            _ => {}
        }
    }
    s
}
