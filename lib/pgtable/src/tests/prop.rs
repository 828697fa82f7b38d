//! Property tests: random sequences of map, run map (`map_pages`, frames
//! not contiguous, runs crossing last-level and 1 GiB tables), unmap,
//! exact unmap and out-of-memory runs over small and 2 MiB-aligned ranges,
//! on 3- and 4-level tables, agree with a
//! reference model (page → output address and attributes); every token
//! names exactly the removed pages at the level that mapped them; freed
//! tables are never still linked; unmapping everything leaves only the
//! root.

use std::collections::BTreeMap;

use abi::{Iova, PhysAddr};
use proptest::prelude::*;

use super::{Arena, assert_counts_match, assert_no_empty_tables, leaf_runs};
use crate::{Attrs, Config, MapError, PageTable, UnmapError};

const K4: u64 = 4096;
const M2: u64 = 2 << 20;
const G1: u64 = 1 << 30;
/// Windows the operations land in: near 0, straddling a 1 GiB boundary,
/// and high up.
const BASES: [u64; 3] = [0, G1 - 8 * M2, 3 * G1];
const WINDOW: u64 = 16 * M2;
const ATTRS: [Attrs; 3] = [
    Attrs::dma(1, true),
    Attrs::dma(1, false),
    Attrs::user_data(0, true),
];

#[derive(Clone, Debug)]
enum Kind {
    Map {
        pa: u64,
        attrs: usize,
    },
    /// `map_pages` onto frames `pa + i * stride` pages, reversed or not.
    MapPages {
        pa: u64,
        stride: u64,
        reversed: bool,
        attrs: usize,
    },
    Unmap,
    UnmapExact,
}

#[derive(Clone, Debug)]
struct Op {
    kind: Kind,
    va: u64,
    len: u64,
    /// Table pages the allocator will still hand out during this op.
    budget: Option<usize>,
}

fn small_run() -> impl Strategy<Value = (u64, u64)> {
    (0..3usize, 0..WINDOW / K4, 1..64u64).prop_map(|(b, page, n)| (BASES[b] + page * K4, n * K4))
}

/// 2 MiB-aligned start, 1 to 3 blocks, sometimes a few pages more.
fn block_run() -> impl Strategy<Value = (u64, u64)> {
    (0..3usize, 0..WINDOW / M2, 1..=3u64, 0..3u64)
        .prop_map(|(b, k, n, extra)| (BASES[b] + k * M2, n * M2 + extra * K4))
}

fn op() -> impl Strategy<Value = Op> {
    let budget = prop_oneof![4 => Just(None), 1 => (0..3usize).prop_map(Some)];
    let map_small = (small_run(), 0..(1u64 << 26), 0..3usize)
        .prop_map(|((va, len), pa, attrs)| (va, len, Kind::Map { pa: pa * K4, attrs }));
    let map_blocks = (block_run(), 0..(1u64 << 17), 0..3usize)
        .prop_map(|((va, len), pa, attrs)| (va, len, Kind::Map { pa: pa * M2, attrs }));
    let page_run = prop_oneof![
        small_run(),
        (0..3usize, 0..WINDOW / K4, 1..1100u64)
            .prop_map(|(b, page, n)| (BASES[b] + page * K4, n * K4))
    ];
    let map_pages = (page_run, 0..(1u64 << 20), 1..4u64, any::<bool>(), 0..3usize).prop_map(
        |((va, len), pa, stride, reversed, attrs)| {
            let kind = Kind::MapPages {
                pa: pa * K4,
                stride,
                reversed,
                attrs,
            };
            (va, len, kind)
        },
    );
    let unmap_run = prop_oneof![
        small_run(),
        block_run(),
        (0..3usize, 0..WINDOW / K4, 1..1100u64)
            .prop_map(|(b, page, n)| (BASES[b] + page * K4, n * K4))
    ];
    let unmap = (unmap_run.clone(), any::<bool>()).prop_map(|((va, len), exact)| {
        (va, len, if exact { Kind::UnmapExact } else { Kind::Unmap })
    });
    (
        prop_oneof![2 => map_small, 2 => map_blocks, 2 => map_pages, 3 => unmap],
        budget,
    )
        .prop_map(|((va, len, kind), budget)| Op {
            kind,
            va,
            len,
            budget,
        })
}

type Model = BTreeMap<u64, (u64, Attrs)>;

fn pages(va: u64, len: u64) -> impl Iterator<Item = u64> {
    (va..va + len).step_by(K4 as usize)
}

