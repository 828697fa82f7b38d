//! The boot-time discovery report: RAM, interrupt controller, timer, the
//! SMMUv3's decoded features and every PCI function with its StreamID.
//! Prints only; decides nothing. Its lines are what the QEMU boot tests
//! (scenarios/boot.toml) assert, so change both together.

use kernel_core::dt::{PciSpace, Platform};

use crate::{MemoryInfo, SystemInfo, kprintln};

const MIB: u64 = 1 << 20;

/// Prints the report.
pub fn print(platform: &Platform<'_>, entry_el: u64, mem: &MemoryInfo, sys: &SystemInfo) {
    kprintln!(
        "boot: running at EL{} (entered at EL{entry_el}), kernel image {:#x}..{:#x}",
        crate::arch::current_el(),
        mem.image.start,
        mem.image.end
    );
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
    let (x, w, wx) = mem.image_permissions;
    kprintln!(
        "mmu: kernel map {} (TTBR1), identity map dropped, ASIDs {} bits; image pages: {x} executable, {w} writable, {wx} both",
        if mem.kernel_map.is_some() {
            "installed"
        } else {
            "NOT installed"
        },
        if crate::arch::mmu::has_asid16() {
            16
        } else {
            8
        }
    );
    if let Some(args) = platform.bootargs {
        kprintln!("dt: bootargs \"{args}\"");
    }

    match &sys.gic {
        Ok(g) => kprintln!(
            "gic: GICv3 distributor {:#x} ({} INTIDs, IIDR {:#x}{}), redistributor {:#x}{}",
            platform.gic.gicd.base,
            g.lines,
            g.iidr,
            if g.single_security_state {
                ", single security state"
            } else {
                ""
            },
            g.redistributor,
            platform
                .gic
                .its
                .map(|r| alloc::format!(", ITS {:#x}", r.base))
                .unwrap_or_default()
        ),
        Err(e) => kprintln!("gic: bring-up FAILED: {e:?}"),
    }
    let hz = crate::arch::counter_hz();
    match sys.timer_check {
        Some((ticks, us)) => kprintln!(
            "timer: virtual timer INTID {}, counter {}.{} MHz, {} ms tick: {ticks} ticks in {}.{} ms",
            sys.timer_intid,
            hz / 1_000_000,
            (hz % 1_000_000) / 100_000,
            crate::timer::TICK_US / 1000,
            us / 1000,
            (us % 1000) / 100
        ),
        None => kprintln!("timer: not started (no GIC)"),
    }

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
        _ => kprintln!("smmu: none in the device tree"),
    }

    let Some(host) = &platform.pci else {
        kprintln!("pci: no host bridge in the device tree");
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
