//! The ACPI tables the firmware left, read once at boot with the `acpi`
//! crate: which tables there are, the MADT (local APIC, CPUs, IOAPICs), the
//! MCFG (ECAM regions) and the DMAR (VT-d remapping units and their device
//! scopes, decoded by `kernel_core::dmar`).
//! Reads only; owns a summary for the report. The tables must lie in the
//! first GiB, which the boot tables map (QEMU puts them just below the top
//! of low RAM); they are read before the final kernel map is installed.

use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::sdt::{SdtHeader, Signature};
use acpi::{AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};
use hermit_sync::OnceCell;
use kernel_core::BoundedVec;

use super::mmu::BOOT_LINEAR_RAM_END;

/// Physical memory through the linear map of the boot tables.
#[derive(Clone, Copy, Debug)]
struct Linear;

impl AcpiHandler for Linear {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        let end = (pa as u64).saturating_add(size as u64);
        assert!(
            pa != 0 && end <= BOOT_LINEAR_RAM_END,
            "ACPI table at {pa:#x} outside the boot-mapped first GiB"
        );
        let va = crate::mm::phys_to_virt(abi::PhysAddr::new(pa as u64)).get() as *mut T;
        // SAFETY: the caller (the acpi crate) names a table the firmware
        // placed at `pa`; pa..pa+size lies in the first GiB (checked), which
        // the boot tables map in the linear map and nothing writes.
        unsafe {
            PhysicalMapping::new(
                pa,
                NonNull::new(va).expect("the linear map has no null address"),
                size,
                size,
                *self,
            )
        }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// One IOAPIC from the MADT.
#[derive(Clone, Copy, Debug, Default)]
pub struct IoApic {
    /// Its ID.
    pub id: u8,
    /// Its registers (physical).
    pub address: u32,
    /// The first global system interrupt it serves.
    pub gsi_base: u32,
}

/// One ECAM region from the MCFG.
#[derive(Clone, Copy, Debug, Default)]
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

/// The DMAR's header, to find the table through the crate (which does not
/// decode it); its bytes are decoded by `kernel_core::dmar`.
#[repr(C, packed)]
struct DmarHeader {
    header: SdtHeader,
}

// SAFETY: `DmarHeader` is the standard SDT header the DMAR starts with, and
// SIGNATURE is the DMAR's; the crate validates the header (signature,
// length, checksum) before handing out the mapping.
unsafe impl AcpiTable for DmarHeader {
    const SIGNATURE: Signature = Signature::DMAR;
    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

/// What the tables say, for the report.
#[derive(Clone, Copy, Debug, Default)]
pub struct AcpiInfo {
    /// The RSDP (physical).
    pub rsdp: u64,
    /// Every table's signature, in RSDT/XSDT order.
    pub tables: BoundedVec<[u8; 4], 32>,
    /// The MADT's local APIC address, if there is a MADT.
    pub local_apic: Option<u32>,
    /// Enabled processors (MADT local APIC entries).
    pub cpus: u32,
    /// The IOAPICs.
    pub ioapics: BoundedVec<IoApic, 4>,
    /// The ECAM regions.
    pub ecam: BoundedVec<Ecam, 4>,
    /// The DMAR, decoded (or why not), if there is one.
    pub dmar: Option<Result<kernel_core::dmar::Dmar, kernel_core::dmar::DmarError>>,
}

impl AcpiInfo {
    /// Whether a table with `signature` is present.
    pub fn has(&self, signature: &[u8; 4]) -> bool {
        self.tables.iter().any(|t| t == signature)
    }
}

/// The table signatures the report names.
const KNOWN: [(Signature, &[u8; 4]); 14] = [
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

static INFO: OnceCell<Result<AcpiInfo, acpi::AcpiError>> = OnceCell::new();

/// Reads the tables from the RSDP at `rsdp` (once).
pub fn read(rsdp: u64) -> &'static Result<AcpiInfo, acpi::AcpiError> {
    INFO.get_or_init(|| {
        if rsdp == 0 {
            return Err(acpi::AcpiError::NoValidRsdp);
        }
        // SAFETY: `rsdp` is the RSDP address the PVH loader handed over;
        // `Linear` checks that everything the crate maps is boot-mapped.
        let tables = unsafe { AcpiTables::from_rsdp(Linear, rsdp as usize)? };
        let mut info = AcpiInfo {
            rsdp,
            ..AcpiInfo::default()
        };
        for header in tables.headers() {
            // Matched against known names rather than printed: the crate's
            // `as_str` panics on a signature that is not UTF-8.
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
        if let Ok(dmar) = tables.find_table::<DmarHeader>() {
            let pa = dmar.physical_start() as u64;
            let len = u64::from(dmar.header.length);
            info.dmar = Some(if pa.saturating_add(len) <= BOOT_LINEAR_RAM_END {
                let p = crate::mm::phys_to_virt(abi::PhysAddr::new(pa)).get() as *const u8;
                // SAFETY: the crate validated the DMAR's header at `pa`,
                // whose length is `len`; pa..pa+len lies in the boot-mapped
                // first GiB (checked) and nothing writes it.
                let bytes = unsafe { core::slice::from_raw_parts(p, len as usize) };
                kernel_core::dmar::parse(bytes)
            } else {
                Err(kernel_core::dmar::DmarError::Truncated)
            });
        }
        Ok(info)
    })
}

/// Bytes of ECAM `e` covers: 1 MiB per bus.
pub fn ecam_size(e: &Ecam) -> u64 {
    (u64::from(e.bus_end.saturating_sub(e.bus_start)) + 1) << 20
}

/// The tables as read at boot, if [`read`] ran.
pub fn info() -> Option<&'static Result<AcpiInfo, acpi::AcpiError>> {
    INFO.get()
}
