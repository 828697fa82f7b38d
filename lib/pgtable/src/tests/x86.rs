//! The x86-64 format adapter: exact round trips, the hardware bits each
//! kind of mapping gets, foreign entries invisible to the walker, and the
//! walker's map/translate/unmap/destroy through it.

use abi::{PhysAddr, VirtAddr};

use super::Arena;
use crate::desc::{self, Attrs};
use crate::x86::{G, NX, P, PCD, PS, PWT, RW, SW_LEAF, SW_TABLE, US, X86Memory, from_x86, to_x86};
use crate::{Config, LargestLeaf, PageTable, TableMemory};

const K4: u64 = 4096;
const M2: u64 = 2 << 20;

fn every_attrs() -> Vec<Attrs> {
    let mut out = Vec::new();
    for m in [0, 1, 3] {
        out.push(Attrs::user_data(m, true));
        out.push(Attrs::user_data(m, false));
        out.push(Attrs::user_code(m));
        out.push(Attrs::kernel_data(m, true));
        out.push(Attrs::kernel_data(m, false));
        out.push(Attrs::dma(m, true));
        out.push(Attrs {
            pxn: false,
            ..Attrs::kernel_data(m, false)
        });
    }
    out
}

#[test]
fn leaves_and_tables_round_trip_exactly() {
    for attrs in every_attrs() {
        for level in [1, 2, 3] {
            let oa = 0x4000_0000u64 & !(desc::level_size(level) - 1);
            let v = desc::leaf(level, PhysAddr::new(oa), &attrs);
            assert_eq!(from_x86(to_x86(v)), v, "{attrs:?} at level {level}");
        }
    }
    let t = desc::table(PhysAddr::new(0x1234_5000));
    assert_eq!(from_x86(to_x86(t)), t);
    assert_eq!(to_x86(0), 0);
    assert_eq!(from_x86(0), 0);
}

#[test]
fn hardware_bits_follow_the_attributes() {
    let page = |a: Attrs| to_x86(desc::leaf(3, PhysAddr::new(0x5000), &a));
    let x = page(Attrs::user_data(0, true));
    assert_eq!(x & (P | RW | US | NX | PS | PCD | G), P | RW | US | NX);
    let x = page(Attrs::user_code(0));
    assert_eq!(
        x & (P | RW | US | NX | G),
        P | US,
        "user code: read-only, executable"
    );
    let x = page(Attrs::user_data(0, false));
    assert_eq!(x & (P | RW | US | NX), P | US | NX);
    let x = page(Attrs::kernel_data(0, true));
    assert_eq!(
        x & (P | RW | US | NX | G),
        P | RW | NX | G,
        "kernel data: global"
    );
    let x = page(Attrs::user_data(3, true));
    assert_eq!(x & (PCD | PWT), PCD | PWT, "device memory is uncached");
    assert_eq!(x & 0x000f_ffff_ffff_f000 & !(0x7f << 52), 0x5000);
    let block = to_x86(desc::leaf(2, PhysAddr::new(M2), &Attrs::user_data(0, true)));
    assert_ne!(block & PS, 0, "a 2 MiB leaf has PS");
    let table = to_x86(desc::table(PhysAddr::new(0x9000)));
    assert_eq!(table, 0x9000 | P | RW | US | SW_TABLE);
}

#[test]
fn entries_the_walker_did_not_write_read_as_invalid() {
    // What a kernel writes into its own half of a PML4.
    assert_eq!(from_x86(0x0010_3000 | P | RW), 0);
    assert_eq!(from_x86(0x0010_3000 | P | RW | G | PS), 0);
    assert_ne!(from_x86(0x0010_3000 | P | SW_LEAF), 0);
}

/// The root: the first table `destroy` hands back.
fn pt_root(freed: &[PhysAddr]) -> PhysAddr {
    freed[0]
}

#[test]
fn the_walker_maps_translates_and_tears_down_through_it() {
    let mut arena = X86Memory(Arena::new());
    let mut pt = PageTable::<VirtAddr>::new(
        &mut arena,
        Config::new(47, 46).with_largest_leaf(LargestLeaf::Page),
    )
    .unwrap();
    // A kernel entry in the upper half of the root, as the kernel copies it.
    let foreign = 0x00ab_c000 | P | RW | G;
    arena.0.write(pt.root(), 300, foreign);
    let va = VirtAddr::new(0x40_0000);
    let attrs = Attrs::user_data(0, true);
    pt.map(&mut arena, va, PhysAddr::new(0x8000_0000), 3 * K4, attrs)
        .unwrap();
    let t = pt.translate(&arena, VirtAddr::new(0x40_1010)).unwrap();
    assert_eq!(
        (t.pa, t.attrs, t.level),
        (PhysAddr::new(0x8000_1010), attrs, 3)
    );
    // The hardware sees x86 entries all the way down.
    let root = arena.0.read(pt.root(), 0);
    assert_eq!(root & (P | SW_TABLE), P | SW_TABLE);
    assert_eq!(pt.tables(&arena).len(), 4, "root, PDPT, PD, PT");
    let token = pt.unmap(&mut arena, va, 3 * K4).unwrap();
    assert!(pt.translate(&arena, va).is_none());
    drop(token.into_freed_tables());
    let freed = pt.destroy(&arena);
    assert!(
        !freed.iter().any(|p| p.get() == 0x00ab_c000),
        "the kernel's entry is never followed or freed"
    );
    assert_eq!(arena.0.read(pt_root(&freed), 300), foreign);
}
