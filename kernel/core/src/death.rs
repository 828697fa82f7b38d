//! Death-notice bookkeeping: which notices of a dead task are still owed
//! (queued on an endpoint, or delivered to a server and not yet answered),
//! the reply token each delivered notice carries, and the one-time
//! acceptance of its answer.
//!
//! It owns the notice table only; the kernel owns tasks, endpoints and
//! memory, and reclaims a dead task's memory when [`Ledger::acknowledge`]
//! says no notice of it is owed any more. The rules it enforces:
//!
//! - A delivered notice is named by a token ([`TOKEN_TAG`] | a 63-bit
//!   nonce) that is never issued twice: a counter, so a server cannot
//!   guess the token of a notice not yet delivered to it, and one already
//!   used is gone from the table.
//! - An answer is accepted exactly once, and only from the server instance
//!   (task index and generation) the notice was delivered to. A forged,
//!   repeated or misdirected answer is refused and changes nothing.
//! - A notice still queued for a task instance that is no longer current
//!   (the task restarted) is dropped at delivery, never re-issued for the
//!   new instance.
//! - Notices delivered to a server instance that ended unanswered go back
//!   to the queue (in their original order) for the next instance.
//!
//! It must never accept an answer it did not issue a token for, never
//! reuse a token, never allocate (the kernel hands it its slots) and never
//! panic: a full table or exhausted nonces are error values.

/// Bit 63 marks a death-notice token; call reply tokens never have it
/// (their top bits hold a task index below 2^15).
pub const TOKEN_TAG: u64 = 1 << 63;

/// A task instance: its slot in the task table and the generation that
/// slot was at.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskRef {
    /// Index in the task table.
    pub index: u16,
    /// Its generation (restarts of the slot).
    pub generation: u16,
}

/// One death notice: task `dead` died while holding a call capability with
/// `badge` on `endpoint`, whose server asked to hear of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Notice {
    /// The instance that died.
    pub dead: TaskRef,
    /// The endpoint whose server is told.
    pub endpoint: u16,
    /// The dead task's badge on it.
    pub badge: u32,
}

/// One entry of the table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Slot {
    /// Unused.
    #[default]
    Free,
    /// Announced, waiting for the endpoint's server to receive it; `seq`
    /// orders the queue.
    Queued {
        /// The notice.
        notice: Notice,
        /// Announcement order.
        seq: u64,
    },
    /// Delivered to `server` with `token`, waiting for its one answer.
    Delivered {
        /// The notice.
        notice: Notice,
        /// Announcement order (kept to queue it again in place).
        seq: u64,
        /// The server instance it was delivered to.
        server: TaskRef,
        /// The reply token it carries.
        token: u64,
    },
}

/// The table has no free slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// An accepted answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    /// The notice answered.
    pub notice: Notice,
    /// Notices of the same dead instance still owed (queued or delivered);
    /// 0: its memory may be reclaimed.
    pub remaining: usize,
}

/// The death notices the kernel owes and awaits, in slots it provides.
#[derive(Debug)]
pub struct Ledger<S> {
    slots: S,
    next_seq: u64,
    next_nonce: u64,
}

/// Whether `token` is a death-notice token (rather than a call's).
pub fn is_token(token: u64) -> bool {
    token & TOKEN_TAG != 0
}

impl<S: AsRef<[Slot]> + AsMut<[Slot]>> Ledger<S> {
    /// A ledger over `slots` (all cleared); it holds at most
    /// `slots.len()` notices at once.
    pub fn new(mut slots: S) -> Self {
        slots.as_mut().fill(Slot::Free);
        Self {
            slots,
            next_seq: 0,
            next_nonce: 1,
        }
    }

    /// Free slots.
    pub fn free(&self) -> usize {
        self.slots
            .as_ref()
            .iter()
            .filter(|s| **s == Slot::Free)
            .count()
    }

    /// Records that `notice` is owed; it waits in its endpoint's queue.
    pub fn announce(&mut self, notice: Notice) -> Result<(), Full> {
        let seq = self.next_seq;
        let slot = self
            .slots
            .as_mut()
            .iter_mut()
            .find(|s| **s == Slot::Free)
            .ok_or(Full)?;
        *slot = Slot::Queued { notice, seq };
        // 2^64 announcements do not happen; saturating keeps it panic-free.
        self.next_seq = seq.saturating_add(1);
        Ok(())
    }

