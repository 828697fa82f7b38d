//! Decoding of the ACPI DMA Remapping table (DMAR) that describes Intel
//! VT-d: the host address width, the remapping hardware units (DRHD) with
//! their register bases and device scopes, and the reserved memory regions
//! (RMRR) [Intel VT-d specification rev. 4.1, §8 "BIOS Considerations":
//! 8.1 DMAR table, 8.3 DRHD, 8.3.1 device scope, 8.4 RMRR]. The `acpi`
//! crate does not decode it.
//!
//! It owns the encoding only: it reads the table's bytes as given, never
//! touches memory or registers, decides nothing about remapping, and
//! decodes any input without panicking (a truncated or malformed structure
//! is an error value).

use core::fmt;

use crate::BoundedVec;

/// Most remapping units decoded.
pub const MAX_UNITS: usize = 8;
/// Most device scopes decoded per unit.
pub const MAX_SCOPES: usize = 16;
/// Most reserved regions decoded.
pub const MAX_RMRRS: usize = 8;

/// Why a DMAR table does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarError {
    /// Not a DMAR (signature) or shorter than its fixed header.
    NotDmar,
    /// The header's length exceeds the bytes given.
    Truncated,
    /// A remapping structure or device scope runs past its container, or
    /// has a length too short for its type.
    BadStructure {
        /// Offset of the structure in the table.
        offset: usize,
    },
    /// More units, scopes or regions than this decoder keeps.
    TooMany,
}

/// What a device scope names [§8.3.1, Table 8-5].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScopeKind {
    /// 1: a PCI endpoint.
    #[default]
    PciEndpoint,
    /// 2: a PCI sub-hierarchy (a bridge and everything below it).
    PciSubHierarchy,
    /// 3: an IOAPIC (enumeration ID = its APIC ID).
    IoApic,
    /// 4: an MSI-capable HPET (enumeration ID = its number).
    Hpet,
    /// 5: an ACPI namespace device.
    AcpiNamespace,
    /// Anything else (reserved).
    Other(u8),
}

impl ScopeKind {
    fn from_raw(v: u8) -> Self {
        match v {
            1 => Self::PciEndpoint,
            2 => Self::PciSubHierarchy,
            3 => Self::IoApic,
            4 => Self::Hpet,
            5 => Self::AcpiNamespace,
            other => Self::Other(other),
        }
    }
}

/// One device scope: a device under a remapping unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scope {
    /// What it names.
    pub kind: ScopeKind,
    /// The enumeration ID (IOAPIC or HPET ID; 0 for PCI).
    pub enumeration_id: u8,
    /// The bus the path starts on.
    pub start_bus: u8,
    /// The first hop of the path: (device, function); deeper hops (behind
    /// bridges) are counted in `hops`.
    pub device: u8,
    /// See [`Scope::device`].
    pub function: u8,
    /// Hops in the path (1 for a device on `start_bus`).
    pub hops: u8,
}

/// One DMA remapping hardware unit (DRHD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unit {
    /// PCI segment.
    pub segment: u16,
    /// Its register block (physical).
    pub register_base: u64,
    /// INCLUDE_PCI_ALL: it covers every PCI device of the segment not
    /// named under another unit.
    pub include_pci_all: bool,
    /// Its device scopes.
    pub scopes: BoundedVec<Scope, MAX_SCOPES>,
}

/// One reserved memory region (RMRR): memory devices may reach before the
/// OS sets up remapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rmrr {
    /// PCI segment.
    pub segment: u16,
    /// First byte.
    pub base: u64,
    /// Last byte.
    pub limit: u64,
    /// Devices that use it.
    pub scopes: BoundedVec<Scope, MAX_SCOPES>,
}

/// A decoded DMAR table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dmar {
    /// DMA physical address width in bits (the table's value + 1).
    pub host_address_width: u8,
    /// Interrupt remapping supported (flags bit 0).
    pub intr_remap: bool,
    /// X2APIC_OPT_OUT (flags bit 1).
    pub x2apic_opt_out: bool,
    /// DMA_CTRL_PLATFORM_OPT_IN (flags bit 2).
    pub dma_ctrl_platform_opt_in: bool,
    /// The remapping units, in table order.
    pub units: BoundedVec<Unit, MAX_UNITS>,
    /// The reserved memory regions, in table order.
    pub rmrrs: BoundedVec<Rmrr, MAX_RMRRS>,
    /// Structures of other types (ATSR, RHSA, ANDD, SATC, ...), counted.
    pub other_structures: u16,
}

/// Fixed part of the table: the ACPI header (36), width, flags, 10 reserved.
const FIXED: usize = 48;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?))
}

/// Decodes the device scopes in `b[from..to]` (offsets into the table for
/// errors at `base`).
fn scopes(b: &[u8], base: usize) -> Result<BoundedVec<Scope, MAX_SCOPES>, DmarError> {
    let mut out = BoundedVec::new();
    let mut o = 0;
    while o < b.len() {
        let bad = DmarError::BadStructure { offset: base + o };
        let kind = *b.get(o).ok_or(bad)?;
        let len = usize::from(*b.get(o + 1).ok_or(bad)?);
        // Type, length, 2 reserved, enumeration ID, start bus, then at
        // least one (device, function) pair, in pairs.
        if len < 8 || len % 2 != 0 || o + len > b.len() {
            return Err(bad);
        }
        let s = &b[o..o + len];
        out.push(Scope {
            kind: ScopeKind::from_raw(kind),
            enumeration_id: s[4],
            start_bus: s[5],
            device: s[6],
            function: s[7],
            hops: ((len - 6) / 2) as u8,
        })
        .map_err(|_| DmarError::TooMany)?;
        o += len;
    }
    Ok(out)
}

