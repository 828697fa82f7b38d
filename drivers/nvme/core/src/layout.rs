//! The driver's DMA memory plan: where the admin queues, the I/O queue
//! pair, the identify page and the per-slot PRP list pages sit in the one
//! buffer it allocates and maps once. Every region starts on a page (queue
//! bases must be page aligned [NVMe-2.0 §3.1.3.9, §5.4, §5.5]). Owns
//! offsets only; never allocates.

use crate::QueueId;
use crate::cmd::{CQE_BYTES, SQE_BYTES};

/// The memory page size the driver configures (CC.MPS = 0) and the DMA
/// granule.
pub const PAGE: u64 = abi::PAGE_SIZE;
/// Entries in each admin queue (one admin command runs at a time).
pub const ADMIN_ENTRIES: u16 = 32;
/// Largest queue depth this driver supports (CIDs keep 4 generation bits
/// and the list pages stay within a 4 MiB buffer).
pub const MAX_QUEUE_DEPTH: u16 = 1024;
/// The I/O queue pair's identifier.
pub const IO_QUEUE: QueueId = QueueId(1);

/// Byte offsets into the driver's DMA buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Slots (commands in flight on the I/O queue).
    pub queue_depth: u16,
    /// Entries of each I/O queue (`queue_depth + 1`: a full ring keeps one
    /// entry empty).
    pub io_entries: u16,
    /// Admin submission queue.
    pub admin_sq: u64,
    /// Admin completion queue.
    pub admin_cq: u64,
    /// I/O submission queue.
    pub io_sq: u64,
    /// I/O completion queue.
    pub io_cq: u64,
    /// The page Identify writes into.
    pub identify: u64,
    /// The first PRP list page (slot 0); one page per slot follows.
    pub prp_lists: u64,
    /// Total size in pages.
    pub pages: u64,
}

impl Layout {
    /// The plan for `queue_depth` slots (1..=[`MAX_QUEUE_DEPTH`]).
    pub fn new(queue_depth: u16) -> Option<Layout> {
        if queue_depth == 0 || queue_depth > MAX_QUEUE_DEPTH {
            return None;
        }
        let io_entries = queue_depth + 1;
        let pages_for = |bytes: u64| bytes.div_ceil(PAGE);
        let mut at = 0;
        let mut take = |pages: u64| {
            let start = at;
            at += pages * PAGE;
            start
        };
        let admin_sq = take(pages_for(u64::from(ADMIN_ENTRIES) * SQE_BYTES));
        let admin_cq = take(pages_for(u64::from(ADMIN_ENTRIES) * CQE_BYTES));
        let io_sq = take(pages_for(u64::from(io_entries) * SQE_BYTES));
        let io_cq = take(pages_for(u64::from(io_entries) * CQE_BYTES));
        let identify = take(1);
        let prp_lists = take(u64::from(queue_depth));
        Some(Layout {
            queue_depth,
            io_entries,
            admin_sq,
            admin_cq,
            io_sq,
            io_cq,
            identify,
            prp_lists,
            pages: at / PAGE,
        })
    }

    /// Offset of the PRP list page of `slot`.
    pub fn prp_list(&self, slot: u16) -> Option<u64> {
        (slot < self.queue_depth).then(|| self.prp_lists + u64::from(slot) * PAGE)
    }

    /// Offset of submission entry `index` of the queue at `base`.
    pub fn sqe(base: u64, index: u16) -> u64 {
        base + u64::from(index) * SQE_BYTES
    }

    /// Offset of completion entry `index` of the queue at `base`.
    pub fn cqe(base: u64, index: u16) -> u64 {
        base + u64::from(index) * CQE_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_page_aligned_and_disjoint() {
        for qd in [1, 63, 64, 255, 256, 1024] {
            let l = Layout::new(qd).unwrap();
            let mut regions = [
                (l.admin_sq, u64::from(ADMIN_ENTRIES) * SQE_BYTES),
                (l.admin_cq, u64::from(ADMIN_ENTRIES) * CQE_BYTES),
                (l.io_sq, u64::from(l.io_entries) * SQE_BYTES),
                (l.io_cq, u64::from(l.io_entries) * CQE_BYTES),
                (l.identify, PAGE),
                (l.prp_lists, u64::from(qd) * PAGE),
            ];
            regions.sort();
            for w in regions.windows(2) {
                assert!(w[0].0 + w[0].1 <= w[1].0);
            }
            for (start, _) in regions {
                assert_eq!(start % PAGE, 0);
            }
            let last = regions[regions.len() - 1];
            assert!(last.0 + last.1 <= l.pages * PAGE);
            assert_eq!(l.prp_list(qd - 1).unwrap() + PAGE, l.pages * PAGE);
            assert_eq!(l.prp_list(qd), None);
        }
        assert_eq!(Layout::new(64).unwrap().pages, 70);
        assert!(Layout::new(0).is_none());
        assert!(Layout::new(MAX_QUEUE_DEPTH + 1).is_none());
        assert_eq!(Layout::sqe(0x1000, 2), 0x1080);
        assert_eq!(Layout::cqe(0x2000, 2), 0x2020);
    }
}
