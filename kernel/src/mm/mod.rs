//! Physical memory: the linear map (every physical address `pa` is visible
//! to the kernel at `LINEAR_BASE + pa`), the frame allocator and the kernel
//! heap. Owns which frames are free. Must never hand out a frame that holds
//! the kernel image, the device tree or a /memreserve/ range.

pub mod frames;
pub mod heap;

use abi::{PhysAddr, VirtAddr};

/// Start of the kernel's linear map of physical memory (TTBR1 half).
pub const LINEAR_BASE: u64 = 0xFFFF_0000_0000_0000;

/// The kernel-visible address of physical `pa`.
pub fn phys_to_virt(pa: PhysAddr) -> VirtAddr {
    VirtAddr::new(LINEAR_BASE + pa.get())
}

/// The physical address behind a linear-map (or kernel image) address.
pub fn virt_to_phys(va: VirtAddr) -> PhysAddr {
    PhysAddr::new(va.get() - LINEAR_BASE)
}

unsafe extern "C" {
    static __kernel_start: u8;
    static __text_end: u8;
    static __rodata_end: u8;
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
        end: a(&raw const __kernel_end),
    }
}

/// Borrows `len` bytes of physical memory that nobody writes for the rest
/// of the kernel's life (the device tree blob).
///
/// # Safety
/// `pa..pa+len` must be RAM that is mapped in the linear map and is never
/// written again (it is reserved from the frame allocator).
pub unsafe fn frozen_phys_bytes(pa: PhysAddr, len: usize) -> &'static [u8] {
    let p = phys_to_virt(pa).get() as *const u8;
    // SAFETY: the caller guarantees the range is mapped, immutable and
    // lives forever.
    unsafe { core::slice::from_raw_parts(p, len) }
}