/// Decodes a whole DMAR table (header included).
pub fn parse(table: &[u8]) -> Result<Dmar, DmarError> {
    if table.len() < FIXED || &table[0..4] != b"DMAR" {
        return Err(DmarError::NotDmar);
    }
    let len = u32_at(table, 4).ok_or(DmarError::NotDmar)? as usize;
    if len < FIXED {
        return Err(DmarError::NotDmar);
    }
    let t = table.get(..len).ok_or(DmarError::Truncated)?;
    let flags = t[37];
    let mut d = Dmar {
        host_address_width: t[36].saturating_add(1),
        intr_remap: flags & 1 != 0,
        x2apic_opt_out: flags & 2 != 0,
        dma_ctrl_platform_opt_in: flags & 4 != 0,
        ..Dmar::default()
    };
    let mut o = FIXED;
    while o < t.len() {
        let bad = DmarError::BadStructure { offset: o };
        let kind = u16_at(t, o).ok_or(bad)?;
        let slen = usize::from(u16_at(t, o + 2).ok_or(bad)?);
        if slen < 4 || o + slen > t.len() {
            return Err(bad);
        }
        let s = &t[o..o + slen];
        match kind {
            // DRHD: type, length, flags, size, segment, register base.
            0 => {
                if slen < 16 {
                    return Err(bad);
                }
                d.units
                    .push(Unit {
                        include_pci_all: s[4] & 1 != 0,
                        segment: u16_at(s, 6).ok_or(bad)?,
                        register_base: u64_at(s, 8).ok_or(bad)?,
                        scopes: scopes(&s[16..], o + 16)?,
                    })
                    .map_err(|_| DmarError::TooMany)?;
            }
            // RMRR: type, length, reserved, segment, base, limit.
            1 => {
                if slen < 24 {
                    return Err(bad);
                }
                d.rmrrs
                    .push(Rmrr {
                        segment: u16_at(s, 6).ok_or(bad)?,
                        base: u64_at(s, 8).ok_or(bad)?,
                        limit: u64_at(s, 16).ok_or(bad)?,
                        scopes: scopes(&s[24..], o + 24)?,
                    })
                    .map_err(|_| DmarError::TooMany)?;
            }
            _ => d.other_structures = d.other_structures.saturating_add(1),
        }
        o += slen;
    }
    Ok(d)
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let deeper = if self.hops > 1 {
            " (behind bridges)"
        } else {
            ""
        };
        match self.kind {
            ScopeKind::PciEndpoint | ScopeKind::PciSubHierarchy => write!(
                f,
                "{} {:02x}:{:02x}.{}{deeper}",
                if self.kind == ScopeKind::PciEndpoint {
                    "pci"
                } else {
                    "pci-bridge"
                },
                self.start_bus,
                self.device,
                self.function
            ),
            ScopeKind::IoApic => write!(f, "ioapic {}", self.enumeration_id),
            ScopeKind::Hpet => write!(f, "hpet {}", self.enumeration_id),
            ScopeKind::AcpiNamespace => write!(f, "acpi-device {}", self.enumeration_id),
            ScopeKind::Other(t) => write!(f, "scope type {t}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::String;
    use alloc::vec::Vec;

    /// QEMU 7.2 q35 with `-device intel-iommu` and NVMe, virtio-blk and edu
    /// at 00:01.0..00:03.0 (tests/data/acpi-q35/README.md).
    const Q35: &[u8] = include_bytes!("../tests/data/acpi-q35/DMAR@1ffe227b.bin");

    #[test]
    fn qemu_q35_table_decodes() {
        let d = parse(Q35).unwrap();
        assert_eq!(d.host_address_width, 39);
        assert!(d.intr_remap);
        assert_eq!(d.units.len(), 1);
        let u = &d.units[0];
        assert_eq!(
            (u.segment, u.register_base, u.include_pci_all),
            (0, 0xfed9_0000, false)
        );
        let scopes: Vec<String> = u.scopes.iter().map(|s| format!("{s}")).collect();
        assert_eq!(
            scopes,
            [
                "ioapic 0",
                "pci 00:00.0",
                "pci 00:01.0",
                "pci 00:02.0",
                "pci 00:03.0",
                "pci 00:1f.0",
                "pci 00:1f.2",
                "pci 00:1f.3"
            ]
        );
        assert!(d.rmrrs.is_empty());
        assert_eq!(d.other_structures, 0);
    }

    #[test]
    fn refuses_what_is_not_a_dmar_or_is_cut() {
        assert_eq!(parse(b"APIC"), Err(DmarError::NotDmar));
        assert_eq!(parse(&Q35[..40]), Err(DmarError::NotDmar));
        assert_eq!(parse(&Q35[..100]), Err(DmarError::Truncated));
        let mut bad = Q35.to_vec();
        bad[0x32] = 0xff; // the DRHD's length runs past the table
        assert!(matches!(
            parse(&bad),
            Err(DmarError::BadStructure { offset: 0x30 })
        ));
        let mut bad = Q35.to_vec();
        bad[0x41] = 3; // a device scope shorter than its fixed part
        assert!(matches!(parse(&bad), Err(DmarError::BadStructure { .. })));
    }

    #[test]
    fn every_truncation_and_byte_flip_decodes_or_errs() {
        for n in 0..Q35.len() {
            let _ = parse(&Q35[..n]);
        }
        for i in 0..Q35.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut b = Q35.to_vec();
                b[i] = v;
                let _ = parse(&b);
            }
        }
    }
}
