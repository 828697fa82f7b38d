//! The microkernel: boots, owns memory, exceptions, the interrupt
//! controller and the timer (through the arch interface, `arch`), and
//! reports what the machine holds. It must never touch a device's registers on a driver's
//! behalf once tasks exist, and `unsafe` lives only in `arch`, `mmio` and
//! `mm` (the crate denies it elsewhere).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

extern crate alloc;

#[allow(unsafe_code)]
mod arch;
mod console;
mod dma_stop;
mod exceptions;
mod integrity;
mod latency;
#[allow(unsafe_code)]
mod mm;
#[allow(unsafe_code)]
mod mmio;
mod pci;
mod report;
mod selftest;
mod smmu_probe;
mod task;
mod timeout;

use abi::{PAGE_SIZE, PhysAddr};
use kernel_core::dt::Platform;

use crate::mm::frames::PhysRange;

/// Exit statuses of the run (QEMU's exit status, through `arch::exit`).
pub mod status {
    /// Everything asked for ran and passed.
    pub const PASS: u32 = 0;
    /// A self-test or scenario check failed.
    pub const FAIL: u32 = 1;
    /// A fault taken in the kernel itself.
    pub const KERNEL_FAULT: u32 = 3;
    /// No usable platform description (device tree): nothing can be
    /// reported.
    pub const NO_DEVICE_TREE: u32 = 4;
    /// A Rust panic in the kernel.
    pub const PANIC: u32 = 101;
}

/// The kernel proper, entered from the arch boot code with the kernel map
/// of the boot tables on, on the boot stack, with what the loader handed
/// over.
fn kmain(boot: &arch::BootInfo) -> ! {
    let Some(platform) = arch::discover(boot) else {
        exit(status::NO_DEVICE_TREE)
    };
    console::init(&platform);
    kprintln!("");
    kprintln!("iommu-kernel {} booting", env!("CARGO_PKG_VERSION"));

    let bootargs = platform.bootargs.unwrap_or("");
    let boot_image = bootarg(bootargs, "bootimage")
        .and_then(parse_hex)
        .map(PhysAddr::new);
    let mut mem = init_memory(&platform, boot.keep_below_image(), boot_image);
    install_kernel_map(&platform, &mut mem);
    integrity::record();
    let mut sys = bring_up_machine(&platform);
    report::print(&platform, boot, &mem, &sys);

    let code = selftest::run(bootargs);
    let Some(image) = mem.boot_image else {
        kprintln!("kernel: done, exit status {code}");
        exit(code)
    };
    if code != status::PASS {
        exit(code);
    }
    if let Err(why) = arch::can_run_tasks() {
        kprintln!("kernel: boot image not loaded: {why}");
        exit(status::FAIL)
    }
    let pci = match sys.pci.take() {
        Some(Ok(en)) => en.functions.iter().copied().collect(),
        _ => alloc::vec::Vec::new(),
    };
    match task::loader::load(&image, &platform, pci, arch::mmu::pa_bits()) {
        Ok(mut k) => {
            k.boot = Some((image, platform, arch::mmu::pa_bits()));
            kprintln!(
                "kernel: {} tasks loaded, {} endpoints; starting",
                k.tasks.len(),
                k.endpoints.len()
            );
            task::start(k)
        }
        Err(e) => {
            kprintln!("kernel: boot image refused: {e}");
            exit(status::FAIL)
        }
    }
}

/// The value of `key=value` in the kernel command line.
fn bootarg<'a>(bootargs: &'a str, key: &str) -> Option<&'a str> {
    bootargs
        .split_whitespace()
        .find_map(|a| a.strip_prefix(key)?.strip_prefix('='))
}

fn parse_hex(v: &str) -> Option<u64> {
    u64::from_str_radix(v.strip_prefix("0x")?, 16).ok()
}

/// What memory bring-up found, for the report.
pub struct MemoryInfo {
    /// RAM regions, as the device tree lists them.
    pub ram: kernel_core::bounded::BoundedVec<kernel_core::dt::Region, 8>,
    /// Frames given to the frame allocator.
    pub frames: usize,
    /// The kernel image, physical.
    pub image: PhysRange,
    /// The heap, physical.
    pub heap: PhysRange,
    /// Ranges kept from the frame allocator.
    pub reserved: alloc::vec::Vec<PhysRange>,
    /// The kernel's final map, once installed.
    pub kernel_map: Option<arch::mmu::KernelMap>,
    /// (executable, writable, writable-and-executable) pages of the image.
    pub image_permissions: (usize, usize, usize),
    /// The boot image the command line named, validated.
    pub boot_image: Option<bootimage::BootImage<'static>>,
}

