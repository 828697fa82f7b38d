//! Property tests of the invalidation engine, driven by a fake server loop
//! and checked against a fake SMMU whose IOTLB only forgets a translation
//! when a TLBI hits it, and only counts it gone once a later sync completed.

use std::collections::BTreeMap;

use abi::{Asid, Iova, PAGE_SHIFT};
use iommu_core::engine::{
    ClientId, Engine, EngineConfig, EngineError, FlushPlan, Invalidation, IovaRange, LeafLevel,
    Reply, ReplyAction, SyncSeq, UnmapHint,
};
use iommu_core::policy::InvalidationPolicy;
use proptest::prelude::*;

/// One cached translation in the fake IOTLB.
#[derive(Debug, Clone)]
struct TlbEntry {
    asid: Asid,
    start: u64,
    span: u64,
    level: LeafLevel,
    /// Step at which the device could have cached it (its unmap).
    stamp: u64,
    /// Plan whose TLBI hit it; gone for sure once that plan's sync completed.
    hit_by: Option<u64>,
}

/// What a payload's release must find invalidated.
#[derive(Debug, Clone)]
enum Check {
    Pages(Asid, Vec<(u64, u64)>),
    WholeAsid(Vec<Asid>),
}

#[derive(Debug)]
struct PayloadInfo {
    client: usize,
    stamp: u64,
    check: Check,
    released: bool,
}

#[derive(Debug, Clone, Copy)]
struct ClientSpec {
    policy: InvalidationPolicy,
}

#[derive(Debug, Clone)]
enum Op {
    Unmap {
        client: usize,
        ranges: Vec<(u64, u64)>,
        blocks: bool,
        tables_freed: bool,
    },
    Advance(u64),
    Flush,
    CompleteNewest,
    CompleteOldest,
    Purge(usize),
}

fn policy() -> impl Strategy<Value = InvalidationPolicy> {
    prop_oneof![
        Just(InvalidationPolicy::Strict),
        Just(InvalidationPolicy::StrictPerUnmap),
        (1u32..6, 1u64..50).prop_map(|(n, t)| InvalidationPolicy::Deferred {
            max_entries: n,
            max_age_us: t
        }),
    ]
}

fn op(clients: usize) -> impl Strategy<Value = Op> {
    let pages = prop::collection::vec((0u64..256, 1u64..8), 1..4);
    let blocks = prop::collection::vec((0u64..4, 1u64..3), 1..2)
        .prop_map(|v| v.into_iter().map(|(b, n)| (b * 512, n * 512)).collect());
    prop_oneof![
        6 => (0..clients, prop_oneof![3 => pages.prop_map(|r| (r, false)), 1 => blocks.prop_map(|r| (r, true))], any::<bool>())
            .prop_map(|(client, (ranges, blocks), tables_freed)| Op::Unmap { client, ranges, blocks, tables_freed }),
        3 => (0u64..30).prop_map(Op::Advance),
        2 => Just(Op::Flush),
        1 => Just(Op::CompleteNewest),
        1 => Just(Op::CompleteOldest),
        1 => Just(Op::Purge(0)).prop_flat_map(move |_| (0..clients).prop_map(Op::Purge)),
    ]
}

fn config() -> impl Strategy<Value = EngineConfig> {
    (
        any::<bool>(),
        prop_oneof![Just(8u64), Just(64), Just(u64::MAX)],
        prop_oneof![Just(4usize), Just(64)],
        any::<bool>(),
        prop_oneof![Just(0u64), Just(1), Just(64)],
    )
        .prop_map(|(ril, pages, cmds, piggyback, gap)| EngineConfig {
            range_invalidation: ril,
            asid_wide_after_pages: pages,
            asid_wide_after_commands: cmds,
            piggyback_deferred: piggyback,
            merge_gap_pages: gap,
        })
}

