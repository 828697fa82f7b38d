//! What a platform's ACPI tables say that the kernel reports and will use:
//! the table list, the MADT (local APIC, enabled CPUs, IOAPICs) and the MCFG
//! (ECAM regions, and the PCI host each one reaches), read through the `acpi` crate from tables the caller has
//! located (making `AcpiTables` needs the caller's unsafe promise that the
//! RSDP is real; everything here is safe reads of validated tables).
//!
//! It never maps memory, never trusts a table to be well-formed beyond what
//! the crate validates, and never panics on table contents (the crate's
//! `Signature::as_str` panics on a non-UTF-8 signature, so signatures are
//! matched against known names instead).

use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::sdt::Signature;
use acpi::{AcpiHandler, AcpiTables};

use abi::PhysAddr;

use crate::BoundedVec;
use crate::dt::{IdMap, IdMapEntry, IntxMap, PciHost, Region};

/// One IOAPIC from the MADT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoApic {
    /// Its ID.
    pub id: u8,
    /// Its registers (physical).
    pub address: u32,
    /// The first global system interrupt it serves.
    pub gsi_base: u32,
}

/// One ECAM region from the MCFG.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ecam {
    /// PCI segment group.
    pub segment: u16,
    /// Base of the region (physical), bus `bus_start` first.
    pub base: u64,
    /// First bus.
    pub bus_start: u8,
    /// Last bus.
    pub bus_end: u8,
}

impl Ecam {
    /// Bytes the region covers: 1 MiB per bus.
    pub fn size(&self) -> u64 {
        (u64::from(self.bus_end.saturating_sub(self.bus_start)) + 1) << 20
    }

    /// The PCI host bridge this region reaches, as the kernel's PCI code
    /// takes it: no windows (an ACPI machine describes them in the DSDT's
    /// AML, so the firmware's BAR assignments stand:
    /// `pci::keep_firmware_bars`), DMA coherent (x86), no INTx or MSI map
    /// yet, and every requester ID its own stream: VT-d tells a function's
    /// DMA by its source-id, which is the requester ID (bus, device,
    /// function) within the segment, so the map is the identity with no
    /// IOMMU named (phandle 0).
    pub fn pci_host(&self) -> PciHost {
        let mut entries = BoundedVec::new();
        // Cannot fail: one entry in an empty list.
        let _ = entries.push(IdMapEntry {
            rid_base: 0,
            phandle: 0,
            out_base: 0,
            length: 1 << 16,
        });
        PciHost {
            ecam: Region {
                base: PhysAddr::new(self.base),
                size: self.size(),
            },
            bus_start: self.bus_start,
            bus_end: self.bus_end,
            windows: BoundedVec::new(),
            dma_coherent: true,
            iommu_map: IdMap {
                entries,
                mask: u32::from(u16::MAX),
            },
            msi_map: IdMap::default(),
            intx: IntxMap::default(),
        }
    }
}

/// What the tables say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcpiSummary {
    /// Every table's signature, in RSDT/XSDT order (`????` for a name not
    /// in [`KNOWN`]).
    pub tables: BoundedVec<[u8; 4], 32>,
    /// The MADT's local APIC address, if there is a MADT.
    pub local_apic: Option<u32>,
    /// Enabled processors (MADT local APIC entries with the enabled flag).
    pub cpus: u32,
    /// The IOAPICs.
    pub ioapics: BoundedVec<IoApic, 4>,
    /// The ECAM regions.
    pub ecam: BoundedVec<Ecam, 4>,
}

impl AcpiSummary {
    /// Whether a table with `signature` is present.
    pub fn has(&self, signature: &[u8; 4]) -> bool {
        self.tables.iter().any(|t| t == signature)
    }
}

/// The table signatures reported by name.
pub const KNOWN: [(Signature, &[u8; 4]); 14] = [
    (Signature::FADT, b"FACP"),
    (Signature::MADT, b"APIC"),
    (Signature::HPET, b"HPET"),
    (Signature::MCFG, b"MCFG"),
    (Signature::DSDT, b"DSDT"),
    (Signature::SSDT, b"SSDT"),
    (Signature::WAET, b"WAET"),
    (Signature::DMAR, b"DMAR"),
    (Signature::SRAT, b"SRAT"),
    (Signature::SLIT, b"SLIT"),
    (Signature::BGRT, b"BGRT"),
    (Signature::SPCR, b"SPCR"),
    (Signature::IVRS, b"IVRS"),
    (Signature::TPM2, b"TPM2"),
];

/// Summarises `tables`.
pub fn summarize<H: AcpiHandler>(tables: &AcpiTables<H>) -> AcpiSummary {
    let mut info = AcpiSummary::default();
    for header in tables.headers() {
        let name = KNOWN
            .iter()
            .find(|(sig, _)| *sig == header.signature)
            .map_or(*b"????", |(_, name)| **name);
        let _ = info.tables.push(name);
    }
    if let Ok(madt) = tables.find_table::<Madt>() {
        info.local_apic = Some(madt.get().local_apic_address);
        for entry in madt.get().entries() {
            match entry {
                MadtEntry::LocalApic(l) if l.flags & 1 != 0 => info.cpus += 1,
                MadtEntry::IoApic(io) => {
                    let _ = info.ioapics.push(IoApic {
                        id: io.io_apic_id,
                        address: io.io_apic_address,
                        gsi_base: io.global_system_interrupt_base,
                    });
                }
                _ => {}
            }
        }
    }
    if let Ok(mcfg) = tables.find_table::<Mcfg>() {
        for e in mcfg.entries() {
            let _ = info.ecam.push(Ecam {
                segment: e.pci_segment_group,
                base: e.base_address,
                bus_start: e.bus_number_start,
                bus_end: e.bus_number_end,
            });
        }
    }
    info
}
