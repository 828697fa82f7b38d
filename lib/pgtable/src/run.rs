//! Runs of pages: [`PageTable::map_pages`] (consecutive input pages onto a
//! list of frames that need not be contiguous) and the unmap of a run of
//! pages that spans several last-level tables, each in one walk per run.
//!
//! A [`Cursor`] descends from the root once, then moves from one
//! last-level table to the next by resuming from the deepest table the two
//! share (one descriptor read to step into the next sibling), instead of
//! walking from the root again for every table or every page. Each
//! operation first checks the whole run (and counts the new tables a map
//! needs), so a refusal changes nothing, then writes consecutive entries
//! of each last-level table. New tables are filled, the whole new subtree
//! under a live table built, before the one store that links it, right
//! after a barrier. It never frees a page: tables emptied by an unmap go
//! back in the token, and only when the token can list them without an
//! infallible allocation (otherwise they stay linked, empty).

use abi::{PAGE_SIZE, PhysAddr};

use crate::config::InputAddress;
use crate::counts::{count_add, count_add_held, count_down, count_down_held, count_up};
use crate::desc::{self, Attrs, Descriptor, LAST_LEVEL, level_index, level_shift, level_size};
use crate::error::MapError;
use crate::memory::TableMemory;
use crate::table::{Descent, PageTable, check_range, in_one_leaf_table};
use crate::token::Unmapped;

/// Where a [`Cursor`] stopped for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The last-level table that holds the address.
    Leaf(PhysAddr),
    /// The descriptor at this depth of the path is invalid.
    Missing(usize),
    /// A block maps the address.
    Block,
}

/// A walk towards consecutive last-level tables, remembering its path.
#[derive(Clone, Copy)]
pub(crate) struct Cursor {
    /// `(table, index)` at each depth from the root (depth 0) down to the
    /// last table above the leaves.
    pub(crate) path: [(PhysAddr, usize); LAST_LEVEL as usize],
    /// Entries of `path` that hold for `va`.
    valid: usize,
    va: u64,
    /// What the last `seek` found.
    stop: Option<Stop>,
}

impl Cursor {
    pub(crate) fn new(root: PhysAddr) -> Self {
        Self {
            path: [(root, 0); LAST_LEVEL as usize],
            valid: 0,
            va: 0,
            stop: None,
        }
    }

    /// Walks to `va`'s last-level table, resuming from the deepest table
    /// shared with the previous address (the root for the first).
    #[inline]
    pub(crate) fn seek<M: TableMemory>(&mut self, mem: &M, start: u8, va: u64) -> Stop {
        let leaf_depth = (LAST_LEVEL - start) as usize;
        let same_leaf_table =
            va >> level_shift(LAST_LEVEL - 1) == self.va >> level_shift(LAST_LEVEL - 1);
        if let Some(Stop::Leaf(t)) = self.stop
            && same_leaf_table
            && self.valid == leaf_depth
        {
            return Stop::Leaf(t);
        }
        // The tables at depths 0..=d are the same for `va` as for the
        // previous address while the indices above them agree.
        let mut d = 0;
        while d + 1 < self.valid
            && level_index(va, start + d as u8) == level_index(self.va, start + d as u8)
        {
            d += 1;
        }
        let mut table = self.path[d].0;
        self.va = va;
        for depth in d..leaf_depth {
            let level = start + depth as u8;
            let idx = level_index(va, level);
            self.path[depth] = (table, idx);
            self.valid = depth + 1;
            let stop = match desc::decode(level, mem.read(table, idx)) {
                Descriptor::Table(next) => {
                    table = next;
                    continue;
                }
                Descriptor::Invalid => Stop::Missing(depth),
                Descriptor::Leaf { .. } => Stop::Block,
            };
            self.stop = Some(stop);
            return stop;
        }
        self.stop = Some(Stop::Leaf(table));
        Stop::Leaf(table)
    }

    /// Forgets the path below `depth` (tables there were unlinked).
    fn truncate(&mut self, depth: usize) {
        self.valid = self.valid.min(depth + 1);
        self.stop = None;
    }
}

/// The pieces of `[va, end)` that fall in one last-level table each:
/// `(start, end)`.
pub(crate) fn leaf_chunks(va: u64, end: u64) -> impl Iterator<Item = (u64, u64)> {
    let span = level_size(LAST_LEVEL - 1);
    let mut cur = va;
    core::iter::from_fn(move || {
        if cur >= end {
            return None;
        }
        let chunk_end = end.min((cur | (span - 1)) + 1);
        let chunk = (cur, chunk_end);
        cur = chunk_end;
        Some(chunk)
    })
}

