//! One translation table tree: its root, construction, `map` (with 2 MiB
//! and 1 GiB blocks), the software walk `translate`, and teardown. It
//! changes descriptors only through `TableMemory::write`, fills every new
//! table before linking it, and never overwrites a valid descriptor in
//! `map`. It never frees a page: pages leaving the tree go back to the
//! caller. Walk rules: [Arm ARM D8.2]; descriptors: [Arm ARM D8.3].

use alloc::vec::Vec;
use core::marker::PhantomData;

use abi::{PAGE_SIZE, PhysAddr};

use crate::config::{Config, InputAddress};
use crate::counts::{Counts, count_add, count_up};
use crate::desc::{self, Attrs, Descriptor, LAST_LEVEL, level_index, level_size};
use crate::error::{MapError, NewError};
use crate::memory::TableMemory;

/// What [`PageTable::translate`] found for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The output address of the looked-up address (offset included).
    pub pa: PhysAddr,
    /// The leaf's attributes.
    pub attrs: Attrs,
    /// The leaf's level: 1 (1 GiB block), 2 (2 MiB block) or 3 (page).
    pub level: u8,
}

/// A VMSAv8-64 stage-1 translation table tree with the 4 KiB granule,
/// indexed by `A` (`VirtAddr` for a task's TTBR0, `Iova` for an SMMU
/// domain's CD.TTB0).
///
/// The tree lives in caller memory reached through a [`TableMemory`] passed
/// to each operation; this value holds the root, the geometry, and spare
/// pages that were allocated by an operation that then failed (never
/// linked, so they may be reclaimed at once with
/// [`take_spare_tables`](Self::take_spare_tables)).
#[derive(Debug)]
pub struct PageTable<A> {
    pub(crate) root: PhysAddr,
    pub(crate) config: Config,
    pub(crate) spare: Vec<PhysAddr>,
    /// Valid descriptors (bit 0 set) in each linked table page, by address:
    /// whether a table became empty is one hash lookup instead of a scan
    /// of its 512 entries. Kept by every store this crate makes; a table
    /// with no entry here has none. Grown only with `try_reserve`, before
    /// the first store of an operation. Checked against full scans by the
    /// tests.
    pub(crate) counts: Counts,
    /// The last-level table the last map or unmap inside one such table
    /// reached, by the span it covers (`va >> 21`): a one-entry software
    /// walk cache, so that the next one in that span needs no descent.
    /// A table leaves the tree only through an unmap, and every unmap that
    /// unlinks a table, like every walk but those two, forgets it first.
    pub(crate) leaf: Option<(u64, PhysAddr)>,
    _addr: PhantomData<fn() -> A>,
}

/// Whether `[va, end)` lies inside the span of one last-level table and is
/// smaller than it, so that no block can map any of it: the case the
/// single-walk fast path of `map` handles (runs of pages: `run`).
pub(crate) fn in_one_leaf_table(va: u64, end: u64) -> bool {
    let span = level_size(LAST_LEVEL - 1);
    end - va < span && va / span == (end - 1) / span
}

/// What a read-only descent towards a last-level table found.
pub(crate) enum Descent {
    /// The last-level table.
    Found(PhysAddr),
    /// An invalid descriptor above the last level.
    Missing,
    /// A block maps the address.
    Block,
}

