//! Property test of the per-client quotas (security contract item 10):
//! random map/unmap/death sequences by three untrusted clients on one
//! server whose pool is exactly the stream table plus what the quotas
//! reserve, each sequence replayed client by client on a server of its
//! own. Checked after every step:
//! - no client ever holds more than its quota (mappings, mapped bytes,
//!   table pages, IOVA space), as `Stats` reports it;
//! - a refused map changes nothing: the client's counters are the same
//!   once the rollback's sync ran, and the other clients' too;
//! - one client's use never makes another's request fail: every answer a
//!   client gets on the shared server is the one it gets alone, and none
//!   is `NoMemory`.

mod common;

use abi::{Iova, PAGE_SIZE};
use common::*;
use iommu_api::{ApiError, ClientQuota, Dir, Extent, Stats};
use iommu_core::server::ServerConfig;
use proptest::prelude::*;

const CLIENTS: [u32; 3] = [2, 3, 4];
const SIDS: [u32; 3] = [0x8, 0x10, 0x18];

const QUOTA: ClientQuota = ClientQuota {
    mapped_bytes: 768 * PAGE_SIZE,
    mappings: 5,
    table_pages: 5,
    iova_bytes: 4096 * PAGE_SIZE,
};

#[derive(Debug, Clone)]
enum Op {
    /// Map `ranges` ranges of `pages` pages each.
    Map {
        c: usize,
        pages: u64,
        ranges: usize,
    },
    Unmap {
        c: usize,
        pick: usize,
    },
    Die {
        c: usize,
    },
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0usize..3;
    prop_oneof![
        6 => (c.clone(), prop::sample::select(vec![1u64, 7, 100, 300, 600]), 1usize..4)
            .prop_map(|(c, pages, ranges)| Op::Map { c, pages, ranges }),
        3 => (c.clone(), any::<usize>()).prop_map(|(c, pick)| Op::Unmap { c, pick }),
        1 => c.prop_map(|c| Op::Die { c }),
        1 => Just(Op::Poll),
    ]
}

fn config() -> ServerConfig {
    ServerConfig {
        quota_untrusted: QUOTA,
        table_budget: Some(3 * (QUOTA.table_pages + 1)),
        heap_budget: Some(3 * iommu_core::server::quota::heap_bytes(&QUOTA)),
        ..ServerConfig::default()
    }
}

/// A server for `clients` (indices into `CLIENTS`), attached, with a pool
/// of exactly its stream table, the level-2 table the attaches link, and
/// the table budget.
fn setup(clients: &[usize]) -> Srv {
    let cfg = config();
    let reg: Vec<_> = clients
        .iter()
        .map(|&i| (CLIENTS[i], STRICT, UNTRUSTED))
        .collect();
    let mut s = server(cfg, &reg);
    let strtab: usize = s.hw().live.values().sum();
    // The level-2 stream table page run for SIDs 0..256 (attach links it).
    let l2 = 4;
    s.hw_mut().capacity = Some(strtab + l2 + cfg.table_budget.unwrap() as usize);
    for &i in clients {
        attach(&mut s, 0, CLIENTS[i], SIDS[i], 48).unwrap();
    }
    s
}

fn stats(s: &Srv, badge: u32) -> Option<Stats> {
    s.stats(badge)
}

/// The counters a refused map must leave alone.
fn usage(st: &Stats) -> (u64, u64, u64, u64, u64) {
    (
        st.maps,
        st.mappings,
        st.mapped_bytes,
        st.table_pages,
        st.iova_bytes_in_use,
    )
}

fn within_quota(st: &Stats) -> bool {
    st.mappings <= QUOTA.mappings
        && st.mapped_bytes <= QUOTA.mapped_bytes
        && st.table_pages <= QUOTA.table_pages
        && st.iova_bytes_in_use <= QUOTA.iova_bytes
}

/// What a client saw: each answer, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Answer {
    Mapped(Vec<Iova>),
    Unmapped,
    Refused(ApiError),
    Died,
}

