//! Ring arithmetic for submission and completion queues
//! [NVMe-2.0 §3.3.1, §4.1] and the command-id table that maps the
//! controller's CIDs to the driver's slots, with issue times for
//! timeouts, and fences the slots of commands given up until the
//! controller is provably done with them. Owns indices and bookkeeping
//! only; never reads queue memory or time (the driver passes `now` in
//! counter ticks).

use alloc::vec;
use alloc::vec::Vec;

use crate::Cid;

/// A submission queue's producer side [NVMe-2.0 §4.1.1]: the host owns the
/// tail; the controller reports the head in every completion (SQHD). Full
/// when `tail + 1 == head` (one entry stays empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqRing {
    entries: u16,
    head: u16,
    tail: u16,
}

impl SqRing {
    /// A ring of `entries` (at least 2), empty.
    pub fn new(entries: u16) -> Option<SqRing> {
        (entries >= 2).then_some(SqRing {
            entries,
            head: 0,
            tail: 0,
        })
    }
    /// Entries in the ring.
    pub fn entries(&self) -> u16 {
        self.entries
    }
    /// The tail: the next index to fill, and the doorbell value.
    pub fn tail(&self) -> u16 {
        self.tail
    }
    /// The head as the controller last reported it.
    pub fn head(&self) -> u16 {
        self.head
    }
    /// Entries written but not yet consumed by the controller.
    pub fn used(&self) -> u16 {
        (self.tail + self.entries - self.head) % self.entries
    }
    /// Entries that can still be written.
    pub fn free(&self) -> u16 {
        self.entries - 1 - self.used()
    }
    /// Claims the entry at the tail and advances it; `None` when full.
    pub fn push(&mut self) -> Option<u16> {
        if self.free() == 0 {
            return None;
        }
        let at = self.tail;
        self.tail = (self.tail + 1) % self.entries;
        Some(at)
    }
    /// Records the controller's SQHD. A value that is not an index, or that
    /// would un-consume entries (outside `head..=tail` going round), is
    /// refused (`false`): the controller misbehaved.
    pub fn set_head(&mut self, sqhd: u16) -> bool {
        if sqhd >= self.entries {
            return false;
        }
        let advance = (sqhd + self.entries - self.head) % self.entries;
        if advance > self.used() {
            return false;
        }
        self.head = sqhd;
        true
    }
}

/// A completion queue's consumer side [NVMe-2.0 §4.1.2, §4.6]: the host
/// owns the head; an entry is new when its phase tag equals the expected
/// phase, which starts at 1 and flips at each wrap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CqRing {
    entries: u16,
    head: u16,
    phase: bool,
}

impl CqRing {
    /// A ring of `entries` (at least 2), as after creation: head 0, phase 1.
    pub fn new(entries: u16) -> Option<CqRing> {
        (entries >= 2).then_some(CqRing {
            entries,
            head: 0,
            phase: true,
        })
    }
    /// Entries in the ring.
    pub fn entries(&self) -> u16 {
        self.entries
    }
    /// The head: the next entry to look at, and the doorbell value.
    pub fn head(&self) -> u16 {
        self.head
    }
    /// The phase tag a new entry at the head carries.
    pub fn phase(&self) -> bool {
        self.phase
    }
    /// Whether an entry with phase tag `phase` at the head is new.
    pub fn is_new(&self, phase: bool) -> bool {
        phase == self.phase
    }
    /// Consumes the entry at the head.
    pub fn advance(&mut self) {
        self.head += 1;
        if self.head == self.entries {
            self.head = 0;
            self.phase = !self.phase;
        }
    }
}

/// A command the controller has and the driver waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Pending {
    cid: Cid,
    issued: u64,
}

/// What a slot is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Free for a new command.
    Free,
    /// A command in flight, within its deadline.
    Busy(Pending),
    /// A command given up after its deadline (or on a controller failure)
    /// that the controller may still act on: the slot, with everything
    /// the command points at (its PRP list page, its buffer's IOVA), stays
    /// reserved until its completion arrives, an Abort of it completes, or
    /// the controller is reset.
    Fenced(Pending),
}

