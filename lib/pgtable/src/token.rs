//! The invalidation token an unmap returns: what the caller's TLB
//! maintenance needs (ranges with the level of the leaf that mapped them,
//! split blocks, whether walk caches must go) and the table pages that left
//! the table. This module never issues maintenance itself and never frees a
//! page: the caller does both, in that order. It never grows the heap
//! infallibly: a walk reserves its lists before its first store
//! ([`Unmapped::try_reserve`], [`Unmapped::try_reserve_freed`]).

use alloc::vec::Vec;

use abi::PhysAddr;

use crate::config::InputAddress;

/// A run of input addresses whose translation changed, and the level of the
/// leaf descriptor that mapped it *before* the change (1: 1 GiB block,
/// 2: 2 MiB block, 3: page): the TTL hint of a TLBI by address
/// [Arm ARM D8.16, "TLB maintenance instructions", TTL].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnmappedRange<A> {
    /// First address of the run.
    pub start: A,
    /// Length in bytes (a multiple of 4 KiB).
    pub len: u64,
    /// Level of the leaf that mapped the run.
    pub level: u8,
}

/// What an unmap did, to be put into an invalidation batch.
///
/// Until the caller's invalidation covering [`ranges`](Self::ranges) (and,
/// when [`needs_walk_invalidation`](Self::needs_walk_invalidation), the walk
/// caches) has completed with a sync, a device or CPU may still use the old
/// translations and walk the freed table pages. So the freed pages travel in
/// this token and must be freed only after that sync, through
/// [`into_freed_tables`](Self::into_freed_tables).
#[must_use = "an unmap is complete only after TLB invalidation; the token carries table pages to free after it"]
#[derive(Debug, PartialEq, Eq)]
pub struct Unmapped<A> {
    ranges: Ranges<A>,
    split_blocks: Vec<UnmappedRange<A>>,
    freed_tables: Vec<PhysAddr>,
    fully_mapped: bool,
    /// A dry run's counts (see `unmap`): table descriptors it passed (each
    /// table may be freed) and blocks it would split.
    planned_tables: usize,
    planned_splits: usize,
}

/// The ranges of a token: the usual single run inline, without a heap
/// allocation; more in a vector.
#[derive(Debug, PartialEq, Eq)]
enum Ranges<A> {
    None,
    One(UnmappedRange<A>),
    Many(Vec<UnmappedRange<A>>),
}

impl<A: InputAddress> Ranges<A> {
    fn as_slice(&self) -> &[UnmappedRange<A>] {
        match self {
            Self::None => &[],
            Self::One(r) => core::slice::from_ref(r),
            Self::Many(v) => v,
        }
    }

    fn last_mut(&mut self) -> Option<&mut UnmappedRange<A>> {
        match self {
            Self::None => None,
            Self::One(r) => Some(r),
            Self::Many(v) => v.last_mut(),
        }
    }

    /// Adds a range; within room reserved by [`Unmapped::try_reserve`] it
    /// never allocates. Past it (a walk that reserved too little, which
    /// none does) the vector grows fallibly, and a range it cannot hold
    /// makes the token's ranges one covering span at the lowest level
    /// seen (never less than was unmapped: its invalidation stays whole).
    fn push(&mut self, r: UnmappedRange<A>) {
        match core::mem::replace(self, Self::None) {
            Self::None => *self = Self::One(r),
            Self::One(first) => {
                let mut v = Vec::new();
                if v.try_reserve_exact(2).is_ok() {
                    v.push(first);
                    v.push(r);
                    *self = Self::Many(v);
                } else {
                    *self = Self::One(cover(first, r));
                }
            }
            Self::Many(mut v) => {
                if v.len() < v.capacity() || v.try_reserve(1).is_ok() {
                    v.push(r);
                } else if let Some(last) = v.last_mut() {
                    *last = cover(*last, r);
                } else {
                    v.clear();
                }
                if v.is_empty() {
                    *self = Self::One(r);
                } else {
                    *self = Self::Many(v);
                }
            }
        }
    }

    /// Room for `n` ranges in all (the usual one is inline), or `Err`.
    fn try_reserve(&mut self, n: usize) -> Result<(), ()> {
        if n <= 1 {
            return Ok(());
        }
        match self {
            Self::None => {
                let mut v = Vec::new();
                v.try_reserve_exact(n).map_err(|_| ())?;
                *self = Self::Many(v);
                Ok(())
            }
            Self::One(first) => {
                let mut v = Vec::new();
                v.try_reserve_exact(n).map_err(|_| ())?;
                v.push(*first);
                *self = Self::Many(v);
                Ok(())
            }
            Self::Many(v) => v.try_reserve(n.saturating_sub(v.len())).map_err(|_| ()),
        }
    }