/// Sets up the heap and the frame allocator from the device tree's RAM,
/// reserving the DTB, the kernel image, the heap and /memreserve/ ranges.
fn init_memory(
    platform: &Platform<'_>,
    keep_from: PhysAddr,
    boot_image: Option<PhysAddr>,
) -> MemoryInfo {
    let layout = mm::image_layout();
    let image = PhysRange {
        start: mm::virt_to_phys(layout.start),
        end: mm::virt_to_phys(layout.end),
    };
    let heap = mm::heap::init_after_image(image.end);

    let mut reserved: alloc::vec::Vec<PhysRange> = alloc::vec![
        // What the loader left below the image (on QEMU virt: the DTB,
        // in RAM's first MiB).
        PhysRange {
            start: keep_from.align_down(PAGE_SIZE),
            end: image.start
        },
        image,
        heap,
    ];
    let boot_image = boot_image.and_then(mm::boot_image);
    if let Some(img) = &boot_image {
        let start = mm::virt_to_phys(abi::VirtAddr::new(img.as_ptr() as u64));
        reserved.push(PhysRange {
            start,
            end: PhysAddr::new(start.get() + img.len() as u64),
        });
    }
    let boot_image = boot_image.and_then(|b| match bootimage::BootImage::parse(b) {
        Ok(i) => Some(i),
        Err(e) => {
            kprintln!("kernel: boot image invalid: {e:?}");
            None
        }
    });
    for r in platform.reserved.iter() {
        reserved.push(PhysRange {
            start: r.base,
            end: r.end().unwrap_or(PhysAddr::new(u64::MAX)),
        });
    }
    let mut ram = kernel_core::bounded::BoundedVec::default();
    let mut frames = 0;
    for region in platform.memory.iter() {
        let _ = ram.push(*region);
        let end = region.end().unwrap_or(PhysAddr::new(u64::MAX));
        // Until mm::kernel_map is installed the linear map covers only the
        // RAM the boot tables map (1 GiB at 0x4000_0000); the rest is added
        // by `install_kernel_map`.
        let end = end.min(PhysAddr::new(arch::mmu::BOOT_LINEAR_RAM_END));
        if end > region.base {
            frames += mm::frames::add_ram(
                PhysRange {
                    start: region.base,
                    end,
                },
                &reserved,
            );
        }
    }
    MemoryInfo {
        ram,
        frames,
        image,
        heap,
        reserved,
        kernel_map: None,
        image_permissions: (0, 0, 0),
        boot_image,
    }
}

/// Replaces the boot tables with the kernel's final map, then gives the
/// frame allocator the RAM the boot tables could not reach.
fn install_kernel_map(platform: &Platform<'_>, mem: &mut MemoryInfo) {
    let pa_bits = arch::mmu::pa_bits();
    let map = match arch::mmu::kernel_map::build(platform, pa_bits) {
        Ok(m) => m,
        Err(e) => panic!("kernel map: {e}"),
    };
    arch::mmu::install_kernel_tables(map.root());
    mem.image_permissions = map.image_permissions();
    for region in platform.memory.iter() {
        let end = region.end().unwrap_or(PhysAddr::new(u64::MAX));
        let start = region
            .base
            .max(PhysAddr::new(arch::mmu::BOOT_LINEAR_RAM_END));
        if end > start {
            mem.frames += mm::frames::add_ram(PhysRange { start, end }, &mem.reserved);
        }
    }
    mem.kernel_map = Some(map);
}

/// What machine bring-up found, for the report.
pub struct SystemInfo {
    /// The interrupt controller and the timer.
    pub machine: arch::MachineInfo,
    /// The PCI functions, or why enumeration failed.
    pub pci: Option<Result<kernel_core::pci::Enumeration, kernel_core::pci::PciError>>,
    /// The SMMU's ID registers.
    pub smmu: Option<smmu_probe::Probe>,
}

/// Interrupt controller and timer (the architecture's), PCI and the SMMU's
/// identity.
fn bring_up_machine(platform: &Platform<'_>) -> SystemInfo {
    let machine = arch::bring_up(platform);
    let pci = platform.pci.as_ref().map(pci::bring_up);
    let smmu = platform.smmu.as_ref().map(smmu_probe::probe);
    SystemInfo { machine, pci, smmu }
}

/// Ends the run with `code` as the emulator's exit status.
pub fn exit(code: u32) -> ! {
    arch::exit(code)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    match info.location() {
        Some(l) => console::force_write_fmt(format_args!(
            "\nKERNEL PANIC at {}:{}: {}\n",
            l.file(),
            l.line(),
            info.message()
        )),
        None => console::force_write_fmt(format_args!("\nKERNEL PANIC: {}\n", info.message())),
    }
    exit(status::PANIC)
}
