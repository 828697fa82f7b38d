//! A client's teardown whose sync fails (security contract items 6 and
//! 9: a failing teardown never releases memory): the death is not
//! complete, so the task must not answer the death notice; no table page,
//! CD or frame is released; the streams are at abort; the retry (with a
//! full configuration and stage-1 invalidation) completes it once the SMMU
//! syncs again.

mod common;

use abi::StreamId;
use common::*;
use iommu_api::Dir;
use iommu_core::server::ServerConfig;
use smmu_model::Fault;

const A: u32 = 1;
const B: u32 = 2;
const SID_A: u32 = 0x8;
const SID_B: u32 = 0x10;

#[test]
fn a_failed_teardown_sync_releases_nothing_and_the_death_stays_unanswered() {
    let mut s = server(
        ServerConfig::default(),
        &[(A, STRICT, UNTRUSTED), (B, STRICT, UNTRUSTED)],
    );
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let fa = Frames::new(A).take(2, false);
    let va = map_page(&mut s, 0, A, Dir::Bidirectional, &fa[..1]);
    let fb = Frames::new(B).take(1, false);
    let vb = map_page(&mut s, 0, B, Dir::Bidirectional, &fb);
    let hw = s.hw_mut();
    assert!(
        hw.model
            .translate(&hw.mem, StreamId(SID_A), va, false)
            .is_ok()
    );
    let (frees, live, pinned) = (s.hw().frees, s.hw().live.len(), s.hw().pinned());
    assert!(pinned > 0);

    // The SMMU stops completing syncs; A dies.
    s.hw_mut().fail_syncs = u32::MAX;
    let _ = s.client_died(A);
    assert!(!s.teardown_complete(A), "a failed teardown is not complete");
    for t in 1..5 {
        let _ = s.poll(t);
        assert!(!s.teardown_complete(A));
    }
    let hw = s.hw();
    assert_eq!(hw.frees, frees, "no table page or CD went back to the pool");
    assert_eq!(hw.live.len(), live);
    assert_eq!(hw.pinned(), pinned, "no frame was unpinned");
    assert!(s.next_deadline().is_some(), "the retry is due");
    assert!(
        s.clients().any(|c| c.badge == A),
        "the client is not forgotten"
    );

    // The SMMU syncs again: the retry completes the teardown.
    s.hw_mut().fail_syncs = 0;
    let _ = s.poll(10);
    assert!(s.teardown_complete(A));
    assert!(!s.clients().any(|c| c.badge == A));
    let hw = s.hw_mut();
    assert!(hw.frees > frees, "its tables and CD are released now");
    assert_eq!(hw.pinned(), pinned - 1, "its frame is unpinned now");
    assert_eq!(
        hw.model.translate(&hw.mem, StreamId(SID_A), va, false),
        Err(Fault::Abort),
        "its stream aborts"
    );
    // B was not disturbed.
    assert!(
        hw.model
            .translate(&hw.mem, StreamId(SID_B), vb, false)
            .is_ok()
    );
    assert_eq!(hw.model.stats().stale_hits, 0);
    // A live client's teardown is trivially complete.
    assert!(s.teardown_complete(B));
}

#[test]
fn the_retry_invalidates_cached_configuration() {
    let mut s = server(ServerConfig::default(), &[(A, STRICT, UNTRUSTED)]);
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    let fa = Frames::new(A).take(1, false);
    let va = map_page(&mut s, 0, A, Dir::Bidirectional, &fa);
    // The device used the mapping: its STE, CD and walk are cached.
    let hw = s.hw_mut();
    assert!(
        hw.model
            .translate(&hw.mem, StreamId(SID_A), va, false)
            .is_ok()
    );
    // The teardown's batch (CFGI_STE, TLBI) is lost with its sync; the
    // retry alone must make the stream abort.
    s.hw_mut().fail_submit = true;
    let _ = s.client_died(A);
    assert!(!s.teardown_complete(A));
    let _ = s.poll(1);
    assert!(s.teardown_complete(A));
    let hw = s.hw_mut();
    assert_eq!(
        hw.model.translate(&hw.mem, StreamId(SID_A), va, false),
        Err(Fault::Abort)
    );
    assert_eq!(hw.model.stats().stale_hits, 0);
}

/// A client whose teardown completed only on a retry gives its quota's
/// heap back like any other dead client: a driver that dies again and
/// again (each time with a failing first teardown sync) can always be
/// registered again under a heap budget that holds it once.
#[test]
fn a_teardown_completed_on_retry_returns_the_clients_heap() {
    let quota = iommu_api::ClientQuota::default_for(UNTRUSTED);
    let heap = iommu_core::server::quota::heap_bytes(&quota);
    let cfg = ServerConfig {
        heap_budget: Some(heap),
        ..ServerConfig::default()
    };
    let mut s = server(cfg, &[(A, STRICT, UNTRUSTED)]);
    for round in 0..4u64 {
        attach(&mut s, round * 100, A, SID_A, 48).unwrap();
        let f = Frames::new(A).take(1, false);
        let _ = map_page(&mut s, round * 100, A, Dir::Bidirectional, &f);
        s.hw_mut().fail_syncs = u32::MAX;
        let _ = s.client_died(A);
        assert!(!s.teardown_complete(A));
        s.hw_mut().fail_syncs = 0;
        let _ = s.poll(round * 100 + 50);
        assert!(s.teardown_complete(A), "round {round}: teardown completes");
        s.add_client(A, "again", STRICT, UNTRUSTED)
            .unwrap_or_else(|e| panic!("round {round}: registered again: {e:?}"));
    }
}