/// Runs `ops` on `s`, for the clients in `only`, returning every answer
/// per client; checks the quota invariants after every step.
fn run(s: &mut Srv, ops: &[Op], only: &[usize]) -> Vec<Vec<Answer>> {
    let mut answers: Vec<Vec<Answer>> = vec![Vec::new(); 3];
    let mut live: Vec<Vec<(Iova, u64)>> = vec![Vec::new(); 3];
    let mut frames = CLIENTS.map(Frames::new);
    let mut now = 1;
    for op in ops {
        now += 1;
        match *op {
            Op::Map { c, pages, ranges } if only.contains(&c) => {
                let badge = CLIENTS[c];
                let f = frames[c].take((pages as usize) * ranges, true);
                let rs: Vec<Extent> = (0..ranges as u64)
                    .map(|i| Extent::new(i * pages * PAGE_SIZE, pages * PAGE_SIZE))
                    .collect();
                let before: Vec<_> = CLIENTS.map(|b| stats(s, b).map(|st| usage(&st))).into();
                match map(s, now, badge, Dir::Bidirectional, &rs, &f, 0) {
                    Ok(iovas) => {
                        for (iova, r) in iovas.iter().zip(&rs) {
                            live[c].push((*iova, r.len));
                        }
                        answers[c].push(Answer::Mapped(iovas));
                    }
                    Err(e) => {
                        assert_ne!(e, ApiError::NoMemory, "client {badge}: {op:?}");
                        assert_eq!(e, ApiError::QuotaExceeded, "client {badge}: {op:?}");
                        // A rolled-back map releases what it took at its sync.
                        let _ = s.poll(now);
                        let after: Vec<_> =
                            CLIENTS.map(|b| stats(s, b).map(|st| usage(&st))).into();
                        assert_eq!(before, after, "a refused map changed something: {op:?}");
                        answers[c].push(Answer::Refused(e));
                    }
                }
            }
            Op::Unmap { c, pick } if only.contains(&c) && !live[c].is_empty() => {
                let at = pick % live[c].len();
                let (iova, len) = live[c].swap_remove(at);
                let r = unmap(s, now, CLIENTS[c], &[Extent::new(iova.get(), len)], now);
                assert!(r.is_ok(), "{r:?}");
                let _ = s.poll(now);
                answers[c].push(Answer::Unmapped);
            }
            Op::Die { c } if only.contains(&c) => {
                let badge = CLIENTS[c];
                let _ = s.client_died(badge);
                let _ = s.poll(now);
                live[c].clear();
                s.add_client(badge, "again", STRICT, UNTRUSTED)
                    .expect("a dead client's reservations come back");
                attach(s, now, badge, SIDS[c], 48).expect("in-quota attach after a death");
                answers[c].push(Answer::Died);
            }
            Op::Poll => {
                let _ = s.poll(now);
            }
            _ => {}
        }
        for (i, &b) in CLIENTS.iter().enumerate() {
            if let Some(st) = stats(s, b).filter(|_| only.contains(&i)) {
                assert!(within_quota(&st), "client {b} over quota: {st:?}");
            }
        }
    }
    answers
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn quotas_hold_and_isolate(ops in prop::collection::vec(op(), 1..60)) {
        let mut shared = setup(&[0, 1, 2]);
        let together = run(&mut shared, &ops, &[0, 1, 2]);
        for c in 0..3 {
            let mut solo = setup(&[c]);
            let alone = run(&mut solo, &ops, &[c]);
            prop_assert_eq!(&together[c], &alone[c], "client {} differs", CLIENTS[c]);
        }
    }
}

/// Each limit on its own: the request that would pass it is refused with
/// `QuotaExceeded`, and one just within it is not.
#[test]
fn each_limit_refuses_exactly_past_it() {
    let mut s = setup(&[0]);
    let b = CLIENTS[0];
    let mut fr = Frames::new(b);
    // Mappings: 5 fit, the sixth does not.
    let f = fr.take(6, true);
    let five: Vec<Extent> = (0..5)
        .map(|i| Extent::new(i * PAGE_SIZE, PAGE_SIZE))
        .collect();
    let got = map(&mut s, 1, b, Dir::ToDevice, &five, &f, 0).unwrap();
    assert_eq!(
        map(
            &mut s,
            2,
            b,
            Dir::ToDevice,
            &[Extent::new(5 * PAGE_SIZE, PAGE_SIZE)],
            &f,
            0
        ),
        Err(ApiError::QuotaExceeded)
    );
    for iova in got {
        unmap(&mut s, 3, b, &[Extent::new(iova.get(), PAGE_SIZE)], 3).unwrap();
    }
    let _ = s.poll(3);
    // Mapped bytes: 768 pages fit, 769 do not.
    let f = fr.take(769, true);
    assert_eq!(
        map(
            &mut s,
            4,
            b,
            Dir::ToDevice,
            &[Extent::new(0, 769 * PAGE_SIZE)],
            &f,
            0
        ),
        Err(ApiError::QuotaExceeded)
    );
    let st = s.stats(b).unwrap();
    assert_eq!(
        (st.mappings, st.mapped_bytes, st.iova_bytes_in_use),
        (0, 0, 0)
    );
    let one = map(
        &mut s,
        5,
        b,
        Dir::ToDevice,
        &[Extent::new(0, 768 * PAGE_SIZE)],
        &f,
        0,
    )
    .unwrap();
    assert_eq!(s.stats(b).unwrap().mapped_bytes, 768 * PAGE_SIZE);
    unmap(
        &mut s,
        6,
        b,
        &[Extent::new(one[0].get(), 768 * PAGE_SIZE)],
        6,
    )
    .unwrap();
    let _ = s.poll(6);
    // Table pages: root, level 1 and level 2 take 3 of the 5; two
    // 300-page maps (512-page IOVA blocks, one level-3 table each) take
    // the rest; a 7-page map needs a third level-3 table and is refused,
    // though it is within every other limit, and is rolled back.
    let f = fr.take(300, true);
    for _ in 0..2 {
        map(
            &mut s,
            7,
            b,
            Dir::ToDevice,
            &[Extent::new(0, 300 * PAGE_SIZE)],
            &f,
            0,
        )
        .unwrap();
    }
    let before = s.stats(b).unwrap();
    assert_eq!(before.table_pages, QUOTA.table_pages);
    let g = fr.take(7, true);
    assert_eq!(
        map(
            &mut s,
            8,
            b,
            Dir::ToDevice,
            &[Extent::new(0, 7 * PAGE_SIZE)],
            &g,
            0
        ),
        Err(ApiError::QuotaExceeded)
    );
    assert!(before.mappings < QUOTA.mappings);
    assert!(before.mapped_bytes + 7 * PAGE_SIZE <= QUOTA.mapped_bytes);
    assert!(before.iova_bytes_in_use + 8 * PAGE_SIZE <= QUOTA.iova_bytes);
    let _ = s.poll(9);
    assert_eq!(usage(&s.stats(b).unwrap()), usage(&before));
}

