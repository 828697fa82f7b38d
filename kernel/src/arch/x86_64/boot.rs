//! Boot on x86_64: the PVH entry assembly (boot.S, the Xen PHYS32_ENTRY
//! note QEMU's `-kernel` loader looks for), the trap stubs (vectors.S),
//! and reading the `hvm_start_info` the loader left: the memory map, the
//! command line, the modules and the ACPI RSDP. Owns nothing after
//! `kernel_entry` has called `kmain`; must never be re-entered.

use abi::PhysAddr;
use kernel_core::BoundedVec;
use kernel_core::dt::{MAX_MEMORY_REGIONS, Platform, Region};

core::arch::global_asm!(include_str!("boot.S"), options(att_syntax));
core::arch::global_asm!(include_str!("vectors.S"), options(att_syntax));

const _: () = assert!(
    super::mmu::KERNEL_BASE == 0xFFFF_FFFF_8000_0000,
    "linker.ld and boot.S repeat KERNEL_BASE"
);

/// `hvm_start_info.magic` [xen/include/public/arch-x86/hvm/start_info.h].
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Memory-map entry type of usable RAM (E820 type 1).
const E820_RAM: u32 = 1;
/// Longest command line read.
const MAX_CMDLINE: usize = 1024;

/// What the PVH loader handed over, read out of the start-info page.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// RAM regions from the memory map.
    pub(super) ram: BoundedVec<Region, MAX_MEMORY_REGIONS>,
    /// The command line.
    pub(super) cmdline: Option<&'static str>,
    /// The ACPI RSDP (physical), 0 if none.
    pub(super) rsdp: u64,
    /// The first module (QEMU's `-initrd`), physical start and size.
    pub(super) module: Option<(u64, u64)>,
    /// The start-info structure's version.
    pub(super) version: u32,
}

impl BootInfo {
    /// What below the kernel image the kernel keeps from the frame
    /// allocator: everything (the real-mode area, the start-info page, the
    /// BIOS and option ROM data all live in the first MiB).
    pub fn keep_below_image(&self) -> PhysAddr {
        PhysAddr::new(0)
    }

    /// Reads the start-info structure at `pa`, if its magic is right.
    fn read(pa: u64) -> Option<Self> {
        let header: [u8; 56] = read_phys(pa)?;
        let u32_at = |o: usize| u32::from_le_bytes(header[o..o + 4].try_into().unwrap_or_default());
        let u64_at = |o: usize| u64::from_le_bytes(header[o..o + 8].try_into().unwrap_or_default());
        if u32_at(0) != START_INFO_MAGIC {
            return None;
        }
        let version = u32_at(4);
        let (nr_modules, modlist) = (u32_at(12), u64_at(16));
        let (cmdline_pa, rsdp) = (u64_at(24), u64_at(32));
        let mut ram = BoundedVec::new();
        if version >= 1 {
            let (memmap, entries) = (u64_at(40), u32_at(48));
            for i in 0..u64::from(entries.min(128)) {
                let Some(e) = read_phys::<24>(memmap + 24 * i) else {
                    break;
                };
                let base = u64::from_le_bytes(e[0..8].try_into().unwrap_or_default());
                let size = u64::from_le_bytes(e[8..16].try_into().unwrap_or_default());
                let kind = u32::from_le_bytes(e[16..20].try_into().unwrap_or_default());
                if kind == E820_RAM && size > 0 {
                    let _ = ram.push(Region {
                        base: PhysAddr::new(base),
                        size,
                    });
                }
            }
        }
        let module = (nr_modules > 0)
            .then(|| read_phys::<16>(modlist))
            .flatten()
            .map(|m| {
                (
                    u64::from_le_bytes(m[0..8].try_into().unwrap_or_default()),
                    u64::from_le_bytes(m[8..16].try_into().unwrap_or_default()),
                )
            });
        Some(Self {
            ram,
            cmdline: c_string(cmdline_pa),
            rsdp,
            module,
            version,
        })
    }
}

/// The platform as far as x86_64 describes it so far: RAM, the command
/// line and the PCI host of the MCFG's first segment-0 ECAM region
/// (`Ecam::pci_host`: the firmware's BARs stand); the ACPI tables are read
/// while the boot tables still map them. No device tree.
pub fn discover(boot: &BootInfo) -> Option<Platform<'static>> {
    let pci = match super::acpi::read(boot.rsdp) {
        Ok(info) => info
            .summary
            .ecam
            .iter()
            .find(|e| e.segment == 0)
            .map(|e| e.pci_host()),
        Err(_) => None,
    };
    Some(Platform {
        memory: boot.ram,
        reserved: BoundedVec::new(),
        bootargs: boot.cmdline,
        uart: None,
        gic: None,
        timer: None,
        psci: None,
        smmu: None,
        pci,
    })
}

/// `N` bytes of physical memory the boot tables map (the first GiB, which
/// holds everything the PVH loader leaves), copied out.
fn read_phys<const N: usize>(pa: u64) -> Option<[u8; N]> {
    let end = pa.checked_add(N as u64)?;
    if pa == 0 || end > super::mmu::BOOT_LINEAR_RAM_END {
        return None;
    }
    let p = crate::mm::phys_to_virt(PhysAddr::new(pa)).get() as *const [u8; N];
    // SAFETY: pa..pa+N lies in the first GiB, which the boot tables map in
    // the linear map; the loader's structures there are not written by
    // anyone after boot. An unaligned read of a byte array is fine.
    Some(unsafe { core::ptr::read_unaligned(p) })
}

/// The NUL-terminated UTF-8 string at `pa` (at most [`MAX_CMDLINE`]
/// bytes), borrowed for the kernel's lifetime.
fn c_string(pa: u64) -> Option<&'static str> {
    if pa == 0 || pa + MAX_CMDLINE as u64 > super::mmu::BOOT_LINEAR_RAM_END {
        return None;
    }
    let p = crate::mm::phys_to_virt(PhysAddr::new(pa)).get() as *const u8;
    // SAFETY: as in `read_phys`: inside the boot-mapped first GiB, in
    // memory the kernel keeps from the frame allocator (below the image)
    // and never writes.
    let bytes = unsafe { core::slice::from_raw_parts(p, MAX_CMDLINE) };
    let len = bytes.iter().position(|&b| b == 0)?;
    core::str::from_utf8(&bytes[..len]).ok()
}

/// Called by boot.S in long mode, in the high half, on the boot stack, with
/// the physical address of the `hvm_start_info`.
#[unsafe(no_mangle)]
extern "C" fn kernel_entry(start_info: u64) -> ! {
    super::cpu::init();
    super::timer::calibrate();
    let Some(boot) = BootInfo::read(start_info) else {
        super::exit(crate::status::NO_DEVICE_TREE)
    };
    crate::kmain(&boot)
}

/// An address no table maps: in the lower half of the kernel's PML4 slots,
/// far above the linear map's RAM.
pub const UNMAPPED_KERNEL_ADDR: u64 = 0xFFFF_C000_DEAD_0000;

/// Deliberately reads an unmapped kernel address, for the fault-report
/// self-test. Never returns: the page fault is fatal in the kernel.
pub fn provoke_kernel_fault(addr: u64) -> ! {
    // SAFETY: the read faults before any value is produced (the caller
    // passes an address no page table maps); the fault handler reports and
    // ends the run instead of returning here.
    let _ = unsafe { core::ptr::read_volatile(addr as *const u64) };
    unreachable!("read of unmapped {addr:#x} did not fault");
}
