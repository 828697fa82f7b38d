//! Unit tests: block choice, splits, pruning, refusals that change nothing,
//! ordering of table writes, teardown.

use abi::{Iova, PhysAddr, VirtAddr};

use super::{Arena, assert_counts_match, assert_no_empty_tables, leaves};
use crate::{Attrs, Config, LargestLeaf, MapError, NewError, PageTable, Translation, UnmapError};

const K4: u64 = 4096;
const M2: u64 = 2 << 20;
const G1: u64 = 1 << 30;

fn dma() -> Attrs {
    Attrs::dma(1, true)
}

/// A 39-bit IOVA domain (root at level 1) with 40-bit output.
fn domain(arena: &mut Arena) -> PageTable<Iova> {
    PageTable::new(arena, Config::new(39, 40)).unwrap()
}

fn iova(x: u64) -> Iova {
    Iova::new(x)
}

fn pa(x: u64) -> PhysAddr {
    PhysAddr::new(x)
}

fn level_of(pt: &PageTable<Iova>, arena: &Arena, va: u64) -> Option<u8> {
    pt.translate(arena, iova(va)).map(|t| t.level)
}

/// Frees every page a token hands back, as a caller would after its sync.
fn settle(arena: &mut Arena, token: crate::Unmapped<Iova>) {
    for page in token.into_freed_tables() {
        arena.free(page);
    }
}

#[test]
fn bad_configs_are_refused() {
    let mut arena = Arena::new();
    assert_eq!(
        PageTable::<Iova>::new(&mut arena, Config::new(24, 40)).err(),
        Some(NewError::InputBits)
    );
    assert_eq!(
        PageTable::<Iova>::new(&mut arena, Config::new(39, 52)).err(),
        Some(NewError::OutputBits)
    );
    arena.budget = Some(0);
    assert_eq!(
        PageTable::<Iova>::new(&mut arena, Config::new(39, 40)).err(),
        Some(NewError::NoMemory)
    );
    assert_eq!(arena.allocated(), 0);
}

#[test]
fn a_page_maps_and_translates_with_offset() {
    let mut arena = Arena::new();
    let mut pt = domain(&mut arena);
    assert_eq!(pt.translate(&arena, iova(0x1000)), None);
    pt.map(&mut arena, iova(0x1000), pa(0x4000_5000), K4, dma())
        .unwrap();
    assert_eq!(
        pt.translate(&arena, iova(0x1abc)),
        Some(Translation {
            pa: pa(0x4000_5abc),
            attrs: dma(),
            level: 3
        })
    );
    assert_eq!(pt.translate(&arena, iova(0x2000)), None);
    assert_eq!(pt.translate(&arena, iova(1 << 39)), None);
    // Root (L1), one L2 and one L3 table.
    assert_eq!(arena.allocated(), 3);
}

#[test]
fn four_levels_for_48_bit_cpu_tables() {
    let mut arena = Arena::new();
    let mut pt = PageTable::<VirtAddr>::new(&mut arena, Config::new(48, 48)).unwrap();
    let va = VirtAddr::new(0x0000_ff80_0000_0000);
    let attrs = Attrs::user_code(0);
    pt.map(&mut arena, va, pa(0x8000_0000), K4, attrs).unwrap();
    let t = pt.translate(&arena, va).unwrap();
    assert_eq!((t.pa, t.attrs, t.level), (pa(0x8000_0000), attrs, 3));
    assert_eq!(pt.tables(&arena).len(), 4);
}

#[test]
fn blocks_are_used_where_alignment_allows() {
    let mut arena = Arena::new();
    let mut pt = domain(&mut arena);
    // [2M - 4K, 4M + 4K) with pa congruent mod 2M: page, block, page.
    pt.map(
        &mut arena,
        iova(M2 - K4),
        pa(0x4000_0000 + M2 - K4),
        M2 + 2 * K4,
        dma(),
    )
    .unwrap();
    assert_eq!(level_of(&pt, &arena, M2 - K4), Some(3));
    assert_eq!(level_of(&pt, &arena, M2), Some(2));
    assert_eq!(level_of(&pt, &arena, 2 * M2 - K4), Some(2));
    assert_eq!(level_of(&pt, &arena, 2 * M2), Some(3));
    assert_eq!(
        pt.translate(&arena, iova(M2 + 0x1234)).unwrap().pa,
        pa(0x4000_0000 + M2 + 0x1234)
    );
    // A 1 GiB block needs no table below the root.
    let before = arena.allocated();
    pt.map(&mut arena, iova(4 * G1), pa(2 * G1), G1, dma())
        .unwrap();
    assert_eq!(level_of(&pt, &arena, 4 * G1 + 12345 * K4), Some(1));
    assert_eq!(arena.allocated(), before);
    // Output misaligned to 2 MiB: pages only.
    pt.map(&mut arena, iova(8 * G1), pa(0x4000_1000), M2, dma())
        .unwrap();
    assert_eq!(level_of(&pt, &arena, 8 * G1), Some(3));
    assert_eq!(level_of(&pt, &arena, 8 * G1 + M2 - K4), Some(3));
}

