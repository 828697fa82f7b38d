//! Unit tests of the command choice and the engine's lifecycle.

use super::*;
use alloc::vec;

const A: Asid = Asid(1);
const B: Asid = Asid(2);
const C1: ClientId = ClientId(1);
const C2: ClientId = ClientId(2);
const C3: ClientId = ClientId(3);

fn pfn(p: u64) -> Iova {
    Iova::new(p << PAGE_SHIFT)
}

fn r(p: u64, pages: u64) -> IovaRange {
    IovaRange::new(pfn(p), pages)
}

/// An unmap of `mappings` mappings over `ranges` of `client` in `asid`.
fn um(client: ClientId, asid: Asid, ranges: &[IovaRange], mappings: u64) -> Unmapping<'_> {
    Unmapping {
        client,
        asid,
        ranges,
        hint: UnmapHint::PAGES,
        mappings,
    }
}

fn engine(ril: bool) -> Engine<u32> {
    let mut e = Engine::new(EngineConfig::for_smmu(ril));
    e.register(C1, InvalidationPolicy::Strict).unwrap();
    e
}

/// Plans one strict unmap of `ranges` and returns the plan's commands.
fn plan_of(config: EngineConfig, ranges: &[IovaRange], hint: UnmapHint) -> Vec<Invalidation> {
    let mut e = Engine::new(config);
    e.register(C1, InvalidationPolicy::Strict).unwrap();
    e.unmap(0, C1, A, ranges, hint, 0u32).unwrap();
    let plan = e.plan_flush(0).unwrap();
    assert_eq!(plan.commands.last(), Some(&Invalidation::Sync));
    plan.commands
}

fn va(p: u64, pages: u64, ttl: LeafLevel, leaf: bool) -> Invalidation {
    Invalidation::TlbiVa {
        asid: A,
        iova: pfn(p),
        pages,
        ttl,
        leaf,
    }
}

fn range(p: u64, pages: u64) -> Invalidation {
    Invalidation::TlbiRange {
        asid: A,
        iova: pfn(p),
        pages,
        ttl: LeafLevel::L3,
        leaf: true,
    }
}

#[test]
fn per_page_tlbis_carry_ttl_hints() {
    let cmds = plan_of(
        EngineConfig::for_smmu(false),
        &[r(0x10, 3)],
        UnmapHint::PAGES,
    );
    assert_eq!(
        cmds,
        vec![
            va(0x10, 1, LeafLevel::L3, true),
            va(0x11, 1, LeafLevel::L3, true),
            va(0x12, 1, LeafLevel::L3, true),
            Invalidation::Sync
        ]
    );
}

#[test]
fn freed_tables_drop_the_hint_and_leaf_only() {
    let hint = UnmapHint {
        leaf_level: LeafLevel::L3,
        tables_freed: true,
    };
    let cmds = plan_of(EngineConfig::for_smmu(false), &[r(0x10, 1)], hint);
    assert_eq!(
        cmds,
        vec![va(0x10, 1, LeafLevel::Any, false), Invalidation::Sync]
    );
}

#[test]
fn block_unmaps_take_one_tlbi_per_block() {
    let hint = UnmapHint {
        leaf_level: LeafLevel::L2,
        tables_freed: false,
    };
    let config = EngineConfig {
        asid_wide_after_pages: 1024,
        ..EngineConfig::for_smmu(false)
    };
    let cmds = plan_of(config, &[r(0x400, 1024)], hint);
    assert_eq!(
        cmds,
        vec![
            va(0x400, 512, LeafLevel::L2, true),
            va(0x600, 512, LeafLevel::L2, true),
            Invalidation::Sync
        ]
    );
}

#[test]
fn adjacent_and_overlapping_ranges_merge_into_one_range_tlbi() {
    let cmds = plan_of(
        EngineConfig::for_smmu(true),
        &[r(0x14, 4), r(0x10, 4), r(0x12, 1)],
        UnmapHint::PAGES,
    );
    assert_eq!(cmds, vec![range(0x10, 8), Invalidation::Sync]);
}

