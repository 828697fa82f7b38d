//! Per-domain IOVA allocation: hands out page-granular, power-of-two sized,
//! naturally aligned IOVA blocks inside one domain's window `[base, limit]`
//! (the limit already clipped to the device's DMA mask).
//!
//! It owns only the bookkeeping of which IOVAs are live. It must never decide
//! *when* an IOVA is safe to reuse: the invalidation engine calls
//! [`IovaAllocator::free`] only after the sync that covers the unmap has
//! completed. A refused request changes nothing.
//!
//! Fast path: one bounded cache of recently freed blocks per size class
//! (1, 2, 4, ... [`MAX_CACHED_PAGES`] pages), as Linux's IOVA rcache, and
//! the live blocks in a hash table (one lookup to record or check one).
//! The one-page class may be made deep enough for every block a domain
//! can hold at once ([`IovaAllocator::reserve_page_cache`], its room
//! reserved up front), so that a burst of frees after one sync never
//! spills back into the free-range map (Linux keeps a depot of full
//! magazines for the same reason).
//! Slow path: a top-down search of a coalescing list of free ranges,
//! sorted by address. The table of live blocks and the list of free
//! ranges grow only with `try_reserve`, in `alloc` ([`IovaError::NoMemory`],
//! nothing changed): the list always has room for one range more than
//! there are live and cached blocks, which is the most it can hold (two
//! free ranges are always parted by such a block), so that a `free`,
//! which must not fail once its covering sync completed, never grows the
//! heap.

use alloc::vec::Vec;

use hashbrown::HashMap;
use hashbrown::hash_map::Entry;

use abi::{Iova, PAGE_SHIFT, PAGE_SIZE};

/// Number of cached size classes: blocks of `1 << class` pages for
/// `class < CACHED_CLASSES`.
pub const CACHED_CLASSES: usize = 7;
/// Largest block size, in pages, that the per-class caches keep.
pub const MAX_CACHED_PAGES: u64 = 1 << (CACHED_CLASSES - 1);
/// Default bound on the number of blocks each size-class cache holds.
pub const DEFAULT_CACHE_DEPTH: usize = 128;

/// Why the allocator refused a request. Codes are stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum IovaError {
    /// A request for zero pages.
    ZeroSize = 1,
    /// The rounded size is larger than the whole window (or overflows).
    TooLarge = 2,
    /// No naturally aligned free block of the rounded size is left.
    Exhausted = 3,
    /// `free` of an address that is not the start of a live allocation.
    NotAllocated = 4,
    /// `free` of a live allocation with a size that rounds differently.
    WrongSize = 5,
    /// The window is empty, not page aligned, or starts at IOVA 0 (which stays
    /// unmapped so that a zeroed descriptor faults).
    BadWindow = 6,
    /// The heap could not hold one more live block.
    NoMemory = 7,
}

impl IovaError {
    /// The stable numeric code of this error.
    pub const fn code(self) -> u16 {
        self as u16
    }
}

/// An IOVA allocator for one domain. See the module documentation.
#[derive(Debug)]
pub struct IovaAllocator {
    /// First page frame of the window.
    first_pfn: u64,
    /// One past the last page frame of the window.
    end_pfn: u64,
    /// Free ranges not held in a cache: (start pfn, length in pages), by
    /// start. Never two adjacent entries (coalesced on insert). Its
    /// capacity is at least the live and cached blocks plus one
    /// ([`IovaAllocator::alloc`] reserves it).
    free: Vec<(u64, u64)>,
    /// Live allocations: start pfn -> order (size is `1 << order` pages).
    live: HashMap<u64, u32>,
    /// Recently freed blocks per order, each at most `cache_depth[order]`
    /// long.
    cache: [Vec<u64>; CACHED_CLASSES],
    /// Bound on each cache's length.
    cache_depth: [usize; CACHED_CLASSES],
    /// Blocks held in `cache`, over every class (kept with each push and
    /// pop: `reserve` needs it on every map).
    cached: usize,
    /// Pages in live allocations (rounded sizes).
    in_use_pages: u64,
}