/// A quota whose reservation does not fit the pool's table budget is
/// refused at attach with `NoMemory`, changing nothing; the first
/// clients keep theirs.
#[test]
fn domains_beyond_the_table_budget_are_refused_at_attach() {
    let cfg = ServerConfig {
        quota_untrusted: QUOTA,
        table_budget: Some(2 * (QUOTA.table_pages + 1)),
        ..ServerConfig::default()
    };
    let mut s = server(
        cfg,
        &[
            (2, STRICT, UNTRUSTED),
            (3, STRICT, UNTRUSTED),
            (4, STRICT, UNTRUSTED),
        ],
    );
    attach(&mut s, 0, 2, 0x8, 48).unwrap();
    attach(&mut s, 0, 3, 0x10, 48).unwrap();
    let before = s.hw().footprint();
    assert_eq!(attach(&mut s, 0, 4, 0x18, 48), Err(ApiError::NoMemory));
    assert_eq!(
        s.hw().footprint().1 - before.1,
        s.hw().footprint().2 - before.2
    );
    // Client 2's death gives its reservation back after the sync.
    let _ = s.client_died(2);
    let _ = s.poll(1);
    attach(&mut s, 1, 4, 0x18, 48).unwrap();
}

/// A client whose quota's heap does not fit the heap budget is not
/// registered.
#[test]
fn clients_beyond_the_heap_budget_are_not_registered() {
    let cfg = ServerConfig {
        quota_untrusted: QUOTA,
        heap_budget: Some(iommu_core::server::quota::heap_bytes(&QUOTA)),
        ..ServerConfig::default()
    };
    let mut s = server(cfg, &[(2, STRICT, UNTRUSTED)]);
    assert_eq!(
        s.add_client(3, "more", STRICT, UNTRUSTED),
        Err(iommu_core::server::ServerError::HeapBudget)
    );
}

/// `SetPolicy` with deferred bounds over their maxima is refused as
/// malformed and changes nothing.
#[test]
fn set_policy_past_the_deferred_maxima_is_refused() {
    let mut s = server(
        ServerConfig::default(),
        &[(2, STRICT, iommu_api::TrustLevel::Bench)],
    );
    for (n, t) in [(u32::MAX, u64::MAX), (4097, 10), (10, 1_000_001)] {
        let mut m = vec![0u8; 24];
        m[0] = 7; // SetPolicy
        m[2] = 1;
        m[8] = 3; // deferred
        m[12..16].copy_from_slice(&n.to_le_bytes());
        m[16..24].copy_from_slice(&t.to_le_bytes());
        match s.handle(0, 2, &m, None, None, 9) {
            iommu_core::server::Handled::Reply(_, r) => assert_eq!(
                iommu_api::Response::decode(iommu_api::Op::SetPolicy, &r),
                Err(ApiError::Malformed)
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.clients().find(|c| c.badge == 2).unwrap().policy, STRICT);
    }
    let ok = iommu_api::Request::SetPolicy {
        policy: iommu_core::InvalidationPolicy::deferred(4096, 1_000_000).unwrap(),
    };
    assert!(simple(&mut s, 0, 2, ok).is_ok());
}
