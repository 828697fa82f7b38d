//! Fault handling on a software SMMU: a faulting deferred client demoted
//! to strict at once (its pending deferred unmaps flushed before its next
//! reply, its later unmaps strict, never undone), quarantine by record
//! count on a single page, and event-queue overflows charged to a client.

mod common;

use abi::{Iova, StreamId};
use common::*;
use iommu_api::{ApiError, Dir, Extent, Request, level};
use iommu_core::fault_ledger::QuarantineReason;
use iommu_core::server::ServerConfig;
use iommu_core::{InvalidationPolicy, TrustLevel};

const B: u32 = 2;
const SID_B: u32 = 0x10;

/// One F_TRANSLATION write record of `sid` at `iova` (the model's own).
fn fault_record(s: &mut Srv, sid: u32, iova: u64) -> [u64; 4] {
    let hw = s.hw_mut();
    assert!(
        hw.model
            .dma_write(&mut hw.mem, StreamId(sid), Iova::new(iova), &[1])
            .is_err()
    );
    let ev = s.hw_mut().model.take_events();
    assert_eq!(ev.len(), 1);
    ev[0]
}

#[test]
fn a_faulting_deferred_client_is_demoted_at_once_then_quarantined() {
    let deferred = InvalidationPolicy::deferred(64, 1_000_000).unwrap();
    let cfg = ServerConfig {
        quarantine_after: 3,
        ..ServerConfig::default()
    };
    let mut s = server(cfg, &[(B, deferred, TRUSTED)]);
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let f = Frames::new(B).take(4, false);
    let ranges: Vec<_> = (0..3).map(|i| Extent::new(i * 4096, 4096)).collect();
    let v = map(&mut s, 0, B, Dir::FromDevice, &ranges, &f, 0).unwrap();
    let hw = s.hw_mut();
    for i in &v {
        hw.model
            .translate(&hw.mem, StreamId(SID_B), *i, true)
            .unwrap();
    }
    // Deferred: answered at once, the window open.
    assert_eq!(
        unmap(&mut s, 10, B, &[Extent::new(v[0].get(), 4096)], 1),
        Ok(false)
    );
    assert_eq!(s.stats(B).unwrap().pending_unmaps, 1);
    assert!(
        s.hw()
            .model
            .would_translate(&s.hw().mem, StreamId(SID_B), v[0])
            .is_some()
    );

    // One fault: demoted now, the pending unmap flushed before any reply.
    let r = fault_record(&mut s, SID_B, 0x800_0000);
    let rep = s.on_event(r).unwrap();
    assert_eq!(rep.demoted_from, Some(deferred));
    assert!(!rep.quarantined_now);
    let st = s.stats(B).unwrap();
    assert_eq!(st.pending_unmaps, 0);
    assert_eq!(
        (st.level, st.level_reason),
        (level::DEMOTED, level::REASON_FAULT)
    );
    assert_eq!(st.level_text(), "strict (demoted: fault)");
    assert_eq!(
        s.hw()
            .model
            .would_translate(&s.hw().mem, StreamId(SID_B), v[0]),
        None
    );
    assert_eq!(s.clients().find(|c| c.badge == B).unwrap().policy, STRICT);
    assert_eq!(s.server_stats().demotions, 1);

    // Its next unmap is strict: held until the covering sync.
    assert_eq!(
        unmap(&mut s, 20, B, &[Extent::new(v[1].get(), 4096)], 2),
        Ok(true)
    );
    let out = s.poll(20);
    assert_eq!(out.len(), 1);
    assert_eq!(
        s.hw()
            .model
            .would_translate(&s.hw().mem, StreamId(SID_B), v[1]),
        None
    );

    // A second fault does not demote again; more distinct pages quarantine.
    let mut quarantined = None;
    for k in 1..=3u64 {
        let r = fault_record(&mut s, SID_B, 0x800_0000 + k * 4096);
        let rep = s.on_event(r).unwrap();
        assert_eq!(rep.demoted_from, None);
        if rep.quarantined_now {
            quarantined = rep.reason;
        }
    }
    assert_eq!(quarantined, Some(QuarantineReason::DistinctPages));
    let st = s.stats(B).unwrap();
    assert_eq!(
        (st.level, st.level_reason, st.fault_pages),
        (level::QUARANTINED, level::REASON_DISTINCT_PAGES, 4)
    );
    assert_eq!(s.hw().model.stats().stale_hits, 0);
}