/// Runs one op on the table and the model and checks they agree.
fn step(pt: &mut PageTable<Iova>, arena: &mut Arena, model: &mut Model, op: &Op) {
    let before = arena.snapshot();
    // Leaf level of each page of the range before the op: the TTL hint an
    // unmap token must report.
    let levels_before: BTreeMap<u64, u8> = pages(op.va, op.len)
        .filter_map(|p| Some((p, pt.translate(arena, Iova::new(p))?.level)))
        .collect();
    arena.log.clear();
    arena.budget = op.budget;
    match op.kind {
        Kind::Map { pa, attrs } => {
            let attrs = ATTRS[attrs];
            let got = pt.map(arena, Iova::new(op.va), PhysAddr::new(pa), op.len, attrs);
            let overlap = pages(op.va, op.len).any(|p| model.contains_key(&p));
            match got {
                Ok(()) => {
                    assert!(!overlap, "mapped over a mapping");
                    for (i, p) in pages(op.va, op.len).enumerate() {
                        model.insert(p, (pa + i as u64 * K4, attrs));
                    }
                }
                Err(MapError::AlreadyMapped) => assert!(overlap),
                Err(MapError::NoMemory) => assert!(op.budget.is_some()),
                Err(e) => panic!("unexpected {e:?}"),
            }
            if got.is_err() {
                arena.assert_unchanged_since(&before);
            }
        }
        Kind::MapPages {
            pa,
            stride,
            reversed,
            attrs,
        } => {
            let attrs = ATTRS[attrs];
            let n = op.len / K4;
            let mut frames: Vec<PhysAddr> = (0..n)
                .map(|i| PhysAddr::new(pa + i * stride * K4))
                .collect();
            if reversed {
                frames.reverse();
            }
            let got = pt.map_pages(arena, Iova::new(op.va), &frames, attrs);
            let overlap = pages(op.va, op.len).any(|p| model.contains_key(&p));
            match got {
                Ok(()) => {
                    assert!(!overlap, "mapped over a mapping");
                    for (p, f) in pages(op.va, op.len).zip(&frames) {
                        model.insert(p, (f.get(), attrs));
                    }
                }
                Err(MapError::AlreadyMapped) => assert!(overlap),
                Err(MapError::NoMemory) => assert!(op.budget.is_some()),
                Err(e) => panic!("unexpected {e:?}"),
            }
            if got.is_err() {
                arena.assert_unchanged_since(&before);
            }
        }
        Kind::Unmap | Kind::UnmapExact => {
            let exact = matches!(op.kind, Kind::UnmapExact);
            let va = Iova::new(op.va);
            let got = if exact {
                pt.unmap_exact(arena, va, op.len)
            } else {
                pt.unmap(arena, va, op.len)
            };
            let mapped: Vec<u64> = pages(op.va, op.len)
                .filter(|p| model.contains_key(p))
                .collect();
            let full = mapped.len() as u64 * K4 == op.len;
            match got {
                Ok(token) => {
                    assert!(full || !exact);
                    assert_eq!(token.fully_mapped(), full);
                    assert_eq!(token.unmapped_bytes(), mapped.len() as u64 * K4);
                    // The ranges are exactly the removed pages, each with
                    // the level of the leaf that mapped it.
                    let mut named = Vec::new();
                    for r in token.ranges() {
                        for p in pages(r.start.get(), r.len) {
                            assert_eq!(levels_before[&p], r.level, "TTL of {p:#x}");
                            named.push(p);
                        }
                    }
                    assert_eq!(named, mapped);
                    for s in token.split_blocks() {
                        assert!(s.level < 3 && s.len == crate::desc::level_size(s.level));
                    }
                    let linked = pt.tables(arena);
                    for page in token.into_freed_tables() {
                        assert!(!linked.contains(&page), "freed table still linked");
                        arena.free(page);
                    }
                    for p in mapped {
                        model.remove(&p);
                    }
                }
                Err(UnmapError::NotMapped) => {
                    assert!(exact && !full);
                    arena.assert_unchanged_since(&before);
                }
                Err(UnmapError::NoMemory) => {
                    assert!(op.budget.is_some());
                    arena.assert_unchanged_since(&before);
                }
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    }
    arena.budget = None;
    arena.check_fill_before_link();
    // The table's leaves, blocks expanded, are exactly the model.
    let mut expected = model.iter();
    for (va, size, pa, attrs, _) in leaf_runs(pt, arena) {
        for off in (0..size).step_by(K4 as usize) {
            assert_eq!(
                expected.next(),
                Some((&(va + off), &(pa + off, attrs))),
                "page {:#x}",
                va + off
            );
        }
    }
    assert_eq!(expected.next(), None, "model has pages the table lacks");
    assert_no_empty_tables(pt, arena);
    assert_counts_match(pt, arena);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_model_and_leaks_nothing(
        ops in prop::collection::vec(op(), 1..20),
        ias in prop_oneof![Just(39u8), Just(48u8)],
    ) {
        let mut arena = Arena::new();
        let mut pt = PageTable::<Iova>::new(&mut arena, Config::new(ias, 40)).unwrap();
        let mut model = Model::new();
        for op in &ops {
            step(&mut pt, &mut arena, &mut model, op);
        }
        // Tear down by unmapping: every table but the root comes back.
        for base in BASES {
            let window = Op { kind: Kind::Unmap, va: base, len: WINDOW + 4 * M2, budget: None };
            step(&mut pt, &mut arena, &mut model, &window);
        }
        prop_assert!(model.is_empty());
        for page in pt.take_spare_tables() {
            prop_assert!(arena.is_zero(page));
            arena.free(page);
        }
        prop_assert_eq!(arena.allocated(), 1);
        prop_assert!(arena.is_zero(pt.root()));
    }
}