/// A checked run for [`PageTable::write_run`].
struct Run<'f> {
    va: u64,
    end: u64,
    frames: &'f [PhysAddr],
    attr_bits: u64,
}

/// A link to a new table not made yet.
#[derive(Clone, Copy)]
struct Link {
    /// The table and index that will point at `child`.
    at: (PhysAddr, usize),
    child: PhysAddr,
    /// `at` is in a table walkers can already reach.
    live: bool,
    /// An address in `child`'s span.
    va: u64,
}

impl<A: InputAddress> PageTable<A> {
    /// Maps consecutive 4 KiB pages from `va` onto `frames` (one frame per
    /// page, in order; they need not be contiguous) with `attrs`, as page
    /// descriptors, in one walk: the walk goes down once and moves to the
    /// next last-level table from its parent, writing consecutive entries
    /// in each.
    ///
    /// Refuses (with nothing changed) an empty, unaligned or out-of-range
    /// request, a frame that is not page aligned or beyond the output
    /// size, unencodable attributes, a range any page of which is already
    /// mapped, and running out of table pages: every target is checked and
    /// the new tables counted and allocated before the first store. As with
    /// [`map`](Self::map), the caller makes the writes visible (barrier)
    /// before relying on the mapping.
    pub fn map_pages<M: TableMemory>(
        &mut self,
        mem: &mut M,
        va: A,
        frames: &[PhysAddr],
        attrs: Attrs,
    ) -> Result<(), MapError> {
        let va = va.raw();
        let len = (frames.len() as u64)
            .checked_mul(PAGE_SIZE)
            .ok_or(MapError::OutOfRange)?;
        let end = check_range(va, len, self.config.input_limit())?;
        let out_limit = self.config.output_limit();
        for f in frames {
            if !f.is_page_aligned() {
                return Err(MapError::Unaligned);
            }
            if f.get() >= out_limit {
                return Err(MapError::OutOfRange);
            }
        }
        if !attrs.is_valid() {
            return Err(MapError::BadAttrs);
        }
        if in_one_leaf_table(va, end) {
            self.counts.try_reserve(1).map_err(|_| MapError::NoMemory)?;
            // The common case, one existing last-level table: check, then
            // write, after one plain descent (none when the walk cache
            // holds the table) and with no second pass.
            match self.leaf_table(mem, va) {
                Descent::Block => return Err(MapError::AlreadyMapped),
                Descent::Found(table) => {
                    let (i, n) = slots(va, end);
                    for k in i..i + n {
                        if mem.read(table, k) & desc::VALID != 0 {
                            return Err(MapError::AlreadyMapped);
                        }
                    }
                    let bits = attrs.bits();
                    for (k, f) in (i..i + n).zip(frames) {
                        mem.write(table, k, desc::leaf_raw(LAST_LEVEL, f.get(), bits));
                    }
                    count_add_held(&mut self.counts, table, n as u16);
                    return Ok(());
                }
                Descent::Missing => {}
            }
        }
        let start = self.config.start_level();
        let leaf_depth = (LAST_LEVEL - start) as usize;
        let mut cur = Cursor::new(self.root);
        // Check every target and count the tables to make.
        let mut first = None;
        let mut needed = 0usize;
        let mut prev_missing: Option<(u64, usize)> = None;
        let mut chunks = 0usize;
        for (from, to) in leaf_chunks(va, end) {
            chunks += 1;
            match cur.seek(mem, start, from) {
                Stop::Block => return Err(MapError::AlreadyMapped),
                Stop::Leaf(table) => {
                    let (i, n) = slots(from, to);
                    if (i..i + n).any(|i| mem.read(table, i) & desc::VALID != 0) {
                        return Err(MapError::AlreadyMapped);
                    }
                    prev_missing = None;
                }
                Stop::Missing(depth) => {
                    // New tables at depths depth+1..=leaf_depth, less those
                    // the previous piece makes and this one shares.
                    let shared = match prev_missing {
                        Some((pva, pdepth)) if pdepth == depth => (depth + 1..=leaf_depth)
                            .take_while(|&e| same_region(from, pva, start, e))
                            .count(),
                        _ => 0,
                    };
                    needed += leaf_depth - depth - shared;
                    prev_missing = Some((from, depth));
                }
            }
            first.get_or_insert(cur);
        }
        // Room for a count entry per leaf table the run fills, new or not.
        self.counts
            .try_reserve(chunks)
            .map_err(|_| MapError::NoMemory)?;
        let mut reserve = self.reserve(mem, needed).ok_or(MapError::NoMemory)?;
        // Write, from where the first piece's walk ended.
        let cur = first.unwrap_or(Cursor::new(self.root));
        let run = Run {
            va,
            end,
            frames,
            attr_bits: attrs.bits(),
        };
        let done = self.write_run(mem, cur, &run, &mut reserve);
        self.unreserve(reserve);
        done
    }