#[test]
fn a_demoted_bench_client_may_not_go_back_to_deferred() {
    let deferred = InvalidationPolicy::deferred(8, 1000).unwrap();
    let mut s = server(ServerConfig::default(), &[(B, STRICT, TrustLevel::Bench)]);
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    simple(&mut s, 1, B, Request::SetPolicy { policy: deferred }).unwrap();
    let r = fault_record(&mut s, SID_B, 0x40_0000);
    assert_eq!(s.on_event(r).unwrap().demoted_from, Some(deferred));
    for p in [deferred, InvalidationPolicy::Bypass] {
        assert_eq!(
            simple(&mut s, 2, B, Request::SetPolicy { policy: p }).map(|_| ()),
            Err(ApiError::NotPermitted)
        );
    }
    // The strict policies stay open to it; it stays demoted.
    simple(
        &mut s,
        3,
        B,
        Request::SetPolicy {
            policy: InvalidationPolicy::StrictPerUnmap,
        },
    )
    .unwrap();
    assert_eq!(s.stats(B).unwrap().level, level::DEMOTED);
}

#[test]
fn a_single_page_flood_is_quarantined_by_record_count() {
    let cfg = ServerConfig {
        quarantine_records: 100,
        ..ServerConfig::default()
    };
    let mut s = server(cfg, &[(B, STRICT, UNTRUSTED)]);
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let r = fault_record(&mut s, SID_B, 0x40_0000);
    let mut at = None;
    for i in 1..=300u64 {
        let rep = s.on_event(r).unwrap();
        assert_eq!(rep.demoted_from, None, "a strict client is not demoted");
        if rep.quarantined_now {
            assert!(at.is_none());
            at = Some((i, rep.reason));
        }
    }
    assert_eq!(at, Some((100, Some(QuarantineReason::Records))));
    let st = s.stats(B).unwrap();
    assert_eq!(
        (st.level, st.level_reason, st.faults, st.fault_pages),
        (level::QUARANTINED, level::REASON_RECORDS, 300, 1)
    );
    assert_eq!(st.level_text(), "quarantined (records)");
    // Its device now aborts.
    let hw = s.hw_mut();
    assert_eq!(
        hw.model
            .dma_write(&mut hw.mem, StreamId(SID_B), Iova::new(0x40_0000), &[1]),
        Err(smmu_model::Fault::Abort)
    );
}

#[test]
fn an_overflow_is_charged_to_the_owner_of_the_stream() {
    let mut s = server(ServerConfig::default(), &[(B, STRICT, UNTRUSTED)]);
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let charged = s.on_event_overflow(Some(StreamId(SID_B)), 128).unwrap();
    assert_eq!(
        (
            charged.badge,
            charged.quarantined_now,
            charged.records,
            charged.lost
        ),
        (B, false, 128, 128)
    );
    assert_eq!(s.on_event_overflow(Some(StreamId(0x99)), 128), None);
    assert_eq!(s.on_event_overflow(None, 128), None);
    assert_eq!(s.stats(B).unwrap().event_overflows, 1);
    // `faults` counts records seen, not the estimate of those lost.
    assert_eq!(s.stats(B).unwrap().faults, 0);
    assert_eq!(s.server_stats().event_overflows, 3);
}

#[test]
fn records_lost_to_overflows_count_towards_quarantine() {
    let cfg = ServerConfig {
        quarantine_records: 1000,
        ..ServerConfig::default()
    };
    let mut s = server(cfg, &[(B, STRICT, UNTRUSTED)]);
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    // 7 overflows of an estimated 128 lost records each: 896, under 1000.
    for _ in 0..7 {
        let c = s.on_event_overflow(Some(StreamId(SID_B)), 128).unwrap();
        assert!(!c.quarantined_now);
    }
    assert_eq!(s.stats(B).unwrap().level, level::CONFIGURED);
    let c = s.on_event_overflow(Some(StreamId(SID_B)), 128).unwrap();
    assert!(c.quarantined_now);
    assert_eq!((c.records, c.lost, c.pages), (1024, 1024, 0));
    let st = s.stats(B).unwrap();
    assert_eq!(
        (st.level, st.level_reason, st.event_overflows),
        (level::QUARANTINED, level::REASON_RECORDS, 8)
    );
    // Its device now aborts; a later overflow does not quarantine again.
    let hw = s.hw_mut();
    assert_eq!(
        hw.model
            .dma_write(&mut hw.mem, StreamId(SID_B), Iova::new(0x40_0000), &[1]),
        Err(smmu_model::Fault::Abort)
    );
    assert!(
        !s.on_event_overflow(Some(StreamId(SID_B)), 128)
            .unwrap()
            .quarantined_now
    );
}