#[test]
fn largest_leaf_forbids_blocks() {
    let mut arena = Arena::new();
    let config = Config::new(39, 40).with_largest_leaf(LargestLeaf::Page);
    let mut pt = PageTable::<Iova>::new(&mut arena, config).unwrap();
    pt.map(&mut arena, iova(0), pa(0), 2 * M2, dma()).unwrap();
    assert_eq!(level_of(&pt, &arena, 0), Some(3));
    assert_eq!(level_of(&pt, &arena, M2), Some(3));
    let config = Config::new(39, 40).with_largest_leaf(LargestLeaf::Block2M);
    let mut pt = PageTable::<Iova>::new(&mut arena, config).unwrap();
    pt.map(&mut arena, iova(0), pa(0), G1, dma()).unwrap();
    assert_eq!(level_of(&pt, &arena, 0), Some(2));
}

#[test]
fn refused_maps_change_nothing() {
    let mut arena = Arena::new();
    let mut pt = domain(&mut arena);
    pt.map(
        &mut arena,
        iova(G1 + 3 * M2 + K4),
        pa(0x9000_0000),
        K4,
        dma(),
    )
    .unwrap();
    let before = arena.snapshot();
    let cases = [
        (0, 0, 0, dma(), MapError::Empty),
        (0x800, 0, K4, dma(), MapError::Unaligned),
        (0, 0x800, K4, dma(), MapError::Unaligned),
        (0, 0, 0x800, dma(), MapError::Unaligned),
        ((1 << 39) - K4, 0, 2 * K4, dma(), MapError::OutOfRange),
        (!0xfff, 0, K4, dma(), MapError::OutOfRange),
        (0, (1 << 40) - K4, 2 * K4, dma(), MapError::OutOfRange),
        (0, 0, K4, Attrs::dma(8, true), MapError::BadAttrs),
        // Needs new tables before reaching the existing page: the dry run
        // refuses before anything is allocated or written.
        (0, K4, 2 * G1, dma(), MapError::AlreadyMapped),
        (G1 + 3 * M2, 0, M2, dma(), MapError::AlreadyMapped),
    ];
    for (va, out, len, attrs, err) in cases {
        assert_eq!(
            pt.map(&mut arena, iova(va), pa(out), len, attrs),
            Err(err),
            "va {va:#x} len {len:#x}"
        );
        arena.assert_unchanged_since(&before);
        assert_eq!(arena.snapshot().len(), before.len());
    }
    // Already mapped, exactly: refused as well.
    assert_eq!(
        pt.map(
            &mut arena,
            iova(G1 + 3 * M2 + K4),
            pa(0x9000_0000),
            K4,
            dma()
        ),
        Err(MapError::AlreadyMapped)
    );
    arena.assert_unchanged_since(&before);
}

#[test]
fn out_of_memory_changes_nothing_and_keeps_spares() {
    let mut arena = Arena::new();
    let mut pt = domain(&mut arena);
    let before = arena.snapshot();
    // Needs an L2 and an L3 table; only one page is left.
    arena.budget = Some(1);
    assert_eq!(
        pt.map(&mut arena, iova(K4), pa(0), K4, dma()),
        Err(MapError::NoMemory)
    );
    arena.assert_unchanged_since(&before);
    assert_eq!(arena.allocated(), 2);
    // The spare is used by the next attempt.
    arena.budget = Some(1);
    pt.map(&mut arena, iova(K4), pa(0), K4, dma()).unwrap();
    assert_eq!(arena.allocated(), 3);
    assert!(pt.take_spare_tables().is_empty());
}