#[test]
fn range_tlbis_split_into_encodable_commands() {
    // 37 = 0b100101: 5 pages, then 32.
    let cmds = plan_of(
        EngineConfig::for_smmu(true),
        &[r(0x100, 37)],
        UnmapHint::PAGES,
    );
    assert_eq!(
        cmds,
        vec![range(0x100, 5), range(0x105, 32), Invalidation::Sync]
    );
    // 0x3ff pages: two 5-bit windows.
    let cmds = plan_of(
        EngineConfig::for_smmu(true),
        &[r(0, 0x3ff)],
        UnmapHint::PAGES,
    );
    assert_eq!(cmds, vec![range(0, 31), range(31, 992), Invalidation::Sync]);
}

#[test]
fn asid_wide_past_the_page_threshold() {
    let config = EngineConfig::for_smmu(false);
    let at = plan_of(config, &[r(0, 512)], UnmapHint::PAGES);
    assert_eq!(at.len(), 513);
    let past = plan_of(config, &[r(0, 300), r(1000, 213)], UnmapHint::PAGES);
    assert_eq!(
        past,
        vec![Invalidation::TlbiAsid { asid: A }, Invalidation::Sync]
    );
}

#[test]
fn near_ranges_are_invalidated_as_one_with_range_invalidation() {
    // Four one-page ranges a page apart: one range command (the gaps are
    // live translations evicted for nothing but a refill).
    let near: Vec<_> = (0..4).map(|i| r(0x100 + i * 2, 1)).collect();
    let ril = EngineConfig::for_smmu(true);
    let cmds = plan_of(ril, &near, UnmapHint::PAGES);
    assert_eq!(cmds.len(), 2, "{cmds:?}");
    let Invalidation::TlbiRange { iova, pages, .. } = cmds[0] else {
        panic!("{cmds:?}")
    };
    assert_eq!((iova.get() >> 12, pages), (0x100, 7));
    // Farther apart than the gap: one command each.
    let far: Vec<_> = (0..4)
        .map(|i| r(0x100 + i * (MERGE_GAP_PAGES + 2), 1))
        .collect();
    assert_eq!(plan_of(ril, &far, UnmapHint::PAGES).len(), 5);
    // Without range invalidation every gap page would cost a command.
    let no_ril = EngineConfig {
        asid_wide_after_pages: u64::MAX,
        ..EngineConfig::for_smmu(false)
    };
    assert_eq!(plan_of(no_ril, &near, UnmapHint::PAGES).len(), 5);
}

#[test]
fn asid_wide_past_the_command_threshold() {
    let config = EngineConfig {
        asid_wide_after_commands: 4,
        merge_gap_pages: 0,
        ..EngineConfig::for_smmu(true)
    };
    let scattered: Vec<_> = (0..4).map(|i| r(i * 2, 1)).collect();
    assert_eq!(plan_of(config, &scattered, UnmapHint::PAGES).len(), 5);
    let scattered: Vec<_> = (0..5).map(|i| r(i * 2, 1)).collect();
    assert_eq!(
        plan_of(config, &scattered, UnmapHint::PAGES),
        vec![Invalidation::TlbiAsid { asid: A }, Invalidation::Sync]
    );
}

#[test]
fn huge_ranges_are_bounded_whatever_the_config() {
    let config = EngineConfig {
        range_invalidation: false,
        asid_wide_after_pages: u64::MAX,
        asid_wide_after_commands: usize::MAX,
        piggyback_deferred: true,
        merge_gap_pages: 0,
    };
    let cmds = plan_of(config, &[r(0, 1 << 30)], UnmapHint::PAGES);
    assert_eq!(
        cmds,
        vec![Invalidation::TlbiAsid { asid: A }, Invalidation::Sync]
    );
}