impl IovaAllocator {
    /// An allocator over `[base, limit]` (inclusive byte bounds) clipped to
    /// `dma_mask` (the highest address the device can emit), with the
    /// default cache depth. `base` must be page aligned and non-zero; only
    /// whole pages at or below the effective limit are used.
    pub fn new(base: Iova, limit: Iova, dma_mask: u64) -> Result<Self, IovaError> {
        Self::with_cache_depth(base, limit, dma_mask, DEFAULT_CACHE_DEPTH)
    }

    /// As [`IovaAllocator::new`] with each size-class cache bounded to
    /// `cache_depth` blocks (0 disables the fast path).
    pub fn with_cache_depth(
        base: Iova,
        limit: Iova,
        dma_mask: u64,
        cache_depth: usize,
    ) -> Result<Self, IovaError> {
        if base.get() == 0 || !base.is_page_aligned() {
            return Err(IovaError::BadWindow);
        }
        let last = limit.get().min(dma_mask);
        // Pages whose last byte is <= `last`.
        let end_pfn = (last >> PAGE_SHIFT) + u64::from(last & (PAGE_SIZE - 1) == PAGE_SIZE - 1);
        let first_pfn = base.get() >> PAGE_SHIFT;
        if first_pfn >= end_pfn {
            return Err(IovaError::BadWindow);
        }
        let mut free = Vec::new();
        free.try_reserve(2).map_err(|_| IovaError::NoMemory)?;
        free.push((first_pfn, end_pfn - first_pfn));
        Ok(Self {
            first_pfn,
            end_pfn,
            free,
            live: HashMap::new(),
            cache: Default::default(),
            cache_depth: [cache_depth; CACHED_CLASSES],
            cached: 0,
            in_use_pages: 0,
        })
    }

    /// Lets the one-page cache hold up to `depth` blocks (never fewer than
    /// it already may), with room for all of them reserved now, so that
    /// keeping a freed page never grows the heap. `NoMemory`, changing
    /// nothing, if the heap cannot hold that room.
    pub fn reserve_page_cache(&mut self, depth: usize) -> Result<(), IovaError> {
        let cache = &mut self.cache[0];
        let depth = depth.max(self.cache_depth[0]);
        cache
            .try_reserve_exact(depth.saturating_sub(cache.len()))
            .map_err(|_| IovaError::NoMemory)?;
        self.cache_depth[0] = depth;
        Ok(())
    }

    /// Allocates a block of at least `pages` pages: the size is rounded up to
    /// a power of two and the block is aligned to its own size.
    pub fn alloc(&mut self, pages: u64) -> Result<Iova, IovaError> {
        let order = self.order_of(pages)?;
        // Room to record it first: a refusal changes nothing.
        self.reserve(1)?;
        let size = 1u64 << order;
        let pfn = match self.cache.get_mut(order as usize).and_then(Vec::pop) {
            Some(pfn) => {
                self.cached -= 1;
                pfn
            }
            None => match self.take_free(size) {
                Some(pfn) => pfn,
                None => {
                    // Cached blocks of other sizes may be what blocks us.
                    self.drain_caches();
                    self.take_free(size).ok_or(IovaError::Exhausted)?
                }
            },
        };
        self.live.insert(pfn, order);
        self.in_use_pages += size;
        Ok(Iova::new(pfn << PAGE_SHIFT))
    }

    /// Room for `blocks` more live blocks: their records, and the free
    /// ranges carving them out may add (one per live or cached block, plus
    /// one). After it, that many `alloc`s grow nothing; a caller that must
    /// not be refused past some point (a map that pinned its frames)
    /// reserves first. `NoMemory`, changing nothing, if the heap cannot
    /// hold it.
    pub fn reserve(&mut self, blocks: usize) -> Result<(), IovaError> {
        self.live
            .try_reserve(blocks)
            .map_err(|_| IovaError::NoMemory)?;
        let ranges = self.live.len() + blocks + self.cached_blocks() + 1;
        self.free
            .try_reserve(ranges.saturating_sub(self.free.len()))
            .map_err(|_| IovaError::NoMemory)
    }

