//! Requests in flight: which loop slot each descriptor chain head serves,
//! and when it times out. A request that times out is reported once and
//! *fenced*, not freed: the device still owns the chain (its header,
//! status byte and data buffer) until it returns it, so the slot stays
//! taken (its buffer stays mapped by the block loop) until the used-ring
//! entry arrives ([`Returned::Released`]) or the device is reset
//! ([`InFlight::reset`]). virtio has no per-request abort.
//!
//! It owns this bookkeeping only; time is passed in (counter ticks), and
//! no sequence of calls, however wrong, panics or reports a slot twice.

use alloc::vec;
use alloc::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    Idle,
    Active(u16),
    Fenced(u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Idle,
    Active { head: u16, deadline: u64 },
    Fenced { head: u16 },
}

/// What a used chain meant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Returned {
    /// The request of this slot completed in time: report it.
    Done(u16),
    /// The late completion of a fenced request: the slot is free again
    /// (it was reported already).
    Released(u16),
}

/// The in-flight table.
#[derive(Debug)]
pub struct InFlight {
    slots: Vec<Slot>,
    heads: Vec<Head>,
    /// No deadline is earlier than this.
    earliest: u64,
}

impl InFlight {
    /// A table for loop slots `0..depth` over a queue of `queue_size`.
    pub fn new(depth: u16, queue_size: u16) -> InFlight {
        InFlight {
            slots: vec![Slot::Idle; usize::from(depth)],
            heads: vec![Head::Idle; usize::from(queue_size)],
            earliest: u64::MAX,
        }
    }

    /// Whether `slot` can start a request (in range, idle, not fenced).
    pub fn slot_free(&self, slot: u16) -> bool {
        matches!(self.slots.get(usize::from(slot)), Some(Slot::Idle))
    }

    /// Whether `slot` is fenced.
    pub fn is_fenced(&self, slot: u16) -> bool {
        matches!(self.slots.get(usize::from(slot)), Some(Slot::Fenced { .. }))
    }

