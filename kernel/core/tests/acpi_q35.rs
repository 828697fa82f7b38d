//! `acpi_summary` and `dmar` on the tables QEMU q35 really builds
//! (tests/data/acpi-q35, captured as its README says): the table list, the
//! MADT, the MCFG and the DMAR, as the x86_64 kernel reads them at boot.

use std::ptr::NonNull;

use acpi::sdt::{SdtHeader, Signature};
use acpi::{AcpiHandler, AcpiTable, AcpiTables, PhysicalMapping};
use kernel_core::acpi_summary::{Ecam, IoApic, summarize};

/// The captured tables, each at its physical address, leaked so every
/// mapping handed out stays valid for the whole test.
#[derive(Clone)]
struct Captured {
    chunks: &'static [(usize, &'static [u8])],
}

impl Captured {
    fn load() -> (Self, usize) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/acpi-q35");
        let mut chunks = Vec::new();
        let mut rsdp = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            let Some((sig, rest)) = name.split_once('@') else {
                continue;
            };
            let pa = usize::from_str_radix(rest.trim_end_matches(".bin"), 16).unwrap();
            if sig == "rsdp" {
                rsdp = pa;
            }
            let bytes: &'static [u8] = Box::leak(std::fs::read(&path).unwrap().into_boxed_slice());
            chunks.push((pa, bytes));
        }
        assert_ne!(rsdp, 0, "the RSDP was captured");
        (
            Self {
                chunks: Box::leak(chunks.into_boxed_slice()),
            },
            rsdp,
        )
    }
}

impl AcpiHandler for Captured {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        let (base, bytes) = self
            .chunks
            .iter()
            .find(|(base, b)| *base <= pa && pa + size <= base + b.len())
            .unwrap_or_else(|| panic!("{pa:#x}+{size:#x} was not captured"));
        let p = bytes[pa - base..].as_ptr() as *mut T;
        // SAFETY: `p` points at `size` captured bytes (checked above) that
        // live for the whole test (leaked) and are never written.
        unsafe { PhysicalMapping::new(pa, NonNull::new(p).unwrap(), size, size, self.clone()) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// The DMAR's header, to find it through the crate (as the kernel does).
#[repr(C, packed)]
struct DmarHeader {
    header: SdtHeader,
}

// SAFETY: the DMAR starts with the standard SDT header; SIGNATURE is its.
unsafe impl AcpiTable for DmarHeader {
    const SIGNATURE: Signature = Signature::DMAR;
    fn header(&self) -> &SdtHeader {
        &self.header
    }
}

fn tables() -> AcpiTables<Captured> {
    let (handler, rsdp) = Captured::load();
    // SAFETY: `rsdp` is where the capture found the RSDP; the handler maps
    // only captured bytes (and panics on anything else).
    unsafe { AcpiTables::from_rsdp(handler, rsdp) }.unwrap()
}

#[test]
fn the_q35_summary_is_what_the_boot_report_shows() {
    let s = summarize(&tables());
    let names: Vec<&str> = s
        .tables
        .iter()
        .map(|t| std::str::from_utf8(t).unwrap())
        .collect();
    assert_eq!(names, ["FACP", "APIC", "HPET", "MCFG", "DMAR", "WAET"]);
    assert!(s.has(b"DMAR") && !s.has(b"SRAT"));
    assert_eq!(s.local_apic, Some(0xfee0_0000));
    assert_eq!(s.cpus, 1);
    assert_eq!(
        s.ioapics.as_slice(),
        [IoApic {
            id: 0,
            address: 0xfec0_0000,
            gsi_base: 0
        }]
    );
    assert_eq!(
        s.ecam.as_slice(),
        [Ecam {
            segment: 0,
            base: 0xb000_0000,
            bus_start: 0,
            bus_end: 255
        }]
    );
    assert_eq!(s.ecam[0].size(), 256 << 20);
    // The host the kernel enumerates: the region, no windows (the
    // firmware's BARs stand), each requester ID its own VT-d source-id.
    let host = s.ecam[0].pci_host();
    assert_eq!(
        (
            host.ecam.base.get(),
            host.ecam.size,
            host.bus_start,
            host.bus_end
        ),
        (0xb000_0000, 256 << 20, 0, 255)
    );
    assert!(host.windows.is_empty());
    assert_eq!(host.stream_id(0x0018).map(|(_, sid)| sid.0), Some(0x18));
    assert_eq!(host.stream_id(0xff07).map(|(_, sid)| sid.0), Some(0xff07));
}

#[test]
fn the_q35_dmar_found_through_the_crate_decodes() {
    let t = tables();
    let dmar = t.find_table::<DmarHeader>().unwrap();
    let (pa, len) = (dmar.physical_start(), dmar.header.length as usize);
    let (handler, _) = Captured::load();
    let (base, bytes) = handler
        .chunks
        .iter()
        .find(|(b, _)| *b == pa)
        .expect("the DMAR was captured whole");
    assert_eq!(*base, pa);
    let d = kernel_core::dmar::parse(&bytes[..len]).unwrap();
    assert_eq!(d.units.len(), 1);
    assert_eq!(d.units[0].register_base, 0xfed9_0000);
    assert_eq!(d.units[0].scopes.len(), 8);
}