    fn into_vec(self) -> Vec<UnmappedRange<A>> {
        match self {
            Self::None => Vec::new(),
            Self::One(r) => alloc::vec![r],
            Self::Many(v) => v,
        }
    }
}

/// One range covering `a` and `b` (`a` first), at the lower of their
/// levels (a TTL hint that does not match a leaf is only an extra lookup;
/// a larger one could miss entries).
fn cover<A: InputAddress>(a: UnmappedRange<A>, b: UnmappedRange<A>) -> UnmappedRange<A> {
    let end = (b.start.raw() + b.len).max(a.start.raw() + a.len);
    UnmappedRange {
        start: a.start,
        len: end - a.start.raw(),
        level: a.level.max(b.level),
    }
}

impl<A: InputAddress> Unmapped<A> {
    pub(crate) fn new() -> Self {
        Self {
            ranges: Ranges::None,
            split_blocks: Vec::new(),
            freed_tables: Vec::new(),
            fully_mapped: true,
            planned_tables: 0,
            planned_splits: 0,
        }
    }

    /// An empty token with room for `ranges` ranges and `freed` freed
    /// tables, for [`PageTable::unmap_exact_in`](crate::PageTable::unmap_exact_in);
    /// `None` if the heap cannot hold it. An exact unmap of `len` bytes
    /// records at most three ranges (pages, blocks, pages) and frees at most
    /// one table per table region below the root that it touches.
    pub fn with_room(ranges: usize, freed: usize) -> Option<Self> {
        let mut t = Self::new();
        t.ranges.try_reserve(ranges).ok()?;
        t.freed_tables.try_reserve_exact(freed).ok()?;
        Some(t)
    }

    /// A dry run passed a table descriptor (the table may be freed).
    pub(crate) fn plan_table(&mut self) {
        self.planned_tables += 1;
    }

    /// A dry run would split a block.
    pub(crate) fn plan_split(&mut self) {
        self.planned_splits += 1;
    }

    /// Room, before the first store, for everything the walk `plan` (its
    /// dry run) describes may record: its ranges plus two per split (a
    /// split's range may part two merged ones), its splits, and a freed
    /// table per table it passed. `Err` (nothing stored yet) if the heap
    /// cannot hold it.
    pub(crate) fn try_reserve(&mut self, plan: &Self) -> Result<(), ()> {
        let ranges = plan.ranges().len() + 2 * plan.planned_splits;
        self.ranges.try_reserve(ranges)?;
        self.split_blocks
            .try_reserve_exact(plan.planned_splits)
            .map_err(|_| ())?;
        self.try_reserve_freed(plan.planned_tables)
    }

    /// Room for `n` more freed tables, or `Err`.
    pub(crate) fn try_reserve_freed(&mut self, n: usize) -> Result<(), ()> {
        self.freed_tables.try_reserve(n).map_err(|_| ())
    }

    /// Records a removed run, merging it with the previous one when they
    /// touch and share a level.
    pub(crate) fn push_range(&mut self, start: u64, len: u64, level: u8) {
        if let Some(last) = self.ranges.last_mut()
            && last.level == level
            && last.start.raw() + last.len == start
        {
            last.len += len;
            return;
        }
        self.ranges.push(UnmappedRange {
            start: A::from_raw(start),
            len,
            level,
        });
    }

    /// Records a split block (room reserved by [`Unmapped::try_reserve`];
    /// past it, one that cannot be held is left out: the ranges, which
    /// the invalidation covers, already hold its cut).
    pub(crate) fn push_split(&mut self, start: u64, len: u64, level: u8) {
        if self.split_blocks.len() < self.split_blocks.capacity()
            || self.split_blocks.try_reserve(1).is_ok()
        {
            self.split_blocks.push(UnmappedRange {
                start: A::from_raw(start),
                len,
                level,
            });
        }
    }

    /// Records a freed table. Every walk reserved room for it
    /// ([`Unmapped::try_reserve_freed`]) before unlinking it, so this never
    /// allocates; were that ever not so, it grows fallibly, and a table it
    /// cannot hold is left out (never freed: a leak, not a reuse).
    pub(crate) fn push_freed(&mut self, table: PhysAddr) {
        if self.freed_tables.len() < self.freed_tables.capacity()
            || self.freed_tables.try_reserve(1).is_ok()
        {
            self.freed_tables.push(table);
        }
    }

