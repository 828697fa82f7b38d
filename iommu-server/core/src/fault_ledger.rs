//! One client's fault ledger: event-queue records coalesced per
//! (StreamID, page) in a bounded table, the counts the quarantine
//! thresholds are checked against, and the quarantine decision itself,
//! taken record by record (so a flood is stopped while it is being
//! drained, not after).
//!
//! Records the SMMU could not write (event-queue overflow) count too, as
//! an estimate the server charges ([`FaultLedger::note_lost`]): a device
//! that floods fast enough to overflow the queue is not let off by it.
//!
//! Pure logic, no hardware and no clock. It must never lose a count (every
//! record noted is in the table's counts, in `untracked`, in what
//! `Faults` drained, or among the lost:
//! `total() == kept_count() + untracked() + drained() + lost()`),
//! never hold more than its table bound, and never decide quarantine more
//! than once; the decision comes at the record that passes a threshold,
//! whatever the page distribution: more than `distinct_pages` distinct
//! (StreamID, page) faults, or `records` records in total (a flood on one
//! page counts too). It never grows the heap infallibly: the table is a
//! sorted list grown with `try_reserve`, and a record it has no room for
//! counts in `untracked`, as one past its bound does.

use alloc::vec::Vec;

use abi::{Iova, PAGE_SHIFT, StreamId};
use iommu_api::FaultRecord;

/// When a client is quarantined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// Quarantine once there are more than this many distinct
    /// (StreamID, page) faults.
    pub distinct_pages: u32,
    /// Quarantine once this many records were noted, whatever their pages
    /// (at least 1).
    pub records: u64,
}

/// Why a client was quarantined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuarantineReason {
    /// More than [`Thresholds::distinct_pages`] distinct pages faulted.
    DistinctPages,
    /// [`Thresholds::records`] records were noted.
    Records,
}

/// One record, as [`FaultLedger::note`] takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The device.
    pub sid: StreamId,
    /// The event type.
    pub kind: u16,
    /// A write access.
    pub write: bool,
    /// The faulting input address.
    pub addr: u64,
}

/// What noting one record found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Noted {
    /// The first record of a (StreamID, page) not in the table.
    pub first: bool,
    /// This record passed a threshold: quarantine now (given once).
    pub quarantine: Option<QuarantineReason>,
}

/// See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct FaultLedger {
    /// Coalesced records by (StreamID, page), ascending.
    table: Vec<((u32, u64), FaultRecord)>,
    bound: usize,
    total: u64,
    distinct: u32,
    untracked: u64,
    drained: u64,
    lost: u64,
    decided: Option<QuarantineReason>,
}

impl FaultLedger {
    /// An empty ledger keeping at most `bound` coalesced records.
    pub fn new(bound: usize) -> Self {
        Self {
            bound,
            ..Self::default()
        }
    }

