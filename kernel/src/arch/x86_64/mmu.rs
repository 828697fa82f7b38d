//! x86_64 address-space constants and the register writes that install
//! page tables: the linear map's and the image's bases, the memory types,
//! CR3 with a PCID for task spaces. Owns no tables itself: `kernel_map`
//! builds the kernel's with the `x86_64` crate. Must never change a running
//! task's mappings without the matching TLB maintenance.

use abi::{Asid, PhysAddr, VirtAddr};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;

/// Start of the linear map of physical memory (PML4 slot 256): physical
/// `pa` is visible at `LINEAR_BASE + pa`.
pub const LINEAR_BASE: u64 = 0xFFFF_8000_0000_0000;
/// Where the image is linked: `KERNEL_BASE + physical` (the top 2 GiB, the
/// kernel code model's range; linker.ld repeats it).
pub const KERNEL_BASE: u64 = 0xFFFF_FFFF_8000_0000;
/// Start of the RAM the boot tables map (the first GiB, by 2 MiB pages).
pub const BOOT_LINEAR_RAM_START: u64 = 0;
/// End of the RAM the boot tables map.
pub const BOOT_LINEAR_RAM_END: u64 = 0x4000_0000;

/// The memory type for RAM (write-back: PAT entry 0).
pub const MEM_NORMAL: u8 = 0;
/// The memory type for device registers (uncacheable: PAT entry 3).
pub const MEM_DEVICE: u8 = 3;

/// The physical address behind a kernel address: the image's link
/// addresses or the linear map.
pub fn virt_to_phys(va: VirtAddr) -> PhysAddr {
    if va.get() >= KERNEL_BASE {
        PhysAddr::new(va.get() - KERNEL_BASE)
    } else {
        PhysAddr::new(va.get() - LINEAR_BASE)
    }
}

/// Orders page-table writes before a descriptor that links them: x86
/// stores are seen in order by the walker, so only the compiler is held.
pub fn table_barrier() {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// The CPU's physical address width, capped at 48 bits.
pub fn pa_bits() -> u8 {
    super::cpu::Features::read().pa_bits.min(48)
}

/// Switches to the kernel's final tables at `root`: they map the image at
/// the same addresses and the linear map, so the switch is one CR3 write
/// (which also flushes every non-global translation, the boot identity
/// map's included).
pub fn install_kernel_tables(root: PhysAddr) {
    let frame = PhysFrame::containing_address(x86_64::PhysAddr::new(root.get()));
    // SAFETY: `root` is a complete PML4 built by kernel_map that maps the
    // whole image (code, data, the stack in use) at its link addresses and
    // all RAM in the linear map, so execution continues unchanged.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// Installs a task's address space: CR3 = root | PCID. Never called on
/// x86_64 yet (no tasks: `can_run_tasks`).
pub fn set_user_space(root: PhysAddr, tag: Asid) {
    let _ = (root, tag);
    unreachable!("x86_64 runs no tasks yet (can_run_tasks)")
}

/// Drops every TLB entry tagged `tag`. Never called on x86_64 yet.
pub fn flush_tag(tag: Asid) {
    let _ = tag;
    unreachable!("x86_64 runs no tasks yet (can_run_tasks)")
}