    pub(crate) fn set_hole(&mut self) {
        self.fully_mapped = false;
    }

    /// The runs that were mapped and are now unmapped, in address order,
    /// each with the level of its former leaf.
    #[inline]
    pub fn ranges(&self) -> &[UnmappedRange<A>] {
        self.ranges.as_slice()
    }

    /// Blocks that were only partly unmapped: each was replaced, in one
    /// store, by a table holding the remaining pieces. The TLB may still
    /// hold the whole block: invalidating any address inside it at the
    /// block's level removes it, so invalidating [`ranges`](Self::ranges)
    /// with their levels is enough; the whole block is given for callers
    /// that invalidate by block. Relies on the replacement being allowed
    /// without break-before-make (CPU: FEAT_BBM level 2; SMMU:
    /// SMMU_IDR3.BBML = 2, as QEMU reports) [Arm ARM D8.16.1].
    pub fn split_blocks(&self) -> &[UnmappedRange<A>] {
        &self.split_blocks
    }

    /// Whether any block was split.
    pub fn split(&self) -> bool {
        !self.split_blocks.is_empty()
    }

    /// Table pages that became empty and were unlinked. Still owned by this
    /// token: free them only after the invalidation sync.
    pub fn freed_tables(&self) -> &[PhysAddr] {
        &self.freed_tables
    }

    /// Whether table descriptors were removed, so the invalidation must
    /// also cover walk caches: TLBI by address with Leaf = 0 (SMMU
    /// `CMD_TLBI_NH_VA` with Leaf = 0), without a TTL hint, over
    /// [`ranges`](Self::ranges) (each freed table's span contains one of
    /// them).
    #[inline]
    pub fn needs_walk_invalidation(&self) -> bool {
        !self.freed_tables.is_empty()
    }

    /// Whether every page of the requested range was mapped before the
    /// unmap (for "unmap exactly what I mapped" checks).
    pub fn fully_mapped(&self) -> bool {
        self.fully_mapped
    }

    /// Whether nothing was unmapped (then nothing needs invalidating).
    pub fn is_empty(&self) -> bool {
        self.ranges().is_empty()
    }

    /// Bytes that were mapped and are now unmapped.
    pub fn unmapped_bytes(&self) -> u64 {
        self.ranges().iter().map(|r| r.len).sum()
    }

    /// The single leaf level shared by every range, usable as one TTL hint
    /// for the whole token; `None` if levels differ or nothing was unmapped.
    // Always inlined: called on every unmap; out of line it cost the
    // server's one-page unmap a call each.
    #[inline(always)]
    pub fn leaf_level(&self) -> Option<u8> {
        let first = self.ranges().first()?.level;
        self.ranges()
            .iter()
            .all(|r| r.level == first)
            .then_some(first)
    }

    /// The smallest span covering every range: `(start, len)`.
    pub fn span(&self) -> Option<(A, u64)> {
        let first = self.ranges().first()?;
        let last = self.ranges().last()?;
        let end = last.start.raw() + last.len;
        Some((first.start, end - first.start.raw()))
    }

    /// Splits the token into its ranges and its freed table pages, for a
    /// batch that keeps them apart.
    pub fn into_parts(self) -> (Vec<UnmappedRange<A>>, Vec<PhysAddr>) {
        (self.ranges.into_vec(), self.freed_tables)
    }

    /// Gives the freed table pages back. Call only after the invalidation
    /// covering this token has completed.
    // Always inlined: called on every unmap; out of line it cost the
    // server's one-page unmap a call each.
    #[inline(always)]
    pub fn into_freed_tables(self) -> Vec<PhysAddr> {
        self.freed_tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::Iova;

    #[test]
    fn adjacent_ranges_merge_only_at_equal_level() {
        let mut t = Unmapped::<Iova>::new();
        t.push_range(0x1000, 0x1000, 3);
        t.push_range(0x2000, 0x1000, 3);
        t.push_range(0x20_0000, 0x20_0000, 2);
        t.push_range(0x40_0000, 0x1000, 3);
        assert_eq!(t.ranges().len(), 3);
        assert_eq!(t.ranges()[0].len, 0x2000);
        assert_eq!(t.leaf_level(), None);
        assert_eq!(t.span(), Some((Iova::new(0x1000), 0x40_0000)));
        assert_eq!(t.unmapped_bytes(), 0x2000 + 0x20_0000 + 0x1000);
        assert!(t.fully_mapped());
        assert!(!t.needs_walk_invalidation());
        assert!(t.into_freed_tables().is_empty());
    }
}
