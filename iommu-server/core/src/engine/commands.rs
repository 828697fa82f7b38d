//! Command choice: turns the scopes of a set of pending unmaps into the
//! cheapest correct list of TLBI commands (merged ranges per ASID; range
//! TLBIs if the SMMU has RIL, else one hinted TLBI per leaf entry; one
//! ASID-wide TLBI past the configured thresholds).
//!
//! It owns only that choice. It must never decide when to flush, touch a
//! payload, or emit a `Sync`; and it must never emit fewer invalidations than
//! cover every page of every scope it was given.

use alloc::vec::Vec;

use abi::{Asid, Iova, PAGE_SHIFT};

use super::{EngineConfig, Invalidation, LeafLevel, UnmapHint};

/// Hard bound on commands emitted for one ASID in one batch, whatever the
/// configuration says: past it the ASID is invalidated whole, so that no
/// request can make the server build an unbounded command list.
pub const MAX_COMMANDS_PER_ASID: usize = 4096;

/// Largest `SCALE` a range TLBI can encode (5 bits) [SMMUv3 §4.4.1.1].
const RANGE_MAX_SCALE: u32 = 31;
/// Mask of a range TLBI's `NUM` field (5 bits) [SMMUv3 §4.4.1.1].
const RANGE_NUM_MASK: u64 = 0x1f;

/// What one pending unmap needs invalidated.
#[derive(Debug, Clone)]
pub(super) enum Scope {
    /// Page ranges `[start_pfn, end_pfn)` in one ASID, all with one hint.
    Ranges {
        /// The ASID of the domain the ranges were unmapped from.
        asid: Asid,
        /// Half-open page-frame ranges, each non-empty.
        ranges: Frames,
        /// The page-table walker's hint about the unmapped entries.
        hint: UnmapHint,
    },
    /// Everything tagged with these ASIDs (domain teardown).
    Asids(Vec<Asid>),
}

/// The page-frame ranges of one unmap: inline for the usual single run, so
/// that accepting an unmap allocates nothing.
#[derive(Debug, Clone)]
pub(super) enum Frames {
    /// One `[start_pfn, end_pfn)`.
    One((u64, u64)),
    /// Several.
    Many(Vec<(u64, u64)>),
}

impl Frames {
    /// The ranges, in the order given.
    pub(super) fn as_slice(&self) -> &[(u64, u64)] {
        match self {
            Self::One(r) => core::slice::from_ref(r),
            Self::Many(v) => v,
        }
    }
}

/// Reusable room for [`choose`]: kept by the engine between plans, so that
/// choosing the commands of a plan allocates nothing once it has grown to
/// the usual size.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    /// Every range to invalidate: `(asid, leaf level, leaf-only, start,
    /// end)`, sorted before use.
    ranges: Vec<(Asid, LeafLevel, bool, u64, u64)>,
    /// ASIDs to invalidate whole, sorted and deduplicated before use.
    whole: Vec<Asid>,
    /// How many commands each ASID took, ascending by ASID.
    pub(super) counts: Vec<(Asid, usize)>,
}

impl Scratch {
    /// The commands [`choose`] gave `asid` last time.
    pub(super) fn count(&self, asid: Asid) -> Option<usize> {
        self.counts
            .binary_search_by_key(&asid, |&(a, _)| a)
            .ok()
            .map(|i| self.counts[i].1)
    }
}