struct Harness {
    engine: Engine<u64>,
    specs: Vec<ClientSpec>,
    purged: Vec<bool>,
    now: u64,
    step: u64,
    tlb: Vec<TlbEntry>,
    payloads: Vec<PayloadInfo>,
    in_flight: Vec<u64>,
    completed: u64,
    syncs: u64,
    unmaps: u64,
    any_per_unmap: bool,
}

fn asid_of(client: usize) -> Asid {
    Asid(client as u16 + 1)
}

impl Harness {
    fn new(config: EngineConfig, specs: Vec<ClientSpec>) -> Self {
        let mut engine = Engine::new(config);
        for (i, s) in specs.iter().enumerate() {
            engine.register(ClientId(i as u32), s.policy).unwrap();
        }
        let any_per_unmap = specs
            .iter()
            .any(|s| s.policy == InvalidationPolicy::StrictPerUnmap);
        Self {
            engine,
            purged: vec![false; specs.len()],
            specs,
            now: 0,
            step: 0,
            tlb: Vec::new(),
            payloads: Vec::new(),
            in_flight: Vec::new(),
            completed: 0,
            syncs: 0,
            unmaps: 0,
            any_per_unmap,
        }
    }

    /// The device may have cached every translation it had before the unmap.
    fn cache(&mut self, asid: Asid, start: u64, span: u64, level: LeafLevel) {
        self.tlb.push(TlbEntry {
            asid,
            start,
            span,
            level,
            stamp: self.step,
            hit_by: None,
        });
    }

    fn unmap(&mut self, client: usize, ranges: &[(u64, u64)], blocks: bool, tables_freed: bool) {
        let asid = asid_of(client);
        let level = if blocks { LeafLevel::L2 } else { LeafLevel::L3 };
        let hint = UnmapHint {
            leaf_level: level,
            tables_freed,
        };
        let iova_ranges: Vec<_> = ranges
            .iter()
            .map(|&(p, n)| IovaRange::new(Iova::new(p << PAGE_SHIFT), n))
            .collect();
        let id = self.payloads.len() as u64;
        match self.engine.unmap(
            self.now,
            ClientId(client as u32),
            asid,
            &iova_ranges,
            hint,
            id,
        ) {
            Ok(out) => {
                assert!(!self.purged[client]);
                let held = self.specs[client].policy.holds_reply();
                assert_eq!(out.reply == Reply::AfterSync, held);
                for &(p, n) in ranges {
                    let span = level.span_pages();
                    for s in (p..p + n).step_by(span as usize) {
                        self.cache(asid, s, span, level);
                    }
                }
                self.unmaps += 1;
                self.payloads.push(PayloadInfo {
                    client,
                    stamp: self.step,
                    check: Check::Pages(asid, ranges.to_vec()),
                    released: false,
                });
            }
            Err(refused) => {
                assert!(self.purged[client]);
                assert_eq!(refused.error, EngineError::ClientPurged);
                assert_eq!(refused.payload, id);
            }
        }
    }

    fn purge(&mut self, client: usize) {
        let id = self.payloads.len() as u64;
        let asid = asid_of(client);
        match self
            .engine
            .purge(self.now, ClientId(client as u32), &[asid], id)
        {
            Ok(_) => {
                self.purged[client] = true;
                self.unmaps += 1;
                self.payloads.push(PayloadInfo {
                    client,
                    stamp: self.step,
                    check: Check::WholeAsid(vec![asid]),
                    released: false,
                });
            }
            Err(refused) => {
                assert!(self.purged[client]);
                assert_eq!(refused.payload, id);
            }
        }
    }

