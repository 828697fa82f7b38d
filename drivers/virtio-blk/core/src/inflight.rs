//! Requests in flight: which loop slot each descriptor chain head serves,
//! and when it times out. A request that times out is reported once and
//! its head is *abandoned*, not freed: the device still owns the chain
//! (and its header and status byte) until it returns it, and then the
//! completion is swallowed.
//!
//! It owns this bookkeeping only; time is passed in (counter ticks), and
//! no sequence of calls, however wrong, panics or reports a slot twice.

use alloc::vec;
use alloc::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    Idle,
    Active(u16),
    Abandoned,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    head: u16,
    deadline: u64,
}

/// The in-flight table.
#[derive(Debug)]
pub struct InFlight {
    slots: Vec<Option<Entry>>,
    heads: Vec<Head>,
    /// No deadline is earlier than this.
    earliest: u64,
}

impl InFlight {
    /// A table for loop slots `0..depth` over a queue of `queue_size`.
    pub fn new(depth: u16, queue_size: u16) -> InFlight {
        InFlight {
            slots: vec![None; usize::from(depth)],
            heads: vec![Head::Idle; usize::from(queue_size)],
            earliest: u64::MAX,
        }
    }

    /// Whether `slot` can start a request (in range and idle).
    pub fn slot_free(&self, slot: u16) -> bool {
        matches!(self.slots.get(usize::from(slot)), Some(None))
    }

    /// Requests in flight (not counting abandoned ones).
    pub fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Records that `slot` is served by the chain `head` until `deadline`.
    /// Returns false (and records nothing) if the slot is busy or out of
    /// range, or the head is not idle.
    pub fn start(&mut self, slot: u16, head: u16, deadline: u64) -> bool {
        if !self.slot_free(slot) || self.heads.get(usize::from(head)) != Some(&Head::Idle) {
            return false;
        }
        self.slots[usize::from(slot)] = Some(Entry { head, deadline });
        self.heads[usize::from(head)] = Head::Active(slot);
        self.earliest = self.earliest.min(deadline);
        true
    }

    /// The device returned `head`: the slot to report, or `None` if the
    /// request was abandoned (or never started).
    pub fn complete(&mut self, head: u16) -> Option<u16> {
        let h = self.heads.get_mut(usize::from(head))?;
        match core::mem::replace(h, Head::Idle) {
            Head::Active(slot) => {
                self.slots[usize::from(slot)] = None;
                Some(slot)
            }
            Head::Abandoned | Head::Idle => None,
        }
    }

    /// Calls `out` with every slot whose deadline is at or before `now`,
    /// frees those slots and abandons their heads.
    pub fn expire(&mut self, now: u64, mut out: impl FnMut(u16)) {
        if now < self.earliest {
            return;
        }
        let mut earliest = u64::MAX;
        for (slot, e) in self.slots.iter_mut().enumerate() {
            match *e {
                Some(Entry { head, deadline }) if deadline <= now => {
                    self.heads[usize::from(head)] = Head::Abandoned;
                    *e = None;
                    // `slots` has at most u16::MAX + 1 entries.
                    out(slot as u16);
                }
                Some(Entry { deadline, .. }) => earliest = earliest.min(deadline),
                None => {}
            }
        }
        self.earliest = earliest;
    }

    /// Calls `out` with every active slot and forgets every request
    /// (the device is being given up on: no chain will come back).
    pub fn fail_all(&mut self, mut out: impl FnMut(u16)) {
        for (slot, e) in self.slots.iter_mut().enumerate() {
            if e.take().is_some() {
                out(slot as u16);
            }
        }
        self.heads.fill(Head::Idle);
        self.earliest = u64::MAX;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn timeout_abandons_head_until_returned() {
        let mut t = InFlight::new(4, 8);
        assert!(t.start(0, 5, 100));
        assert!(t.start(1, 6, 200));
        assert!(!t.start(1, 7, 200), "slot busy");
        assert!(!t.start(2, 6, 200), "head busy");
        assert!(!t.start(4, 7, 200), "slot out of range");
        let mut got = Vec::new();
        t.expire(99, |s| got.push(s));
        assert!(got.is_empty());
        t.expire(150, |s| got.push(s));
        assert_eq!(got, [0]);
        t.expire(150, |s| got.push(s));
        assert_eq!(got, [0], "reported once");
        // The slot is free again, the head is not.
        assert!(t.slot_free(0));
        assert!(!t.start(0, 5, 300));
        assert_eq!(t.complete(5), None, "late completion swallowed");
        assert!(t.start(0, 5, 300));
        assert_eq!(t.complete(6), Some(1));
        assert_eq!(t.complete(6), None);
        let mut failed = Vec::new();
        t.fail_all(|s| failed.push(s));
        assert_eq!(failed, [0]);
        assert_eq!(t.active(), 0);
    }

    proptest! {
        /// Every started slot is reported exactly once, by completion,
        /// expiry or failure.
        #[test]
        fn each_slot_reported_once(ops in proptest::collection::vec((0u8..4, 0u16..10, 0u16..10, 0u64..50), 1..200)) {
            let mut t = InFlight::new(8, 8);
            let mut started = 0usize;
            let mut reported = 0usize;
            let mut now = 0;
            for (kind, a, b, dt) in ops {
                match kind {
                    0 => if t.start(a, b, now + dt) { started += 1 },
                    1 => if t.complete(b).is_some() { reported += 1 },
                    2 => { now += dt; t.expire(now, |_| reported += 1) }
                    _ => if dt == 0 { t.fail_all(|_| reported += 1) },
                }
                prop_assert_eq!(started, reported + t.active());
            }
        }
    }
}
