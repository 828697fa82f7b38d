//! Monitors (trust `monitor`): they read every client's counters with
//! `ClientStats`, in badge order, and may do nothing else; clients may not
//! read each other's counters; a bad index is `NoSuchClient`; a monitor
//! changes nothing. `Overview` gives a monitor the totals and every
//! client's summary, a page at a time; anyone else is refused
//! `NotPermitted`, a malformed request `Malformed`.

mod common;

use abi::PAGE_SIZE;
use common::*;
use iommu_api::{
    ApiError, ClientSummary, Dir, Extent, MAX_OVERVIEW_CLIENTS, Request, Response, ServerTotals,
    Stats, TrustLevel,
};
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

// ---- Overview: totals and client summaries, a page at a time ----

fn overview(
    s: &mut Srv,
    badge: u32,
    first: u32,
) -> Result<(ServerTotals, Vec<ClientSummary>), ApiError> {
    let bytes = simple(s, 0, badge, Request::Overview { first })?;
    match Response::decode(iommu_api::Op::Overview, &bytes) {
        Ok(Response::OverviewPage { totals, clients }) => Ok((totals, clients.iter().collect())),
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn overview_shows_each_client_and_the_totals() {
    let mut s = two_clients_and_a_monitor();
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    attach(&mut s, 0, B, SID_B, 48).unwrap();
    let mut frames = Frames::new(A);
    let f = frames.take(1, false);
    let iova = map_page(&mut s, 1, A, Dir::Bidirectional, &f);
    let held = unmap(&mut s, 2, A, &[Extent::new(iova.get(), PAGE_SIZE)], 5).unwrap();
    assert!(held, "a strict unmap is held until its sync");
    let out = s.poll(3);
    assert_eq!(out.len(), 1);
    let f = frames.take(1, false);
    map_page(&mut s, 4, A, Dir::Bidirectional, &f);

    let (t, page) = overview(&mut s, MON, 0).unwrap();
    assert_eq!(page.len(), 2);
    let (a, b) = (page[0], page[1]);
    assert_eq!(
        (a.badge, a.name(), b.badge, b.name()),
        (A, "client1", B, "client3")
    );
    assert_eq!(a.trust, TrustLevel::Untrusted);
    assert_eq!(a.policy, InvalidationPolicy::Strict);
    assert_eq!(b.trust, TrustLevel::Trusted);
    assert!(matches!(b.policy, InvalidationPolicy::Deferred { .. }));
    assert!(a.attached && b.attached && !a.demoted && !a.quarantined);
    let sa = s.stats(A).unwrap();
    assert_eq!(
        (
            a.maps,
            a.unmaps,
            a.tlbi_commands,
            a.syncs,
            a.faults,
            a.iova_bytes_in_use,
            a.mappings
        ),
        (
            sa.maps,
            sa.unmaps,
            sa.tlbi_commands,
            sa.syncs,
            sa.faults,
            sa.iova_bytes_in_use,
            sa.mappings
        )
    );
    assert_eq!(
        (a.maps, a.unmaps, a.mappings, a.iova_bytes_in_use),
        (2, 1, 1, PAGE_SIZE)
    );
    assert!(a.syncs >= 1 && a.tlbi_commands >= 1);
    assert_eq!(b.maps, 0);
    let ss = s.server_stats();
    assert_eq!(t.clients, 2);
    assert_eq!((t.maps, t.unmaps, t.iova_bytes_in_use), (2, 1, PAGE_SIZE));
    assert_eq!(
        (t.syncs, t.tlbi_commands, t.doorbells),
        (ss.syncs, ss.tlbi_commands, ss.doorbells)
    );
    assert_eq!(t, s.totals());

    // Past the end: an empty page at the count, NoSuchClient beyond.
    assert_eq!(overview(&mut s, MON, 2).unwrap().1, vec![]);
    assert_eq!(overview(&mut s, MON, 3), Err(ApiError::NoSuchClient));
    assert_eq!(overview(&mut s, MON, u32::MAX), Err(ApiError::NoSuchClient));
}

#[test]
fn overview_pages_cover_many_clients_once_each() {
    let clients: Vec<_> = (1..=(2 * MAX_OVERVIEW_CLIENTS as u32 + 3))
        .map(|b| (b * 2, STRICT, UNTRUSTED))
        .collect();
    let mut s = server(ServerConfig::default(), &clients);
    s.add_monitor(1).unwrap();
    let mut seen = Vec::new();
    let mut first = 0u32;
    loop {
        let (t, page) = overview(&mut s, 1, first).unwrap();
        assert_eq!(t.clients, clients.len() as u64);
        assert!(page.len() <= MAX_OVERVIEW_CLIENTS);
        if page.is_empty() {
            break;
        }
        first += page.len() as u32;
        seen.extend(page.iter().map(|c| c.badge));
    }
    let want: Vec<u32> = clients.iter().map(|c| c.0).collect();
    assert_eq!(seen, want);
}

#[test]
fn overview_is_refused_to_clients_and_strangers_and_changes_nothing() {
    let mut s = two_clients_and_a_monitor();
    attach(&mut s, 0, A, SID_A, 48).unwrap();
    let before = s.hw().footprint();
    let stats_before = s.stats(A).unwrap();
    for badge in [A, B, 99, 0] {
        assert_eq!(overview(&mut s, badge, 0), Err(ApiError::NotPermitted));
    }
    for first in [0, 1, 2, 3] {
        let _ = overview(&mut s, MON, first);
    }
    assert_eq!(s.hw().footprint(), before);
    assert_eq!(s.stats(A).unwrap(), stats_before);
}

#[test]
fn a_malformed_overview_is_refused() {
    let mut s = two_clients_and_a_monitor();
    let good = bytes(&Request::Overview { first: 0 });
    let reply = |s: &mut Srv, m: &[u8]| match s.handle(0, MON, m, None, None, 0) {
        iommu_core::server::Handled::Reply(_, r) => {
            Response::decode(iommu_api::Op::Overview, &r).map(|_| ())
        }
        iommu_core::server::Handled::Held => panic!("held"),
    };
    assert!(reply(&mut s, &good).is_ok());
    // A reserved byte of the parameter entry, a missing entry, an extra
    // entry, a truncated message, a non-zero header arg.
    let mut reserved = good.clone();
    reserved[8 + 5] = 1;
    let mut missing = good[..8].to_vec();
    missing[2] = 0;
    let mut extra = good.clone();
    extra.extend_from_slice(&[0; 16]);
    extra[2] = 2;
    let truncated = good[..good.len() - 1].to_vec();
    let mut arg = good.clone();
    arg[4] = 1;
    for m in [reserved, missing, extra, truncated, arg] {
        assert_eq!(reply(&mut s, &m), Err(ApiError::Malformed), "{m:?}");
    }
}
