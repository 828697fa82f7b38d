//! Command choice: turns the scopes of a set of pending unmaps into the
//! cheapest correct list of TLBI commands (merged ranges per ASID; range
//! TLBIs if the SMMU has RIL, else one hinted TLBI per leaf entry; one
//! ASID-wide TLBI past the configured thresholds).
//!
//! It owns only that choice. It must never decide when to flush, touch a
//! payload, or emit a `Sync`; it must never emit fewer invalidations than
//! cover every page of every scope it was given; and it never grows the
//! heap infallibly (every list is reserved with `try_reserve`: a choice the
//! heap cannot hold is refused whole).

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

/// One range of one scope, as `choose` sorts them: by ASID, then leaf
/// level and leaf-only (as the commands come out), then start.
type Work = (Asid, LeafLevel, bool, u64, u64);

/// The heap could not hold the choice (nothing was appended).
#[derive(Debug)]
pub(super) struct NoMemory;

/// The lists a choice is worked out in, kept by the engine from one
/// choice to the next (cleared, their room kept), so that once they have
/// grown to the largest choice yet, choosing allocates nothing.
#[derive(Debug, Default)]
pub(super) struct Lists {
    work: Vec<Work>,
    whole: Vec<Asid>,
    /// The last choice's commands per ASID (see [`choose`]).
    pub(super) counts: Vec<(Asid, usize)>,
}

/// Appends the commands that invalidate every scope to `out`, grouped by
/// ASID in ascending order, and leaves in `lists.counts` how many commands
/// each ASID took (by ASID, ascending). Every list it grows is reserved
/// with `try_reserve`: `NoMemory`, with `out` as it was, if the heap
/// cannot hold them.
pub(super) fn choose<'a, I>(
    config: &EngineConfig,
    scopes: I,
    out: &mut Vec<Invalidation>,
    lists: &mut Lists,
) -> Result<(), NoMemory>
where
    I: IntoIterator<Item = &'a Scope>,
    I::IntoIter: Clone,
{
    let before = out.len();
    lists.work.clear();
    lists.whole.clear();
    lists.counts.clear();
    let scopes = scopes.into_iter();
    let done = match one_range(scopes.clone()) {
        Some((asid, range, hint)) => choose_one(config, asid, range, hint, out, &mut lists.counts),
        None => choose_into(config, scopes, out, lists),
    };
    if done.is_err() {
        out.truncate(before);
        lists.counts.clear();
    }
    done
}

/// The one range of `scopes` if they are a single scope of a single range
/// (a strict unmap of one buffer or of one group, the usual flush).
fn one_range<'a>(
    mut scopes: impl Iterator<Item = &'a Scope>,
) -> Option<(Asid, (u64, u64), UnmapHint)> {
    match (scopes.next(), scopes.next()) {
        (
            Some(Scope::Ranges {
                asid,
                ranges: Frames::One(range),
                hint,
            }),
            None,
        ) => Some((*asid, *range, *hint)),
        _ => None,
    }
}

/// [`choose_into`] for one range of one ASID, without its sorting and
/// searching (nothing to sort or merge): the same commands, the same count.
fn choose_one(
    config: &EngineConfig,
    asid: Asid,
    (s, e): (u64, u64),
    hint: UnmapHint,
    out: &mut Vec<Invalidation>,
    counts: &mut Vec<(Asid, usize)>,
) -> Result<(), NoMemory> {
    let work = [(asid, hint.leaf_level, !hint.tables_freed, s, e)];
    emit_asid(config, asid, false, &work, out, counts)
}

fn choose_into<'a>(
    config: &EngineConfig,
    scopes: impl Iterator<Item = &'a Scope> + Clone,
    out: &mut Vec<Invalidation>,
    lists: &mut Lists,
) -> Result<(), NoMemory> {
    let Lists {
        work,
        whole,
        counts,
    } = lists;
    let (mut n_ranges, mut n_whole) = (0, 0);
    for scope in scopes.clone() {
        match scope {
            Scope::Asids(asids) => n_whole += asids.len(),
            Scope::Ranges { ranges, .. } => n_ranges += ranges.as_slice().len(),
        }
    }
    work.try_reserve(n_ranges).map_err(|_| NoMemory)?;
    whole.try_reserve(n_whole).map_err(|_| NoMemory)?;
    for scope in scopes {
        match scope {
            Scope::Asids(asids) => whole.extend_from_slice(asids),
            Scope::Ranges { asid, ranges, hint } => {
                let (level, leaf) = (hint.leaf_level, !hint.tables_freed);
                work.extend(
                    ranges
                        .as_slice()
                        .iter()
                        .map(|&(s, e)| (*asid, level, leaf, s, e)),
                );
            }
        }
    }
    work.sort_unstable();
    whole.sort_unstable();
    whole.dedup();
    // The ASIDs of both lists in ascending order, each once: the first
    // one above `after`.
    let first_above = |after: Option<Asid>| {
        let w = after.map_or(0, |a| work.partition_point(|x| x.0 <= a));
        let h = after.map_or(0, |a| whole.partition_point(|&x| x <= a));
        let (w, h) = (work.get(w).map(|x| x.0), whole.get(h).copied());
        match (w, h) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    };
    let mut next = first_above(None);
    while let Some(asid) = next {
        next = first_above(Some(asid));
        let wide = whole.binary_search(&asid).is_ok();
        let from = work.partition_point(|w| w.0 < asid);
        let to = work.partition_point(|w| w.0 <= asid);
        emit_asid(
            config,
            asid,
            wide,
            work.get(from..to).unwrap_or(&[]),
            out,
            counts,
        )?;
    }
    Ok(())
}