#[test]
fn partial_unmap_of_a_2m_block_splits_it() {
    let mut arena = Arena::new();
    let mut pt = domain(&mut arena);
    let attrs = Attrs::dma(2, false);
    pt.map(&mut arena, iova(M2), pa(0x4020_0000), M2, attrs)
        .unwrap();
    let before = leaves(&pt, &arena);
    arena.log.clear();
    let token = pt
        .unmap_exact(&mut arena, iova(M2 + 5 * K4), 2 * K4)
        .unwrap();
    arena.check_fill_before_link();
    assert!(token.split());
    assert!(token.fully_mapped());
    assert_eq!(token.ranges().len(), 1);
    let r = token.ranges()[0];
    assert_eq!((r.start, r.len, r.level), (iova(M2 + 5 * K4), 2 * K4, 2));
    let s = token.split_blocks()[0];
    assert_eq!((s.start, s.len, s.level), (iova(M2), M2, 2));
    assert_eq!(token.leaf_level(), Some(2));
    assert!(!token.needs_walk_invalidation());
    settle(&mut arena, token);
    // Everything else translates as before, now by pages.
    let after = leaves(&pt, &arena);
    assert_eq!(after.len(), 510);
    for (va, (out, a, level)) in &before {
        let gone = (M2 + 5 * K4..M2 + 7 * K4).contains(va);
        match after.get(va) {
            Some(&(o, b, l)) => {
                assert!(!gone);
                assert_eq!((o, b, l), (*out, *a, 3));
                assert_eq!(*level, 2);
            }
            None => assert!(gone),
        }
    }
}

#[test]
fn partial_unmap_of_a_1g_block_splits_twice() {
    let mut arena = Arena::new();
    let mut pt = domain(&mut arena);
    pt.map(&mut arena, iova(G1), pa(3 * G1), G1, dma()).unwrap();
    let tables = arena.allocated();
    arena.log.clear();
    let token = pt.unmap(&mut arena, iova(G1 + 3 * M2 + K4), K4).unwrap();
    arena.check_fill_before_link();
    assert_eq!(arena.allocated(), tables + 2);
    assert_eq!(token.ranges()[0].level, 1);
    assert_eq!(token.split_blocks()[0].len, G1);
    settle(&mut arena, token);
    let probe = |va: u64| pt.translate(&arena, iova(va));
    assert_eq!(probe(G1 + 3 * M2 + K4), None);
    let t = probe(G1 + 3 * M2).unwrap();
    assert_eq!((t.pa, t.level), (pa(3 * G1 + 3 * M2), 3));
    let t = probe(G1 + 3 * M2 + 2 * K4 + 7).unwrap();
    assert_eq!((t.pa, t.level), (pa(3 * G1 + 3 * M2 + 2 * K4 + 7), 3));
    let t = probe(G1 + 4 * M2).unwrap();
    assert_eq!((t.pa, t.level, t.attrs), (pa(3 * G1 + 4 * M2), 2, dma()));
    let t = probe(2 * G1 - K4).unwrap();
    assert_eq!((t.pa, t.level), (pa(4 * G1 - K4), 2));
    // Unmapping across the rest of the 2 MiB piece and beyond.
    let token = pt
        .unmap_exact(&mut arena, iova(G1 + 3 * M2), M2)
        .unwrap_err();
    assert_eq!(token, UnmapError::NotMapped);
    let token = pt.unmap(&mut arena, iova(G1 + 3 * M2), 2 * M2).unwrap();
    assert!(!token.fully_mapped());
    assert_eq!(token.unmapped_bytes(), 2 * M2 - K4);
    assert_eq!(token.freed_tables().len(), 1, "the L3 table went empty");
    assert!(token.needs_walk_invalidation());
    settle(&mut arena, token);
    assert_no_empty_tables(&pt, &arena);
}

#[test]
fn split_without_memory_changes_nothing() {
    let mut arena = Arena::new();
    let mut pt = domain(&mut arena);
    pt.map(&mut arena, iova(G1), pa(0), G1, dma()).unwrap();
    let before = arena.snapshot();
    arena.budget = Some(1);
    assert_eq!(
        pt.unmap(&mut arena, iova(G1 + K4), K4),
        Err(UnmapError::NoMemory)
    );
    arena.assert_unchanged_since(&before);
    let spares = pt.take_spare_tables();
    assert_eq!(spares.len(), 1);
    for page in spares {
        arena.free(page);
    }
    assert_eq!(arena.snapshot(), before);
}

#[test]
fn refused_unmaps_change_nothing() {
    let mut arena = Arena::new();
    let mut pt = domain(&mut arena);
    pt.map(&mut arena, iova(0), pa(0), 4 * K4, dma()).unwrap();
    let before = arena.snapshot();
    let cases = [
        (0, 0, UnmapError::Empty),
        (0x10, K4, UnmapError::Unaligned),
        (0, 0x10, UnmapError::Unaligned),
        ((1 << 39) - K4, 2 * K4, UnmapError::OutOfRange),
        (0, 5 * K4, UnmapError::NotMapped),
    ];
    for (va, len, err) in cases {
        assert_eq!(pt.unmap_exact(&mut arena, iova(va), len), Err(err));
        arena.assert_unchanged_since(&before);
    }
}