#[test]
fn asids_are_invalidated_separately() {
    let mut e = engine(true);
    e.unmap(0, C1, B, &[r(5, 1)], UnmapHint::PAGES, 1).unwrap();
    e.unmap(0, C1, A, &[r(5, 1)], UnmapHint::PAGES, 2).unwrap();
    let plan = e.plan_flush(0).unwrap();
    assert_eq!(plan.commands.len(), 3);
    assert!(matches!(
        plan.commands[0],
        Invalidation::TlbiRange { asid: A, .. }
    ));
    assert!(matches!(
        plan.commands[1],
        Invalidation::TlbiRange { asid: B, .. }
    ));
}

#[test]
fn strict_reply_is_held_until_its_sync_completes() {
    let mut e = engine(true);
    let out = e.unmap(10, C1, A, &[r(1, 1)], UnmapHint::PAGES, 7).unwrap();
    assert_eq!(out.reply, Reply::AfterSync);
    assert_eq!(out.flush, FlushUrgency::EndOfBatch);
    assert_eq!(e.next_deadline(), Some(10));
    let plan = e.plan_flush(12).unwrap();
    assert_eq!(e.plan_flush(12), None);
    assert_eq!(e.next_deadline(), None);
    assert_eq!(
        e.sync_completed(12, SyncSeq::new(plan.seq.get() + 1)),
        Err(EngineError::UnknownSequence)
    );
    assert_eq!(e.client_stats(C1).unwrap().pages_pending, 1);
    let released = e.sync_completed(15, plan.seq).unwrap();
    assert_eq!(
        released,
        vec![Released {
            client: C1,
            reply: ReplyAction::Send,
            unmapped_at: 10,
            payload: 7
        }]
    );
    assert_eq!(e.sync_completed(16, plan.seq), Ok(vec![]));
    let s = e.client_stats(C1).unwrap();
    assert_eq!(
        (s.unmaps, s.syncs, s.tlbi_commands, s.pages_pending),
        (1, 1, 1, 0)
    );
    assert_eq!(s.max_held_us, 5);
}

#[test]
fn k_clients_share_one_sync() {
    let mut e = engine(false);
    e.register(C2, InvalidationPolicy::Strict).unwrap();
    e.register(C3, InvalidationPolicy::deferred(64, 1000).unwrap())
        .unwrap();
    for (i, c) in [C1, C2, C3].into_iter().enumerate() {
        for j in 0..4 {
            let p = (i * 100 + j * 2) as u64;
            e.unmap(0, c, Asid(c.0 as u16), &[r(p, 1)], UnmapHint::PAGES, 0)
                .unwrap();
        }
    }
    let plan = e.plan_flush(1).unwrap();
    assert_eq!(plan.syncs(), 1);
    assert_eq!(plan.tlbis(), 12);
    assert_eq!(e.sync_completed(1, plan.seq).unwrap().len(), 12);
    for c in [C1, C2, C3] {
        assert_eq!(e.client_stats(c).unwrap().syncs, 1);
        assert_eq!(e.client_stats(c).unwrap().tlbi_commands, 4);
    }
}

#[test]
fn per_unmap_baseline_shares_no_sync() {
    let mut e = engine(true);
    e.register(C2, InvalidationPolicy::StrictPerUnmap).unwrap();
    let out = e.unmap(0, C2, B, &[r(1, 1)], UnmapHint::PAGES, 1).unwrap();
    assert_eq!(out.flush, FlushUrgency::Immediately);
    e.unmap(0, C2, B, &[r(2, 1)], UnmapHint::PAGES, 2).unwrap();
    e.unmap(0, C1, A, &[r(3, 1)], UnmapHint::PAGES, 3).unwrap();
    let plan = e.plan_flush(0).unwrap();
    assert_eq!(plan.syncs(), 3);
    assert_eq!(plan.tlbis(), 3);
    assert_eq!(e.client_stats(C2).unwrap().syncs, 2);
}

