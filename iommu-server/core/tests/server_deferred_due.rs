//! `Server::deferred_due`: the task flushes as soon as a deferred
//! client's window must close, even while calls keep arriving; strict
//! work never makes it due (it waits for the queue to empty, so that
//! clients share a sync).

mod common;

use abi::PAGE_SIZE;
use common::*;
use iommu_api::{Dir, Extent};
use iommu_core::InvalidationPolicy;
use iommu_core::server::ServerConfig;

const D: u32 = 1;
const S: u32 = 2;
const SID_D: u32 = 0x8;
const SID_S: u32 = 0x10;
/// T = 1000 µs.
const T: u64 = 1000;

#[test]
fn a_deferred_window_is_due_by_its_bound_and_strict_work_never_is() {
    let deferred = InvalidationPolicy::deferred(256, T).unwrap();
    let mut s = server(
        ServerConfig::default(),
        &[(D, deferred, TRUSTED), (S, STRICT, UNTRUSTED)],
    );
    attach(&mut s, 0, D, SID_D, 48).unwrap();
    attach(&mut s, 0, S, SID_S, 48).unwrap();
    let (mut fd, mut fs) = (Frames::new(D), Frames::new(S));
    let d = map_page(&mut s, 10, D, Dir::Bidirectional, &fd.take(1, false));
    let st = map_page(&mut s, 10, S, Dir::Bidirectional, &fs.take(1, false));

    // A strict unmap is held; nothing deferred is pending: not due.
    assert!(unmap(&mut s, 100, S, &[Extent::new(st.get(), PAGE_SIZE)], 7).unwrap());
    assert!(!s.deferred_due(100));
    assert!(!s.deferred_due(1_000_000));

    // A deferred unmap at t = 100: due before t = 100 + T, never after.
    assert!(!unmap(&mut s, 100, D, &[Extent::new(d.get(), PAGE_SIZE)], 8).unwrap());
    assert!(!s.deferred_due(100));
    let due_at = (100..=100 + T)
        .find(|&t| s.deferred_due(t))
        .expect("due by the bound");
    assert!(due_at > 100 && due_at <= 100 + T, "due at {due_at}");

    // Flushing closes it (and releases the strict reply on the way).
    let out = s.poll(due_at);
    assert!(out.iter().any(|(token, _)| *token == 7));
    assert!(!s.deferred_due(10 * T));
    assert_eq!(s.stats(D).unwrap().pending_unmaps, 0);
    assert!(s.stats(D).unwrap().max_stale_window_us <= T);
}

/// `poll_ahead` flushes a deferred window that would close within its
/// lead, which `poll` at the same moment leaves for later; the window it
/// records is the time really elapsed, not the lead.
#[test]
fn poll_ahead_closes_a_window_early_and_poll_does_not() {
    let deferred = InvalidationPolicy::deferred(256, T).unwrap();
    let mut s = server(ServerConfig::default(), &[(D, deferred, TRUSTED)]);
    attach(&mut s, 0, D, SID_D, 48).unwrap();
    let mut fd = Frames::new(D);
    let d = map_page(&mut s, 10, D, Dir::Bidirectional, &fd.take(1, false));
    assert!(!unmap(&mut s, 100, D, &[Extent::new(d.get(), PAGE_SIZE)], 8).unwrap());
    let due_at = (100..=100 + T)
        .find(|&t| s.deferred_due(t))
        .expect("due by the bound");
    // 300 µs before it is due: not due now, due within a 400 µs lead.
    let now = due_at - 300;
    assert!(!s.deferred_due(now) && s.deferred_due(now + 400));
    s.poll(now);
    assert_eq!(s.stats(D).unwrap().pending_unmaps, 1, "poll flushed early");
    s.poll_ahead(now, 200);
    assert_eq!(
        s.stats(D).unwrap().pending_unmaps,
        1,
        "flushed beyond the lead"
    );
    s.poll_ahead(now, 400);
    let st = s.stats(D).unwrap();
    assert_eq!((st.pending_unmaps, st.syncs), (0, 1));
    assert_eq!(st.max_stale_window_us, now - 100);
}