    /// Requests in flight within their deadline.
    pub fn active(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Active { .. }))
            .count()
    }

    /// Fenced requests.
    pub fn fenced(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Fenced { .. }))
            .count()
    }

    /// Records that `slot` is served by the chain `head` until `deadline`.
    /// Returns false (and records nothing) if the slot is busy, fenced or
    /// out of range, or the head is not idle.
    pub fn start(&mut self, slot: u16, head: u16, deadline: u64) -> bool {
        if !self.slot_free(slot) || self.heads.get(usize::from(head)) != Some(&Head::Idle) {
            return false;
        }
        self.slots[usize::from(slot)] = Slot::Active { head, deadline };
        self.heads[usize::from(head)] = Head::Active(slot);
        self.earliest = self.earliest.min(deadline);
        true
    }

    /// Withdraws a request just started that never reached the device.
    pub fn cancel(&mut self, head: u16) {
        if let Some(h) = self.heads.get_mut(usize::from(head))
            && let Head::Active(slot) = *h
        {
            *h = Head::Idle;
            self.slots[usize::from(slot)] = Slot::Idle;
        }
    }

    /// The device returned `head`: what it meant, or `None` if no request
    /// used it.
    pub fn complete(&mut self, head: u16) -> Option<Returned> {
        let h = self.heads.get_mut(usize::from(head))?;
        match core::mem::replace(h, Head::Idle) {
            Head::Active(slot) => {
                self.slots[usize::from(slot)] = Slot::Idle;
                Some(Returned::Done(slot))
            }
            Head::Fenced(slot) => {
                self.slots[usize::from(slot)] = Slot::Idle;
                Some(Returned::Released(slot))
            }
            Head::Idle => None,
        }
    }

    /// Calls `out` with every slot whose deadline is at or before `now`,
    /// and fences it (and its head).
    pub fn expire(&mut self, now: u64, mut out: impl FnMut(u16)) {
        if now < self.earliest {
            return;
        }
        let mut earliest = u64::MAX;
        for (slot, e) in self.slots.iter_mut().enumerate() {
            match *e {
                Slot::Active { head, deadline } if deadline <= now => {
                    // `slots` has at most u16::MAX + 1 entries.
                    self.heads[usize::from(head)] = Head::Fenced(slot as u16);
                    *e = Slot::Fenced { head };
                    out(slot as u16);
                }
                Slot::Active { deadline, .. } => earliest = earliest.min(deadline),
                _ => {}
            }
        }
        self.earliest = earliest;
    }

    /// Fences every active request (the device failed and its reset did
    /// not complete: it may still use them), calling `out` for each.
    pub fn fence_all(&mut self, mut out: impl FnMut(u16)) {
        for (slot, e) in self.slots.iter_mut().enumerate() {
            if let Slot::Active { head, .. } = *e {
                self.heads[usize::from(head)] = Head::Fenced(slot as u16);
                *e = Slot::Fenced { head };
                out(slot as u16);
            }
        }
        self.earliest = u64::MAX;
    }

    /// The device was reset (the reset completed): no chain will come back
    /// or move data. Calls `active` with every active slot and `released`
    /// with every fenced one, and forgets every request.
    pub fn reset(&mut self, mut active: impl FnMut(u16), mut released: impl FnMut(u16)) {
        for (slot, e) in self.slots.iter_mut().enumerate() {
            match core::mem::replace(e, Slot::Idle) {
                Slot::Active { .. } => active(slot as u16),
                Slot::Fenced { .. } => released(slot as u16),
                Slot::Idle => {}
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
    fn timeout_fences_slot_and_head_until_returned() {
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
        t.expire(u64::MAX, |s| got.push(s));
        assert_eq!(got, [0, 1], "each reported once");
        // Neither the slots nor the heads are free: fenced.
        assert!(!t.slot_free(0) && t.is_fenced(0));
        assert!(!t.start(0, 7, 300), "fenced slot");
        assert!(!t.start(2, 5, 300), "fenced head");
        assert_eq!((t.active(), t.fenced()), (0, 2));
        // Another head's return, or an idle head, frees nothing.
        assert_eq!(t.complete(7), None);
        assert!(t.is_fenced(0));
        // The late completion lifts the fence, once.
        assert_eq!(t.complete(5), Some(Returned::Released(0)));
        assert_eq!(t.complete(5), None);
        assert!(t.slot_free(0));
        assert!(t.start(0, 5, 300));
        assert_eq!(t.complete(5), Some(Returned::Done(0)));
        // A reset releases the rest.
        assert!(t.start(2, 3, 400));
        let (mut active, mut released) = (Vec::new(), Vec::new());
        t.reset(|s| active.push(s), |s| released.push(s));
        assert_eq!((active, released), (alloc::vec![2], alloc::vec![1]));
        assert_eq!(t.active() + t.fenced(), 0);
        assert!(t.start(1, 6, 500));
    }

    #[test]
    fn fence_all_and_cancel() {
        let mut t = InFlight::new(2, 4);
        assert!(t.start(0, 1, 10));
        assert!(t.start(1, 2, 10));
        t.cancel(2);
        assert!(t.slot_free(1));
        let mut got = Vec::new();
        t.fence_all(|s| got.push(s));
        assert_eq!(got, [0]);
        t.cancel(1);
        assert!(t.is_fenced(0), "cancel does not free a fenced request");
        assert_eq!(t.complete(1), Some(Returned::Released(0)));
    }

    proptest! {
        /// Every started slot is reported exactly once (done, expired or
        /// reset while active), and a slot is free again only after its
        /// chain came back or a reset.
        #[test]
        fn each_slot_reported_once_and_fenced_until_back(ops in proptest::collection::vec((0u8..5, 0u16..10, 0u16..10, 0u64..50), 1..200)) {
            let mut t = InFlight::new(8, 8);
            let mut started = 0usize;
            let mut reported = 0usize;
            // Model: which slots are fenced, and which head serves them.
            let mut fenced: Vec<Option<u16>> = alloc::vec![None; 8];
            let mut heads: Vec<Option<u16>> = alloc::vec![None; 8];
            let mut now = 0;
            for (kind, a, b, dt) in ops {
                match kind {
                    0 => {
                        let ok = t.start(a, b, now + dt);
                        if ok {
                            started += 1;
                            heads[usize::from(a)] = Some(b);
                        }
                    }
                    1 => match t.complete(b) {
                        Some(Returned::Done(s)) => {
                            reported += 1;
                            heads[usize::from(s)] = None;
                        }
                        Some(Returned::Released(s)) => {
                            prop_assert_eq!(fenced[usize::from(s)], Some(b));
                            fenced[usize::from(s)] = None;
                            heads[usize::from(s)] = None;
                        }
                        None => {}
                    },
                    2 => {
                        now += dt;
                        let mut got = Vec::new();
                        t.expire(now, |s| got.push(s));
                        for s in got {
                            reported += 1;
                            fenced[usize::from(s)] = heads[usize::from(s)];
                        }
                    }
                    3 if dt == 0 => {
                        let mut n = 0;
                        t.reset(|_| n += 1, |_| {});
                        reported += n;
                        fenced.iter_mut().for_each(|f| *f = None);
                        heads.iter_mut().for_each(|h| *h = None);
                    },
                    _ => {}
                }
                prop_assert_eq!(started, reported + t.active());
                for s in 0..8u16 {
                    prop_assert_eq!(t.is_fenced(s), fenced[usize::from(s)].is_some());
                    if fenced[usize::from(s)].is_some() {
                        prop_assert!(!t.slot_free(s));
                    }
                }
            }
        }
    }
}