#[test]
fn deferred_flush_starts_its_lead_before_the_age_bound() {
    // Half of T, at most FLUSH_LEAD_MAX_US: never past T, never 0 µs
    // of wait for a T of a few µs.
    assert_eq!(flush_lead_us(1), 0);
    assert_eq!(flush_lead_us(100), 50);
    assert_eq!(flush_lead_us(800), 400);
    assert_eq!(flush_lead_us(1_000), FLUSH_LEAD_MAX_US);
    assert_eq!(flush_lead_us(1_000_000), FLUSH_LEAD_MAX_US);
    for t in [1, 2, 3, 7, 100, 799, 800, 801, 1_000, 300_000, 1_000_000] {
        let d = InvalidationPolicy::deferred(64, t).unwrap();
        assert!(flush_at(5_000, d) >= 5_000 + t / 2);
        assert!(flush_at(5_000, d) <= 5_000 + t);
        assert!(flush_at(5_000, d) >= 5_000 + t - FLUSH_LEAD_MAX_US.min(t));
    }
    assert_eq!(
        flush_at(5_000, InvalidationPolicy::deferred(64, 1_000).unwrap()),
        5_500
    );
    // The other policies are due at once.
    assert_eq!(flush_at(5_000, InvalidationPolicy::Strict), 5_000);
    assert_eq!(
        flush_at(
            u64::MAX - 1,
            InvalidationPolicy::deferred(1, 1_000).unwrap()
        ),
        u64::MAX
    );
    // The engine wakes the server at that time and flushes then, not later.
    let mut e: Engine<u32> = Engine::new(EngineConfig::for_smmu(true));
    e.register(C1, InvalidationPolicy::deferred(64, 1_000).unwrap())
        .unwrap();
    let out = e.unmap(0, C1, A, &[r(1, 1)], UnmapHint::PAGES, 1).unwrap();
    assert_eq!(out.flush, FlushUrgency::At(500));
    e.unmap(400, C1, A, &[r(2, 1)], UnmapHint::PAGES, 2)
        .unwrap();
    assert_eq!(e.next_deadline(), Some(500));
    assert!(!e.flush_due(499));
    assert_eq!(e.plan_flush(499), None);
    let plan = e.plan_flush(500).unwrap();
    e.sync_completed(600, plan.seq).unwrap();
    assert_eq!(e.client_stats(C1).unwrap().max_stale_us, 600);
}

#[test]
fn deferred_replies_now_and_flushes_at_n_or_t() {
    let mut e: Engine<u32> = Engine::new(EngineConfig::for_smmu(true));
    let policy = InvalidationPolicy::deferred(3, 100).unwrap();
    e.register(C1, policy).unwrap();
    // Due at T less the flush's lead (half of T = 50 µs here).
    let out = e.unmap(10, C1, A, &[r(1, 1)], UnmapHint::PAGES, 1).unwrap();
    assert_eq!(out.reply, Reply::Now);
    assert_eq!(out.flush, FlushUrgency::At(60));
    e.unmap(20, C1, A, &[r(2, 1)], UnmapHint::PAGES, 2).unwrap();
    assert_eq!(e.next_deadline(), Some(60));
    assert_eq!(e.plan_flush(59), None);
    let plan = e.plan_flush(60).unwrap();
    let released = e.sync_completed(61, plan.seq).unwrap();
    assert!(released.iter().all(|r| r.reply == ReplyAction::AlreadySent));
    let s = e.client_stats(C1).unwrap();
    assert_eq!(
        (s.stale_windows, s.max_stale_us, s.total_stale_us),
        (2, 51, 92)
    );

    for i in 0..2 {
        let out = e
            .unmap(200, C1, A, &[r(i, 1)], UnmapHint::PAGES, 0)
            .unwrap();
        assert_eq!(out.flush, FlushUrgency::At(250));
    }
    let out = e
        .unmap(200, C1, A, &[r(9, 1)], UnmapHint::PAGES, 0)
        .unwrap();
    assert_eq!(out.flush, FlushUrgency::EndOfBatch);
    assert_eq!(e.queued(C1), Some(0));
    assert!(e.flush_due(200));
    assert_eq!(e.plan_flush(200).unwrap().syncs(), 1);
}