/// How a walk that may need new tables proceeds: first a dry run that only
/// reads and counts, then the real one with the pages reserved.
pub(crate) enum Pass<'p> {
    /// Count the table pages the operation needs; write nothing.
    Plan(&'p mut usize),
    /// Do it, taking new table pages from this reserve.
    Commit(&'p mut Vec<PhysAddr>),
}

/// Checks a 4 KiB-aligned, non-empty range inside `limit`; returns its end.
pub(crate) enum RangeFault {
    Empty,
    Unaligned,
    OutOfRange,
}

pub(crate) fn check_range(start: u64, len: u64, limit: u64) -> Result<u64, RangeFault> {
    if len == 0 {
        return Err(RangeFault::Empty);
    }
    if !start.is_multiple_of(PAGE_SIZE) || !len.is_multiple_of(PAGE_SIZE) {
        return Err(RangeFault::Unaligned);
    }
    match start.checked_add(len) {
        Some(end) if end <= limit => Ok(end),
        _ => Err(RangeFault::OutOfRange),
    }
}

impl From<RangeFault> for MapError {
    fn from(f: RangeFault) -> Self {
        match f {
            RangeFault::Empty => Self::Empty,
            RangeFault::Unaligned => Self::Unaligned,
            RangeFault::OutOfRange => Self::OutOfRange,
        }
    }
}

impl<A: InputAddress> PageTable<A> {
    /// Allocates an empty root table for `config`.
    pub fn new<M: TableMemory>(mem: &mut M, config: Config) -> Result<Self, NewError> {
        config.validate()?;
        let root = mem.alloc_table().ok_or(NewError::NoMemory)?;
        Ok(Self {
            root,
            config,
            spare: Vec::new(),
            counts: Counts::new(),
            leaf: None,
            _addr: PhantomData,
        })
    }

    /// The root table's address: TTBR0_EL1.BADDR, or CD.TTB0 for the SMMU.
    pub fn root(&self) -> PhysAddr {
        self.root
    }

    /// The configuration this table was built with.
    pub fn config(&self) -> Config {
        self.config
    }

    /// Maps `len` bytes at `va` to `pa` with `attrs`, in one walk, using the
    /// largest leaves that alignment of `va`, `pa` and the remaining length
    /// (and [`Config::largest_leaf`]) allow.
    ///
    /// Refuses (with nothing changed) an empty, unaligned or out-of-range
    /// request, unencodable attributes, a range any part of which is
    /// already mapped, and running out of table pages: a dry run first
    /// checks the range and counts the new tables, which are all allocated
    /// before the first store. A range inside one existing last-level table
    /// (the common case) needs neither: it is checked, then written, in one
    /// walk. Each new table is filled before the store
    /// that links it. The caller must make the writes visible (barrier)
    /// before relying on the mapping; no TLB maintenance is needed for a
    /// mapping that replaces only invalid descriptors.
    pub fn map<M: TableMemory>(
        &mut self,
        mem: &mut M,
        va: A,
        pa: PhysAddr,
        len: u64,
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let va = va.raw();
        let end = check_range(va, len, self.config.input_limit())?;
        check_range(pa.get(), len, self.config.output_limit())?;
        if !attrs.is_valid() {
            return Err(MapError::BadAttrs);
        }
        self.leaf = None;
        if let Some(done) = self.map_fast(mem, va, end, pa.get(), attrs.bits()) {
            return done;
        }
        let walk = MapWalk {
            va,
            pa: pa.get(),
            attr_bits: attrs.bits(),
            min_leaf: self.config.min_leaf_level(),
        };
        let mut needed = 0;
        let root = At {
            table: Some(self.root),
            level: self.config.start_level(),
            reachable: true,
        };
        let counts = &mut self.counts;
        walk.walk(mem, root, va, end, &mut Pass::Plan(&mut needed), counts)?;
        let mut reserve = self.reserve(mem, needed).ok_or(MapError::NoMemory)?;
        let counts = &mut self.counts;
        let done = walk.walk(mem, root, va, end, &mut Pass::Commit(&mut reserve), counts);
        self.unreserve(reserve);
        done
    }

    /// The common case of `map` in one walk: a range inside one existing
    /// last-level table (every table above it linked). Checks every target
    /// descriptor is invalid, then writes the pages; no new table, so no
    /// barrier is owed. `None` when the range needs the general two-pass
    /// walk (new tables, blocks possible).
    fn map_fast<M: TableMemory>(
        &mut self,
        mem: &mut M,
        va: u64,
        end: u64,
        pa: u64,
        attr_bits: u64,
    ) -> Option<Result<(), MapError>> {
        if !in_one_leaf_table(va, end) {
            return None;
        }
        if self.counts.try_reserve(1).is_err() {
            return Some(Err(MapError::NoMemory));
        }
        let table = match self.descend(mem, va) {
            Descent::Found(table) => table,
            Descent::Missing => return None,
            Descent::Block => return Some(Err(MapError::AlreadyMapped)),
        };
        let first = level_index(va, LAST_LEVEL);
        let n = ((end - va) / level_size(LAST_LEVEL)) as usize;
        for i in first..first + n {
            if !matches!(
                desc::decode(LAST_LEVEL, mem.read(table, i)),
                Descriptor::Invalid
            ) {
                return Some(Err(MapError::AlreadyMapped));
            }
        }
        for (k, i) in (first..first + n).enumerate() {
            let oa = pa + k as u64 * level_size(LAST_LEVEL);
            mem.write(table, i, desc::leaf_raw(LAST_LEVEL, oa, attr_bits));
        }
        count_add(&mut self.counts, table, n as u16);
        Some(Ok(()))
    }

    /// Walks (reading only) from the root towards the last-level table for
    /// `va`.
    pub(crate) fn descend<M: TableMemory>(&self, mem: &M, va: u64) -> Descent {
        let mut table = self.root;
        for level in self.config.start_level()..LAST_LEVEL {
            match desc::decode(level, mem.read(table, level_index(va, level))) {
                Descriptor::Table(next) => table = next,
                Descriptor::Invalid => return Descent::Missing,
                Descriptor::Leaf { .. } => return Descent::Block,
            }
        }
        Descent::Found(table)
    }

    /// The last-level table for `va` as [`descend`](Self::descend) finds
    /// it, from the one-entry walk cache (`leaf`) when it holds `va`'s
    /// span, which a descent that finds a table then holds.
    pub(crate) fn leaf_table<M: TableMemory>(&mut self, mem: &M, va: u64) -> Descent {
        let span = va >> desc::level_shift(LAST_LEVEL - 1);
        if let Some(table) = self.cached_leaf(va) {
            return Descent::Found(table);
        }
        let found = self.descend(mem, va);
        if let Descent::Found(table) = found {
            self.leaf = Some((span, table));
        }
        found
    }

    /// The last-level table for `va` if the walk cache (`leaf`) holds its
    /// span.
    pub(crate) fn cached_leaf(&self, va: u64) -> Option<PhysAddr> {
        let span = va >> desc::level_shift(LAST_LEVEL - 1);
        self.leaf
            .filter(|&(s, _)| s == span)
            .map(|(_, table)| table)
    }

    /// Valid descriptors this table believes `table` holds (0 for a page
    /// it does not know), for tests checking the counts against scans.
    #[cfg(test)]
    pub(crate) fn valid_count(&self, table: PhysAddr) -> u16 {
        self.counts.get(table).unwrap_or(0)
    }

    /// Walks the table in software for `va`: what a hardware walker would
    /// find, or `None` for a translation fault (or an address out of range).
    pub fn translate<M: TableMemory>(&self, mem: &M, va: A) -> Option<Translation> {
        let va = va.raw();
        if va >= self.config.input_limit() {
            return None;
        }
        let mut table = self.root;
        let mut level = self.config.start_level();
        loop {
            match desc::decode(level, mem.read(table, level_index(va, level))) {
                Descriptor::Invalid => return None,
                Descriptor::Table(next) => {
                    table = next;
                    level += 1;
                }
                Descriptor::Leaf { oa, attr_bits } => {
                    let offset = va & (level_size(level) - 1);
                    return Some(Translation {
                        pa: PhysAddr::new(oa.get() | offset),
                        attrs: Attrs::from_bits(attr_bits),
                        level,
                    });
                }
            }
        }
    }

    /// Every table page reachable from the root (root first), by a
    /// read-only walk.
    pub fn tables<M: TableMemory>(&self, mem: &M) -> Vec<PhysAddr> {
        let mut out = Vec::new();
        let mut stack = Vec::new();
        stack.push((self.root, self.config.start_level()));
        while let Some((table, level)) = stack.pop() {
            out.push(table);
            if level == desc::LAST_LEVEL {
                continue;
            }
            for i in 0..desc::ENTRIES {
                if let Descriptor::Table(next) = desc::decode(level, mem.read(table, i)) {
                    stack.push((next, level + 1));
                }
            }
        }
        out
    }

    /// Takes back spare pages: allocated by an operation that then failed,
    /// never linked, still zero. They may be freed at once.
    pub fn take_spare_tables(&mut self) -> Vec<PhysAddr> {
        core::mem::take(&mut self.spare)
    }

    /// Tears the whole tree down without writing to it and returns every
    /// page it owned (tables and spares). The caller must first stop every
    /// walker from using the root (TTBR0 switched away, or the CD/STE
    /// detached), invalidate the ASID, sync, and only then free the pages.
    pub fn destroy<M: TableMemory>(mut self, mem: &M) -> Vec<PhysAddr> {
        let mut pages = self.tables(mem);
        pages.append(&mut self.spare);
        pages
    }

    /// [`PageTable::destroy`] without a list: hands every page it owned
    /// (tables, each after the tables below it, then spares) to `free`,
    /// which may free it through `mem` at once. It grows no heap (the walk
    /// recurses at most four levels), for a caller that must not fail. The
    /// same conditions as `destroy` apply: no walker may use the tree, and
    /// the ASID's invalidation must have been synced.
    pub fn destroy_with<M: TableMemory>(
        mut self,
        mem: &mut M,
        mut free: impl FnMut(&mut M, PhysAddr),
    ) {
        fn walk<M: TableMemory>(
            mem: &mut M,
            table: PhysAddr,
            level: u8,
            free: &mut impl FnMut(&mut M, PhysAddr),
        ) {
            if level < desc::LAST_LEVEL {
                for i in 0..desc::ENTRIES {
                    if let Descriptor::Table(next) = desc::decode(level, mem.read(table, i)) {
                        walk(mem, next, level + 1, free);
                    }
                }
            }
            free(mem, table);
        }
        walk(mem, self.root, self.config.start_level(), &mut free);
        for page in self.spare.drain(..) {
            free(mem, page);
        }
    }

    /// Takes `n` zeroed pages out of the spares, allocating the missing
    /// ones into them first (what it got stays there on failure, `None`).
    /// The list itself is kept from one operation to the next, so that a
    /// reservation allocates nothing once the list has room (a fresh list
    /// per map was a heap allocation whenever a map made a table).
    pub(crate) fn reserve<M: TableMemory>(
        &mut self,
        mem: &mut M,
        n: usize,
    ) -> Option<Vec<PhysAddr>> {
        // A count for each new table and for the existing table each
        // chain of them hangs from: at most 2n + 1 new entries.
        self.counts.try_reserve(2 * n + 1).ok()?;
        let missing = n.saturating_sub(self.spare.len());
        self.spare.try_reserve(missing).ok()?;
        for _ in 0..missing {
            self.spare.push(mem.alloc_table()?);
        }
        Some(core::mem::take(&mut self.spare))
    }

    /// Gives back the list [`reserve`](Self::reserve) handed out, with the
    /// pages the operation did not use (spares for the next).
    pub(crate) fn unreserve(&mut self, reserve: Vec<PhysAddr>) {
        debug_assert!(self.spare.is_empty());
        self.spare = reserve;
    }
}

/// The fixed parameters of one `map` walk.
struct MapWalk {
    va: u64,
    pa: u64,
    attr_bits: u64,
    min_leaf: u8,
}

/// Where a map walk is: a table (`None` only in the dry run, for a table
/// that does not exist yet), its level, and whether walkers can reach it.
#[derive(Clone, Copy)]
struct At {
    table: Option<PhysAddr>,
    level: u8,
    reachable: bool,
}

impl MapWalk {
    /// Maps `[from, to)` inside `at`. A new table is filled completely, then
    /// linked; a barrier precedes the link only when it goes into a table
    /// walkers can already reach, so one barrier covers a new subtree.
    fn walk<M: TableMemory>(
        &self,
        mem: &mut M,
        at: At,
        from: u64,
        to: u64,
        pass: &mut Pass<'_>,
        counts: &mut Counts,
    ) -> Result<(), MapError> {
        let level = at.level;
        let size = level_size(level);
        let mut cur = from;
        while cur < to {
            let slot = cur & !(size - 1);
            let chunk_end = to.min(slot + size);
            let pa = self.pa + (cur - self.va);
            let idx = level_index(cur, level);
            let raw = at.table.map_or(0, |t| mem.read(t, idx));
            let leaf_fits = level >= self.min_leaf
                && cur == slot
                && chunk_end == slot + size
                && pa & (size - 1) == 0;
            let below = |table| At {
                table,
                level: level + 1,
                reachable: at.reachable && table.is_some(),
            };
            match desc::decode(level, raw) {
                Descriptor::Leaf { .. } => return Err(MapError::AlreadyMapped),
                Descriptor::Table(next) => {
                    self.walk(mem, below(Some(next)), cur, chunk_end, pass, counts)?;
                }
                Descriptor::Invalid if leaf_fits => {
                    if let (Pass::Commit(_), Some(t)) = (&pass, at.table) {
                        mem.write(t, idx, desc::leaf_raw(level, pa, self.attr_bits));
                        count_up(counts, t);
                    }
                }
                Descriptor::Invalid => match pass {
                    Pass::Plan(needed) => {
                        **needed += 1;
                        self.walk(mem, below(None), cur, chunk_end, pass, counts)?;
                    }
                    Pass::Commit(reserve) => {
                        // The dry run counted this page; a shortfall would
                        // mean memory changed under us.
                        let new = reserve.pop().ok_or(MapError::NoMemory)?;
                        let inside = At {
                            table: Some(new),
                            level: level + 1,
                            reachable: false,
                        };
                        self.walk(mem, inside, cur, chunk_end, pass, counts)?;
                        if let Some(t) = at.table {
                            if at.reachable {
                                mem.barrier();
                            }
                            mem.write(t, idx, desc::table(new));
                            count_up(counts, t);
                        }
                    }
                },
            }
            cur = chunk_end;
        }
        Ok(())
    }
}
