//! The physical frame allocator: 4 KiB frames from the RAM the device tree
//! reports, minus what is reserved (the DTB and the first MiB, the kernel
//! image, /memreserve/ ranges). Built on buddy_system_allocator's
//! `FrameAllocator`, with every frame's state kept in the frame ledger
//! (`kernel_core::ledger`: free, kernel, task, IOMMU pool, held for DMA)
//! and its pin table. Hands out frame numbers only; never touches memory.
//! Must never give the allocator back a frame the ledger says is pinned:
//! every frame returns through the ledger ([`free`], [`unpin`]).

use abi::{PAGE_SHIFT, PAGE_SIZE, PhysAddr};
use buddy_system_allocator::FrameAllocator;
use hermit_sync::InterruptSpinMutex;
use kernel_core::ledger::{Frame, FrameLedger, Owner, PinRefusal, Released, Totals, buddy_chunks};

mod after_dma_stop;
pub use after_dma_stop::release_after_dma_stop;

/// Free frames, in frame numbers (PA >> 12).
static FRAMES: InterruptSpinMutex<FrameAllocator<32>> =
    InterruptSpinMutex::new(FrameAllocator::new());
/// Every frame's state and the pins. Always taken after `FRAMES` when both
/// are held.
static LEDGER: InterruptSpinMutex<FrameLedger> = InterruptSpinMutex::new(FrameLedger::new());

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
    LEDGER.lock().add_free(added as u64);
    added
}

fn frame_number(pa: PhysAddr) -> usize {
    (pa.get() >> PAGE_SHIFT) as usize
}

/// Allocates `count` physically contiguous frames aligned to the next power
/// of two of `count` (the allocator takes that many: the ledger counts them
/// all as `owner`'s) ; `None` when memory is exhausted. The contents are
/// whatever was there: callers that need zeroes use [`alloc_zeroed`].
pub fn alloc(count: usize, owner: Owner) -> Option<PhysAddr> {
    let mut frames = FRAMES.lock();
    let f = frames.alloc(count)?;
    let size = count.next_power_of_two() as u64;
    LEDGER
        .lock()
        .allocated(Frame(f as u64), size, count as u64, owner)
        .expect("the allocator handed out frames the ledger holds");
    Some(PhysAddr::new((f as u64) << PAGE_SHIFT))
}

/// Like [`alloc`], with the frames zeroed through the linear map.
pub fn alloc_zeroed(count: usize, owner: Owner) -> Option<PhysAddr> {
    let pa = alloc(count, owner)?;
    super::zero_phys(pa, count * PAGE_SIZE as usize);
    Some(pa)
}

fn give_back(frames: &mut FrameAllocator<32>, first: Frame, count: u64) {
    for (f, n) in buddy_chunks(first, count) {
        frames.dealloc(f.0 as usize, n as usize);
    }
}

/// The owner releases the run [`alloc`] returned at `pa`. The caller
/// guarantees no CPU mapping still reaches it and every TLB that cached
/// one was invalidated. Its unpinned frames return to the allocator; its
/// pinned frames become held for DMA (freed by the last [`unpin`]); an
/// IOMMU pool run is kept (the SMMU may still walk it).
pub fn free(pa: PhysAddr) -> Released {
    let mut frames = FRAMES.lock();
    let first = Frame::of(pa).expect("runs start on a frame");
    let released = LEDGER
        .lock()
        .release(first)
        .expect("freeing a run the allocator handed out");
    for &(f, n) in &released.freed {
        give_back(&mut frames, f, n);
    }
    released
}

/// Pins a batch of frames for the IOMMU server: they are task DMA memory
/// and stay out of the allocator until unpinned. All or nothing.
pub fn pin(batch: &[PhysAddr]) -> Result<(), (PhysAddr, PinRefusal)> {
    LEDGER.lock().pin(batch)
}

/// Unpins a batch. All or nothing. Held frames whose last pin went return
/// to the allocator; returns how many.
pub fn unpin(batch: &[PhysAddr]) -> Result<usize, (PhysAddr, PinRefusal)> {
    let mut frames = FRAMES.lock();
    let freed = LEDGER.lock().unpin(batch)?;
    for &f in &freed {
        give_back(&mut frames, f, 1);
    }
    Ok(freed.len())
}

/// The frames in each state, recomputed and checked (`Err` says what
/// disagrees).
pub fn audit() -> Result<Totals, &'static str> {
    LEDGER.lock().audit()
}

/// The ledger's running totals (not recounted).
pub fn totals() -> Totals {
    LEDGER.lock().totals()
}

/// Frames pinned now.
pub fn pinned() -> u64 {
    LEDGER.lock().pinned_frames()
}

/// (free, total) frames, for reports.
pub fn stats() -> (usize, usize) {
    let t = LEDGER.lock().totals();
    (t.free as usize, t.boot as usize)
}
