//! Runtime policy switching for the benchmark client, on a software SMMU:
//! who may switch, when, and what each switch does to the streams, to
//! `Map`/`Unmap` and to the counters.

mod common;

use abi::{Iova, PAGE_SIZE, PhysAddr, StreamId};
use common::*;
use iommu_api::{ApiError, Dir, Extent, Request, Stats};
use iommu_core::server::Phase;
use iommu_core::server::ServerConfig;
use iommu_core::server::ServerError;
use iommu_core::{InvalidationPolicy, TrustLevel};
use smmu_model::Fault;
use smmuv3::ste::StreamConfig;

const A: u32 = 1;
const B: u32 = 2;
const C: u32 = 3;
const SID_A: u32 = 0x8;
const SID_B: u32 = 0x10;
const SID_C: u32 = 0x18;
const SID_C2: u32 = 0x19;
const BENCH: TrustLevel = TrustLevel::Bench;
const BYPASS: InvalidationPolicy = InvalidationPolicy::Bypass;

fn set_policy(
    s: &mut Srv,
    now: u64,
    badge: u32,
    policy: InvalidationPolicy,
) -> Result<(), ApiError> {
    simple(s, now, badge, Request::SetPolicy { policy }).map(|_| ())
}

fn reset(s: &mut Srv, now: u64, badge: u32) -> Result<(), ApiError> {
    simple(s, now, badge, Request::ResetStats).map(|_| ())
}

fn policy_of(s: &Srv, badge: u32) -> InvalidationPolicy {
    s.clients().find(|c| c.badge == badge).unwrap().policy
}

fn stats(s: &Srv, badge: u32) -> Stats {
    s.stats(badge).unwrap()
}

/// The STE config the SMMU uses for `sid` now (after a lookup).
fn ste_config(s: &mut Srv, sid: u32) -> Option<StreamConfig> {
    let hw = s.hw_mut();
    let _ = hw
        .model
        .translate(&hw.mem, StreamId(sid), Iova::new(0x10_0000), false);
    hw.model.cached_ste(StreamId(sid)).map(|s| s.config)
}

fn one_page(s: &mut Srv, now: u64, badge: u32, f: &[PhysAddr]) -> Iova {
    map_page(s, now, badge, Dir::Bidirectional, f)
}

#[test]
fn only_the_bench_client_may_switch_or_reset() {
    let deferred = InvalidationPolicy::deferred(4, 100).unwrap();
    let mut s = server(
        ServerConfig::default(),
        &[(A, STRICT, UNTRUSTED), (B, deferred, TRUSTED)],
    );
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let before = s.hw().footprint();
    for badge in [A, B] {
        for p in [BYPASS, STRICT, PER_UNMAP, deferred] {
            assert_eq!(set_policy(&mut s, 1, badge, p), Err(ApiError::NotPermitted));
        }
        assert_eq!(reset(&mut s, 1, badge), Err(ApiError::NotPermitted));
    }
    assert_eq!(s.hw().footprint(), before);
    assert_eq!(policy_of(&s, A), STRICT);
    assert_eq!(policy_of(&s, B), deferred);
    assert_eq!(ste_config(&mut s, SID_A), Some(StreamConfig::S1Translate));
    // Nobody starts in bypass, not even the bench client; a trusted
    // client may not bypass at all.
    for t in [TRUSTED, BENCH] {
        assert_eq!(
            s.add_client(9, "x", BYPASS, t),
            Err(ServerError::NotPermitted)
        );
    }
    // A bench client starts strict.
    s.add_client(C, "bench", STRICT, BENCH).unwrap();
    assert_eq!(policy_of(&s, C), STRICT);
}

