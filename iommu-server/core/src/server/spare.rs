//! Heap lists a request needs only for its length, kept from one request
//! to the next: [`Pool`], and the server's pools, [`Spares`]. A batched
//! `Map` or `Unmap` (a block driver's every request at a queue depth
//! above one) takes its scratch lists, its payload's lists and its reply's
//! bytes from here, and they come back when the request, the sync that
//! covered it, or the caller's send of the reply is done: a warm batch
//! allocates nothing.
//!
//! Owns no client state and decides nothing. It must never grow
//! infallibly, never hand one list out twice, and never keep more than
//! its bound: [`KEEP_BYTES`] per list, [`Pool::new`]'s count per pool
//! (46 KiB in all).

use alloc::vec::Vec;
use core::mem::size_of;

use abi::{Iova, PhysAddr};
use iommu_api::ApiError;

use super::map::Planned;
use super::state::FrameList;
use super::unmap::Span;

/// The largest list a pool keeps (a batch of 64 one-page buffers' frames
/// takes 512 bytes; its plan, 2,048).
pub(super) const KEEP_BYTES: usize = 2048;

/// Emptied lists of `T`, kept for reuse (see the module documentation).
pub(super) struct Pool<T> {
    lists: Vec<Vec<T>>,
    /// Most lists kept.
    keep: usize,
}

impl<T> Pool<T> {
    pub(super) const fn new(keep: usize) -> Self {
        Self {
            lists: Vec::new(),
            keep,
        }
    }

    /// An empty list with room for `n`: a kept one if one has the room (or,
    /// failing that, any kept one, grown), else a new one (for none, a new
    /// one, which takes no heap); `NoMemory` if the heap cannot hold it
    /// (never an infallible growth).
    pub(super) fn take(&mut self, n: usize) -> Result<Vec<T>, ApiError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let at = self.lists.iter().position(|v| v.capacity() >= n);
        let mut v = match at {
            Some(i) => self.lists.swap_remove(i),
            None => self.lists.pop().unwrap_or_default(),
        };
        v.clear();
        v.try_reserve_exact(n).map_err(|_| ApiError::NoMemory)?;
        Ok(v)
    }

    /// Keeps `v`'s memory for a later [`Pool::take`] (its items dropped
    /// now), unless it is empty, longer than [`KEEP_BYTES`], or the pool is
    /// full or cannot grow: then it is freed.
    #[inline]
    pub(super) fn put(&mut self, v: Vec<T>) {
        // Inline, so that the usual one-range request's empty lists cost
        // a test each.
        if v.capacity() > 0 {
            self.keep(v);
        }
    }

    fn keep(&mut self, mut v: Vec<T>) {
        let bytes = v.capacity().saturating_mul(size_of::<T>().max(1));
        if bytes > KEEP_BYTES || self.lists.len() >= self.keep || self.lists.try_reserve(1).is_err()
        {
            return;
        }
        v.clear();
        self.lists.push(v);
    }
}

/// The server's pools: one list each for a request's own scratch (one
/// request runs at a time), four or eight for what an unmap's payload
/// carries until its sync (a deferred window may hold several), two for
/// replies.
pub(super) struct Spares {
    /// A `Map`'s plan.
    pub(super) planned: Pool<Planned>,
    /// A `Map`'s ranges, sorted to find overlaps.
    pub(super) extents: Pool<(u64, u64)>,
    /// A `Map`'s frame lists, before they move into its records.
    pub(super) lists: Pool<FrameList>,
    /// A `Map`'s reply IOVAs.
    pub(super) iovas: Pool<Iova>,
    /// An `Unmap`'s mappings, sorted.
    pub(super) spans: Pool<Span>,
    /// Frames: a `Map`'s gathered for its pin, an `Unmap`'s to unpin and
    /// its tables to free after the sync.
    pub(super) frames: Pool<PhysAddr>,
    /// IOVA blocks: a `Map`'s, an `Unmap`'s to free after the sync.
    pub(super) blocks: Pool<(Iova, u64)>,
    /// An `Unmap`'s stale walk-cache keys.
    pub(super) keys: Pool<(u8, u64)>,
    /// Replies longer than inline, handed back by the caller.
    pub(super) replies: Pool<u8>,
}

impl Spares {
    pub(super) const fn new() -> Self {
        Self {
            planned: Pool::new(1),
            extents: Pool::new(1),
            lists: Pool::new(1),
            iovas: Pool::new(1),
            spans: Pool::new(1),
            frames: Pool::new(8),
            blocks: Pool::new(4),
            keys: Pool::new(4),
            replies: Pool::new(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Through any sequence of takes and puts: a taken list is empty
        /// with the room asked for, no buffer is out twice (nor out and
        /// kept at once), and the pool keeps at most its count of lists,
        /// none longer than KEEP_BYTES.
        #[test]
        fn never_hands_a_list_out_twice(ops in proptest::collection::vec((any::<bool>(), 0usize..400, any::<u8>()), 0..96)) {
            let mut p: Pool<u64> = Pool::new(3);
            let mut out: Vec<Vec<u64>> = Vec::new();
            for (take, n, fill) in ops {
                if take || out.is_empty() {
                    let v = p.take(n).unwrap();
                    prop_assert!(v.is_empty());
                    prop_assert!(v.capacity() >= n);
                    if v.capacity() > 0 {
                        prop_assert!(out.iter().all(|o| o.as_ptr() != v.as_ptr()));
                        prop_assert!(p.lists.iter().all(|k| k.as_ptr() != v.as_ptr()));
                    }
                    let mut v = v;
                    v.extend(core::iter::repeat_n(u64::from(fill), n));
                    out.push(v);
                } else {
                    let v = out.swap_remove(usize::from(fill) % out.len());
                    p.put(v);
                }
                prop_assert!(p.lists.len() <= 3);
                prop_assert!(p.lists.iter().all(|k| k.is_empty()
                    && k.capacity() > 0
                    && k.capacity() * size_of::<u64>() <= KEEP_BYTES));
            }
        }
    }

    #[test]
    fn a_kept_list_comes_back_empty_with_its_room() {
        let mut p: Pool<u64> = Pool::new(2);
        let mut v = p.take(8).unwrap();
        v.extend([1, 2, 3]);
        let at = v.as_ptr();
        p.put(v);
        let w = p.take(5).unwrap();
        assert!(w.is_empty());
        assert_eq!(w.as_ptr(), at, "the kept list is reused");
        assert!(w.capacity() >= 8);
    }

    #[test]
    fn take_prefers_a_list_with_room() {
        let mut p: Pool<u64> = Pool::new(4);
        let (small, big) = (p.take(2).unwrap(), p.take(32).unwrap());
        let big_at = big.as_ptr();
        p.put(big);
        p.put(small);
        let again = p.take(20).unwrap();
        assert_eq!(again.as_ptr(), big_at);
        // Only the small one is left: it grows.
        assert!(p.take(20).unwrap().capacity() >= 20);
        assert!(p.lists.is_empty());
    }

    #[test]
    fn the_bound_holds() {
        let mut p: Pool<u64> = Pool::new(2);
        let lists: Vec<_> = (0..3).map(|_| p.take(4).unwrap()).collect();
        for v in lists {
            p.put(v);
        }
        assert_eq!(p.lists.len(), 2, "three lists given back, two kept");
        p.lists.clear();
        let mut long = Vec::new();
        long.reserve_exact(KEEP_BYTES / size_of::<u64>() + 1);
        p.put(long);
        p.put(Vec::new());
        assert!(p.lists.is_empty(), "nothing too long, nothing empty");
    }
}