    /// Whether a notice waits in `endpoint`'s queue.
    pub fn has_queued(&self, endpoint: u16) -> bool {
        self.slots
            .as_ref()
            .iter()
            .any(|s| matches!(s, Slot::Queued { notice, .. } if notice.endpoint == endpoint))
    }

    /// Delivers the oldest notice queued on `endpoint` to `server`: returns
    /// it with its fresh token. Queued notices of instances for which
    /// `current` is false (the task restarted) are dropped on the way.
    /// `None`: nothing to deliver (or, after 2^63 deliveries, no token left).
    pub fn deliver(
        &mut self,
        endpoint: u16,
        server: TaskRef,
        current: impl Fn(TaskRef) -> bool,
    ) -> Option<(Notice, u64)> {
        loop {
            let (seq, i, notice) = self
                .slots
                .as_ref()
                .iter()
                .enumerate()
                .filter_map(|(i, s)| match *s {
                    Slot::Queued { notice, seq } if notice.endpoint == endpoint => {
                        Some((seq, i, notice))
                    }
                    _ => None,
                })
                .min_by_key(|&(seq, i, _)| (seq, i))?;
            let slot = self.slots.as_mut().get_mut(i)?;
            if !current(notice.dead) {
                *slot = Slot::Free;
                continue;
            }
            if self.next_nonce >= TOKEN_TAG {
                return None;
            }
            let token = TOKEN_TAG | self.next_nonce;
            self.next_nonce += 1;
            *slot = Slot::Delivered {
                notice,
                seq,
                server,
                token,
            };
            return Some((notice, token));
        }
    }

    /// Server instance `replier` answers `token`. Accepted once, only for
    /// a notice delivered to `replier` with that token; `None` (refused,
    /// nothing changed) otherwise.
    pub fn acknowledge(&mut self, token: u64, replier: TaskRef) -> Option<Acked> {
        if !is_token(token) {
            return None;
        }
        let slot = self.slots.as_mut().iter_mut().find(|s| {
            matches!(**s, Slot::Delivered { token: t, server, .. } if t == token && server == replier)
        })?;
        let Slot::Delivered { notice, .. } = *slot else {
            return None;
        };
        *slot = Slot::Free;
        Some(Acked {
            notice,
            remaining: self.outstanding(notice.dead),
        })
    }

    /// Notices of instance `dead` still owed (queued or delivered).
    pub fn outstanding(&self, dead: TaskRef) -> usize {
        self.slots
            .as_ref()
            .iter()
            .filter(|s| match s {
                Slot::Queued { notice, .. } | Slot::Delivered { notice, .. } => notice.dead == dead,
                Slot::Free => false,
            })
            .count()
    }

    /// Server instance `server` ended: the notices delivered to it and not
    /// answered go back to their queues, in their original order, for the
    /// endpoint's next server. Their tokens are void. Returns how many.
    pub fn server_ended(&mut self, server: TaskRef) -> usize {
        let mut n = 0;
        for s in self.slots.as_mut() {
            if let Slot::Delivered {
                notice,
                seq,
                server: to,
                ..
            } = *s
                && to == server
            {
                *s = Slot::Queued { notice, seq };
                n += 1;
            }
        }
        n
    }