/// Why a command id could not be issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CidError {
    /// The slot is not below the table's size.
    BadSlot,
    /// The slot already has a command in flight, or is fenced.
    Busy,
    /// Every generation of the slot's CID is held by abandoned commands.
    Exhausted,
}

/// What a completion's CID meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completed {
    /// The command in flight for this slot, issued at `issued`.
    Slot {
        /// The driver's slot.
        slot: u16,
        /// When it was issued.
        issued: u64,
    },
    /// The late completion of a fenced command: it is over, and its slot
    /// is free again (the fence is lifted; it was reported already).
    Released {
        /// The driver's slot.
        slot: u16,
    },
    /// A command whose slot was already released (an Abort completed):
    /// its completion only frees its CID.
    Abandoned,
    /// No command of ours has this CID: the controller misbehaved.
    Unknown,
}

/// Command ids ↔ slots. A CID is `generation << slot_bits | slot`: each
/// issue on a slot takes the next generation, so a late completion of a
/// command given up after a timeout never matches the slot's next command.
///
/// The fencing rule: a command given up ([`CidTable::expire`],
/// [`CidTable::fence_all`]) keeps its slot *fenced* (not issuable) until
/// its completion arrives ([`CidTable::complete`] → `Released`), an Abort
/// of it completes ([`CidTable::aborted`]), or the controller is reset
/// ([`CidTable::reset`]). Only then may what the command points at be
/// reused. A CID whose slot an Abort released stays reserved until its own
/// completion arrives (or a reset).
#[derive(Clone, Debug)]
pub struct CidTable {
    slots: Vec<Slot>,
    generation: Vec<u16>,
    abandoned: Vec<Cid>,
    slot_bits: u32,
}

impl CidTable {
    /// A table for `slots` slots (1..=4096).
    pub fn new(slots: u16) -> Option<CidTable> {
        if slots == 0 || slots > 4096 {
            return None;
        }
        let slot_bits = u16::BITS - (slots - 1).leading_zeros();
        Some(CidTable {
            slots: vec![Slot::Free; usize::from(slots)],
            generation: vec![0; usize::from(slots)],
            abandoned: Vec::new(),
            slot_bits,
        })
    }

