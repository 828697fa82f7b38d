//! The boot-time discovery report: RAM, the architecture's lines (CPU,
//! kernel map, interrupt controller, timer: `arch::report`), the SMMUv3's
//! decoded features and every PCI function with its StreamID.
//! Prints only; decides nothing. Its lines are what the QEMU boot tests
//! (scenarios/boot.toml) assert, so change both together.

use kernel_core::dt::{PciSpace, Platform};

use crate::arch::BootInfo;
use crate::{MemoryInfo, SystemInfo, kprintln};

const MIB: u64 = 1 << 20;

/// Prints the report.
pub fn print(platform: &Platform<'_>, boot: &BootInfo, mem: &MemoryInfo, sys: &SystemInfo) {
    crate::arch::report::boot(boot, (mem.image.start, mem.image.end));
    for r in mem.ram.iter() {
        kprintln!(
            "ram: {:#x}..{:#x} ({} MiB)",
            r.base,
            r.base.get() + r.size,
            r.size / MIB
        );
    }
    let (free, total) = crate::mm::frames::stats();
    kprintln!(
        "ram: {} frames free of {} ({} MiB); heap {} MiB at {:#x} ({} KiB used)",
        free,
        total,
        (total as u64 * abi::PAGE_SIZE) / MIB,
        (mem.heap.end.get() - mem.heap.start.get()) / MIB,
        mem.heap.start,
        crate::mm::heap::used() / 1024
    );
    debug_assert_eq!(total, mem.frames);
    crate::arch::report::kernel_map(mem.kernel_map.is_some(), mem.image_permissions);
    if let Some(args) = platform.bootargs {
        kprintln!("dt: bootargs \"{args}\"");
    }

    crate::arch::report::machine(platform, &sys.machine);

    match (&platform.smmu, &sys.smmu) {
        (Some(node), Some(probe)) => {
            kprintln!(
                "smmu: arm,smmu-v3 at {:#x} ({:#x} bytes){}",
                node.regs.base,
                node.regs.size,
                if node.dma_coherent {
                    ", dma-coherent"
                } else {
                    ""
                }
            );
            let irqs = [
                ("eventq", node.eventq),
                ("priq", node.priq),
                ("cmdq-sync", node.cmdq_sync),
                ("gerror", node.gerror),
            ];
            for (name, irq) in irqs {
                if let Some(irq) = irq {
                    kprintln!("smmu: irq {name} {irq}");
                }
            }
            kprintln!(
                "smmu: IDR0 {:#010x} IDR1 {:#010x} IDR2 {:#x} IDR3 {:#x} IDR4 {:#x} IDR5 {:#x} AIDR {:#x}",
                probe.idr[0],
                probe.idr[1],
                probe.idr[2],
                probe.idr[3],
                probe.idr[4],
                probe.idr[5],
                probe.aidr
            );
            match &probe.features {
                Ok(f) => {
                    for line in alloc::format!("{f}").lines() {
                        kprintln!("smmu: {line}");
                    }
                }
                Err(e) => kprintln!("smmu: ID registers do not decode: {e:?}"),
            }
        }
        _ => kprintln!("smmu: none in the platform description"),
    }

    let Some(host) = &platform.pci else {
        kprintln!("pci: no host bridge in the platform description");
        return;
    };
    kprintln!(
        "pci: ECAM {:#x} ({} MiB), buses {}..={}{}",
        host.ecam.base,
        host.ecam.size / MIB,
        host.bus_start,
        host.bus_end,
        if host.dma_coherent {
            ", dma-coherent"
        } else {
            ""
        }
    );
    for w in host.windows.iter() {
        let kind = match w.space {
            PciSpace::Io => "io",
            PciSpace::Mem32 => "mem32",
            PciSpace::Mem64 => "mem64",
            PciSpace::Config => "config",
        };
        kprintln!(
            "pci: window {kind}{} cpu {:#x} pci {:#x} size {:#x}",
            if w.prefetchable { " prefetchable" } else { "" },
            w.cpu_addr,
            w.pci_addr,
            w.size
        );
    }
    if host.windows.is_empty() {
        kprintln!("pci: no windows described: BARs as the firmware left them");
    }
    for e in host.iommu_map.entries.iter() {
        kprintln!(
            "pci: iommu-map rid {:#x}..{:#x} -> iommu phandle {:#x} sid {:#x}",
            e.rid_base,
            e.rid_base + e.length,
            e.phandle,
            e.out_base
        );
    }
    match &sys.pci {
        Some(Ok(en)) => {
            for f in en.functions.iter() {
                kprintln!("pci {f}");
            }
            kprintln!(
                "pci: {} functions, bus mastering off until the IOMMU server attaches them",
                en.functions.len()
            );
        }
        Some(Err(e)) => kprintln!("pci: enumeration FAILED: {e:?}"),
        None => {}
    }
}