#[test]
fn unmapping_everything_frees_every_table_but_the_root() {
    let mut arena = Arena::new();
    let mut pt = domain(&mut arena);
    pt.map(&mut arena, iova(0x1234_5000), pa(0), K4, dma())
        .unwrap();
    let token = pt.unmap(&mut arena, iova(0x1234_5000), K4).unwrap();
    assert_eq!(token.freed_tables().len(), 2);
    assert_eq!(token.leaf_level(), Some(3));
    let freed = token.into_freed_tables();
    for page in &freed {
        assert!(!pt.tables(&arena).contains(page));
        arena.free(*page);
    }
    assert_eq!(arena.allocated(), 1);
    assert!(arena.is_zero(pt.root()));
    // Unmapping nothing is not an error.
    let token = pt.unmap(&mut arena, iova(0), M2).unwrap();
    assert!(token.is_empty() && !token.fully_mapped());
    assert_eq!(token.span(), None);
}

#[test]
fn map_fills_tables_before_linking_them() {
    let mut arena = Arena::new();
    let mut pt = domain(&mut arena);
    arena.log.clear();
    pt.map(&mut arena, iova(G1 - K4), pa(0), M2 + 2 * K4, dma())
        .unwrap();
    arena.check_fill_before_link();
    // Only links into the live root needed a barrier: one per new subtree.
    let barriers = arena
        .log
        .iter()
        .filter(|e| **e == super::Event::Barrier)
        .count();
    assert_eq!(barriers, 2);
}

/// A domain with tables at every level, and a refused map that left no
/// page behind: what the destroy tests tear down.
fn tables_to_destroy() -> (Arena, PageTable<Iova>) {
    let mut arena = Arena::new();
    let mut pt = domain(&mut arena);
    pt.map(&mut arena, iova(0), pa(0), 3 * M2 + K4, dma())
        .unwrap();
    pt.map(&mut arena, iova(5 * G1 + K4), pa(0), K4, dma())
        .unwrap();
    arena.budget = Some(1);
    assert!(pt.map(&mut arena, iova(9 * G1), pa(0), K4, dma()).is_err());
    (arena, pt)
}

#[test]
fn destroy_returns_every_page() {
    let (mut arena, pt) = tables_to_destroy();
    let pages = pt.destroy(&arena);
    assert_eq!(pages.len(), arena.allocated());
    for page in pages {
        arena.free(page);
    }
    assert_eq!(arena.allocated(), 0);
}

#[test]
fn destroy_with_hands_over_every_page_once_children_first() {
    let (mut arena, pt) = tables_to_destroy();
    let root = pt.root();
    let mut expected = pt.tables(&arena);
    let mut seen = Vec::new();
    pt.destroy_with(&mut arena, |arena, page| {
        seen.push(page);
        // Freed at once: the walk never reads a page it handed over.
        arena.free(page);
    });
    assert_eq!(arena.allocated(), 0);
    // The root after every table below it, then the spares.
    assert_eq!(
        seen.iter().position(|&p| p == root),
        Some(expected.len() - 1)
    );
    assert!(seen.len() > expected.len(), "the spare was handed over");
    expected.sort();
    let mut tables = seen[..expected.len()].to_vec();
    tables.sort();
    assert_eq!(tables, expected);
}

#[test]
fn single_table_fast_paths_keep_counts_and_prune() {
    // A 48-bit domain (four levels): pages inside one last-level table take
    // the one-walk paths once the tables exist.
    let mut arena = Arena::new();
    let mut pt: PageTable<Iova> = PageTable::new(&mut arena, Config::new(48, 40)).unwrap();
    let base = 0x7f_1234_0000_0000 & ((1 << 48) - 1);
    // The first map builds the tables (general walk), the others are fast.
    for i in 0..8 {
        pt.map(
            &mut arena,
            iova(base + i * K4),
            pa(0x10_0000 + i * K4),
            K4,
            dma(),
        )
        .unwrap();
        assert_counts_match(&pt, &arena);
    }
    // Over a live page: refused, nothing changed.
    let before = arena.snapshot();
    assert_eq!(
        pt.map(&mut arena, iova(base + 6 * K4), pa(0), 4 * K4, dma()),
        Err(MapError::AlreadyMapped)
    );
    arena.assert_unchanged_since(&before);
    // An exact unmap over a hole: refused, nothing changed.
    assert_eq!(
        pt.unmap_exact(&mut arena, iova(base + 6 * K4), 4 * K4)
            .unwrap_err(),
        UnmapError::NotMapped
    );
    arena.assert_unchanged_since(&before);
    // Unmapping page by page: the tables go with the last page only.
    for i in 0..8 {
        let token = pt.unmap_exact(&mut arena, iova(base + i * K4), K4).unwrap();
        assert_eq!(token.leaf_level(), Some(3));
        assert_eq!(token.unmapped_bytes(), K4);
        let freed = token.freed_tables().len();
        assert_eq!(freed, if i == 7 { 3 } else { 0 }, "page {i}");
        for page in token.freed_tables() {
            assert!(!pt.tables(&arena).contains(page));
        }
        settle(&mut arena, token);
        assert_counts_match(&pt, &arena);
        assert_no_empty_tables(&pt, &arena);
    }
    assert_eq!(arena.allocated(), 1);
    assert!(arena.is_zero(pt.root()));
}

