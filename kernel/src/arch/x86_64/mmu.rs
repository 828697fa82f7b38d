//! x86_64 address-space constants and the register writes that install
//! page tables: the linear map's and the image's bases, the memory types,
//! CR3 with a PCID for task spaces. Owns no tables itself: `kernel_map`
//! builds the kernel's with the `x86_64` crate. Must never change a running
//! task's mappings without the matching TLB maintenance.

use core::sync::atomic::{AtomicU64, Ordering};

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
    KERNEL_ROOT.store(root.get(), Ordering::Relaxed);
    // SAFETY: `root` is a complete PML4 built by kernel_map that maps the
    // whole image (code, data, the stack in use) at its link addresses and
    // all RAM in the linear map, so execution continues unchanged.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// Input bits of a task's tables: the lower half (PML4 slots 0..255).
pub const USER_VA_BITS: u8 = 47;

/// A walker's (VMSAv8-64) descriptor in x86-64 form.
pub const fn encode_table_entry(vmsa: u64) -> u64 {
    pgtable::x86::to_x86(vmsa)
}

/// An x86-64 entry in the walker's form (entries it did not write read as
/// invalid: the kernel half of a task's PML4).
pub const fn decode_table_entry(raw: u64) -> u64 {
    pgtable::x86::from_x86(raw)
}

/// The kernel's PML4 (physical), once installed.
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);

/// Copies the kernel's half of the PML4 (slots 256..511: the linear map
/// and the image) into a new task root, so traps and syscalls from the task
/// find the kernel mapped. Those entries carry no walker mark: the task's
/// `pgtable` never follows or frees them.
pub fn prepare_user_root(root: PhysAddr) {
    let kernel = KERNEL_ROOT.load(Ordering::Relaxed);
    assert!(kernel != 0, "kernel tables installed before any task");
    let src = crate::mm::phys_to_virt(PhysAddr::new(kernel)).get() as *const u64;
    let dst = crate::mm::phys_to_virt(root).get() as *mut u64;
    for i in 256..512 {
        // SAFETY: both are 512-entry table pages in RAM (the kernel's root,
        // and a root the caller just allocated and nothing uses yet),
        // reached through the linear map; i < 512.
        unsafe { core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i))) };
    }
}

/// Installs a task's address space: CR3 = root. The kernel's mappings are
/// global and survive; the task's are flushed with the old space's (no
/// PCID: QEMU 7.2's TCG `-cpu max` has none, so `tag` goes unused).
pub fn set_user_space(root: PhysAddr, tag: Asid) {
    let _ = tag;
    let frame = PhysFrame::containing_address(x86_64::PhysAddr::new(root.get()));
    // SAFETY: `root` is a task's PML4 whose upper half is the kernel's
    // (prepare_user_root), so the kernel stays mapped across the switch.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// Leaves no task's address space installed: CR3 = the kernel's own PML4
/// (which maps everything the kernel uses), so a task's root can be freed
/// and reused while the kernel runs. Without it the CPU would keep walking
/// the freed root, whose kernel half the next owner of the frame
/// overwrites (a restarted task's new root, zeroed, was the first).
pub fn clear_user_space() {
    let kernel = KERNEL_ROOT.load(Ordering::Relaxed);
    assert!(kernel != 0, "kernel tables installed before any task");
    let frame = PhysFrame::containing_address(x86_64::PhysAddr::new(kernel));
    // SAFETY: the kernel's PML4 maps the image, the stacks and the linear
    // map at the addresses in use (install_kernel_tables switched to it),
    // so execution continues unchanged.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// Drops every TLB entry of the space tagged `tag`: without PCIDs, a CR3
/// reload drops every non-global entry, the current space's included.
pub fn flush_tag(tag: Asid) {
    let _ = tag;
    let (frame, flags) = Cr3::read();
    // SAFETY: writing back the current CR3 changes no mapping; it only
    // drops the non-global TLB entries.
    unsafe { Cr3::write(frame, flags) };
}