    /// The fake SMMU executes a plan's commands in order.
    fn issue(&mut self, plan: FlushPlan) {
        assert_eq!(plan.commands.last(), Some(&Invalidation::Sync));
        let seq = plan.seq.get();
        let plan_syncs = plan.syncs() as u64;
        if !self.any_per_unmap {
            assert_eq!(plan_syncs, 1, "one plan, one sync");
        }
        self.syncs += plan_syncs;
        for cmd in plan.commands {
            let (asid, lo, hi, ttl) = match cmd {
                Invalidation::Sync => continue,
                Invalidation::TlbiAsid { asid } => (asid, 0, u64::MAX, LeafLevel::Any),
                Invalidation::TlbiVa {
                    asid,
                    iova,
                    pages,
                    ttl,
                    leaf,
                } => {
                    if ttl != LeafLevel::Any {
                        assert_eq!(pages, ttl.span_pages());
                        assert!(leaf, "TTL hint on a walk-cache invalidation");
                    }
                    // Hits the one entry containing the address.
                    let p = iova.get() >> PAGE_SHIFT;
                    (asid, p, p + 1, ttl)
                }
                Invalidation::TlbiRange {
                    asid,
                    iova,
                    pages,
                    ttl,
                    ..
                } => {
                    let scale = pages.trailing_zeros();
                    assert!(scale <= 31 && (1..=31).contains(&(pages >> scale)));
                    let p = iova.get() >> PAGE_SHIFT;
                    (asid, p, p + pages, ttl)
                }
            };
            for e in &mut self.tlb {
                let overlaps = e.start < hi && lo < e.start + e.span;
                let level_ok = ttl == LeafLevel::Any || ttl == e.level;
                if e.asid == asid && overlaps && level_ok && e.hit_by.is_none() {
                    e.hit_by = Some(seq);
                }
            }
        }
        self.in_flight.push(seq);
    }

    fn plan(&mut self) {
        self.step += 1;
        if let Some(plan) = self.engine.plan_flush(self.now) {
            self.issue(plan);
        }
    }

    fn complete(&mut self, seq: u64) {
        self.step += 1;
        let released = self
            .engine
            .sync_completed(self.now, SyncSeq::new(seq))
            .unwrap();
        self.completed = self.completed.max(seq);
        self.in_flight.retain(|&s| s > seq);
        let completed = self.completed;
        self.tlb.retain(|e| e.hit_by.is_none_or(|s| s > completed));
        for r in released {
            let info = &mut self.payloads[r.payload as usize];
            assert!(!info.released, "released twice");
            info.released = true;
            assert_eq!(r.client, ClientId(info.client as u32));
            // (a) + (b): every translation the device could hold for the
            // unmapped pages was hit by a TLBI whose sync has completed.
            for e in &self.tlb {
                if e.stamp > info.stamp {
                    continue;
                }
                let stale = match &info.check {
                    Check::Pages(asid, ranges) => {
                        e.asid == *asid
                            && ranges
                                .iter()
                                .any(|&(p, n)| e.start < p + n && p < e.start + e.span)
                    }
                    Check::WholeAsid(asids) => asids.contains(&e.asid),
                };
                assert!(!stale, "released before its invalidation completed: {e:?}");
            }
            let policy = self.specs[info.client].policy;
            let expected = match &info.check {
                Check::WholeAsid(_) => ReplyAction::Drop,
                _ if !policy.holds_reply() => ReplyAction::AlreadySent,
                _ if self.purged[info.client] => ReplyAction::Drop,
                _ => ReplyAction::Send,
            };
            assert_eq!(r.reply, expected);
            // (c): the stale window of a deferred unmap is bounded by T.
            if let InvalidationPolicy::Deferred { max_age_us, .. } = policy
                && matches!(info.check, Check::Pages(..))
            {
                assert!(
                    self.now - r.unmapped_at <= max_age_us,
                    "stale window over T"
                );
            }
        }
    }

    fn complete_all(&mut self) {
        if let Some(&last) = self.in_flight.iter().max() {
            self.complete(last);
        }
    }

    /// The server sleeps until `target`, waking at every deadline to flush;
    /// the fake hardware finishes a sync before time moves on.
    fn advance(&mut self, target: u64) {
        self.complete_all();
        while let Some(d) = self.engine.next_deadline().filter(|&d| d <= target) {
            self.now = self.now.max(d);
            self.step += 1;
            let plan = self.engine.plan_flush(self.now).expect("due but no plan");
            self.issue(plan);
            self.complete_all();
        }
        self.now = target;
    }