    /// The second pass of [`map_pages`](Self::map_pages): writes a checked
    /// run, taking its new tables from `reserve`.
    fn write_run<M: TableMemory>(
        &mut self,
        mem: &mut M,
        mut cur: Cursor,
        run: &Run<'_>,
        reserve: &mut alloc::vec::Vec<PhysAddr>,
    ) -> Result<(), MapError> {
        let start = self.config.start_level();
        let leaf_depth = (LAST_LEVEL - start) as usize;
        // Links to new tables, by the depth of the table they go into,
        // made once the run has left the linked table's span (so each new
        // table is complete before it is linked), deepest first.
        let mut pending: [Option<Link>; LAST_LEVEL as usize] = [None; LAST_LEVEL as usize];
        let mut frames = run.frames.iter();
        for (from, to) in leaf_chunks(run.va, run.end) {
            for e in (0..leaf_depth).rev() {
                if let Some(l) = pending[e].take_if(|l| !same_region(from, l.va, start, e + 1)) {
                    self.link(mem, l);
                }
            }
            let (i, n) = slots(from, to);
            let mut fill = |mem: &mut M, table: PhysAddr| {
                for (k, f) in (i..i + n).zip(frames.by_ref()) {
                    mem.write(table, k, desc::leaf_raw(LAST_LEVEL, f.get(), run.attr_bits));
                }
                count_add(&mut self.counts, table, n as u16);
            };
            match cur.seek(mem, start, from) {
                Stop::Leaf(table) => fill(mem, table),
                // Checked by the first pass; memory does not change under us.
                Stop::Block => return Err(MapError::AlreadyMapped),
                Stop::Missing(depth) => {
                    // New tables below `depth`, the leaf table filled
                    // first; the cursor goes on through them.
                    let leaf = reserve.pop().ok_or(MapError::NoMemory)?;
                    fill(mem, leaf);
                    let mut child = leaf;
                    for e in (depth + 1..leaf_depth).rev() {
                        let t = reserve.pop().ok_or(MapError::NoMemory)?;
                        let idx = level_index(from, start + e as u8);
                        pending[e] = Some(Link {
                            at: (t, idx),
                            child,
                            live: false,
                            va: from,
                        });
                        cur.path[e] = (t, idx);
                        child = t;
                    }
                    // The table at `depth` is new if a link into the one
                    // above it is still pending.
                    let live = depth == 0 || pending[depth - 1].is_none();
                    pending[depth] = Some(Link {
                        at: cur.path[depth],
                        child,
                        live,
                        va: from,
                    });
                    cur.valid = leaf_depth;
                    cur.stop = Some(Stop::Leaf(leaf));
                }
            }
        }
        for l in pending.into_iter().rev().flatten() {
            self.link(mem, l);
        }
        Ok(())
    }

    /// Makes a pending link: one store, after a barrier when it goes into
    /// a table walkers can reach.
    fn link<M: TableMemory>(&mut self, mem: &mut M, l: Link) {
        if l.live {
            mem.barrier();
        }
        mem.write(l.at.0, l.at.1, desc::table(l.child));
        count_up(&mut self.counts, l.at.0);
    }

    /// The unmap of a run of pages in one walk, when every page of it is
    /// mapped by a page descriptor: clears each last-level table's entries,
    /// unlinking each table that becomes empty (known from its count) and
    /// the tables above it that become empty in turn, recorded in `token`.
    /// `false`, with nothing changed (`token` included), for anything else (holes, blocks, missing tables), which
    /// the general two-pass walk handles.
    pub(crate) fn unmap_run<M: TableMemory>(
        &mut self,
        mem: &mut M,
        va: u64,
        end: u64,
        token: &mut Unmapped<A>,
    ) -> bool {
        let start = self.config.start_level();
        if in_one_leaf_table(va, end) {
            // The common case: no descent when the walk cache holds the
            // table, else one that keeps its path; no second pass. After a
            // cache hit the path is walked only to unlink a table the clear
            // emptied.
            let mut cur = None;
            let table = match self.cached_leaf(va) {
                Some(table) => table,
                None => {
                    let c = cur.insert(Cursor::new(self.root));
                    let Stop::Leaf(table) = c.seek(mem, start, va) else {
                        return false;
                    };
                    self.leaf = Some((va >> level_shift(LAST_LEVEL - 1), table));
                    table
                }
            };
            if !all_pages(mem, table, va, end) {
                return false;
            }
            token.push_range(va, end - va, LAST_LEVEL);
            if self.clear_entries(mem, table, (va, end), true) == 0 {
                let cur = cur.get_or_insert_with(|| {
                    let mut c = Cursor::new(self.root);
                    c.seek(mem, start, va);
                    c
                });
                if cur.stop == Some(Stop::Leaf(table)) {
                    self.unlink_empty(mem, cur, table, token);
                }
            }
            return true;
        }
        let mut cur = Cursor::new(self.root);
        let mut first = None;
        for (from, to) in leaf_chunks(va, end) {
            let Stop::Leaf(table) = cur.seek(mem, start, from) else {
                return false;
            };
            if !all_pages(mem, table, from, to) {
                return false;
            }
            first.get_or_insert(cur);
        }
        let Some(mut cur) = first else {
            return false;
        };
        token.push_range(va, end - va, LAST_LEVEL);
        for (from, to) in leaf_chunks(va, end) {
            // Checked above; memory does not change under us.
            if let Stop::Leaf(table) = cur.seek(mem, start, from) {
                self.clear(mem, &mut cur, table, (from, to), token);
            }
        }
        true
    }

