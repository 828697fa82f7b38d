//! Unmapping: clears leaves, splits blocks that are only partly unmapped,
//! unlinks tables that become empty, and records all of it in an
//! [`Unmapped`] token. It never frees a page and never issues TLB
//! maintenance; a refused unmap changes nothing (a dry run checks holes and
//! counts split tables, which are allocated before the first store, and
//! what the token will record, whose room is reserved then too: an unmap
//! never grows the heap infallibly).
//!
//! Fast path: a run whose every page is mapped by a page descriptor (the
//! IOMMU server's unmaps) is done in one walk (`run`), with no dry run. Whether a table became empty comes from
//! the per-table valid-entry counts (`PageTable::counts`), never a scan.
//!
//! Holes: [`PageTable::unmap`] unmaps what is mapped in the range and
//! reports in the token whether the whole range was mapped;
//! [`PageTable::unmap_exact`] refuses a range with any hole.
//!
//! Splitting a block [Arm ARM D8.3.2] builds the next-level table with the
//! remaining pieces (same output addresses and attributes), then replaces
//! the block by the table descriptor in one store. That store changes the
//! block size of live translations without break-before-make, which the
//! architecture permits only with FEAT_BBM level 2 on the CPU, or
//! SMMU_IDR3.BBML = 2 on the SMMU (QEMU reports it) [Arm ARM D8.16.1].

use alloc::vec::Vec;

use abi::PhysAddr;

use crate::config::InputAddress;
use crate::counts::{Counts, count_down, count_up};
use crate::desc::{self, Descriptor, ENTRIES, LAST_LEVEL, level_index, level_size};
use crate::error::UnmapError;
use crate::memory::TableMemory;
use crate::table::{PageTable, Pass, RangeFault, check_range};
use crate::token::Unmapped;

impl From<RangeFault> for UnmapError {
    fn from(f: RangeFault) -> Self {
        match f {
            RangeFault::Empty => Self::Empty,
            RangeFault::Unaligned => Self::Unaligned,
            RangeFault::OutOfRange => Self::OutOfRange,
        }
    }
}

impl<A: InputAddress> PageTable<A> {
    /// Unmaps whatever is mapped in `len` bytes at `va`. Holes are allowed:
    /// the token's [`Unmapped::fully_mapped`] says whether there were any,
    /// and [`Unmapped::ranges`] what was really removed.
    ///
    /// Refuses (nothing changed) an empty, unaligned or out-of-range range,
    /// or running out of pages for a block split.
    pub fn unmap<M: TableMemory>(
        &mut self,
        mem: &mut M,
        va: A,
        len: u64,
    ) -> Result<Unmapped<A>, UnmapError> {
        self.unmap_inner(mem, va, len, false, Unmapped::new())
    }

    /// Like [`unmap`](Self::unmap), but refuses with
    /// [`UnmapError::NotMapped`], and changes nothing, unless every page of
    /// the range is mapped: "unmap exactly what I mapped".
    pub fn unmap_exact<M: TableMemory>(
        &mut self,
        mem: &mut M,
        va: A,
        len: u64,
    ) -> Result<Unmapped<A>, UnmapError> {
        self.unmap_inner(mem, va, len, true, Unmapped::new())
    }

    /// [`unmap_exact`](Self::unmap_exact) recording into `room`, a token
    /// made by [`Unmapped::with_room`]: an unmap that fits it (ranges,
    /// freed tables, no block split) allocates nothing, so a caller that
    /// reserved `room` before anything changed cannot see it refused for
    /// want of heap.
    pub fn unmap_exact_in<M: TableMemory>(
        &mut self,
        mem: &mut M,
        va: A,
        len: u64,
        room: Unmapped<A>,
    ) -> Result<Unmapped<A>, UnmapError> {
        self.unmap_inner(mem, va, len, true, room)
    }

    // Inlined into `unmap` and `unmap_exact`: as a call, returning its
    // token through memory, it cost the IOMMU server's unmap of a batch of
    // 32 pages about 1,600 more instructions (host bench `hot_paths`).
    #[inline(always)]
    fn unmap_inner<M: TableMemory>(
        &mut self,
        mem: &mut M,
        va: A,
        len: u64,
        exact: bool,
        room: Unmapped<A>,
    ) -> Result<Unmapped<A>, UnmapError> {
        let start = va.raw();
        let end = check_range(start, len, self.config.input_limit())?;
        let level = self.config.start_level();
        let mut token = room;
        if self.unmap_run(mem, start, end, &mut token) {
            return Ok(token);
        }
        // The general walk may unlink and split tables.
        self.leaf = None;

        let mut needed = 0;
        let mut plan: Unmapped<A> = Unmapped::new();
        unmap_level(
            mem,
            self.root,
            level,
            (start, end),
            &mut Pass::Plan(&mut needed),
            &mut plan,
            &mut self.counts,
        )?;
        if exact && !plan.fully_mapped() {
            return Err(UnmapError::NotMapped);
        }
        token
            .try_reserve(&plan)
            .map_err(|()| UnmapError::NoMemory)?;
        // Without a split nothing is added (no page, no count to make).
        let mut reserve = match needed {
            0 => core::mem::take(&mut self.spare),
            n => self.reserve(mem, n).ok_or(UnmapError::NoMemory)?,
        };
        let done = unmap_level(
            mem,
            self.root,
            level,
            (start, end),
            &mut Pass::Commit(&mut reserve),
            &mut token,
            &mut self.counts,
        );
        self.unreserve(reserve);
        done.map(|()| token)
    }
}