/// `map_pages` across a 1 GiB boundary on an empty 4-level table: every
/// page lands on its frame, each new table is complete before it is
/// linked; the unmap of the run frees every table it made.
#[test]
fn map_pages_crosses_tables() {
    use crate::{Attrs, Config, PageTable};
    use abi::{Iova, PhysAddr};
    let mut arena = super::Arena::new();
    let mut pt = PageTable::<Iova>::new(&mut arena, Config::new(48, 40)).unwrap();
    let va = (1u64 << 30) - 3 * 4096;
    let frames: Vec<PhysAddr> = (0..600u64)
        .map(|i| PhysAddr::new((1000 - i) * 4096))
        .collect();
    arena.log.clear();
    pt.map_pages(&mut arena, Iova::new(va), &frames, Attrs::dma(1, true))
        .unwrap();
    arena.check_fill_before_link();
    super::assert_counts_match(&pt, &arena);
    for (i, f) in frames.iter().enumerate() {
        let t = pt
            .translate(&arena, Iova::new(va + i as u64 * 4096))
            .unwrap();
        assert_eq!((t.pa, t.level), (*f, 3));
    }
    // Root, one L1, two L2 and three L3 tables.
    assert_eq!(pt.tables(&arena).len(), 7);
    // Mapping any of it again is refused, changing nothing.
    let before = arena.snapshot();
    let again = pt.map_pages(
        &mut arena,
        Iova::new(va + 599 * 4096),
        &frames[..2],
        Attrs::dma(1, true),
    );
    assert_eq!(again, Err(crate::MapError::AlreadyMapped));
    arena.assert_unchanged_since(&before);
    // The unmap of the whole run, in one walk, frees every table but the root.
    let tok = pt
        .unmap_exact(&mut arena, Iova::new(va), 600 * 4096)
        .unwrap();
    assert_eq!(tok.ranges().len(), 1);
    assert_eq!(tok.freed_tables().len(), 6);
    super::assert_counts_match(&pt, &arena);
}

/// One walk per run: a run of pages across two existing last-level tables
/// reads the root once to map it and once to unmap it (each operation
/// descends once and steps to the next table from its parent), where a
/// walk per page would read it once per page.
#[test]
fn runs_walk_once() {
    use crate::{Attrs, Config, PageTable};
    use abi::{Iova, PhysAddr};
    let mut arena = super::Arena::new();
    let mut pt = PageTable::<Iova>::new(&mut arena, Config::new(48, 40)).unwrap();
    let attrs = Attrs::dma(1, true);
    // Two last-level tables, linked by a page at each end.
    let (lo, hi) = ((2u64 << 20) - 4096, (2u64 << 20) + 8 * 4096);
    for va in [lo - 4096, hi] {
        pt.map_pages(&mut arena, Iova::new(va), &[PhysAddr::new(va)], attrs)
            .unwrap();
    }
    let frames: Vec<PhysAddr> = (0..9u64)
        .map(|i| PhysAddr::new((77 + 3 * i) * 4096))
        .collect();
    arena.watch = Some(pt.root().get());
    pt.map_pages(&mut arena, Iova::new(lo), &frames, attrs)
        .unwrap();
    assert_eq!(arena.watched_reads.get(), 1, "map: one walk for the run");
    arena.watched_reads.set(0);
    let tok = pt.unmap_exact(&mut arena, Iova::new(lo), 9 * 4096).unwrap();
    assert_eq!(arena.watched_reads.get(), 1, "unmap: one walk for the run");
    assert!(tok.freed_tables().is_empty());
    super::assert_counts_match(&pt, &arena);
}