#[test]
fn switching_with_live_mappings_is_refused_and_changes_nothing() {
    let mut s = server(ServerConfig::default(), &[(C, STRICT, BENCH)]);
    attach(&mut s, 0, C, SID_C, 48).unwrap();
    let f = Frames::new(C).take(1, true);
    let v = one_page(&mut s, 0, C, &f);
    let before = s.hw().footprint();
    let stats_before = stats(&s, C);
    for p in [
        BYPASS,
        PER_UNMAP,
        InvalidationPolicy::deferred(2, 10).unwrap(),
    ] {
        assert_eq!(set_policy(&mut s, 1, C, p), Err(ApiError::Busy));
    }
    assert_eq!(s.hw().footprint(), before);
    assert_eq!(stats(&s, C), stats_before);
    assert_eq!(policy_of(&s, C), STRICT);
    // Still translating, through the same mapping.
    let hw = s.hw_mut();
    hw.model
        .dma_write(&mut hw.mem, StreamId(SID_C), v, b"mapped")
        .unwrap();
    let mut got = [0u8; 6];
    hw.mem.read_bytes(f[0], &mut got);
    assert_eq!(&got, b"mapped");
    // Once unmapped, the switch goes through (a failing SMMU first: the
    // switch is undone and reported).
    assert_eq!(
        unmap(&mut s, 2, C, &[Extent::new(v.get(), 4096)], 5),
        Ok(true)
    );
    s.poll(2);
    s.hw_mut().fail_submit = true;
    assert_eq!(set_policy(&mut s, 2, C, BYPASS), Err(ApiError::Hardware));
    assert_eq!(policy_of(&s, C), STRICT);
    assert_eq!(ste_config(&mut s, SID_C), Some(StreamConfig::S1Translate));
    let v = one_page(&mut s, 2, C, &f);
    assert_eq!(
        unmap(&mut s, 2, C, &[Extent::new(v.get(), 4096)], 5),
        Ok(true)
    );
    s.poll(2);
    set_policy(&mut s, 3, C, PER_UNMAP).unwrap();
    assert_eq!(policy_of(&s, C), PER_UNMAP);
}

#[test]
fn strict_to_bypass_and_back() {
    let mut s = server(ServerConfig::default(), &[(C, STRICT, BENCH)]);
    attach(&mut s, 0, C, SID_C, 48).unwrap();
    let mut frames = Frames::new(C);
    let f = frames.take(4, true);
    let v = one_page(&mut s, 0, C, &f);
    let hw = s.hw_mut();
    hw.model
        .translate(&hw.mem, StreamId(SID_C), v, true)
        .unwrap();
    assert_eq!(
        unmap(&mut s, 1, C, &[Extent::new(v.get(), 4096)], 5),
        Ok(true)
    );
    s.poll(1);

    // Into bypass: one CFGI_STE and one sync, nothing invalidated.
    let (syncs, doorbells) = (s.hw().syncs, s.hw().doorbells);
    let m = s.hw().model.stats();
    set_policy(&mut s, 2, C, BYPASS).unwrap();
    assert_eq!(s.hw().syncs, syncs + 1);
    assert_eq!(s.hw().doorbells, doorbells + 1);
    let m2 = s.hw().model.stats();
    assert_eq!(m2.tlbi_commands, m.tlbi_commands);
    assert_eq!(m2.cfgi_commands, m.cfgi_commands + 1);
    assert_eq!(policy_of(&s, C), BYPASS);
    assert_eq!(ste_config(&mut s, SID_C), Some(StreamConfig::Bypass));

    // Map answers bus addresses (= physical, page offset kept).
    let got = map(
        &mut s,
        3,
        C,
        Dir::FromDevice,
        &[Extent::new(0x10, 2 * 4096), Extent::new(3 * 4096, 8)],
        &f,
        0,
    )
    .unwrap();
    assert_eq!(
        got,
        vec![Iova::new(f[0].get() + 0x10), Iova::new(f[3].get()),]
    );
    // The device reaches memory untranslated.
    let hw = s.hw_mut();
    hw.model
        .dma_write(&mut hw.mem, StreamId(SID_C), got[0], b"bypassed")
        .unwrap();
    let mut buf = [0u8; 8];
    hw.mem
        .read_bytes(PhysAddr::new(f[0].get() + 0x10), &mut buf);
    assert_eq!(&buf, b"bypassed");
    // A range that is not physically contiguous has no bus address; one
    // the device cannot address is refused too.
    let gappy = frames.take(2, false);
    let before = s.hw().footprint();
    assert_eq!(
        map(
            &mut s,
            3,
            C,
            Dir::FromDevice,
            &[Extent::new(0, 2 * 4096)],
            &gappy,
            0
        ),
        Err(ApiError::NotContiguous)
    );
    assert_eq!(s.hw().footprint(), before);
    // Switching with bus mappings live is refused as well.
    assert_eq!(set_policy(&mut s, 3, C, STRICT), Err(ApiError::Busy));

    // Unmap only forgets: no command, no sync, answered at once, counted.
    let unmaps = stats(&s, C).unmaps;
    let before = s.hw().footprint();
    assert_eq!(
        unmap(
            &mut s,
            4,
            C,
            &[
                Extent::new(got[0].get(), 2 * 4096),
                Extent::new(got[1].get(), 8)
            ],
            6
        ),
        Ok(false)
    );
    assert!(s.poll(4).is_empty());
    assert_eq!(s.hw().footprint(), before);
    assert_eq!(stats(&s, C).unmaps, unmaps + 2);
    assert_eq!(
        unmap(&mut s, 4, C, &[Extent::new(got[1].get(), 8)], 6),
        Err(ApiError::UnknownIova)
    );

    // A driver re-opening its device after a switch: a no-op success.
    let before = s.hw().footprint();
    attach(&mut s, 5, C, SID_C, 48).unwrap();
    assert_eq!(s.hw().footprint(), before);
    // A second device attached in bypass bypasses too.
    attach(&mut s, 5, C, SID_C2, 48).unwrap();
    assert_eq!(ste_config(&mut s, SID_C2), Some(StreamConfig::Bypass));

    // Back to strict: both streams translate again, and the bypass window
    // is closed: an address that was reachable a moment ago, never mapped
    // as an IOVA, faults.
    set_policy(&mut s, 6, C, STRICT).unwrap();
    assert_eq!(policy_of(&s, C), STRICT);
    for sid in [SID_C, SID_C2] {
        assert_eq!(ste_config(&mut s, sid), Some(StreamConfig::S1Translate));
        let hw = s.hw_mut();
        let r = hw
            .model
            .dma_write(&mut hw.mem, StreamId(sid), got[0], b"late");
        assert!(matches!(r, Err(Fault::Translation { .. })), "{r:?}");
    }
    let hw = s.hw_mut();
    let mut buf = [0u8; 8];
    hw.mem
        .read_bytes(PhysAddr::new(f[0].get() + 0x10), &mut buf);
    assert_eq!(&buf, b"bypassed", "nothing reached memory after the switch");
    // Map gives IOVAs in the domain's window again, and they translate.
    let v = one_page(&mut s, 7, C, &f[1..2]);
    assert!(v.get() >= ServerConfig::default().iova_base && v.get() < 1 << 48);
    assert_ne!(v.get(), f[1].get());
    let hw = s.hw_mut();
    assert_eq!(
        hw.model.translate(&hw.mem, StreamId(SID_C2), v, true),
        Ok(f[1])
    );
    assert_eq!(s.hw().model.stats().stale_hits, 0);
}