/// Unmaps `[from, to)` inside the linked table `table` at `level`.
fn unmap_level<A: InputAddress, M: TableMemory>(
    mem: &mut M,
    table: PhysAddr,
    level: u8,
    (from, to): (u64, u64),
    pass: &mut Pass<'_>,
    token: &mut Unmapped<A>,
    counts: &mut Counts,
) -> Result<(), UnmapError> {
    let size = level_size(level);
    let mut cur = from;
    while cur < to {
        let slot = cur & !(size - 1);
        let chunk_end = to.min(slot + size);
        let whole = cur == slot && chunk_end == slot + size;
        let idx = level_index(cur, level);
        match desc::decode(level, mem.read(table, idx)) {
            Descriptor::Invalid => token.set_hole(),
            Descriptor::Leaf { .. } if whole => {
                if let Pass::Commit(_) = pass {
                    mem.write(table, idx, 0);
                    count_down(counts, table, 1);
                }
                token.push_range(cur, chunk_end - cur, level);
            }
            Descriptor::Leaf { oa, attr_bits } => match pass {
                Pass::Plan(needed) => {
                    **needed += split_cost(level, cur, chunk_end);
                    token.plan_split();
                }
                Pass::Commit(reserve) => {
                    let new = reserve.pop().ok_or(UnmapError::NoMemory)?;
                    let piece = Piece {
                        base: slot,
                        oa: oa.get(),
                        attr_bits,
                        cut_from: cur,
                        cut_to: chunk_end,
                    };
                    fill_split(mem, new, level + 1, &piece, reserve, counts)?;
                    mem.barrier();
                    mem.write(table, idx, desc::table(new));
                    token.push_range(cur, chunk_end - cur, level);
                    token.push_split(slot, size, level);
                }
            },
            Descriptor::Table(next) => {
                if let Pass::Plan(_) = pass {
                    token.plan_table();
                }
                unmap_level(mem, next, level + 1, (cur, chunk_end), pass, token, counts)?;
                if let Pass::Commit(_) = pass
                    && (whole || counts.get(next).is_none_or(|c| c == 0))
                {
                    mem.write(table, idx, 0);
                    count_down(counts, table, 1);
                    counts.remove(next);
                    token.push_freed(next);
                }
            }
        }
        cur = chunk_end;
    }
    Ok(())
}

/// A block being split: its span starts at `base` and maps `oa` with
/// `attr_bits`; `[cut_from, cut_to)` (inside the span) is being unmapped.
struct Piece {
    base: u64,
    oa: u64,
    attr_bits: u64,
    cut_from: u64,
    cut_to: u64,
}

/// Fills the unlinked, zeroed table `table` at `level` with the parts of
/// `piece` outside the cut, splitting further where the cut ends inside a
/// next-level block.
fn fill_split<M: TableMemory>(
    mem: &mut M,
    table: PhysAddr,
    level: u8,
    piece: &Piece,
    reserve: &mut Vec<PhysAddr>,
    counts: &mut Counts,
) -> Result<(), UnmapError> {
    let size = level_size(level);
    for i in 0..ENTRIES {
        let offset = i as u64 * size;
        let lo = piece.base + offset;
        let hi = lo + size;
        let oa = piece.oa + offset;
        if hi <= piece.cut_from || lo >= piece.cut_to {
            mem.write(table, i, desc::leaf_raw(level, oa, piece.attr_bits));
            count_up(counts, table);
        } else if lo < piece.cut_from || hi > piece.cut_to {
            // Only a block can be cut partly: `level < LAST_LEVEL` here.
            let new = reserve.pop().ok_or(UnmapError::NoMemory)?;
            let inner = Piece {
                base: lo,
                oa,
                attr_bits: piece.attr_bits,
                cut_from: piece.cut_from.max(lo),
                cut_to: piece.cut_to.min(hi),
            };
            fill_split(mem, new, level + 1, &inner, reserve, counts)?;
            mem.write(table, i, desc::table(new));
            count_up(counts, table);
        }
    }
    Ok(())
}

/// Table pages needed to split a block at `level` when `[from, to)` (inside
/// it, not all of it) is unmapped: one for the next level, plus one for
/// each next-level block the cut ends inside.
pub(crate) fn split_cost(level: u8, from: u64, to: u64) -> usize {
    let sub = level + 1;
    if sub >= LAST_LEVEL {
        return 1;
    }
    let size = level_size(sub);
    let mut n = 1;
    let first = from & !(size - 1);
    let first_end = first + size;
    if from != first || to < first_end {
        n += split_cost(sub, from, to.min(first_end));
    }
    let last = (to - 1) & !(size - 1);
    if last != first && to != last + size {
        n += split_cost(sub, last, to);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::split_cost;

    const K4: u64 = 4096;
    const M2: u64 = 2 << 20;
    const G1: u64 = 1 << 30;

    #[test]
    fn split_costs() {
        // A 2 MiB block: one level-3 table whatever the cut.
        assert_eq!(split_cost(2, K4, 2 * K4), 1);
        // A 1 GiB block cut on 2 MiB boundaries: one level-2 table.
        assert_eq!(split_cost(1, M2, 3 * M2), 1);
        // Cut inside one 2 MiB piece: plus one level-3 table.
        assert_eq!(split_cost(1, M2 + K4, M2 + 2 * K4), 2);
        // Both ends inside different 2 MiB pieces: plus two.
        assert_eq!(split_cost(1, M2 + K4, 5 * M2 + K4), 3);
        // Ends at the block's end.
        assert_eq!(split_cost(1, G1 - K4, G1), 2);
    }
}
