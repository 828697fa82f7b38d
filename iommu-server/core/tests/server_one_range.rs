//! Property test: the one-range paths of `Map` and `Unmap` answer and
//! change exactly what the general handlers do. The same random sequence
//! of raw requests (hostile ones included: empty, overflowing and
//! out-of-grant extents, no grant, unaligned frames, unknown IOVAs, wrong
//! lengths, maps past the quota or past the table pool, refused pins), by
//! a strict, a deferred, a bypass client and one whose table quota is too
//! small for any map, goes to two servers, one
//! with `one_range_paths` and one without. After every step the replies
//! (bytes and held tokens), the released replies, the server's and each
//! client's counters, and the hardware's writes, allocations, frees,
//! syncs, pins and the software SMMU's counters must be equal.

mod common;

use abi::{PAGE_SIZE, PhysAddr};
use common::*;
use iommu_api::{ClientQuota, Dir, Extent, List, Request};
use iommu_core::InvalidationPolicy;
use iommu_core::TrustLevel;
use iommu_core::server::{Grant, Handled, ServerConfig};
use proptest::prelude::*;

const BADGES: [u32; 4] = [1, 2, 3, 4];
const SIDS: [u32; 4] = [0x8, 0x10, 0x18, 0x20];

#[derive(Debug, Clone)]
enum Op {
    Map {
        c: usize,
        start: u64,
        len: u64,
        grant_pages: u16,
        va_off: u16,
        contiguous: bool,
        no_grant: bool,
        bad_frame: bool,
        two: bool,
    },
    Unmap {
        c: usize,
        pick: usize,
        len_delta: i8,
        foreign: bool,
    },
    RefusePin(bool),
    /// Table pages the pool has left: this many more than now.
    Capacity(u8),
    Advance(u64),
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0usize..4;
    let len = prop_oneof![
        6 => 1u64..3 * PAGE_SIZE,
        2 => (1u64..40).prop_map(|p| p * PAGE_SIZE),
        1 => Just(0u64),
        1 => Just(u64::MAX - 7),
    ];
    let start = prop_oneof![
        6 => 0u64..2 * PAGE_SIZE,
        1 => Just(u64::MAX - 100),
    ];
    prop_oneof![
        5 => (c.clone(), start, len, 1u16..48, 0u16..4096, any::<bool>(), prop::bool::weighted(0.05), prop::bool::weighted(0.05), prop::bool::weighted(0.1))
            .prop_map(|(c, start, len, grant_pages, va_off, contiguous, no_grant, bad_frame, two)| Op::Map {
                c, start, len, grant_pages, va_off, contiguous, no_grant, bad_frame, two,
            }),
        4 => (c, any::<usize>(), prop_oneof![8 => Just(0i8), 1 => Just(1i8), 1 => Just(-1i8)], prop::bool::weighted(0.1))
            .prop_map(|(c, pick, len_delta, foreign)| Op::Unmap { c, pick, len_delta, foreign }),
        1 => any::<bool>().prop_map(Op::RefusePin),
        1 => (0u8..5).prop_map(Op::Capacity),
        2 => (1u64..80).prop_map(Op::Advance),
        1 => Just(Op::Poll),
    ]
}

/// A server whose table pool is small enough for maps to run out of it.
fn setup(one_range_paths: bool) -> Srv {
    let quota = ClientQuota {
        mapped_bytes: 96 * PAGE_SIZE,
        mappings: 12,
        table_pages: 4,
        iova_bytes: 512 * PAGE_SIZE,
    };
    let cfg = ServerConfig {
        quota_untrusted: quota,
        quota_trusted: quota,
        // A root and three tables below it are what the first map needs:
        // every map of the fourth client is rolled back.
        quota_bench: ClientQuota {
            table_pages: 3,
            ..quota
        },
        one_range_paths,
        ..ServerConfig::default()
    };
    let deferred = InvalidationPolicy::deferred(4, 50).unwrap();
    let mut s = server(
        cfg,
        &[
            (BADGES[0], STRICT, UNTRUSTED),
            (BADGES[1], deferred, TRUSTED),
            (BADGES[2], STRICT, TrustLevel::Bench),
            (BADGES[3], STRICT, TrustLevel::Bench),
        ],
    );
    for c in 0..4 {
        attach(&mut s, 0, BADGES[c], SIDS[c], 48).unwrap();
    }
    let bypass = bytes(&Request::SetPolicy {
        policy: InvalidationPolicy::Bypass,
    });
    assert!(matches!(
        s.handle(0, BADGES[2], &bypass, None, None, 0),
        Handled::Reply(..)
    ));
    // Room for a few more table pages than the domains hold now.
    let held: usize = s.hw().live.values().sum();
    s.hw_mut().capacity = Some(held + 6);
    s
}