    /// Returns a block to the allocator. `pages` is the size asked of
    /// [`IovaAllocator::alloc`] (or its rounded size). Refuses, changing
    /// nothing, anything that is not a live allocation of that size.
    pub fn free(&mut self, iova: Iova, pages: u64) -> Result<(), IovaError> {
        if !iova.is_page_aligned() {
            return Err(IovaError::NotAllocated);
        }
        let pfn = iova.get() >> PAGE_SHIFT;
        // One search: the entry is checked, then removed in place.
        let Entry::Occupied(live) = self.live.entry(pfn) else {
            return Err(IovaError::NotAllocated);
        };
        let order = *live.get();
        if pages == 0 || pages.checked_next_power_of_two() != Some(1u64 << order) {
            return Err(IovaError::WrongSize);
        }
        live.remove();
        let size = 1u64 << order;
        self.in_use_pages -= size;
        let depth = self.cache_depth.get(order as usize).copied().unwrap_or(0);
        // Kept only where the cache has room (reserved, or the heap gives
        // it): a free never grows the heap infallibly.
        let kept = self.cache.get_mut(order as usize).is_some_and(|cache| {
            let room = cache.len() < depth
                && (cache.len() < cache.capacity() || cache.try_reserve(1).is_ok());
            if room {
                cache.push(pfn);
            }
            room
        });
        if kept {
            self.cached += 1;
        } else {
            self.insert_free(pfn, size);
        }
        Ok(())
    }

    /// Blocks held in the size-class caches.
    fn cached_blocks(&self) -> usize {
        debug_assert_eq!(self.cached, self.cache.iter().map(Vec::len).sum());
        self.cached
    }

    /// Bytes in live allocations (rounded sizes).
    pub fn in_use_bytes(&self) -> u64 {
        self.in_use_pages.saturating_mul(PAGE_SIZE)
    }

    /// Number of live allocations.
    pub fn live_allocations(&self) -> usize {
        self.live.len()
    }

    /// The rounded size in pages of the live allocation starting at `iova`.
    pub fn allocation_pages(&self, iova: Iova) -> Option<u64> {
        if !iova.is_page_aligned() {
            return None;
        }
        self.live
            .get(&(iova.get() >> PAGE_SHIFT))
            .map(|&order| 1u64 << order)
    }

    /// Pages held in the size-class caches (free, but not in the free map).
    pub fn cached_pages(&self) -> u64 {
        self.cache
            .iter()
            .enumerate()
            .map(|(order, c)| (c.len() as u64) << order)
            .sum()
    }

    /// The effective window as `(first byte, last byte)`.
    pub fn window(&self) -> (Iova, Iova) {
        (
            Iova::new(self.first_pfn << PAGE_SHIFT),
            Iova::new((self.end_pfn << PAGE_SHIFT).wrapping_sub(1)),
        )
    }

    /// Free ranges outside the caches, and how many the list has room for
    /// (for tests of the room `alloc` keeps).
    pub fn free_ranges(&self) -> (usize, usize) {
        (self.free.len(), self.free.capacity())
    }

    /// Live and cached blocks (see [`IovaAllocator::free_ranges`]).
    pub fn held_blocks(&self) -> usize {
        self.live.len() + self.cached_blocks()
    }

    /// The order (log2 of the rounded page count) of a request.
    fn order_of(&self, pages: u64) -> Result<u32, IovaError> {
        if pages == 0 {
            return Err(IovaError::ZeroSize);
        }
        let size = pages
            .checked_next_power_of_two()
            .ok_or(IovaError::TooLarge)?;
        if size > self.end_pfn - self.first_pfn {
            return Err(IovaError::TooLarge);
        }
        Ok(size.trailing_zeros())
    }

