//! The discovery report's x86_64 lines: the CPU, its features that matter
//! (PCID, SMAP, SMEP, x2APIC, XSAVE, NX), the boot information, the kernel
//! map and the counter. Prints only.

use abi::PhysAddr;
use kernel_core::dt::Platform;

use super::{BootInfo, MachineInfo};
use crate::kprintln;

/// The first lines: the CPU and what the PVH loader handed over.
pub fn boot(boot: &BootInfo, image: (PhysAddr, PhysAddr)) {
    kprintln!(
        "boot: x86_64 long mode, ring 0, PVH start info v{}, kernel image {:#x}..{:#x}",
        boot.version,
        image.0,
        image.1
    );
    match boot.module {
        Some((pa, size)) => kprintln!(
            "boot: module at {pa:#x} ({size} bytes), not used (the boot image is named by bootimage=)"
        ),
        None => kprintln!("boot: no module"),
    }
    if boot.rsdp != 0 {
        kprintln!("boot: ACPI RSDP at {:#x}", boot.rsdp);
    }
}

/// The ACPI tables: which there are, the MADT, the MCFG, the DMAR.
fn acpi() {
    let info = match super::acpi::info() {
        Some(Ok(info)) => info,
        Some(Err(e)) => {
            kprintln!("acpi: tables unreadable: {e:?}");
            return;
        }
        None => return,
    };
    let (rsdp, info, dmar) = (info.rsdp, &info.summary, &info.dmar);
    let mut names = alloc::string::String::new();
    for t in info.tables.iter() {
        names.push(' ');
        names.push_str(core::str::from_utf8(t).unwrap_or("????"));
    }
    kprintln!("acpi: RSDP {rsdp:#x}, tables:{names}");
    match info.local_apic {
        Some(lapic) => kprintln!(
            "acpi: MADT local APIC {lapic:#x}, {} CPU(s) enabled, {} IOAPIC(s)",
            info.cpus,
            info.ioapics.len()
        ),
        None => kprintln!("acpi: no MADT"),
    }
    for io in info.ioapics.iter() {
        kprintln!(
            "acpi: IOAPIC id {} at {:#x}, GSI base {}",
            io.id,
            io.address,
            io.gsi_base
        );
    }
    if info.ecam.is_empty() {
        kprintln!("acpi: no MCFG");
    }
    for e in info.ecam.iter() {
        kprintln!(
            "acpi: MCFG segment {} buses {}..={} ECAM {:#x}",
            e.segment,
            e.bus_start,
            e.bus_end,
            e.base
        );
    }
    match dmar {
        None => kprintln!("acpi: no DMAR (QEMU adds one with -device intel-iommu)"),
        Some(Err(e)) => kprintln!("acpi: DMAR does not decode: {e:?}"),
        Some(Ok(d)) => {
            kprintln!(
                "acpi: DMAR host address width {} bits{}, {} remapping unit(s), {} reserved region(s)",
                d.host_address_width,
                if d.intr_remap {
                    ", interrupt remapping"
                } else {
                    ""
                },
                d.units.len(),
                d.rmrrs.len()
            );
            for u in d.units.iter() {
                let mut scopes = alloc::string::String::new();
                for s in u.scopes.iter() {
                    let _ = core::fmt::Write::write_fmt(&mut scopes, format_args!(" {s};"));
                }
                kprintln!(
                    "acpi: DMAR unit at {:#x} segment {}{}:{scopes}",
                    u.register_base,
                    u.segment,
                    if u.include_pci_all {
                        " (all other PCI devices)"
                    } else {
                        ""
                    }
                );
            }
        }
    }
}

/// The kernel map and the image's pages: (executable, writable, both).
pub fn kernel_map(installed: bool, (x, w, wx): (usize, usize, usize)) {
    kprintln!(
        "mmu: kernel map {} (CR3), identity map dropped, NX on; image pages: {x} executable, {w} writable, {wx} both",
        if installed {
            "installed"
        } else {
            "NOT installed"
        },
    );
}

/// The ACPI tables, the CPU's features and the counter.
pub fn machine(_platform: &Platform<'_>, sys: &MachineInfo) {
    acpi();
    let c = &sys.cpu;
    let yes = |b: bool| if b { "yes" } else { "no" };
    kprintln!(
        "cpu: {} PCID {} INVPCID {} SMAP {} SMEP {} x2APIC {} TSC-deadline {} XSAVE {} NX {} 1G-pages {} ({} physical address bits)",
        core::str::from_utf8(&c.vendor).unwrap_or("?"),
        yes(c.pcid),
        yes(c.invpcid),
        yes(c.smap),
        yes(c.smep),
        yes(c.x2apic),
        yes(c.tsc_deadline),
        yes(c.xsave),
        yes(c.nx),
        yes(c.page1g),
        c.pa_bits
    );
    let cr4 = x86_64::registers::control::Cr4::read();
    use x86_64::registers::control::Cr4Flags;
    kprintln!(
        "cpu: SMEP {}, SMAP {}",
        if cr4.contains(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION) {
            "on"
        } else {
            "off"
        },
        if cr4.contains(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION) {
            "on"
        } else {
            "off"
        },
    );
    match super::cpu::xsave_state() {
        (0, _) => kprintln!("fpu: tasks' x87/SSE state kept with FXSAVE"),
        (mask, size) => kprintln!(
            "fpu: tasks' state kept with XSAVE, XCR0 {mask:#x} ({}), {size}-byte area",
            if mask & 4 != 0 {
                "x87 SSE AVX"
            } else {
                "x87 SSE"
            }
        ),
    }
    let (base, id, version) = sys.apic;
    kprintln!(
        "apic: local APIC (xAPIC) at {base:#x}, ID {id}, version {version:#x}; 8259 PICs masked"
    );
    let (ticks, us) = sys.timer_check;
    let apic_hz = super::timer::apic_hz();
    kprintln!(
        "timer: TSC {}.{} MHz (calibrated against the PIT); APIC timer one-shot, vector {}, {} MHz, {} ms tick: {ticks} ticks in {}.{} ms",
        sys.tsc_hz / 1_000_000,
        (sys.tsc_hz % 1_000_000) / 100_000,
        super::apic::TIMER_VECTOR,
        apic_hz / 1_000_000,
        super::timer::TICK_US / 1000,
        us / 1000,
        (us % 1000) / 100
    );
}