/// Appends the commands that invalidate every scope to `out`, grouped by
/// ASID in ascending order (within one, by leaf level, then leaf-only,
/// then address), and leaves in `scratch.counts` how many commands each
/// ASID took.
pub(super) fn choose<'a>(
    config: &EngineConfig,
    scopes: impl IntoIterator<Item = &'a Scope>,
    out: &mut Vec<Invalidation>,
    scratch: &mut Scratch,
) {
    let Scratch {
        ranges,
        whole,
        counts,
    } = scratch;
    ranges.clear();
    whole.clear();
    counts.clear();
    for scope in scopes {
        match scope {
            Scope::Asids(asids) => whole.extend_from_slice(asids),
            Scope::Ranges {
                asid,
                ranges: r,
                hint,
            } => {
                let (level, leaf) = (hint.leaf_level, !hint.tables_freed);
                ranges.extend(
                    r.as_slice()
                        .iter()
                        .map(|&(s, e)| (*asid, level, leaf, s, e)),
                );
            }
        }
    }
    ranges.sort_unstable();
    whole.sort_unstable();
    whole.dedup();
    let (mut at, mut w) = (0, 0);
    loop {
        // The next ASID in either list, in ascending order.
        let asid = match (ranges.get(at), whole.get(w)) {
            (Some(r), Some(&a)) => r.0.min(a),
            (Some(r), None) => r.0,
            (None, Some(&a)) => a,
            (None, None) => break,
        };
        let mine = ranges[at..].partition_point(|r| r.0 == asid);
        let its = &ranges[at..at + mine];
        at += mine;
        let start = out.len();
        let mut is_whole = whole.get(w) == Some(&asid);
        if is_whole {
            w += 1;
        } else {
            let mut emitter = Emitter {
                config,
                asid,
                out: &mut *out,
                pages: 0,
                commands: 0,
                max_commands: config.asid_wide_after_commands.min(MAX_COMMANDS_PER_ASID),
            };
            if !emitter.groups(its) {
                out.truncate(start);
                is_whole = true;
            }
        }
        if is_whole {
            out.push(Invalidation::TlbiAsid { asid });
        }
        counts.push((asid, out.len() - start));
    }
}

/// Emits the commands of one ASID; any method returning `false` means "past
/// a threshold: invalidate the whole ASID instead".
struct Emitter<'c, 'o> {
    config: &'c EngineConfig,
    asid: Asid,
    out: &'o mut Vec<Invalidation>,
    pages: u64,
    commands: usize,
    max_commands: usize,
}

impl Emitter<'_, '_> {
    /// `ranges`: one ASID's, sorted; each run of one (leaf level,
    /// leaf-only) is merged and emitted in address order.
    fn groups(&mut self, ranges: &[(Asid, LeafLevel, bool, u64, u64)]) -> bool {
        let mut current: Option<(LeafLevel, bool, u64, u64)> = None;
        for &(_, level, leaf, s, e) in ranges {
            current = match current {
                Some((cl, cf, cs, ce))
                    if (cl, cf) == (level, leaf)
                        && s <= ce.saturating_add(self.config.merge_gap_pages) =>
                {
                    Some((cl, cf, cs, ce.max(e)))
                }
                Some((cl, cf, cs, ce)) => {
                    if !self.range(cl, cf, cs, ce) {
                        return false;
                    }
                    Some((level, leaf, s, e))
                }
                None => Some((level, leaf, s, e)),
            };
        }
        match current {
            Some((cl, cf, cs, ce)) => self.range(cl, cf, cs, ce),
            None => true,
        }
    }

    /// One merged range `[s, e)` of page frames.
    fn range(&mut self, level: LeafLevel, leaf: bool, s: u64, e: u64) -> bool {
        self.pages = self.pages.saturating_add(e - s);
        if self.pages > self.config.asid_wide_after_pages {
            return false;
        }
        // A TTL hint is only sound for leaf-only invalidation: a freed table
        // sits in the walk cache at a level above the leaves.
        let ttl = if leaf { level } else { LeafLevel::Any };
        if self.config.range_invalidation {
            // Each command covers `NUM << SCALE` pages; one command per
            // 5-bit window of the page count (Linux's split).
            let (mut pfn, mut left) = (s, e - s);
            while left > 0 {
                let scale = left.trailing_zeros();
                if scale > RANGE_MAX_SCALE || self.commands >= self.max_commands {
                    return false;
                }
                let pages = ((left >> scale) & RANGE_NUM_MASK) << scale;
                self.out.push(Invalidation::TlbiRange {
                    asid: self.asid,
                    iova: Iova::new(pfn << PAGE_SHIFT),
                    pages,
                    ttl,
                    leaf,
                });
                self.commands += 1;
                pfn += pages;
                left -= pages;
            }
        } else {
            let stride = level.span_pages();
            let first = s & !(stride - 1);
            let count = (e - first).div_ceil(stride);
            let room = (self.max_commands - self.commands.min(self.max_commands)) as u64;
            if count > room {
                return false;
            }
            for i in 0..count {
                self.out.push(Invalidation::TlbiVa {
                    asid: self.asid,
                    iova: Iova::new((first + i * stride) << PAGE_SHIFT),
                    pages: stride,
                    ttl,
                    leaf,
                });
            }
            self.commands += count as usize;
        }
        true
    }
}