/// A request's ranges handed over as one entry count as that many of a
/// deferred queue's N: a batch never stretches the bound.
#[test]
fn a_batch_counts_its_mappings_against_deferred_n() {
    let mut e: Engine<u32> = Engine::new(EngineConfig::for_smmu(true));
    let policy = InvalidationPolicy::deferred(4, 100).unwrap();
    e.register(C1, policy).unwrap();
    let out = e.unmap_mappings(10, um(C1, A, &[r(1, 3)], 3), 1).unwrap();
    assert_eq!(out.flush, FlushUrgency::At(60), "3 of 4: not full yet");
    assert_eq!(e.client_stats(C1).unwrap().unmaps, 3);
    let out = e.unmap_mappings(11, um(C1, A, &[r(8, 1)], 1), 2).unwrap();
    assert_eq!(out.flush, FlushUrgency::EndOfBatch, "4 of 4: full");
    assert_eq!(e.queued(C1), Some(0));
    // The queue starts counting afresh.
    let out = e.unmap_mappings(12, um(C1, A, &[r(20, 2)], 2), 3).unwrap();
    assert_eq!(out.flush, FlushUrgency::At(62));
    assert_eq!(e.client_stats(C1).unwrap().unmaps, 6);
    // A strict client's batch is one entry and one sync.
    e.register(C2, InvalidationPolicy::Strict).unwrap();
    let out = e.unmap_mappings(13, um(C2, B, &[r(40, 5)], 5), 4).unwrap();
    assert_eq!(out.reply, Reply::AfterSync);
    assert_eq!(e.client_stats(C2).unwrap().unmaps, 5);
}

#[test]
fn deferred_entries_ride_along_when_piggybacking() {
    for piggyback in [false, true] {
        let config = EngineConfig {
            piggyback_deferred: piggyback,
            ..EngineConfig::for_smmu(true)
        };
        let mut e: Engine<u32> = Engine::new(config);
        e.register(C1, InvalidationPolicy::Strict).unwrap();
        e.register(C2, InvalidationPolicy::deferred(8, 1000).unwrap())
            .unwrap();
        e.unmap(0, C2, B, &[r(1, 1)], UnmapHint::PAGES, 1).unwrap();
        e.unmap(0, C1, A, &[r(1, 1)], UnmapHint::PAGES, 2).unwrap();
        let plan = e.plan_flush(5).unwrap();
        assert_eq!(plan.syncs(), 1);
        assert_eq!(plan.tlbis(), if piggyback { 2 } else { 1 });
        assert_eq!(e.queued(C2), Some(if piggyback { 0 } else { 1 }));
    }
}