    /// Notes one record: coalesces it into its (StreamID, page) entry, or
    /// makes one if the table has room (else the record is counted in
    /// `untracked`; a page the full table cannot hold counts as a new
    /// distinct page, which errs towards quarantine), then checks the
    /// thresholds.
    pub fn note(&mut self, f: Fault, th: &Thresholds) -> Noted {
        self.total = self.total.saturating_add(1);
        let key = (f.sid.0, f.addr >> PAGE_SHIFT);
        let first = match self.table.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(at) => {
                if let Some((_, r)) = self.table.get_mut(at) {
                    r.count = r.count.saturating_add(1);
                }
                false
            }
            Err(at) => {
                if self.table.len() < self.bound && self.table.try_reserve(1).is_ok() {
                    let record = FaultRecord {
                        sid: f.sid,
                        kind: f.kind,
                        write: f.write,
                        iova: Iova::new(f.addr),
                        count: 1,
                    };
                    self.table.insert(at, (key, record));
                } else {
                    self.untracked = self.untracked.saturating_add(1);
                }
                self.distinct = self.distinct.saturating_add(1);
                true
            }
        };
        let quarantine = if self.decided.is_none() {
            self.decided = decide(self.total, self.distinct, th);
            self.decided
        } else {
            None
        };
        Noted { first, quarantine }
    }

    /// Takes up to `max` coalesced records out, lowest (StreamID, page)
    /// first; their counts move to `drained`. Nothing, if the heap cannot
    /// hold the list (see [`FaultLedger::try_drain`]).
    pub fn drain(&mut self, max: usize) -> Vec<FaultRecord> {
        self.try_drain(max).unwrap_or_default()
    }

    /// [`FaultLedger::drain`], or `None`, with nothing taken, if the heap
    /// cannot hold the list (reserved before any record moves).
    pub fn try_drain(&mut self, max: usize) -> Option<Vec<FaultRecord>> {
        let n = max.min(self.table.len());
        let mut out = Vec::new();
        out.try_reserve_exact(n).ok()?;
        for (_, r) in self.table.drain(..n) {
            self.drained = self.drained.saturating_add(u64::from(r.count));
            out.push(r);
        }
        Some(out)
    }

    /// Records noted.
    pub fn total(&self) -> u64 {
        self.total
    }
    /// Distinct (StreamID, page) faults counted.
    pub fn distinct(&self) -> u32 {
        self.distinct
    }
    /// Counts `n` records the SMMU lost to an event-queue overflow of this
    /// client's device (an estimate: no register says how many), then
    /// checks the thresholds: lost records count towards `records` like
    /// noted ones. Returns the quarantine decision if this passed one.
    pub fn note_lost(&mut self, n: u64, th: &Thresholds) -> Option<QuarantineReason> {
        self.total = self.total.saturating_add(n);
        self.lost = self.lost.saturating_add(n);
        if self.decided.is_none() {
            self.decided = decide(self.total, self.distinct, th);
            self.decided
        } else {
            None
        }
    }

    /// Records counted as lost to overflows ([`FaultLedger::note_lost`]).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Coalesced records waiting in the table.
    pub fn kept(&self) -> usize {
        self.table.len()
    }
    /// The sum of the waiting records' counts.
    pub fn kept_count(&self) -> u64 {
        self.table.iter().map(|(_, r)| u64::from(r.count)).sum()
    }
    /// Records of pages the full table could not hold.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }
    /// Record counts handed out by [`FaultLedger::drain`].
    pub fn drained(&self) -> u64 {
        self.drained
    }
    /// The quarantine decision, once taken.
    pub fn decided(&self) -> Option<QuarantineReason> {
        self.decided
    }
    /// Zeroes the total (the benchmark's `ResetStats`), keeping the table,
    /// the distinct count and the decision. The conservation identity
    /// holds again from here with `drained`, `untracked` and `lost`
    /// zeroed too.
    pub fn reset_total(&mut self) {
        self.total = self.kept_count();
        self.untracked = 0;
        self.drained = 0;
        self.lost = 0;
    }
}