#[test]
fn bypass_refuses_what_the_device_cannot_address() {
    let mut s = server(ServerConfig::default(), &[(C, STRICT, BENCH)]);
    // A 28-bit device (edu): client frames sit above 4 GiB.
    attach(&mut s, 0, C, SID_C, 28).unwrap();
    set_policy(&mut s, 1, C, BYPASS).unwrap();
    let f = Frames::new(C).take(1, true);
    let before = s.hw().footprint();
    assert_eq!(
        map(&mut s, 2, C, Dir::ToDevice, &[Extent::new(0, 8)], &f, 0),
        Err(ApiError::IovaExhausted)
    );
    assert_eq!(s.hw().footprint(), before);
    // Back to strict it maps fine, under 2^28.
    set_policy(&mut s, 3, C, STRICT).unwrap();
    let v = one_page(&mut s, 4, C, &f);
    assert!(v.get() + PAGE_SIZE <= 1 << 28);
}

#[test]
fn a_domain_made_in_bypass_gets_translation_on_the_way_out() {
    let mut s = server(ServerConfig::default(), &[(C, STRICT, BENCH)]);
    set_policy(&mut s, 0, C, BYPASS).unwrap();
    attach(&mut s, 0, C, SID_C, 48).unwrap();
    assert_eq!(ste_config(&mut s, SID_C), Some(StreamConfig::Bypass));
    set_policy(&mut s, 1, C, STRICT).unwrap();
    assert_eq!(ste_config(&mut s, SID_C), Some(StreamConfig::S1Translate));
    let f = Frames::new(C).take(1, true);
    let v = one_page(&mut s, 2, C, &f);
    let hw = s.hw_mut();
    assert_eq!(
        hw.model.translate(&hw.mem, StreamId(SID_C), v, true),
        Ok(f[0])
    );
    // Death in bypass (again) still sends its streams to abort.
    assert_eq!(
        unmap(&mut s, 3, C, &[Extent::new(v.get(), 4096)], 1),
        Ok(true)
    );
    s.poll(3);
    set_policy(&mut s, 4, C, BYPASS).unwrap();
    s.client_died(C);
    let hw = s.hw_mut();
    assert_eq!(
        hw.model
            .translate(&hw.mem, StreamId(SID_C), Iova::new(f[0].get()), true),
        Err(Fault::Abort)
    );
    assert_eq!(s.hw().live.len(), 2, "stream table and its level-2 table");
    assert_eq!(s.hw().model.stats().stale_hits, 0);
}