    /// Clears `[from, to)` in the last-level table `table` the cursor
    /// reached, then unlinks each table on the way up that is now empty.
    fn clear<M: TableMemory>(
        &mut self,
        mem: &mut M,
        cur: &mut Cursor,
        table: PhysAddr,
        (from, to): (u64, u64),
        token: &mut Unmapped<A>,
    ) {
        if self.clear_entries(mem, table, (from, to), false) == 0 {
            self.unlink_empty(mem, cur, table, token);
        }
    }

    /// Clears `[from, to)` in the last-level table `table`; returns the
    /// valid entries left in it. `hold`: its count is held from now on
    /// (`counts`).
    fn clear_entries<M: TableMemory>(
        &mut self,
        mem: &mut M,
        table: PhysAddr,
        (from, to): (u64, u64),
        hold: bool,
    ) -> u16 {
        let (i, n) = slots(from, to);
        for k in i..i + n {
            mem.write(table, k, 0);
        }
        if hold {
            count_down_held(&mut self.counts, table, n as u16)
        } else {
            count_down(&mut self.counts, table, n as u16)
        }
    }

    /// Unlinks the empty last-level table `table` the cursor reached, then
    /// each table on the way up that is now empty.
    fn unlink_empty<M: TableMemory>(
        &mut self,
        mem: &mut M,
        cur: &mut Cursor,
        table: PhysAddr,
        token: &mut Unmapped<A>,
    ) {
        self.leaf = None;
        let mut left = 0;
        let mut child = table;
        let mut depth = cur.valid;
        // Room to list every table this may unlink, before the first
        // store. Without it the empty tables stay linked (a valid table
        // with no entries, reclaimed by a later unmap over it or by
        // `destroy`): the unmap itself, whose entries are already
        // cleared, never fails for want of heap.
        if token.try_reserve_freed(depth).is_err() {
            return;
        }
        // `path[depth - 1]` links `child`; the root is never unlinked.
        while left == 0 && depth > 0 {
            let (parent, idx) = cur.path[depth - 1];
            mem.write(parent, idx, 0);
            self.counts.remove(child);
            token.push_freed(child);
            left = count_down(&mut self.counts, parent, 1);
            child = parent;
            depth -= 1;
        }
        if depth < cur.valid {
            // The table at `depth` (`child`) is still linked.
            cur.truncate(depth);
        }
    }
}

/// Whether every entry of `[from, to)` in the last-level `table` maps a
/// page.
fn all_pages<M: TableMemory>(mem: &M, table: PhysAddr, from: u64, to: u64) -> bool {
    let (i, n) = slots(from, to);
    (i..i + n).all(|i| {
        matches!(
            desc::decode(LAST_LEVEL, mem.read(table, i)),
            Descriptor::Leaf { .. }
        )
    })
}

/// Index of the first entry and the number of entries `[from, to)` takes
/// in its last-level table.
fn slots(from: u64, to: u64) -> (usize, usize) {
    (
        level_index(from, LAST_LEVEL),
        ((to - from) / level_size(LAST_LEVEL)) as usize,
    )
}

/// Whether `a` and `b` reach the same table at `depth` (their indices
/// agree at every depth above it).
fn same_region(a: u64, b: u64, start: u8, depth: usize) -> bool {
    match depth {
        0 => true,
        d => a >> level_shift(start + d as u8 - 1) == b >> level_shift(start + d as u8 - 1),
    }
}
