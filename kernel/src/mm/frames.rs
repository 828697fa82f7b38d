//! The physical frame allocator: 4 KiB frames from the RAM the device tree
//! reports, minus what is reserved (the DTB and the first MiB, the kernel
//! image, /memreserve/ ranges). Built on buddy_system_allocator's
//! `FrameAllocator`. Hands out frame numbers only; never touches memory.

use abi::{PAGE_SHIFT, PAGE_SIZE, PhysAddr};
use buddy_system_allocator::FrameAllocator;
use hermit_sync::InterruptSpinMutex;

/// Free frames, in frame numbers (PA >> 12).
static FRAMES: InterruptSpinMutex<FrameAllocator<32>> =
    InterruptSpinMutex::new(FrameAllocator::new());
/// (frames handed to the allocator at boot, frames allocated now).
static COUNTS: InterruptSpinMutex<(usize, usize)> = InterruptSpinMutex::new((0, 0));

/// A half-open physical range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    /// First byte.
    pub start: PhysAddr,
    /// One past the last byte.
    pub end: PhysAddr,
}

/// Gives the allocator every whole frame of `ram` not covered by any of
/// `reserved`. Returns the number of frames added.
pub fn add_ram(ram: PhysRange, reserved: &[PhysRange]) -> usize {
    let mut cursor = ram.start.align_up(PAGE_SIZE).unwrap_or(ram.end);
    let end = ram.end.align_down(PAGE_SIZE);
    let mut added = 0;
    while cursor < end {
        // The next reserved range that starts at or after `cursor`, or that
        // covers it.
        let mut next_stop = end;
        let mut skip_to = None;
        for r in reserved {
            if r.start <= cursor && cursor < r.end {
                skip_to = Some(r.end.align_up(PAGE_SIZE).unwrap_or(end));
                break;
            }
            if r.start > cursor && r.start < next_stop {
                next_stop = r.start.align_down(PAGE_SIZE);
            }
        }
        if let Some(s) = skip_to {
            cursor = s;
            continue;
        }
        if next_stop > cursor {
            let (a, b) = (frame_number(cursor), frame_number(next_stop));
            FRAMES.lock().add_frame(a, b);
            added += b - a;
        }
        cursor = next_stop;
    }
    COUNTS.lock().0 += added;
    added
}

fn frame_number(pa: PhysAddr) -> usize {
    (pa.get() >> PAGE_SHIFT) as usize
}

/// Allocates `count` physically contiguous frames aligned to the next power
/// of two of `count`; `None` when memory is exhausted. The contents are
/// whatever was there: callers that need zeroes use [`alloc_zeroed`].
pub fn alloc(count: usize) -> Option<PhysAddr> {
    let f = FRAMES.lock().alloc(count)?;
    COUNTS.lock().1 += count;
    Some(PhysAddr::new((f as u64) << PAGE_SHIFT))
}

/// Like [`alloc`], with the frames zeroed through the linear map.
pub fn alloc_zeroed(count: usize) -> Option<PhysAddr> {
    let pa = alloc(count)?;
    super::zero_phys(pa, count * PAGE_SIZE as usize);
    Some(pa)
}

/// Returns frames from [`alloc`]. The caller guarantees no mapping (CPU or
/// SMMU) still reaches them and every TLB that cached one was invalidated.
pub fn free(pa: PhysAddr, count: usize) {
    FRAMES.lock().dealloc(frame_number(pa), count);
    COUNTS.lock().1 -= count;
}

/// (free, total) frames, for reports.
pub fn stats() -> (usize, usize) {
    let (total, used) = *COUNTS.lock();
    (total - used, total)
}