    /// Slow path: carves the highest naturally aligned block of `size` pages
    /// out of the free map.
    /// The list has room for the range it adds (see `alloc`).
    fn take_free(&mut self, size: u64) -> Option<u64> {
        let (at, start, len, pfn) =
            self.free
                .iter()
                .enumerate()
                .rev()
                .find_map(|(at, &(start, len))| {
                    if len < size {
                        return None;
                    }
                    let candidate = (start + len - size) & !(size - 1);
                    (candidate >= start).then_some((at, start, len, candidate))
                })?;
        let end = start + len;
        let after = (pfn + size < end).then(|| (pfn + size, end - (pfn + size)));
        match (pfn > start, after) {
            (true, Some(r)) => {
                self.free[at].1 = pfn - start;
                self.insert_at(at + 1, r);
            }
            (true, None) => self.free[at].1 = pfn - start,
            (false, Some(r)) => self.free[at] = r,
            (false, None) => {
                self.free.remove(at);
            }
        }
        Some(pfn)
    }

    /// Inserts a free range, coalescing with its neighbours.
    fn insert_free(&mut self, start: u64, len: u64) {
        let at = self.free.partition_point(|&(s, _)| s < start);
        let joins_prev = at
            .checked_sub(1)
            .and_then(|p| self.free.get(p))
            .is_some_and(|&(s, l)| s + l == start);
        let joins_next = self.free.get(at).is_some_and(|&(s, _)| s == start + len);
        match (joins_prev, joins_next) {
            (true, true) => {
                let (_, next_len) = self.free.remove(at);
                self.free[at - 1].1 += len + next_len;
            }
            (true, false) => self.free[at - 1].1 += len,
            (false, true) => {
                let next = &mut self.free[at];
                *next = (start, next.1 + len);
            }
            (false, false) => self.insert_at(at, (start, len)),
        }
    }

    /// Inserts a range at index `at`, within the room `alloc` keeps (past
    /// it, which no sequence of calls reaches, only if the heap gives
    /// more: a range it cannot hold is left out, a leak of IOVA space but
    /// never a reuse).
    fn insert_at(&mut self, at: usize, range: (u64, u64)) {
        if self.free.len() < self.free.capacity() || self.free.try_reserve(1).is_ok() {
            self.free.insert(at, range);
        }
    }

    /// Moves every cached block back into the free map.
    fn drain_caches(&mut self) {
        for order in 0..CACHED_CLASSES {
            while let Some(pfn) = self.cache[order].pop() {
                self.cached -= 1;
                self.insert_free(pfn, 1 << order);
            }
        }
    }
}