#[test]
fn refused_requests_hand_the_payload_back() {
    let mut e = engine(true);
    e.register(C2, InvalidationPolicy::Bypass).unwrap();
    let refused = |res: Result<UnmapOutcome, Refused<u32>>| res.unwrap_err();
    let bad = IovaRange::new(Iova::new(0x1800), 1);
    assert_eq!(
        refused(e.unmap(0, C1, A, &[bad], UnmapHint::PAGES, 5)),
        Refused {
            error: EngineError::InvalidRange,
            payload: 5
        }
    );
    let empty = r(1, 0);
    assert_eq!(
        refused(e.unmap(0, C1, A, &[empty], UnmapHint::PAGES, 5)).error,
        EngineError::InvalidRange
    );
    let overflow = IovaRange::new(Iova::new(!0xfff), 2);
    assert_eq!(
        refused(e.unmap(0, C1, A, &[overflow], UnmapHint::PAGES, 5)).error,
        EngineError::InvalidRange
    );
    assert_eq!(
        refused(e.unmap(0, C3, A, &[r(1, 1)], UnmapHint::PAGES, 6)).error,
        EngineError::UnknownClient
    );
    assert_eq!(
        refused(e.unmap(0, C2, A, &[r(1, 1)], UnmapHint::PAGES, 7)).error,
        EngineError::BypassDomain
    );
    assert_eq!(
        e.register(C1, InvalidationPolicy::Strict),
        Err(EngineError::ClientExists)
    );
    assert_eq!(e.plan_flush(0), None);
    assert_eq!(*e.client_stats(C1).unwrap(), ClientStats::default());
    assert_eq!(
        e.sync_completed(0, SyncSeq::new(1)),
        Err(EngineError::UnknownSequence)
    );
}

#[test]
fn purge_forces_pending_entries_and_tears_down() {
    let mut e = engine(true);
    e.register(C2, InvalidationPolicy::deferred(100, 10_000).unwrap())
        .unwrap();
    e.note_map(C2, 4).unwrap();
    e.unmap(0, C2, B, &[r(1, 1)], UnmapHint::PAGES, 1).unwrap();
    e.unmap(0, C1, A, &[r(1, 1)], UnmapHint::PAGES, 2).unwrap();
    let first = e.plan_flush(0).unwrap();
    e.unmap(1, C1, A, &[r(2, 1)], UnmapHint::PAGES, 3).unwrap();

    let out = e.purge(2, C1, &[A], 4).unwrap();
    assert_eq!(
        out,
        PurgeOutcome {
            forced: 2,
            in_flight: 1,
            flush: FlushUrgency::Immediately
        }
    );
    assert_eq!(
        e.unmap(3, C1, A, &[r(1, 1)], UnmapHint::PAGES, 9)
            .unwrap_err()
            .error,
        EngineError::ClientPurged
    );
    assert_eq!(
        e.purge(3, C1, &[A], 9).unwrap_err().error,
        EngineError::ClientPurged
    );
    assert_eq!(e.remove_client(C1), Err(EngineError::ClientBusy));
    let second = e.plan_flush(3).unwrap();
    assert_eq!(
        second.commands,
        vec![Invalidation::TlbiAsid { asid: A }, Invalidation::Sync]
    );
    let released = e.sync_completed(4, second.seq).unwrap();
    let actions: Vec<_> = released.iter().map(|r| (r.payload, r.reply)).collect();
    assert_eq!(
        actions,
        vec![
            (2, ReplyAction::Drop),
            (1, ReplyAction::AlreadySent),
            (3, ReplyAction::Drop),
            (4, ReplyAction::Drop)
        ]
    );
    assert_eq!(e.sync_completed(4, first.seq), Ok(vec![]));
    let stats = e.remove_client(C1).unwrap();
    assert_eq!(stats.unmaps, 2);
    assert_eq!(e.client_stats(C2).unwrap().maps, 1);
    assert_eq!(e.remove_client(C1), Err(EngineError::UnknownClient));
}

