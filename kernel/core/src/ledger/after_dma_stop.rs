//! What the frame ledger may release once the kernel has stopped all DMA
//! (the SMMU in global abort with SMMUEN = 0, bus mastering off on every
//! PCI function) after the IOMMU server died: the dead server's pool
//! (stream table, CDs, page tables, queues) and its pins, which no device
//! can reach any more. The kernel calls these only after that stop
//! succeeded; they must never be used while an SMMU may still walk a pool
//! or a device may still reach a pinned frame.

use alloc::vec::Vec;

use super::{Frame, FrameLedger, Owner};

/// What [`FrameLedger::release_after_dma_stop`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AfterDmaStop {
    /// Runs (first frame, count) now free: the kernel returns them to the
    /// allocator (see [`super::buddy_chunks`]).
    pub freed: Vec<(Frame, u64)>,
    /// Frames of dead servers' pools among them.
    pub pool_frames: u64,
    /// Pins dropped (distinct frames).
    pub pins_dropped: u64,
    /// Frames held for DMA among the freed ones (their last pin went).
    pub held_freed: u64,
}

impl FrameLedger {
    /// With all DMA stopped: every pool run whose owner is dead (kept by
    /// [`FrameLedger::release`]) becomes free, and every pin is dropped
    /// (only the IOMMU server pins, and the mappings it pinned for are
    /// gone with its SMMU state), so frames held for DMA become free too.
    /// Pool runs of a live owner stay as they are.
    pub fn release_after_dma_stop(&mut self) -> AfterDmaStop {
        let mut out = AfterDmaStop::default();
        let orphans: Vec<(u64, u64)> = self
            .runs
            .iter()
            .filter(|(_, r)| matches!(r.owner, Owner::Pool { .. }) && r.orphaned)
            .map(|(&s, r)| (s, r.frames))
            .collect();
        for (start, frames) in orphans {
            self.runs.remove(&start);
            self.totals.pool -= frames;
            self.totals.free += frames;
            out.pool_frames += frames;
            out.freed.push((Frame(start), frames));
        }
        out.pins_dropped = self.pins.len() as u64;
        self.pins.clear();
        let held = core::mem::take(&mut self.held);
        out.held_freed = held.len() as u64;
        self.totals.held -= out.held_freed;
        self.totals.free += out.held_freed;
        out.freed.extend(held.into_iter().map(|f| (Frame(f), 1)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    fn ledger(frames: u64) -> FrameLedger {
        let mut l = FrameLedger::new();
        l.add_free(frames);
        l
    }

    #[test]
    fn a_dead_servers_pool_and_held_frames_are_freed_only_by_the_stop() {
        let mut l = ledger(64);
        let dma = Owner::Task { task: 2, dma: true };
        l.allocated(Frame(0), 16, 16, Owner::Pool { task: 0 })
            .unwrap();
        l.allocated(Frame(16), 4, 4, dma).unwrap();
        l.allocated(Frame(20), 4, 4, dma).unwrap();
        l.pin(&[Frame(17).addr(), Frame(21).addr()]).unwrap();
        // The server dies: its pool is kept; a client dies: its pinned
        // frame is held.
        assert_eq!(l.release(Frame(0)).unwrap().pool_kept, 16);
        assert_eq!(l.release(Frame(16)).unwrap().held, 1);
        assert_eq!(l.totals().pool, 16);
        assert_eq!(l.totals().held, 1);
        let out = l.release_after_dma_stop();
        assert_eq!(out.pool_frames, 16);
        assert_eq!(out.pins_dropped, 2);
        assert_eq!(out.held_freed, 1);
        assert_eq!(out.freed, vec![(Frame(0), 16), (Frame(17), 1)]);
        let t = l.audit().unwrap();
        assert_eq!((t.pool, t.held, t.task), (0, 0, 4));
        assert_eq!(t.free, 60);
        // The live client's frame is no longer pinned: its release frees it.
        assert_eq!(l.release(Frame(20)).unwrap().held, 0);
        assert_eq!(l.audit().unwrap().free, 64);
    }

    #[test]
    fn a_live_servers_pool_stays() {
        let mut l = ledger(64);
        l.allocated(Frame(0), 16, 16, Owner::Pool { task: 0 })
            .unwrap();
        let out = l.release_after_dma_stop();
        assert_eq!(out, AfterDmaStop::default());
        assert_eq!(l.audit().unwrap().pool, 16);
    }
}