    fn check_invariants(&self) {
        for (i, s) in self.specs.iter().enumerate() {
            let id = ClientId(i as u32);
            if let InvalidationPolicy::Deferred {
                max_entries,
                max_age_us,
            } = s.policy
            {
                // A queue that reaches N is handed to the next flush at once.
                assert!(self.engine.queued(id).unwrap() < max_entries as usize);
                assert!(self.engine.client_stats(id).unwrap().max_stale_us <= max_age_us);
            }
        }
        // (d)
        assert!(self.syncs <= self.unmaps);
        assert_eq!(self.engine.stats().syncs, self.syncs);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn engine_releases_only_after_covering_sync(
        config in config(),
        policies in prop::collection::vec(policy(), 1..5),
        ops in prop::collection::vec(op(4), 1..80),
    ) {
        let specs: Vec<_> = policies.into_iter().map(|policy| ClientSpec { policy }).collect();
        let n = specs.len();
        let mut h = Harness::new(config, specs);
        for op in ops {
            h.step += 1;
            match op {
                Op::Unmap { client, ranges, blocks, tables_freed } => {
                    h.unmap(client % n, &ranges, blocks, tables_freed);
                }
                Op::Advance(dt) => h.advance(h.now + dt),
                Op::Flush => h.plan(),
                Op::CompleteNewest => h.complete_all(),
                Op::CompleteOldest => {
                    if let Some(&s) = h.in_flight.iter().min() {
                        h.complete(s);
                    }
                }
                Op::Purge(client) => h.purge(client % n),
            }
            h.check_invariants();
        }
        // Drain: everything is released in the end.
        h.advance(h.now + 1_000);
        prop_assert!(h.payloads.iter().all(|p| p.released));
        for i in 0..n {
            let s = h.engine.client_stats(ClientId(i as u32)).unwrap();
            prop_assert_eq!((s.pages_pending, s.entries_pending), (0, 0));
        }
    }

    #[test]
    fn concurrent_clients_share_one_sync(
        config in config(),
        batches in prop::collection::vec(
            (prop_oneof![
                Just(InvalidationPolicy::Strict),
                Just(InvalidationPolicy::Deferred { max_entries: 1000, max_age_us: 1000 }),
            ],
            prop::collection::vec((0u64..4096, 1u64..16), 1..8)),
            1..8,
        ),
    ) {
        let config = EngineConfig { piggyback_deferred: true, ..config };
        let specs: Vec<_> = batches.iter().map(|(policy, _)| ClientSpec { policy: *policy }).collect();
        let mut h = Harness::new(config, specs);
        // Every client unmaps its batch while the server drains its inbox.
        let mut expect_plan = false;
        for (c, (policy, ranges)) in batches.iter().enumerate() {
            for &r in ranges {
                h.unmap(c, &[r], false, false);
            }
            expect_plan |= policy.holds_reply();
        }
        let plan = h.engine.plan_flush(h.now);
        prop_assert_eq!(plan.is_some(), expect_plan);
        if let Some(plan) = plan {
            prop_assert_eq!(plan.syncs(), 1);
            prop_assert_eq!(h.engine.plan_flush(h.now), None);
            h.issue(plan);
            h.complete_all();
            prop_assert!(h.payloads.iter().all(|p| p.released));
        }
        let mut by_client: BTreeMap<usize, u64> = BTreeMap::new();
        for p in &h.payloads {
            *by_client.entry(p.client).or_default() += 1;
        }
        for (c, _) in by_client {
            let syncs = h.engine.client_stats(ClientId(c as u32)).unwrap().syncs;
            prop_assert_eq!(syncs, u64::from(expect_plan));
        }
    }
}
