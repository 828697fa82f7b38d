//! The kernel heap: buddy_system_allocator's `Heap` over one physically
//! contiguous region taken from RAM at boot, behind an interrupt-safe lock.
//! It is the global allocator of the kernel (the frame allocator's own
//! bookkeeping lives here). Must never be used from a context that could
//! already hold the heap lock.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use abi::PhysAddr;
use buddy_system_allocator::Heap;
use hermit_sync::InterruptSpinMutex;

use super::frames::PhysRange;

/// Kernel heap size, taken from RAM right after the kernel image.
pub const HEAP_SIZE: usize = 16 << 20;

struct KernelHeap(InterruptSpinMutex<Heap<32>>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(InterruptSpinMutex::new(Heap::empty()));

/// Gives the heap the HEAP_SIZE bytes of RAM right after the kernel image
/// (which ends at `image_end`), once; returns that range, which the caller
/// must reserve from the frame allocator.
pub fn init_after_image(image_end: PhysAddr) -> PhysRange {
    static DONE: AtomicBool = AtomicBool::new(false);
    assert!(!DONE.swap(true, Ordering::AcqRel), "heap initialised twice");
    let start = image_end
        .align_up(abi::PAGE_SIZE)
        .expect("image below the top of memory");
    let end = PhysAddr::new(start.get() + HEAP_SIZE as u64);
    assert!(
        end.get() <= crate::arch::mmu::BOOT_LINEAR_RAM_END,
        "heap beyond the boot-mapped RAM"
    );
    let va = super::phys_to_virt(start).get() as usize;
    // SAFETY: start..end is RAM right after the kernel image, inside the
    // boot tables' RAM block (checked); this runs once (checked), before
    // the frame allocator exists, and the caller reserves the range from it,
    // so the heap owns it exclusively forever.
    unsafe { HEAP.0.lock().init(va, HEAP_SIZE) };
    PhysRange { start, end }
}

/// Bytes allocated now, for reports.
pub fn used() -> usize {
    HEAP.0.lock().stats_alloc_actual()
}

// SAFETY: `Heap` returns blocks that fit the layout and never overlap while
// allocated; the lock makes every access exclusive, including from IRQ
// context (interrupts are masked while it is held).
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .alloc(layout)
            .map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the caller passes a block this allocator returned with
            // the same layout (GlobalAlloc's contract).
            unsafe { self.0.lock().dealloc(p, layout) };
        }
    }
}