    /// Slots in the table.
    pub fn len(&self) -> u16 {
        self.slots.len() as u16
    }
    /// Whether the table has no slots (never, once made).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
    /// Commands in flight within their deadline.
    pub fn in_flight(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Busy(_)))
            .count()
    }
    /// Fenced slots: commands given up that the controller may still act on.
    pub fn fenced(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Fenced(_)))
            .count()
    }
    /// Commands the controller may still complete: in flight, fenced, and
    /// aborted ones whose completion has not arrived.
    pub fn outstanding(&self) -> usize {
        self.in_flight() + self.fenced() + self.abandoned.len()
    }
    /// Whether `slot` cannot take a command: one is in flight, or it is
    /// fenced.
    pub fn is_busy(&self, slot: u16) -> bool {
        matches!(
            self.slots.get(usize::from(slot)),
            Some(Slot::Busy(_) | Slot::Fenced(_))
        )
    }
    /// Whether `slot` is fenced.
    pub fn is_fenced(&self, slot: u16) -> bool {
        matches!(self.slots.get(usize::from(slot)), Some(Slot::Fenced(_)))
    }
    /// The CID of the command fenced on `slot`.
    pub fn fenced_cid(&self, slot: u16) -> Option<Cid> {
        match self.slots.get(usize::from(slot)) {
            Some(Slot::Fenced(p)) => Some(p.cid),
            _ => None,
        }
    }

    fn cid_of(&self, slot: u16, generation: u16) -> Cid {
        Cid((generation << self.slot_bits) | slot)
    }

    fn generations(&self) -> u32 {
        1 << (u16::BITS - self.slot_bits)
    }

    /// The slot a CID of this table names.
    pub fn slot_of(&self, cid: Cid) -> u16 {
        cid.0 & ((1 << self.slot_bits) - 1)
    }

    /// Issues a CID for `slot` at time `now`.
    pub fn issue(&mut self, slot: u16, now: u64) -> Result<Cid, CidError> {
        let i = usize::from(slot);
        match self.slots.get(i) {
            None => return Err(CidError::BadSlot),
            Some(Slot::Busy(_) | Slot::Fenced(_)) => return Err(CidError::Busy),
            Some(Slot::Free) => {}
        }
        let gens = self.generations();
        for _ in 0..gens {
            let g = ((u32::from(self.generation[i]) + 1) % gens) as u16;
            self.generation[i] = g;
            let cid = self.cid_of(slot, g);
            if !self.abandoned.contains(&cid) {
                self.slots[i] = Slot::Busy(Pending { cid, issued: now });
                return Ok(cid);
            }
        }
        Err(CidError::Exhausted)
    }

    /// Withdraws the command just issued on `slot` (it never reached the
    /// controller). A fenced slot stays fenced.
    pub fn cancel(&mut self, slot: u16) {
        if let Some(s) = self.slots.get_mut(usize::from(slot))
            && matches!(s, Slot::Busy(_))
        {
            *s = Slot::Free;
        }
    }

    /// Resolves a completion's CID: frees its slot (in flight or fenced).
    pub fn complete(&mut self, cid: Cid) -> Completed {
        let slot = self.slot_of(cid);
        if let Some(entry) = self.slots.get_mut(usize::from(slot)) {
            match *entry {
                Slot::Busy(p) if p.cid == cid => {
                    *entry = Slot::Free;
                    return Completed::Slot {
                        slot,
                        issued: p.issued,
                    };
                }
                Slot::Fenced(p) if p.cid == cid => {
                    *entry = Slot::Free;
                    return Completed::Released { slot };
                }
                _ => {}
            }
        }
        if let Some(at) = self.abandoned.iter().position(|&c| c == cid) {
            self.abandoned.swap_remove(at);
            return Completed::Abandoned;
        }
        Completed::Unknown
    }

    /// An Abort of `cid` completed and the controller says it aborted the
    /// command: the command is over, so its slot is released (returned);
    /// its CID stays reserved until its own completion arrives. `None`
    /// (nothing changes) unless `cid` is fenced.
    pub fn aborted(&mut self, cid: Cid) -> Option<u16> {
        let slot = self.slot_of(cid);
        let entry = self.slots.get_mut(usize::from(slot))?;
        match *entry {
            Slot::Fenced(p) if p.cid == cid => {
                *entry = Slot::Free;
                self.abandoned.push(cid);
                Some(slot)
            }
            _ => None,
        }
    }

    /// Gives up every command issued more than `timeout` ticks before
    /// `now`: fences its slot and calls `f(slot, cid)` once for each.
    pub fn expire(&mut self, now: u64, timeout: u64, mut f: impl FnMut(u16, Cid)) {
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            if let Slot::Busy(p) = *entry
                && now.saturating_sub(p.issued) > timeout
            {
                *entry = Slot::Fenced(p);
                f(slot as u16, p.cid);
            }
        }
    }

    /// Gives up every command in flight (the controller failed and could
    /// not be reset): fences each and calls `f(slot)` once for each.
    pub fn fence_all(&mut self, mut f: impl FnMut(u16)) {
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            if let Slot::Busy(p) = *entry {
                *entry = Slot::Fenced(p);
                f(slot as u16);
            }
        }
    }

    /// The controller was reset (CC.EN 1 → 0 completed): no command of
    /// the table can complete or move data any more. Calls `busy(slot)`
    /// for each command that was in flight and `released(slot)` for each
    /// fenced one; every slot and CID is free afterwards.
    pub fn reset(&mut self, mut busy: impl FnMut(u16), mut released: impl FnMut(u16)) {
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            match core::mem::replace(entry, Slot::Free) {
                Slot::Busy(_) => busy(slot as u16),
                Slot::Fenced(_) => released(slot as u16),
                Slot::Free => {}
            }
        }
        self.abandoned.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sq_fills_and_drains() {
        let mut sq = SqRing::new(4).unwrap();
        assert_eq!(sq.free(), 3);
        assert_eq!(
            (sq.push(), sq.push(), sq.push()),
            (Some(0), Some(1), Some(2))
        );
        assert_eq!(sq.push(), None);
        assert!(!sq.set_head(4));
        assert!(sq.set_head(2));
        assert_eq!(sq.free(), 2);
        assert_eq!((sq.push(), sq.push()), (Some(3), Some(0)));
        assert_eq!(sq.tail(), 1);
        // Head may not move past the tail.
        assert!(sq.set_head(0));
        assert_eq!(sq.used(), 1);
        // The head may not pass the tail.
        assert!(!sq.set_head(2));
        assert!(sq.set_head(1));
        assert_eq!(sq.used(), 0);
        assert!(SqRing::new(1).is_none());
    }

    #[test]
    fn cq_phase_flips_on_wrap() {
        let mut cq = CqRing::new(3).unwrap();
        assert!(cq.is_new(true));
        for _ in 0..3 {
            cq.advance();
        }
        assert_eq!(cq.head(), 0);
        assert!(cq.is_new(false));
        assert!(!cq.is_new(true));
    }

    #[test]
    fn cids_carry_generations() {
        let mut t = CidTable::new(64).unwrap();
        let a = t.issue(5, 100).unwrap();
        assert_eq!(t.issue(5, 100), Err(CidError::Busy));
        assert_eq!(t.issue(64, 100), Err(CidError::BadSlot));
        assert_eq!(a.0 & 63, 5);
        assert_eq!(
            t.complete(a),
            Completed::Slot {
                slot: 5,
                issued: 100
            }
        );
        assert_eq!(t.complete(a), Completed::Unknown);
        let b = t.issue(5, 200).unwrap();
        assert_ne!(a, b);
        // Timed out: reported once, and fenced.
        let mut expired = Vec::new();
        t.expire(250, 100, |s, c| expired.push((s, c)));
        assert!(expired.is_empty());
        t.expire(301, 100, |s, c| expired.push((s, c)));
        assert_eq!(expired, [(5, b)]);
        t.expire(1000, 100, |s, c| expired.push((s, c)));
        assert_eq!(expired, [(5, b)]);
        assert_eq!(t.outstanding(), 1);
        assert_eq!((t.in_flight(), t.fenced()), (0, 1));
        // The late completion releases it, once; then the slot is free.
        assert_eq!(t.complete(b), Completed::Released { slot: 5 });
        assert_eq!(t.complete(b), Completed::Unknown);
        let c = t.issue(5, 400).unwrap();
        assert_ne!(c, b);
        assert_eq!(
            t.complete(c),
            Completed::Slot {
                slot: 5,
                issued: 400
            }
        );
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn fenced_slot_not_reusable_until_its_completion() {
        let mut t = CidTable::new(8).unwrap();
        let a = t.issue(3, 0).unwrap();
        let mut fenced = Vec::new();
        t.expire(1000, 10, |s, c| fenced.push((s, c)));
        assert_eq!(fenced, [(3, a)]);
        assert!(t.is_busy(3) && t.is_fenced(3));
        assert_eq!(t.fenced_cid(3), Some(a));
        // Neither issuing, nor cancelling, nor time frees it.
        assert_eq!(t.issue(3, 2000), Err(CidError::Busy));
        t.cancel(3);
        t.expire(u64::MAX, 0, |_, _| panic!("reported twice"));
        assert_eq!(t.issue(3, 2000), Err(CidError::Busy));
        // Another slot's completion or an unknown CID does not free it.
        let other = t.issue(4, 0).unwrap();
        assert!(matches!(t.complete(other), Completed::Slot { slot: 4, .. }));
        assert_eq!(t.complete(Cid(a.0 ^ (1 << 3))), Completed::Unknown);
        assert_eq!(t.aborted(other), None);
        assert!(t.is_fenced(3));
        assert_eq!(t.complete(a), Completed::Released { slot: 3 });
        assert!(!t.is_busy(3));
        assert!(t.issue(3, 3000).is_ok());
    }

    #[test]
    fn abort_releases_slot_but_keeps_cid() {
        let mut t = CidTable::new(8).unwrap();
        let a = t.issue(2, 0).unwrap();
        t.expire(100, 10, |_, _| {});
        // An Abort only counts for a fenced command.
        assert_eq!(t.aborted(Cid(a.0 + 8)), None);
        assert_eq!(t.aborted(a), Some(2));
        assert_eq!(t.aborted(a), None);
        assert!(!t.is_busy(2));
        assert_eq!(t.outstanding(), 1, "its CID waits for its completion");
        // Reissuing the slot skips the aborted command's CID.
        let b = t.issue(2, 200).unwrap();
        assert_ne!(a, b);
        assert_eq!(t.complete(a), Completed::Abandoned);
        assert!(matches!(t.complete(b), Completed::Slot { slot: 2, .. }));
        assert_eq!(t.outstanding(), 0);
    }

    #[test]
    fn reset_releases_fenced_and_busy() {
        let mut t = CidTable::new(8).unwrap();
        let _a = t.issue(0, 0).unwrap();
        let _b = t.issue(1, 50).unwrap();
        t.expire(40, 10, |_, _| {});
        let c = t.issue(2, 0).unwrap();
        t.expire(100, 10, |_, _| {});
        let _ = t.aborted(c);
        let _d = t.issue(3, 95).unwrap();
        assert_eq!((t.in_flight(), t.fenced(), t.outstanding()), (1, 2, 4));
        let (mut busy, mut released) = (Vec::new(), Vec::new());
        t.reset(|s| busy.push(s), |s| released.push(s));
        assert_eq!(busy, [3]);
        assert_eq!(released, [0, 1]);
        assert_eq!(t.outstanding(), 0);
        assert!((0..8).all(|s| !t.is_busy(s)));
    }

    #[test]
    fn fence_all_keeps_every_command_reserved() {
        let mut t = CidTable::new(4).unwrap();
        let a = t.issue(0, 0).unwrap();
        let b = t.issue(1, 0).unwrap();
        let mut got = Vec::new();
        t.fence_all(|s| got.push(s));
        assert_eq!(got, [0, 1]);
        assert_eq!(t.in_flight(), 0);
        assert!(t.is_busy(0) && t.is_busy(1));
        assert_eq!(t.complete(b), Completed::Released { slot: 1 });
        assert_eq!(t.complete(a), Completed::Released { slot: 0 });
    }

    #[test]
    fn abandoned_cids_are_skipped_then_exhaust() {
        // 4096 slots leave 16 generations.
        let mut t = CidTable::new(4096).unwrap();
        for round in 0..16 {
            let c = t.issue(7, round).unwrap();
            t.fence_all(|s| assert_eq!(s, 7));
            assert_eq!(t.aborted(c), Some(7));
        }
        assert_eq!(t.issue(7, 99), Err(CidError::Exhausted));
        assert!(t.issue(8, 99).is_ok());
        t.cancel(8);
        assert_eq!(t.in_flight(), 0);
        assert!(CidTable::new(0).is_none());
        assert!(CidTable::new(4097).is_none());
    }

    proptest! {
        /// The SQ ring against a counter model: pushes and SQHD updates.
        #[test]
        fn sq_matches_a_counter(entries in 2u16..64, ops in proptest::collection::vec(any::<(bool, u16)>(), 0..300)) {
            let mut sq = SqRing::new(entries).unwrap();
            let (mut produced, mut consumed) = (0u64, 0u64);
            for (push, n) in ops {
                if push {
                    let got = sq.push();
                    if produced - consumed < u64::from(entries) - 1 {
                        prop_assert_eq!(got, Some((produced % u64::from(entries)) as u16));
                        produced += 1;
                    } else {
                        prop_assert_eq!(got, None);
                    }
                } else {
                    let k = u64::from(n) % (produced - consumed + 1);
                    consumed += k;
                    prop_assert!(sq.set_head((consumed % u64::from(entries)) as u16));
                }
                prop_assert_eq!(u64::from(sq.used()), produced - consumed);
            }
        }

        /// A CQ consumer sees exactly the entries a producer posts, in order.
        #[test]
        fn cq_matches_a_producer(entries in 2u16..32, batches in proptest::collection::vec(0u16..40, 0..40)) {
            let mut cq = CqRing::new(entries).unwrap();
            // Fake queue memory: (phase, sequence) per entry, zeroed at creation.
            let mut mem = vec![(false, 0u64); usize::from(entries)];
            let (mut tail, mut phase, mut seq, mut seen) = (0usize, true, 0u64, 0u64);
            for b in batches {
                let room = u64::from(entries) - 1 - (seq - seen);
                for _ in 0..u64::from(b).min(room) {
                    seq += 1;
                    mem[tail] = (phase, seq);
                    tail += 1;
                    if tail == usize::from(entries) { tail = 0; phase = !phase; }
                }
                while cq.is_new(mem[usize::from(cq.head())].0) {
                    seen += 1;
                    prop_assert_eq!(mem[usize::from(cq.head())].1, seen);
                    cq.advance();
                }
                prop_assert_eq!(seen, seq);
            }
        }

        /// Against a model: a slot given up is never issuable (and never
        /// reported free) before its completion, an Abort of it, or a
        /// reset; every slot is reported once per command.
        #[test]
        fn fenced_slots_stay_reserved(slots in 1u16..=16, ops in proptest::collection::vec((0u8..6, any::<u16>()), 1..300)) {
            let mut t = CidTable::new(slots).unwrap();
            // Model: per slot, None | Some((cid, fenced)).
            let mut model: Vec<Option<(Cid, bool)>> = vec![None; usize::from(slots)];
            let mut now = 0u64;
            for (op, x) in ops {
                let slot = x % slots;
                now += 1;
                match op {
                    0 => {
                        let got = t.issue(slot, now);
                        match model[usize::from(slot)] {
                            Some(_) => prop_assert_eq!(got, Err(CidError::Busy)),
                            None => if let Ok(c) = got { model[usize::from(slot)] = Some((c, false)) },
                        }
                    }
                    1 => if let Some((c, fenced)) = model[usize::from(slot)] {
                        let want = if fenced { Completed::Released { slot } } else { Completed::Slot { slot, issued: 0 } };
                        let got = t.complete(c);
                        match (got, want) {
                            (Completed::Slot { slot: a, .. }, Completed::Slot { slot: b, .. }) => prop_assert_eq!(a, b),
                            (g, w) => prop_assert_eq!(g, w),
                        }
                        model[usize::from(slot)] = None;
                    }
                    2 => {
                        let mut seen = Vec::new();
                        t.expire(now + 1000, 0, |s, c| seen.push((s, c)));
                        for (s, c) in seen {
                            prop_assert_eq!(model[usize::from(s)], Some((c, false)));
                            model[usize::from(s)] = Some((c, true));
                        }
                    }
                    3 => if let Some((c, fenced)) = model[usize::from(slot)] {
                        let got = t.aborted(c);
                        if fenced {
                            prop_assert_eq!(got, Some(slot));
                            model[usize::from(slot)] = None;
                        } else {
                            prop_assert_eq!(got, None);
                        }
                    }
                    4 => if x % 17 == 0 {
                        let mut rel = Vec::new();
                        t.reset(|_| {}, |s| rel.push(s));
                        for s in rel {
                            prop_assert!(matches!(model[usize::from(s)], Some((_, true))));
                        }
                        model.iter_mut().for_each(|m| *m = None);
                    }
                    _ => t.cancel(slot),
                }
                if op == 5 && matches!(model[usize::from(slot)], Some((_, false))) {
                    model[usize::from(slot)] = None;
                }
                for (s, m) in model.iter().enumerate() {
                    prop_assert_eq!(t.is_busy(s as u16), m.is_some());
                    prop_assert_eq!(t.is_fenced(s as u16), matches!(m, Some((_, true))));
                }
            }
        }

        /// CIDs in flight are unique, and each resolves to its slot.
        #[test]
        fn cids_resolve(slots in 1u16..=2048, ops in proptest::collection::vec(any::<u16>(), 1..200)) {
            let mut t = CidTable::new(slots).unwrap();
            let mut live: Vec<(u16, Cid, u64)> = Vec::new();
            for (now, op) in ops.into_iter().enumerate() {
                let slot = op % slots;
                if let Some(at) = live.iter().position(|&(s, _, _)| s == slot) {
                    let (s, cid, issued) = live.swap_remove(at);
                    prop_assert_eq!(t.complete(cid), Completed::Slot { slot: s, issued });
                } else {
                    let cid = t.issue(slot, now as u64).unwrap();
                    prop_assert!(live.iter().all(|&(_, c, _)| c != cid));
                    live.push((slot, cid, now as u64));
                }
                prop_assert_eq!(t.in_flight(), live.len());
            }
        }
    }
}