#[test]
fn per_unmap_syncs_each_unmap_while_strict_shares() {
    let mut s = server(ServerConfig::default(), &[(C, STRICT, BENCH)]);
    attach(&mut s, 0, C, SID_C, 48).unwrap();
    let f = Frames::new(C).take(8, false);
    let ranges: Vec<_> = (0..4).map(|i| Extent::new(i * 8192, 4096)).collect();
    let run = |s: &mut Srv, policy, t: u64| {
        set_policy(s, t, C, policy).unwrap();
        reset(s, t, C).unwrap();
        let v = map(s, t, C, Dir::FromDevice, &ranges, &f, 0).unwrap();
        let done: Vec<_> = v.iter().map(|i| Extent::new(i.get(), 4096)).collect();
        let syncs = s.hw().syncs;
        assert_eq!(unmap(s, t + 1, C, &done, 9), Ok(true));
        let out = s.poll(t + 1);
        assert_eq!(out.len(), 1, "one held reply, for the whole request");
        (s.hw().syncs - syncs, stats(s, C))
    };
    let (hw_syncs, st) = run(&mut s, PER_UNMAP, 10);
    assert_eq!(hw_syncs, 4);
    assert_eq!((st.maps, st.unmaps, st.syncs), (1, 4, 4));
    assert_eq!(st.tlbi_commands, 4);
    assert_eq!(st.doorbells, 8, "a batch and a sync each");
    let (hw_syncs, st) = run(&mut s, STRICT, 20);
    assert_eq!(hw_syncs, 1);
    assert_eq!((st.maps, st.unmaps, st.syncs), (1, 4, 1));
    assert_eq!(st.doorbells, 2);
    assert_eq!(st.pending_unmaps, 0);
    assert_eq!(s.hw().model.stats().stale_hits, 0);
}

#[test]
fn deferred_after_a_switch_honours_its_bounds_and_switching_flushes_it() {
    let mut s = server(ServerConfig::default(), &[(C, STRICT, BENCH)]);
    attach(&mut s, 0, C, SID_C, 48).unwrap();
    let deferred = InvalidationPolicy::deferred(3, 100).unwrap();
    set_policy(&mut s, 0, C, deferred).unwrap();
    assert_eq!(policy_of(&s, C), deferred);
    let f = Frames::new(C).take(10, false);
    let ranges: Vec<_> = (0..5).map(|i| Extent::new(i * 8192, 4096)).collect();
    let v = map(&mut s, 0, C, Dir::FromDevice, &ranges, &f, 0).unwrap();
    let hw = s.hw_mut();
    for i in &v {
        hw.model
            .translate(&hw.mem, StreamId(SID_C), *i, true)
            .unwrap();
    }
    let syncs = s.hw().syncs;
    // Answered at once, flushed by age...
    assert_eq!(
        unmap(&mut s, 10, C, &[Extent::new(v[0].get(), 4096)], 1),
        Ok(false)
    );
    assert!(s.poll(10).is_empty());
    assert_eq!(s.hw().syncs, syncs);
    assert!(
        s.hw()
            .model
            .would_translate(&s.hw().mem, StreamId(SID_C), v[0])
            .is_some()
    );
    // T = 100 µs less the flush's lead (half of T).
    assert_eq!(s.next_deadline(), Some(60));
    s.poll(60);
    assert_eq!(s.hw().syncs, syncs + 1);
    assert_eq!(stats(&s, C).max_stale_window_us, 50);
    // ...or by count.
    for (t, i) in [(200, 1), (201, 2), (202, 3)] {
        assert_eq!(
            unmap(&mut s, t, C, &[Extent::new(v[i].get(), 4096)], 1),
            Ok(false)
        );
    }
    s.poll(203);
    assert_eq!(s.hw().syncs, syncs + 2);
    // A queued deferred unmap is completed by the switch itself.
    assert_eq!(
        unmap(&mut s, 300, C, &[Extent::new(v[4].get(), 4096)], 1),
        Ok(false)
    );
    assert_eq!(stats(&s, C).pending_unmaps, 1);
    set_policy(&mut s, 301, C, STRICT).unwrap();
    assert_eq!(s.hw().syncs, syncs + 3);
    assert_eq!(stats(&s, C).pending_unmaps, 0);
    assert_eq!(
        s.hw()
            .model
            .would_translate(&s.hw().mem, StreamId(SID_C), v[4]),
        None
    );
    let st = stats(&s, C);
    assert_eq!((st.unmaps, st.syncs), (5, 3));
    assert_eq!(st.max_stale_window_us, 50);
    assert_eq!(s.hw().model.stats().stale_hits, 0);
}

