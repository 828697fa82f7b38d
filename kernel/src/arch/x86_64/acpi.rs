//! The ACPI tables the firmware left, read once at boot with the `acpi`
//! crate: which tables there are, the MADT (local APIC, CPUs, IOAPICs), the
//! MCFG (ECAM regions) and the DMAR (VT-d remapping units and their device
//! scopes, decoded by `kernel_core::dmar`).
//! Reads only; owns a summary for the report. The tables must lie in the
//! first GiB, which the boot tables map (QEMU puts them just below the top
//! of low RAM); they are read before the final kernel map is installed.

use core::ptr::NonNull;

use acpi::sdt::{SdtHeader, Signature};
use acpi::{AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};
use hermit_sync::OnceCell;
use kernel_core::acpi_summary::AcpiSummary;

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
    /// The table list, MADT and MCFG.
    pub summary: AcpiSummary,
    /// The DMAR, decoded (or why not), if there is one.
    pub dmar: Option<Result<kernel_core::dmar::Dmar, kernel_core::dmar::DmarError>>,
}

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
            summary: kernel_core::acpi_summary::summarize(&tables),
            dmar: None,
        };
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

/// The tables as read at boot, if [`read`] ran.
pub fn info() -> Option<&'static Result<AcpiInfo, acpi::AcpiError>> {
    INFO.get()
}