/// The quarantine decision for `total` records on `distinct` distinct
/// pages: distinct pages first, then the record count.
pub fn decide(total: u64, distinct: u32, th: &Thresholds) -> Option<QuarantineReason> {
    if distinct > th.distinct_pages {
        Some(QuarantineReason::DistinctPages)
    } else if total >= th.records.max(1) {
        Some(QuarantineReason::Records)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn fault(sid: u32, page: u64, off: u64) -> Fault {
        Fault {
            sid: StreamId(sid),
            kind: 0x10,
            write: true,
            addr: (page << PAGE_SHIFT) | (off & 0xfff),
        }
    }

    /// A reference: distinct keys and the record index at which the
    /// thresholds are first passed.
    fn reference(
        records: &[(u32, u64)],
        th: &Thresholds,
        bound: usize,
    ) -> Option<(usize, QuarantineReason)> {
        let mut seen = alloc::collections::BTreeSet::new();
        let mut distinct = 0u32;
        for (i, &(sid, page)) in records.iter().enumerate() {
            // A key counts again once the table was full when it came.
            if !seen.contains(&(sid, page)) {
                distinct += 1;
                if seen.len() < bound {
                    seen.insert((sid, page));
                }
            }
            if let Some(r) = decide(i as u64 + 1, distinct, th) {
                return Some((i, r));
            }
        }
        None
    }

    proptest! {
        #[test]
        fn coalescing_never_loses_a_count(
            records in prop::collection::vec((0u32..3, 0u64..40, any::<u64>()), 0..2000),
            bound in 1usize..64,
            drains in prop::collection::vec((0usize..2000, 0usize..20), 0..8),
            losses in prop::collection::vec((0usize..2000, 0u64..1000), 0..8),
        ) {
            let th = Thresholds { distinct_pages: u32::MAX, records: u64::MAX };
            let mut l = FaultLedger::new(bound);
            let mut lost = 0;
            for (i, &(sid, page, off)) in records.iter().enumerate() {
                l.note(fault(sid, page, off), &th);
                for &(at, n) in &losses {
                    if at == i {
                        l.note_lost(n, &th);
                        lost += n;
                    }
                }
                for &(at, n) in &drains {
                    if at == i {
                        let got = l.drain(n);
                        prop_assert!(got.len() <= n);
                    }
                }
                prop_assert!(l.kept() <= bound);
                prop_assert_eq!(
                    l.total(),
                    l.kept_count() + l.untracked() + l.drained() + l.lost()
                );
            }
            prop_assert_eq!(l.total(), records.len() as u64 + lost);
            prop_assert_eq!(l.lost(), lost);
        }

        #[test]
        fn quarantine_at_the_threshold_whatever_the_pages(
            pages in prop::collection::vec(0u64..64, 1..3000),
            single in any::<bool>(),
            distinct_pages in 0u32..40,
            records in 1u64..2500,
            bound in 1usize..80,
        ) {
            // Half the cases put every record on one page.
            let recs: Vec<(u32, u64)> =
                pages.iter().map(|&p| (0x18, if single { 7 } else { p })).collect();
            let th = Thresholds { distinct_pages, records };
            let mut l = FaultLedger::new(bound);
            let mut got = None;
            for (i, &(sid, page)) in recs.iter().enumerate() {
                if let Some(r) = l.note(fault(sid, page, 0), &th).quarantine {
                    prop_assert!(got.is_none(), "decided twice");
                    got = Some((i, r));
                }
            }
            prop_assert_eq!(got, reference(&recs, &th, bound));
            // A total at the threshold always quarantines, on any pages.
            if recs.len() as u64 >= records {
                prop_assert!(got.is_some_and(|(i, _)| (i as u64) < records));
            }
        }
    }

    #[test]
    fn lost_records_count_towards_quarantine() {
        let th = Thresholds {
            distinct_pages: 16,
            records: 1000,
        };
        let mut l = FaultLedger::new(64);
        for i in 0..100u64 {
            assert_eq!(l.note(fault(0x18, 5, i * 4), &th).quarantine, None);
        }
        // 100 noted + 899 lost: one short.
        assert_eq!(l.note_lost(899, &th), None);
        assert_eq!(l.note_lost(1, &th), Some(QuarantineReason::Records));
        // Decided once.
        assert_eq!(l.note_lost(5000, &th), None);
        assert_eq!(l.note(fault(0x18, 6, 0), &th).quarantine, None);
        assert_eq!(l.decided(), Some(QuarantineReason::Records));
        assert_eq!((l.total(), l.lost()), (6001, 5900));
    }

    #[test]
    fn a_single_page_flood_is_quarantined_by_its_records() {
        let th = Thresholds {
            distinct_pages: 16,
            records: 4096,
        };
        let mut l = FaultLedger::new(64);
        let mut at = None;
        for i in 0..10_000u64 {
            if l.note(fault(0x18, 5, i * 4), &th).quarantine.is_some() {
                at = at.or(Some(i));
            }
        }
        assert_eq!(at, Some(4095));
        assert_eq!(l.decided(), Some(QuarantineReason::Records));
        assert_eq!(l.kept(), 1);
        assert_eq!(l.kept_count(), 10_000);
    }
}
