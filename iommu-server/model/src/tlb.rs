//! The model's translation caches: the IOTLB (leaf entries tagged by ASID)
//! and the walk cache (level-3 table pointers per ASID and 2 MiB region),
//! both bounded with least-recently-used eviction.
//!
//! Owns only lookup, insertion, eviction and the invalidation scopes of
//! TLBI commands. It must never read memory or decide what a walk finds:
//! an entry, once in, is believed until an invalidation removes it.

use abi::{Asid, PhysAddr};

/// log2 of the region one walk-cache entry (one level-3 table) covers.
pub const WALK_REGION_SHIFT: u32 = 21;

/// One IOTLB entry: a leaf translation of one page or block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbEntry {
    /// ASID tag.
    pub asid: Asid,
    /// First input address mapped.
    pub va_base: u64,
    /// Level of the leaf (1, 2 or 3).
    pub level: u8,
    /// log2 of the bytes mapped.
    pub shift: u32,
    /// Output address of `va_base`.
    pub pa_base: u64,
    /// Writes allowed.
    pub writable: bool,
}

impl TlbEntry {
    /// Whether the entry maps `va`.
    pub fn covers(&self, va: u64) -> bool {
        va >> self.shift == self.va_base >> self.shift
    }

    /// Whether the entry overlaps `[start, end)`.
    fn overlaps(&self, start: u64, end: u64) -> bool {
        let last = self.va_base | ((1u64 << self.shift) - 1);
        self.va_base < end && start <= last
    }
}

/// One walk-cache entry: the level-3 table for a 2 MiB region of an ASID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkEntry {
    /// ASID tag.
    pub asid: Asid,
    /// `va >> WALK_REGION_SHIFT`.
    pub region: u64,
    /// The level-3 table.
    pub table: PhysAddr,
    /// `APTable[1]` was set above this table.
    pub read_only: bool,
}

impl WalkEntry {
    fn overlaps(&self, start: u64, end: u64) -> bool {
        let base = self.region << WALK_REGION_SHIFT;
        let last = base | ((1u64 << WALK_REGION_SHIFT) - 1);
        base < end && start <= last
    }
}

/// A bounded cache with least-recently-used eviction; lookups scan (the
/// capacities are a few hundred, as in QEMU's 256-entry IOTLB).
#[derive(Clone, Debug)]
pub struct Lru<T> {
    capacity: usize,
    clock: u64,
    entries: Vec<(u64, T)>,
}

impl<T: Copy> Lru<T> {
    /// An empty cache holding at most `capacity` entries (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            clock: 0,
            entries: Vec::new(),
        }
    }

    /// Index of an entry matching `f`, without touching it. Among several
    /// matches any may be found; [`Lru::insert`] never replaces an entry,
    /// so a stale one stays findable until an invalidation removes it.
    pub fn find(&self, f: impl Fn(&T) -> bool) -> Option<usize> {
        self.entries.iter().position(|(_, e)| f(e))
    }

    /// The entry at `i`.
    pub fn get(&self, i: usize) -> T {
        self.entries[i].1
    }

    /// Marks entry `i` most recently used.
    pub fn touch(&mut self, i: usize) {
        self.clock += 1;
        self.entries[i].0 = self.clock;
    }

    /// Adds `e`, evicting the least recently used entry when full. Returns
    /// whether an entry was evicted.
    pub fn insert(&mut self, e: T) -> bool {
        self.clock += 1;
        let mut evicted = false;
        if self.entries.len() >= self.capacity
            && let Some(victim) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].0)
        {
            self.entries.swap_remove(victim);
            evicted = true;
        }
        self.entries.push((self.clock, e));
        evicted
    }

    /// Drops every entry matching `f`; returns how many.
    pub fn remove_if(&mut self, f: impl Fn(&T) -> bool) -> usize {
        let before = self.entries.len();
        self.entries.retain(|(_, e)| !f(e));
        before - self.entries.len()
    }

    /// Entries matching `f`.
    pub fn count(&self, f: impl Fn(&T) -> bool) -> usize {
        self.entries.iter().filter(|(_, e)| f(e)).count()
    }

    /// All entries.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache is empty.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The IOTLB and the walk cache together, with the TLBI scopes.
