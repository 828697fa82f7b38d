//! Monitors (trust `monitor`): they read every client's counters with
//! `ClientStats`, in badge order, and may do nothing else; clients may not
//! read each other's counters; a bad index is `NoSuchClient`; a monitor
//! changes nothing.

mod common;

use abi::PAGE_SIZE;
use common::*;
use iommu_api::{ApiError, Dir, Request, Response, Stats};
use iommu_core::InvalidationPolicy;
use iommu_core::server::{ServerConfig, ServerError};

const A: u32 = 1;
const B: u32 = 3;
const MON: u32 = 7;
const SID_A: u32 = 0x8;
const SID_B: u32 = 0x10;

fn client_stats(s: &mut Srv, badge: u32, index: u32) -> Result<(u32, Stats), ApiError> {
    let bytes = simple(s, 0, badge, Request::ClientStats { index })?;
    match Response::decode(iommu_api::Op::ClientStats, &bytes) {
        Ok(Response::ClientStatsOf { badge, stats }) => Ok((badge, stats)),
        other => panic!("unexpected answer {other:?}"),
    }
}

fn two_clients_and_a_monitor() -> Srv {
    let deferred = InvalidationPolicy::deferred(4, 100).unwrap();
    let mut s = server(
        ServerConfig::default(),
        &[(A, STRICT, UNTRUSTED), (B, deferred, TRUSTED)],
    );
    s.add_monitor(MON).unwrap();
    s
}

#[test]
fn a_monitor_reads_every_client_in_badge_order() {
    let mut s = two_clients_and_a_monitor();
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let mut frames = Frames::new(A);
    let f = frames.take(1, false);
    let iova = map_page(&mut s, 1, A, Dir::Bidirectional, &f);
    assert_ne!(iova.get(), 0);

    let (badge, a) = client_stats(&mut s, MON, 0).unwrap();
    assert_eq!(badge, A);
    assert_eq!(a, s.stats(A).unwrap());
    assert_eq!((a.maps, a.mappings, a.iova_bytes_in_use), (1, 1, PAGE_SIZE));
    let (badge, b) = client_stats(&mut s, MON, 1).unwrap();
    assert_eq!(badge, B);
    assert_eq!(b, s.stats(B).unwrap());
    assert_eq!(b.maps, 0);
    assert_eq!(client_stats(&mut s, MON, 2), Err(ApiError::NoSuchClient));
    assert_eq!(
        client_stats(&mut s, MON, u32::MAX),
        Err(ApiError::NoSuchClient)
    );
}

#[test]
fn a_monitor_may_do_nothing_else_and_changes_nothing() {
    let mut s = two_clients_and_a_monitor();
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    let before = s.hw().footprint();
    let stats_before = s.stats(A).unwrap();
    for req in [
        Request::Attach { dma_bits: 48 },
        Request::Flush,
        Request::Stats,
        Request::Faults,
        Request::ResetStats,
        Request::SetPolicy {
            policy: InvalidationPolicy::Strict,
        },
    ] {
        assert_eq!(simple(&mut s, 1, MON, req), Err(ApiError::NotPermitted));
    }
    for i in 0..4 {
        let _ = client_stats(&mut s, MON, i);
    }
    assert_eq!(s.hw().footprint(), before);
    assert_eq!(s.stats(A).unwrap(), stats_before);
}

#[test]
fn clients_and_strangers_may_not_read_others() {
    let mut s = two_clients_and_a_monitor();
    for badge in [A, B, 99] {
        assert_eq!(client_stats(&mut s, badge, 0), Err(ApiError::NotPermitted));
    }
}

#[test]
fn a_badge_is_a_client_or_a_monitor_never_both() {
    let mut s = two_clients_and_a_monitor();
    assert_eq!(s.add_monitor(A), Err(ServerError::ClientExists));
    assert_eq!(s.add_monitor(MON), Err(ServerError::ClientExists));
    assert_eq!(
        s.add_client(MON, "m", STRICT, UNTRUSTED),
        Err(ServerError::ClientExists)
    );
}