/// A copy with the same room as the original (see [`IovaAllocator::free`]).
impl Clone for IovaAllocator {
    fn clone(&self) -> Self {
        let mut free = Vec::with_capacity(self.free.capacity());
        free.extend_from_slice(&self.free);
        let cache = core::array::from_fn(|i| {
            let mut c = Vec::with_capacity(self.cache[i].capacity());
            c.extend_from_slice(&self.cache[i]);
            c
        });
        Self {
            first_pfn: self.first_pfn,
            end_pfn: self.end_pfn,
            free,
            live: self.live.clone(),
            cache,
            cache_depth: self.cache_depth,
            cached: self.cached,
            in_use_pages: self.in_use_pages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc_1m() -> IovaAllocator {
        // 256 pages at 1 MiB.
        IovaAllocator::new(Iova::new(0x10_0000), Iova::new(0x1ff_fff), u64::MAX).unwrap()
    }

    #[test]
    fn window_respects_dma_mask_and_rejects_bad_bases() {
        let a = IovaAllocator::new(Iova::new(0x1000), Iova::new(u64::MAX), 0xffff_ffff).unwrap();
        assert_eq!(a.window(), (Iova::new(0x1000), Iova::new(0xffff_ffff)));
        assert_eq!(
            IovaAllocator::new(Iova::new(0), Iova::new(0xffff), u64::MAX).unwrap_err(),
            IovaError::BadWindow
        );
        assert_eq!(
            IovaAllocator::new(Iova::new(0x1800), Iova::new(0xffff), u64::MAX).unwrap_err(),
            IovaError::BadWindow
        );
        // A limit inside the first page leaves no whole page.
        assert_eq!(
            IovaAllocator::new(Iova::new(0x1000), Iova::new(0x1ffe), u64::MAX).unwrap_err(),
            IovaError::BadWindow
        );
    }

    #[test]
    fn sizes_round_up_and_align_naturally() {
        let mut a = alloc_1m();
        let x = a.alloc(3).unwrap();
        assert!(x.is_aligned(4 * PAGE_SIZE));
        assert_eq!(a.allocation_pages(x), Some(4));
        assert_eq!(a.in_use_bytes(), 4 * PAGE_SIZE);
        let y = a.alloc(1).unwrap();
        assert_ne!(x, y);
        assert_eq!(a.free(x, 3), Ok(()));
        assert_eq!(a.in_use_bytes(), PAGE_SIZE);
    }

    #[test]
    fn refused_free_changes_nothing() {
        let mut a = alloc_1m();
        let x = a.alloc(2).unwrap();
        let before = a.clone();
        assert_eq!(a.free(x, 4), Err(IovaError::WrongSize));
        assert_eq!(a.free(x, 0), Err(IovaError::WrongSize));
        assert_eq!(
            a.free(x.checked_add(PAGE_SIZE).unwrap(), 1),
            Err(IovaError::NotAllocated)
        );
        assert_eq!(
            a.free(Iova::new(x.get() + 1), 2),
            Err(IovaError::NotAllocated)
        );
        assert_eq!(a.in_use_bytes(), before.in_use_bytes());
        assert_eq!(a.free(x, 2), Ok(()));
        assert_eq!(a.free(x, 2), Err(IovaError::NotAllocated));
    }

    #[test]
    fn fast_path_reuses_cached_block() {
        let mut a = alloc_1m();
        let x = a.alloc(8).unwrap();
        a.free(x, 8).unwrap();
        assert_eq!(a.cached_pages(), 8);
        assert_eq!(a.alloc(5).unwrap(), x);
        assert_eq!(a.cached_pages(), 0);
    }

    #[test]
    fn deep_page_cache_keeps_a_whole_burst_without_growing() {
        let mut a = alloc_1m();
        a.reserve_page_cache(200).unwrap();
        let room = a.cache[0].capacity();
        let all: Vec<_> = (0..200).map(|_| a.alloc(1).unwrap()).collect();
        for x in &all {
            a.free(*x, 1).unwrap();
        }
        assert_eq!(a.cached_pages(), 200);
        assert_eq!(a.cache[0].capacity(), room);
        // Past the depth, blocks go back to the free map.
        let more: Vec<_> = (0..201).map(|_| a.alloc(1).unwrap()).collect();
        for x in &more {
            a.free(*x, 1).unwrap();
        }
        assert_eq!(a.cached_pages(), 200);
        // Never shallower than before.
        a.reserve_page_cache(1).unwrap();
        assert_eq!(a.cache_depth[0], 200);
    }

    #[test]
    fn caches_are_drained_before_reporting_exhaustion() {
        let mut a = alloc_1m();
        let all: Vec<_> = (0..256).map(|_| a.alloc(1).unwrap()).collect();
        assert_eq!(a.alloc(1), Err(IovaError::Exhausted));
        for x in &all {
            a.free(*x, 1).unwrap();
        }
        // Everything is free again, most of it in the 1-page cache.
        let big = a.alloc(256).unwrap();
        assert_eq!(big, Iova::new(0x10_0000));
        assert_eq!(a.alloc(1), Err(IovaError::Exhausted));
        assert_eq!(a.alloc(512), Err(IovaError::TooLarge));
        assert_eq!(a.alloc(0), Err(IovaError::ZeroSize));
        assert_eq!(a.alloc(u64::MAX), Err(IovaError::TooLarge));
    }
}