#[derive(Clone, Debug)]
pub struct TlbCaches {
    /// Leaf entries.
    pub iotlb: Lru<TlbEntry>,
    /// Level-3 table pointers.
    pub walk: Lru<WalkEntry>,
}

impl TlbCaches {
    /// Empty caches of `capacity` entries each.
    pub fn new(capacity: usize) -> Self {
        Self {
            iotlb: Lru::new(capacity),
            walk: Lru::new(capacity),
        }
    }

    /// TLBI by address over `[start, end)`: every leaf entry of `asid`
    /// (or of every ASID) overlapping the range, and unless `leaf`, every
    /// walk-cache entry whose region overlaps it. Returns the leaf entries
    /// dropped.
    pub fn invalidate_va(&mut self, asid: Option<Asid>, start: u64, end: u64, leaf: bool) -> usize {
        let mine = |a: Asid| asid.is_none_or(|x| x == a);
        let n = self
            .iotlb
            .remove_if(|e| mine(e.asid) && e.overlaps(start, end));
        if !leaf {
            self.walk
                .remove_if(|e| mine(e.asid) && e.overlaps(start, end));
        }
        n
    }

    /// TLBI by ASID: every entry of `asid`, both caches.
    pub fn invalidate_asid(&mut self, asid: Asid) {
        self.iotlb.remove_if(|e| e.asid == asid);
        self.walk.remove_if(|e| e.asid == asid);
    }

    /// TLBI of everything.
    pub fn invalidate_all(&mut self) {
        self.iotlb.remove_if(|_| true);
        self.walk.remove_if(|_| true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(asid: u16, va: u64) -> TlbEntry {
        TlbEntry {
            asid: Asid(asid),
            va_base: va,
            level: 3,
            shift: 12,
            pa_base: 0x8000_0000 + va,
            writable: true,
        }
    }

    #[test]
    fn lru_evicts_least_recent() {
        let mut c = Lru::new(2);
        assert!(!c.insert(page(1, 0x1000)));
        assert!(!c.insert(page(1, 0x2000)));
        let i = c.find(|e| e.covers(0x1000)).unwrap();
        c.touch(i);
        assert!(c.insert(page(1, 0x3000)));
        assert!(c.find(|e| e.covers(0x2000)).is_none());
        assert!(c.find(|e| e.covers(0x1000)).is_some());
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn va_scopes() {
        let mut t = TlbCaches::new(16);
        for va in [0x1000, 0x2000, 0x3000] {
            t.iotlb.insert(page(1, va));
        }
        t.iotlb.insert(page(2, 0x2000));
        t.iotlb.insert(TlbEntry {
            level: 2,
            shift: 21,
            va_base: 0x20_0000,
            ..page(1, 0)
        });
        t.walk.insert(WalkEntry {
            asid: Asid(1),
            region: 0,
            table: PhysAddr::new(0x5000),
            read_only: false,
        });
        assert_eq!(t.invalidate_va(Some(Asid(1)), 0x2000, 0x3000, true), 1);
        assert_eq!(t.walk.len(), 1);
        assert_eq!(
            t.invalidate_va(Some(Asid(1)), 0x3f_f000, 0x40_0000, false),
            1
        );
        assert_eq!(t.iotlb.count(|e| e.asid == Asid(1)), 2);
        assert_eq!(t.walk.len(), 1);
        assert_eq!(t.invalidate_va(None, 0x1000, 0x2001, false), 2);
        assert!(t.walk.is_empty());
        assert_eq!(t.iotlb.count(|e| e.asid == Asid(1)), 1);
        t.invalidate_asid(Asid(1));
        assert!(t.iotlb.is_empty());
    }
}