/// Everything the two servers must agree on after a step.
fn observe(s: &Srv) -> impl PartialEq + core::fmt::Debug {
    let hw = s.hw();
    (
        s.server_stats(),
        BADGES.map(|b| s.stats(b)),
        hw.footprint(),
        hw.pins.clone(),
        hw.pin_calls,
        hw.unpin_calls,
        s.next_deadline(),
    )
}

fn run(ops: &[Op]) {
    let mut servers = [setup(true), setup(false)];
    let mut live: Vec<Vec<(u64, u64)>> = vec![Vec::new(); 4];
    let mut frames = BADGES.map(Frames::new);
    let mut now = 1u64;
    let mut token = 100u64;
    for op in ops {
        token += 1;
        let mut answers = Vec::new();
        match *op {
            Op::Map {
                c,
                start,
                len,
                grant_pages,
                va_off,
                contiguous,
                no_grant,
                bad_frame,
                two,
            } => {
                let mut f = frames[c].take(usize::from(grant_pages), contiguous);
                if bad_frame {
                    f[0] = PhysAddr::new(f[0].get() + 8);
                }
                let va_off = u64::from(va_off);
                let grant = Grant {
                    frames: &f,
                    va: 0x1000_0000_0000 + va_off,
                    len: f.len() as u64 * PAGE_SIZE - va_off,
                };
                let mut ranges = vec![Extent::new(start, len)];
                if two {
                    ranges.push(Extent::new(start.wrapping_add(len), PAGE_SIZE));
                }
                let msg = bytes(&Request::Map {
                    dir: Dir::Bidirectional,
                    ranges: List::new(&ranges),
                });
                for s in &mut servers {
                    let g = (!no_grant).then_some(grant);
                    answers.push(s.handle(now, BADGES[c], &msg, g, None, token));
                }
                if let Handled::Reply(_, r) = &answers[0]
                    && let Ok(iommu_api::Response::Mapped { iovas }) =
                        iommu_api::Response::decode(iommu_api::Op::Map, r)
                {
                    for (iova, e) in iovas.iter().zip(&ranges) {
                        live[c].push((iova.get(), e.len));
                    }
                }
            }
            Op::Unmap {
                c,
                pick,
                len_delta,
                foreign,
            } => {
                let (iova, len) = match (live[c].len(), foreign) {
                    (0, _) | (_, true) => (0x10_0000 + (pick as u64 % 64) * PAGE_SIZE, PAGE_SIZE),
                    (n, false) => live[c][pick % n],
                };
                let len = len.wrapping_add_signed(i64::from(len_delta));
                let msg = bytes(&Request::Unmap {
                    ranges: List::new(&[Extent::new(iova, len)]),
                });
                for s in &mut servers {
                    answers.push(s.handle(now, BADGES[c], &msg, None, None, token));
                }
                let gone = match &answers[0] {
                    Handled::Held => true,
                    Handled::Reply(_, r) => {
                        iommu_api::Response::decode(iommu_api::Op::Unmap, r).is_ok()
                    }
                };
                if gone {
                    live[c].retain(|&(v, _)| v != iova);
                }
            }
            Op::RefusePin(on) => {
                for s in &mut servers {
                    s.hw_mut().refuse_pin = on;
                }
            }
            Op::Capacity(more) => {
                for s in &mut servers {
                    let held: usize = s.hw().live.values().sum();
                    s.hw_mut().capacity = Some(held + usize::from(more));
                }
            }
            Op::Advance(dt) => now += dt,
            Op::Poll => {
                let [a, b] = &mut servers;
                assert_eq!(a.poll(now), b.poll(now), "{op:?}");
            }
        }
        if let [a, b] = answers.as_slice() {
            assert_eq!(a, b, "{op:?}");
        }
        let [a, b] = &servers;
        assert_eq!(observe(a), observe(b), "{op:?}");
    }
    let [a, b] = &mut servers;
    assert_eq!(a.poll(now + 1000), b.poll(now + 1000));
    assert_eq!(observe(a), observe(b));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn one_range_paths_match_the_general_ones(ops in prop::collection::vec(op(), 1..80)) {
        run(&ops);
    }
}