/// Appends the commands of one ASID: the merged ranges of `work` (its
/// ranges, sorted), or one ASID-wide TLBI if `wide` or past a threshold;
/// then how many it took to `counts`.
fn emit_asid(
    config: &EngineConfig,
    asid: Asid,
    mut wide: bool,
    work: &[Work],
    out: &mut Vec<Invalidation>,
    counts: &mut Vec<(Asid, usize)>,
) -> Result<(), NoMemory> {
    let start = out.len();
    if !wide {
        let mut emitter = Emitter {
            config,
            asid,
            out: &mut *out,
            pages: 0,
            commands: 0,
            max_commands: config.asid_wide_after_commands.min(MAX_COMMANDS_PER_ASID),
        };
        if !emitter.groups(work)? {
            out.truncate(start);
            wide = true;
        }
    }
    if wide {
        out.try_reserve(1).map_err(|_| NoMemory)?;
        out.push(Invalidation::TlbiAsid { asid });
    }
    counts.try_reserve(1).map_err(|_| NoMemory)?;
    counts.push((asid, out.len() - start));
    Ok(())
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
    /// The commands of `work` (this ASID's ranges, sorted); `Ok(false)`
    /// past a threshold.
    fn groups(&mut self, work: &[Work]) -> Result<bool, NoMemory> {
        let mut current: Option<(LeafLevel, bool, u64, u64)> = None;
        for &(_, level, leaf, s, e) in work {
            current = match current {
                Some((l, f, cs, ce))
                    if (l, f) == (level, leaf)
                        && s <= ce.saturating_add(self.config.merge_gap_pages) =>
                {
                    Some((l, f, cs, ce.max(e)))
                }
                Some((l, f, cs, ce)) => {
                    if !self.range(l, f, cs, ce)? {
                        return Ok(false);
                    }
                    Some((level, leaf, s, e))
                }
                None => Some((level, leaf, s, e)),
            };
        }
        if let Some((l, f, cs, ce)) = current
            && !self.range(l, f, cs, ce)?
        {
            return Ok(false);
        }
        Ok(true)
    }

    /// One merged range `[s, e)` of page frames.
    fn range(&mut self, level: LeafLevel, leaf: bool, s: u64, e: u64) -> Result<bool, NoMemory> {
        self.pages = self.pages.saturating_add(e - s);
        if self.pages > self.config.asid_wide_after_pages {
            return Ok(false);
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
                    return Ok(false);
                }
                let pages = ((left >> scale) & RANGE_NUM_MASK) << scale;
                self.out.try_reserve(1).map_err(|_| NoMemory)?;
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
                return Ok(false);
            }
            self.out.try_reserve(count as usize).map_err(|_| NoMemory)?;
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
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MERGE_GAP_PAGES;
    use proptest::prelude::*;

    fn level() -> impl Strategy<Value = LeafLevel> {
        prop_oneof![
            Just(LeafLevel::Any),
            Just(LeafLevel::L1),
            Just(LeafLevel::L2),
            Just(LeafLevel::L3),
        ]
    }

    proptest! {
        /// One scope of one range: the shortcut emits what the general
        /// choice emits (commands, counts, and whether it fails), whatever
        /// the thresholds and whatever `out` held before.
        #[test]
        fn one_range_chooses_as_the_general_choice(
            ril in any::<bool>(),
            wide_pages in prop_oneof![Just(u64::MAX), 1u64..2_000],
            wide_commands in prop_oneof![Just(512usize), 0usize..8],
            asid in 1u16..5,
            start in 0u64..(1 << 36),
            len in prop_oneof![1u64..64, 1u64..(1 << 20), Just((1 << 20) - 1)],
            leaf_level in level(),
            tables_freed in any::<bool>(),
            before in 0usize..3,
        ) {
            let config = EngineConfig {
                range_invalidation: ril,
                asid_wide_after_pages: wide_pages,
                asid_wide_after_commands: wide_commands,
                piggyback_deferred: true,
                merge_gap_pages: MERGE_GAP_PAGES,
            };
            let scope = Scope::Ranges {
                asid: Asid(asid),
                ranges: Frames::One((start, start + len)),
                hint: UnmapHint { leaf_level, tables_freed },
            };
            let prior = vec![Invalidation::Sync; before];
            let (mut short, mut general) = (prior.clone(), prior);
            let (mut ls, mut lg) = (Lists::default(), Lists::default());
            let a = choose(&config, [&scope], &mut short, &mut ls);
            let b = choose_into(&config, [&scope].into_iter(), &mut general, &mut lg);
            prop_assert_eq!(a.is_ok(), b.is_ok());
            prop_assert_eq!(short, general);
            prop_assert_eq!(ls.counts, lg.counts);
        }
    }
}