    /// Drops every notice of instance `dead` (its slot is being reused).
    /// Returns how many.
    pub fn forget(&mut self, dead: TaskRef) -> usize {
        let mut n = 0;
        for s in self.slots.as_mut() {
            if let Slot::Queued { notice, .. } | Slot::Delivered { notice, .. } = *s
                && notice.dead == dead
            {
                *s = Slot::Free;
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn task(index: u16, generation: u16) -> TaskRef {
        TaskRef { index, generation }
    }

    const VICTIM: TaskRef = task(2, 0);
    const HONEST: TaskRef = task(0, 0);
    const EVIL: TaskRef = task(1, 0);

    fn notice(dead: TaskRef, endpoint: u16) -> Notice {
        Notice {
            dead,
            endpoint,
            badge: u32::from(dead.index) + 1,
        }
    }

    fn ledger() -> Ledger<[Slot; 8]> {
        Ledger::new([Slot::Free; 8])
    }

    /// The victim died holding calls on endpoint 0 (honest) and 1 (evil);
    /// both notices are delivered. Returns (honest token, evil token).
    fn two_delivered(l: &mut Ledger<[Slot; 8]>) -> (u64, u64) {
        l.announce(notice(VICTIM, 0)).unwrap();
        l.announce(notice(VICTIM, 1)).unwrap();
        assert_eq!(l.outstanding(VICTIM), 2);
        let (_, h) = l.deliver(0, HONEST, |_| true).unwrap();
        let (_, e) = l.deliver(1, EVIL, |_| true).unwrap();
        (h, e)
    }

    #[test]
    fn genuine_answers_release_in_turn() {
        let mut l = ledger();
        let (h, e) = two_delivered(&mut l);
        assert!(is_token(h) && is_token(e) && h != e);
        assert_eq!(l.acknowledge(e, EVIL).unwrap().remaining, 1);
        let last = l.acknowledge(h, HONEST).unwrap();
        assert_eq!(last.remaining, 0);
        assert_eq!(last.notice, notice(VICTIM, 0));
        assert_eq!(l.free(), 8);
    }

    #[test]
    fn repeated_forged_and_misdirected_answers_change_nothing() {
        let mut l = ledger();
        let (h, e) = two_delivered(&mut l);
        // Another server's token, replied by the wrong server.
        assert_eq!(l.acknowledge(h, EVIL), None);
        // Neighbouring and made-up values.
        for forged in [e + 1, e.wrapping_sub(2), 0, u64::MAX, h & !TOKEN_TAG] {
            assert_eq!(l.acknowledge(forged, EVIL), None, "{forged:#x}");
        }
        // The right token from a restarted instance of the right server.
        assert_eq!(l.acknowledge(e, task(1, 1)), None);
        assert_eq!(l.outstanding(VICTIM), 2);
        assert_eq!(l.acknowledge(e, EVIL).unwrap().remaining, 1);
        // Twice.
        assert_eq!(l.acknowledge(e, EVIL), None);
        assert_eq!(l.outstanding(VICTIM), 1);
        assert_eq!(l.acknowledge(h, HONEST).unwrap().remaining, 0);
    }

    #[test]
    fn queued_notices_count_and_stale_ones_are_dropped() {
        let mut l = ledger();
        l.announce(notice(VICTIM, 0)).unwrap();
        assert!(l.has_queued(0) && !l.has_queued(1));
        assert_eq!(l.outstanding(VICTIM), 1);
        // The victim's slot was reused meanwhile: never delivered.
        assert_eq!(l.deliver(0, HONEST, |d| d != VICTIM), None);
        assert!(!l.has_queued(0));
        assert_eq!(l.outstanding(VICTIM), 0);
        assert_eq!(l.free(), 8);
    }

    #[test]
    fn queue_is_fifo_per_endpoint() {
        let mut l = ledger();
        let a = task(3, 0);
        let b = task(4, 0);
        l.announce(notice(a, 0)).unwrap();
        l.announce(notice(b, 1)).unwrap();
        l.announce(notice(b, 0)).unwrap();
        assert_eq!(l.deliver(0, HONEST, |_| true).unwrap().0.dead, a);
        assert_eq!(l.deliver(0, HONEST, |_| true).unwrap().0.dead, b);
        assert_eq!(l.deliver(0, HONEST, |_| true), None);
        assert_eq!(l.deliver(1, EVIL, |_| true).unwrap().0.dead, b);
    }

    #[test]
    fn a_dead_servers_notices_go_to_its_successor_with_new_tokens() {
        let mut l = ledger();
        let (h, _) = two_delivered(&mut l);
        assert_eq!(l.server_ended(HONEST), 1);
        assert_eq!(l.acknowledge(h, HONEST), None);
        assert_eq!(l.outstanding(VICTIM), 2);
        let next = task(0, 1);
        let (n, h2) = l.deliver(0, next, |_| true).unwrap();
        assert_eq!(n, notice(VICTIM, 0));
        assert_ne!(h2, h);
        assert_eq!(l.acknowledge(h2, next).unwrap().remaining, 1);
    }

    #[test]
    fn full_and_forget() {
        let mut l: Ledger<[Slot; 1]> = Ledger::new([Slot::Free; 1]);
        l.announce(notice(VICTIM, 0)).unwrap();
        assert_eq!(l.announce(notice(VICTIM, 1)), Err(Full));
        assert_eq!(l.forget(VICTIM), 1);
        assert_eq!(l.free(), 1);
        let mut empty: Ledger<[Slot; 0]> = Ledger::new([]);
        assert_eq!(empty.announce(notice(VICTIM, 0)), Err(Full));
        assert_eq!(empty.deliver(0, HONEST, |_| true), None);
        assert_eq!(empty.acknowledge(TOKEN_TAG | 1, HONEST), None);
    }

    #[test]
    fn tokens_are_never_reused() {
        let mut l = ledger();
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..50u16 {
            let dead = task(2, round);
            l.announce(notice(dead, 0)).unwrap();
            let (_, t) = l.deliver(0, HONEST, |_| true).unwrap();
            assert!(seen.insert(t), "token {t:#x} issued twice");
            assert_eq!(l.acknowledge(t, HONEST).unwrap().remaining, 0);
        }
    }

    mod model {
        //! A reference model: tasks 0..SERVERS serve endpoints 0..SERVERS
        //! (endpoint e by task e); tasks SERVERS.. are clients, each
        //! calling a fixed subset of the endpoints. A client's memory is
        //! reclaimed exactly when every notice of its death was delivered
        //! and answered once by the server it was delivered to; then it
        //! restarts (next generation).
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        const SERVERS: u16 = 3;
        const CLIENTS: u16 = 3;

        #[derive(Clone, Debug)]
        enum Op {
            Die(u16),
            Recv(u16),
            /// Answer the i-th unanswered delivered notice, genuinely.
            Ack(usize),
            /// Answer the i-th unanswered delivered notice from a server
            /// it was not delivered to.
            Misdirect(usize, u16),
            /// Answer the i-th token ever issued again.
            Repeat(usize),
            /// Answer a made-up value (sometimes near a real token).
            Forge(u64, bool),
            /// A server dies and restarts.
            ServerRestart(u16),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (SERVERS..SERVERS + CLIENTS).prop_map(Op::Die),
                (0..SERVERS).prop_map(Op::Recv),
                (0..8usize).prop_map(Op::Ack),
                ((0..8usize), (0..SERVERS)).prop_map(|(i, s)| Op::Misdirect(i, s)),
                (0..16usize).prop_map(Op::Repeat),
                (any::<u64>(), any::<bool>()).prop_map(|(v, near)| Op::Forge(v, near)),
                (0..SERVERS).prop_map(Op::ServerRestart),
            ]
        }

        /// Which endpoints client `c` calls (never none for c's first).
        fn calls(c: u16) -> Vec<u16> {
            (0..SERVERS).filter(|e| (c + e) % 3 != 2).collect()
        }

        #[derive(Default)]
        struct World {
            generation: BTreeMap<u16, u16>,
            dead: BTreeMap<u16, bool>,
            /// Per endpoint, queued notices in order.
            queues: BTreeMap<u16, Vec<Notice>>,
            /// Delivered, unanswered: (token, server, notice).
            delivered: Vec<(u64, TaskRef, Notice)>,
            issued: Vec<(u64, TaskRef)>,
            reclaims: usize,
        }

        impl World {
            fn me(&self, t: u16) -> TaskRef {
                task(t, *self.generation.get(&t).unwrap_or(&0))
            }
            fn owed(&self, d: TaskRef) -> usize {
                self.queues
                    .values()
                    .flatten()
                    .filter(|n| n.dead == d)
                    .count()
                    + self.delivered.iter().filter(|x| x.2.dead == d).count()
            }
            fn reclaim_and_restart(&mut self, d: TaskRef, l: &mut Ledger<Vec<Slot>>) {
                self.reclaims += 1;
                assert_eq!(l.forget(d), 0, "reclaimed while notices were owed");
                self.dead.insert(d.index, false);
                *self.generation.entry(d.index).or_default() += 1;
            }
        }

        proptest! {
            #[test]
            fn reclaim_exactly_when_every_delivered_notice_got_its_one_ack(
                ops in proptest::collection::vec(op(), 0..120)
            ) {
                let cap = usize::from(CLIENTS * SERVERS);
                let mut l = Ledger::new(vec![Slot::Free; cap]);
                let mut w = World::default();
                for op in ops {
                    let before = w.reclaims;
                    let mut expect_reclaim = None;
                    match op {
                        Op::Die(c) => {
                            if w.dead.get(&c).copied().unwrap_or(false) { continue; }
                            let d = w.me(c);
                            w.dead.insert(c, true);
                            for e in calls(c) {
                                let n = Notice { dead: d, endpoint: e, badge: u32::from(c) + 1 };
                                prop_assert_eq!(l.announce(n), Ok(()));
                                w.queues.entry(e).or_default().push(n);
                            }
                            if w.owed(d) == 0 { w.reclaim_and_restart(d, &mut l); }
                        }
                        Op::Recv(e) => {
                            let server = w.me(e);
                            let gens = w.generation.clone();
                            let got = l.deliver(e, server, |d| {
                                *gens.get(&d.index).unwrap_or(&0) == d.generation
                            });
                            let want = w.queues.entry(e).or_default();
                            match got {
                                None => prop_assert!(want.is_empty()),
                                Some((n, token)) => {
                                    prop_assert!(!want.is_empty());
                                    let expected = want.remove(0);
                                    prop_assert_eq!(n, expected);
                                    prop_assert!(is_token(token));
                                    prop_assert!(w.issued.iter().all(|&(t, _)| t != token));
                                    w.issued.push((token, server));
                                    w.delivered.push((token, server, n));
                                }
                            }
                        }
                        Op::Ack(i) => {
                            if w.delivered.is_empty() { continue; }
                            let (token, server, n) = w.delivered.remove(i % w.delivered.len());
                            let got = l.acknowledge(token, server);
                            prop_assert!(got.is_some());
                            let remaining = w.owed(n.dead);
                            prop_assert_eq!(got.map(|a| a.remaining), Some(remaining));
                            if remaining == 0 { expect_reclaim = Some(n.dead); }
                        }
                        Op::Misdirect(i, s) => {
                            if w.delivered.is_empty() { continue; }
                            let (token, server, _) = w.delivered[i % w.delivered.len()];
                            let other = w.me(s);
                            if other == server { continue; }
                            prop_assert_eq!(l.acknowledge(token, other), None);
                        }
                        Op::Repeat(i) => {
                            if w.issued.is_empty() { continue; }
                            let (token, server) = w.issued[i % w.issued.len()];
                            if w.delivered.iter().any(|x| x.0 == token) { continue; }
                            prop_assert_eq!(l.acknowledge(token, server), None);
                        }
                        Op::Forge(v, near) => {
                            let v = match (near, w.issued.last()) {
                                (true, Some(&(t, _))) => t.wrapping_add(v % 5).wrapping_sub(2),
                                _ => v,
                            };
                            if w.delivered.iter().any(|x| x.0 == v) { continue; }
                            for s in 0..SERVERS {
                                prop_assert_eq!(l.acknowledge(v, w.me(s)), None);
                            }
                        }
                        Op::ServerRestart(s) => {
                            let old = w.me(s);
                            let back = l.server_ended(old);
                            let mut mine: Vec<(u64, TaskRef, Notice)> = Vec::new();
                            w.delivered.retain(|x| if x.1 == old { mine.push(*x); false } else { true });
                            prop_assert_eq!(back, mine.len());
                            // Back in front, in their original order: the
                            // ledger orders by announcement; so does this.
                            let q = w.queues.entry(s).or_default();
                            let mut all: Vec<Notice> = mine.iter().map(|x| x.2).collect();
                            all.append(q);
                            *q = all;
                            *w.generation.entry(s).or_default() += 1;
                        }
                    }
                    if let Some(d) = expect_reclaim {
                        w.reclaim_and_restart(d, &mut l);
                    }
                    prop_assert!(w.reclaims - before <= 1);
                    for c in SERVERS..SERVERS + CLIENTS {
                        let d = w.me(c);
                        prop_assert_eq!(l.outstanding(d), w.owed(d));
                        if w.dead.get(&c).copied().unwrap_or(false) {
                            prop_assert!(w.owed(d) > 0, "dead with nothing owed, not reclaimed");
                        }
                    }
                }
            }
        }
    }
}