#[test]
fn counters_stay_consistent_reset_and_charge() {
    let mut s = server(
        ServerConfig::default(),
        &[(A, STRICT, UNTRUSTED), (C, STRICT, BENCH)],
    );
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    attach(&mut s, 0, C, SID_C, 48).unwrap();
    let fa = Frames::new(A).take(2, true);
    let fc = Frames::new(C).take(2, true);
    let va = one_page(&mut s, 0, A, &fa);
    let vc = one_page(&mut s, 0, C, &fc);
    assert_eq!(
        unmap(&mut s, 1, A, &[Extent::new(va.get(), 4096)], 1),
        Ok(true)
    );
    assert_eq!(
        unmap(&mut s, 1, C, &[Extent::new(vc.get(), 4096)], 2),
        Ok(true)
    );
    assert_eq!(s.poll(1).len(), 2);
    assert_eq!(s.last_flush_clients(), &[A, C]);
    // One shared flush of 7 ticks, 2 of them unpins: the 5 of flushing 3
    // to A, 2 to C (remainder to the lowest badge), the unpins 1 each;
    // C's own request time on top, by phase.
    s.charge_flush(7, 2);
    s.charge(C, Phase::Map, 14, 4);
    s.charge(C, Phase::Other, 1, 0);
    s.charge(77, Phase::Map, 1, 0); // unknown: ignored
    let (a, c) = (stats(&s, A), stats(&s, C));
    assert_eq!((a.server_ticks, c.server_ticks), (4, 18));
    let phases = |st: &Stats| (st.map_ticks, st.unmap_ticks, st.flush_ticks, st.pin_ticks);
    assert_eq!(phases(&a), (0, 0, 3, 1));
    assert_eq!(phases(&c), (10, 0, 2, 5));
    for st in [a, c] {
        assert_eq!((st.maps, st.unmaps, st.syncs, st.doorbells), (1, 1, 1, 2));
        assert!(st.syncs <= st.unmaps);
    }
    // Nothing flushed by this poll: nothing charged.
    assert!(s.poll(2).is_empty());
    assert!(s.last_flush_clients().is_empty());
    s.charge_flush(100, 50);
    assert_eq!(stats(&s, A).server_ticks, 4);
    // Reset zeroes C's counters, and only C's.
    reset(&mut s, 3, C).unwrap();
    // The quota gauges and limits stay (table pages: what C's table holds).
    let after = stats(&s, C);
    assert!(after.table_pages >= 1);
    assert_eq!(
        after,
        Stats {
            iova_bytes_in_use: 0,
            table_pages: after.table_pages,
            quota_mapped_bytes: c.quota_mapped_bytes,
            quota_mappings: c.quota_mappings,
            quota_table_pages: c.quota_table_pages,
            quota_iova_bytes: c.quota_iova_bytes,
            ..Stats::default()
        }
    );
    assert_eq!(stats(&s, A), a);
    // A pending deferred unmap is completed before the reset, so that it
    // is never counted on one side and synced on the other.
    set_policy(&mut s, 4, C, InvalidationPolicy::deferred(8, 1000).unwrap()).unwrap();
    let vc = one_page(&mut s, 5, C, &fc);
    assert_eq!(
        unmap(&mut s, 6, C, &[Extent::new(vc.get(), 4096)], 3),
        Ok(false)
    );
    reset(&mut s, 7, C).unwrap();
    let st = stats(&s, C);
    assert_eq!((st.unmaps, st.syncs, st.pending_unmaps), (0, 0, 0));
    assert!(s.poll(8).is_empty());
    assert_eq!(stats(&s, C).syncs, 0);
}
