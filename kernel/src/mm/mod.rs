//! Physical memory: the linear map (every physical address `pa` is visible
//! to the kernel at `LINEAR_BASE + pa`), the frame allocator and the kernel
//! heap. Owns which frames are free. Must never hand out a frame that holds
//! the kernel image, the device tree or a /memreserve/ range.

pub mod frames;
pub mod heap;
pub mod user;

use abi::{PhysAddr, VirtAddr};

use crate::arch::mmu::{BOOT_LINEAR_RAM_END, BOOT_LINEAR_RAM_START, LINEAR_BASE};

/// The kernel-visible address of physical `pa`.
pub fn phys_to_virt(pa: PhysAddr) -> VirtAddr {
    VirtAddr::new(LINEAR_BASE + pa.get())
}

/// The physical address behind a linear-map (or kernel image) address.
pub fn virt_to_phys(va: VirtAddr) -> PhysAddr {
    crate::arch::mmu::virt_to_phys(va)
}

/// Page-table memory for the shared `pgtable` walker, reached through the
/// linear map; entries are stored in the architecture's format
/// (`arch::mmu::encode_table_entry`).
pub struct LinearTableMemory;

impl pgtable::TableMemory for LinearTableMemory {
    fn read(&self, table: PhysAddr, index: usize) -> u64 {
        assert!(index < 512, "descriptor index out of its table");
        let p = phys_to_virt(table).get() as *const u64;
        // SAFETY: `table` is a table page this kernel allocated from RAM
        // (linear-mapped); index < 512 keeps the read inside it.
        let raw = unsafe { core::ptr::read_volatile(p.add(index)) };
        crate::arch::mmu::decode_table_entry(raw)
    }

    fn write(&mut self, table: PhysAddr, index: usize, value: u64) {
        assert!(index < 512, "descriptor index out of its table");
        let p = phys_to_virt(table).get() as *mut u64;
        let raw = crate::arch::mmu::encode_table_entry(value);
        // SAFETY: as in `read`; one 64-bit store, as the walker requires.
        unsafe { core::ptr::write_volatile(p.add(index), raw) }
    }

    fn alloc_table(&mut self) -> Option<PhysAddr> {
        frames::alloc_zeroed(1, kernel_core::ledger::Owner::Kernel)
    }

    fn barrier(&mut self) {
        crate::arch::mmu::table_barrier();
    }
}

unsafe extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __boot_stack_bottom: u8;
    static __kernel_end: u8;
}

/// The kernel image's sections, as linear-map addresses.
#[derive(Clone, Copy, Debug)]
pub struct ImageLayout {
    /// Start of .text (and of the image).
    pub start: VirtAddr,
    /// End of .text: read-only data starts here.
    pub text_end: VirtAddr,
    /// End of read-only data: writable data starts here.
    pub rodata_end: VirtAddr,
    /// Lowest page of the kernel stack: left unmapped as a guard.
    pub stack_guard: VirtAddr,
    /// End of the image (including .bss and the boot stack).
    pub end: VirtAddr,
}

/// Where the linker put the image's sections.
pub fn image_layout() -> ImageLayout {
    let a = |p: *const u8| VirtAddr::new(p as u64);
    ImageLayout {
        start: a(&raw const __kernel_start),
        text_end: a(&raw const __text_end),
        rodata_end: a(&raw const __rodata_end),
        stack_guard: a(&raw const __boot_stack_bottom),
        end: a(&raw const __kernel_end),
    }
}

/// The boot image QEMU's loader put at `pa`, if its header is valid and it
/// lies in the RAM the boot tables map. The caller reserves its frames
/// before the frame allocator starts, so nothing writes them afterwards.
pub fn boot_image(pa: PhysAddr) -> Option<&'static [u8]> {
    const HEADER: usize = 64;
    if !(BOOT_LINEAR_RAM_START..BOOT_LINEAR_RAM_END).contains(&pa.get())
        || pa.get() + HEADER as u64 > BOOT_LINEAR_RAM_END
    {
        return None;
    }
    let p = phys_to_virt(pa).get() as *const u8;
    // SAFETY: pa..pa+64 is inside the boot-mapped RAM block (checked); the
    // loader wrote it before we started and nothing else writes it.
    let header = unsafe { core::slice::from_raw_parts(p, HEADER) };
    let len = bootimage::image::peek_total_len(header).ok()?;
    if pa.get() + len as u64 > BOOT_LINEAR_RAM_END {
        return None;
    }
    // SAFETY: as above, for the length the header states (checked to stay
    // inside the boot-mapped RAM); the caller reserves the range.
    Some(unsafe { core::slice::from_raw_parts(p, len) })
}

/// Zeroes `len` bytes of physical memory through the linear map. Private to
/// `mm`: only for frames the caller has just allocated.
fn zero_phys(pa: PhysAddr, len: usize) {
    let p = phys_to_virt(pa).get() as *mut u8;
    // SAFETY: callers pass frames they just allocated (exclusively theirs)
    // inside RAM, which the linear map covers.
    unsafe { core::ptr::write_bytes(p, 0, len) };
}

/// Calls `f` with every aligned 64-bit word of the kernel image between
/// `from` and `to` (linear-map addresses inside the image, 8-byte aligned).
pub fn for_each_image_word(from: VirtAddr, to: VirtAddr, mut f: impl FnMut(u64)) {
    let l = image_layout();
    assert!(
        l.start <= from && from <= to && to <= l.end,
        "range outside the kernel image"
    );
    let mut p = from.get();
    while p + 8 <= to.get() {
        // SAFETY: `p` lies inside the kernel image (checked), which is mapped
        // for the kernel's lifetime; text and rodata are never written by
        // the kernel, a volatile read of an aligned word is always valid.
        f(unsafe { core::ptr::read_volatile(p as *const u64) });
        p += 8;
    }
}

/// Deepest use of the kernel stack so far, in bytes: the boot code zeroes
/// the stack, so the lowest non-zero word above the guard page marks it.
pub fn stack_high_water() -> (usize, usize) {
    let l = image_layout();
    let bottom = l.stack_guard.get() + abi::PAGE_SIZE;
    let top = l.end.get();
    let mut p = bottom;
    while p < top {
        // SAFETY: `p` is an aligned word of the kernel stack region (above
        // its guard page, below the image end), mapped read-write for the
        // kernel's lifetime; reading a word below the current stack pointer
        // is a plain read of memory nothing else uses.
        if unsafe { core::ptr::read_volatile(p as *const u64) } != 0 {
            break;
        }
        p += 8;
    }
    ((top - p) as usize, (top - bottom) as usize)
}