#[test]
fn policy_changes_wait_for_pending_work_and_plans_name_participants() {
    let mut e = engine(true);
    e.register(C2, InvalidationPolicy::StrictPerUnmap).unwrap();
    e.unmap(0, C1, A, &[r(1, 1)], UnmapHint::PAGES, 1).unwrap();
    e.unmap(0, C2, B, &[r(1, 1)], UnmapHint::PAGES, 2).unwrap();
    e.unmap(0, C2, B, &[r(2, 1)], UnmapHint::PAGES, 3).unwrap();
    assert_eq!(
        e.set_policy(C1, InvalidationPolicy::StrictPerUnmap),
        Err(EngineError::ClientBusy)
    );
    let plan = e.plan_flush(0).unwrap();
    // Two per-unmap syncs for C2, then the shared one (C1 only).
    assert_eq!(plan.syncs(), 3);
    assert_eq!(plan.participants, vec![vec![C2], vec![C2], vec![C1]]);
    assert_eq!(
        e.set_policy(C1, InvalidationPolicy::Bypass),
        Err(EngineError::ClientBusy),
        "in flight until its sync completes"
    );
    e.sync_completed(0, plan.seq).unwrap();
    e.set_policy(C1, InvalidationPolicy::Bypass).unwrap();
    assert_eq!(e.policy(C1), Some(InvalidationPolicy::Bypass));
    assert_eq!(
        e.unmap(1, C1, A, &[r(1, 1)], UnmapHint::PAGES, 4)
            .unwrap_err()
            .error,
        EngineError::BypassDomain
    );
    e.note_unmap(C1, 3).unwrap();
    let s = *e.client_stats(C1).unwrap();
    assert_eq!((s.unmaps, s.unmapped_pages, s.syncs), (2, 4, 1));
    e.reset_stats(C1).unwrap();
    assert_eq!(*e.client_stats(C1).unwrap(), ClientStats::default());
    assert_eq!(
        e.set_policy(ClientId(9), InvalidationPolicy::Strict),
        Err(EngineError::UnknownClient)
    );
}

#[test]
fn reserved_unmaps_release_one_at_a_time_in_order() {
    let mut e = engine(true);
    e.register(C2, InvalidationPolicy::StrictPerUnmap).unwrap();
    let room = e.reserve_unmap(C1, 2, 3).unwrap();
    e.unmap_reserved(1, um(C1, A, &[r(1, 1), r(8, 2), r(20, 1)], 3), 10, room)
        .unwrap();
    let room = UnmapRoom::for_ranges(1).unwrap();
    e.unmap_reserved(2, um(C1, A, &[r(30, 1)], 1), 11, room)
        .unwrap();
    e.unmap(3, C2, B, &[r(40, 1)], UnmapHint::PAGES, 12)
        .unwrap();
    assert_eq!(e.pending_entries(), 3);
    let plan = e.try_plan_flush(3).unwrap().unwrap();
    assert_eq!(plan.syncs(), 2);
    let mut order = Vec::new();
    while let Some(r) = e.next_released(4, plan.seq).unwrap() {
        order.push(r.payload);
    }
    // Every one comes back, once.
    order.sort_unstable();
    assert_eq!(order, [10, 11, 12]);
    assert_eq!(e.pending_entries(), 0);
    assert_eq!(e.next_released(5, plan.seq), Ok(None));
    assert_eq!(
        e.next_released(5, SyncSeq::new(plan.seq.get() + 1)),
        Err(EngineError::UnknownSequence)
    );
}

#[test]
fn the_full_plan_covers_every_ready_entry_and_queue() {
    let mut e = engine(true);
    let deferred = InvalidationPolicy::Deferred {
        max_entries: 8,
        max_age_us: 1000,
    };
    e.register(C2, deferred).unwrap();
    e.unmap(1, C1, A, &[r(1, 1)], UnmapHint::PAGES, 1).unwrap();
    e.unmap(1, C2, B, &[r(2, 1)], UnmapHint::PAGES, 2).unwrap();
    // The deferred queue moves where the plan's list has room for it.
    e.expedite(C2).unwrap();
    let seq = e.plan_full().unwrap();
    assert_eq!(e.plan_full(), None, "nothing left");
    let released = e.sync_completed(2, seq).unwrap();
    let mut payloads: Vec<_> = released.iter().map(|r| r.payload).collect();
    payloads.sort_unstable();
    assert_eq!(payloads, [1, 2]);
    assert_eq!(e.client_stats(C1).unwrap().syncs, 1);
    assert_eq!(e.client_stats(C2).unwrap().syncs, 1);
}
