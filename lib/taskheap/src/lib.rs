//! The task heap: a buddy allocator (`buddy_system_allocator`) over the
//! task's 1 MiB, with a cache of freed small blocks in front of it.
//!
//! A block of at most [`MAX_CACHED`] bytes is always taken from the buddy
//! allocator as a whole size class (a power of two from 16 bytes, aligned
//! to its size), and given back to a per-class free list instead of to the
//! buddy allocator, up to [`KEEP_BYTES`] per class. The next allocation of
//! that class pops it: no split, no search, and no buddy merge, whose walk
//! of a free list (through the free blocks themselves) touches memory all
//! over the heap. The I/O path allocates and frees the same few small
//! sizes on every request. When the buddy allocator cannot serve a
//! request, every cached block goes back to it and the request is tried
//! once more, so the cache never makes an allocation fail.
//!
//! It must never hand out a block twice, nor give the buddy allocator a
//! block with a layout other than the one it was taken with.
#![no_std]

#[cfg(test)]
extern crate std;

#[cfg(test)]
mod tests;

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;

use buddy_system_allocator::Heap;
use hermit_sync::SpinMutex;

/// The smallest class: 16 bytes.
const MIN_SHIFT: u32 = 4;
/// Classes 16, 32, ... 2,048 bytes.
const CLASSES: usize = 8;
/// The largest block the cache holds.
pub const MAX_CACHED: usize = 1 << (MIN_SHIFT as usize + CLASSES - 1);
/// Freed bytes each class keeps; beyond that, blocks go back to the buddy
/// allocator.
pub const KEEP_BYTES: usize = 16 * 1024;

/// A cached block's first word: the next cached block of its class.
struct Free {
    next: Option<NonNull<Free>>,
}

struct Inner {
    buddy: Heap<32>,
    /// Per class: the last freed block (a list through the blocks).
    free: [Option<NonNull<Free>>; CLASSES],
    /// Per class: how many blocks its list holds.
    kept: [usize; CLASSES],
}

/// The allocator (see the crate documentation).
pub struct TaskHeap(SpinMutex<Inner>);

// SAFETY: the raw pointers in `Inner` name blocks of the heap only the
// allocator touches, always under its lock.
unsafe impl Send for Inner {}

/// The class of a layout the cache serves, if it does.
fn class_of(l: Layout) -> Option<usize> {
    let size = l.size().max(l.align()).max(1 << MIN_SHIFT);
    if size > MAX_CACHED {
        return None;
    }
    Some((size.next_power_of_two().trailing_zeros() - MIN_SHIFT) as usize)
}

/// The layout every block of class `c` is taken from the buddy allocator
/// with (and given back with).
fn class_layout(c: usize) -> Layout {
    let size = 1usize << (c as u32 + MIN_SHIFT);
    // A power of two no larger than MAX_CACHED: always a valid layout.
    Layout::from_size_align(size, size).unwrap_or(Layout::new::<u128>())
}

impl Inner {
    /// From the buddy allocator; on failure, after giving it every cached
    /// block back, once more.
    fn buddy_alloc(&mut self, l: Layout) -> *mut u8 {
        if let Ok(p) = self.buddy.alloc(l) {
            return p.as_ptr();
        }
        if self.kept.iter().all(|&k| k == 0) {
            return core::ptr::null_mut();
        }
        for c in 0..CLASSES {
            while let Some(b) = self.free[c] {
                // SAFETY: `b` is a cached block of class `c`: dealloc wrote a
                // `Free` at its start, and nothing else has touched it.
                self.free[c] = unsafe { b.as_ref().next };
                // SAFETY: the buddy allocator gave `b` out with
                // `class_layout(c)` and has not had it back since.
                unsafe { self.buddy.dealloc(b.cast(), class_layout(c)) };
            }
            self.kept[c] = 0;
        }
        self.buddy
            .alloc(l)
            .map_or(core::ptr::null_mut(), NonNull::as_ptr)
    }
}

impl Default for TaskHeap {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskHeap {
    /// An empty heap (give it memory with [`TaskHeap::init`]).
    pub const fn new() -> Self {
        Self(SpinMutex::new(Inner {
            buddy: Heap::new(),
            free: [None; CLASSES],
            kept: [0; CLASSES],
        }))
    }

    /// Gives the heap `[start, start + size)`.
    ///
    /// # Safety
    /// The range is memory nothing else uses, for as long as the heap lives,
    /// and is given once.
    pub unsafe fn init(&self, start: usize, size: usize) {
        // SAFETY: as this function's contract says.
        unsafe { self.0.lock().buddy.init(start, size) }
    }
}

// SAFETY: `alloc` returns a block of at least `layout.size()` bytes aligned
// to `layout.align()` that no one else holds (a cached block was freed by
// its last holder and is popped once; a class block is at least as large
// and as aligned as the layouts of its class), or null; `dealloc` gets
// back only what `alloc` gave, with the same layout, so the block's class
// is the one it was taken as.
unsafe impl GlobalAlloc for TaskHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut h = self.0.lock();
        let Some(c) = class_of(layout) else {
            return h.buddy_alloc(layout);
        };
        if let Some(b) = h.free[c] {
            // SAFETY: a cached block of class `c` starts with the `Free`
            // dealloc wrote.
            h.free[c] = unsafe { b.as_ref().next };
            h.kept[c] -= 1;
            return b.as_ptr().cast();
        }
        h.buddy_alloc(class_layout(c))
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let mut h = self.0.lock();
        let Some(block) = NonNull::new(ptr) else {
            return;
        };
        let Some(c) = class_of(layout) else {
            // SAFETY: `alloc` took it from the buddy allocator with this
            // very layout.
            unsafe { h.buddy.dealloc(block, layout) };
            return;
        };
        if (h.kept[c] + 1) << (c as u32 + MIN_SHIFT) > KEEP_BYTES {
            // SAFETY: `alloc` took every block of class `c` from the buddy
            // allocator with `class_layout(c)`.
            unsafe { h.buddy.dealloc(block, class_layout(c)) };
            return;
        }
        let free = block.cast::<Free>();
        // SAFETY: the block is at least 16 bytes, aligned to at least 16,
        // and its holder gave it up: it is ours to write.
        unsafe { free.write(Free { next: h.free[c] }) };
        h.free[c] = Some(free);
        h.kept[c] += 1;
    }
}
