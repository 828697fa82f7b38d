//! The heap against a model: random allocations and frees of random
//! layouts, each block filled with its own pattern; no block overlaps a
//! live one, every block is aligned and keeps its pattern until freed, and
//! the cache never makes an allocation fail that the buddy allocator alone
//! would serve.

use core::alloc::{GlobalAlloc, Layout};
use std::boxed::Box;
use std::vec::Vec;

use proptest::prelude::*;

use super::{KEEP_BYTES, MAX_CACHED, TaskHeap};

const HEAP: usize = 256 * 1024;

/// A heap over its own zeroed, page-aligned memory.
struct Fixture {
    heap: TaskHeap,
    _mem: Box<[u8]>,
    base: usize,
}

impl Fixture {
    fn new() -> Self {
        let mut mem = std::vec![0u8; HEAP + 4096].into_boxed_slice();
        let base = (mem.as_mut_ptr() as usize).next_multiple_of(4096);
        let heap = TaskHeap::new();
        // SAFETY: `[base, base + HEAP)` lies in `mem`, which outlives the
        // heap (the fixture drops the heap first) and nothing else uses.
        unsafe { heap.init(base, HEAP) };
        Fixture {
            heap,
            _mem: mem,
            base,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        size: usize,
        align_shift: u32,
    },
    /// Free the live block with this index (mod the count).
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Mostly small, some over the cache's largest class.
        4 => (1usize..=MAX_CACHED, 0u32..7).prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        1 => (1usize..=4 * MAX_CACHED, 0u32..13).prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        5 => any::<usize>().prop_map(Op::Free),
    ]
}

fn pattern(id: usize, i: usize) -> u8 {
    (id.wrapping_mul(31) ^ i) as u8
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn blocks_are_disjoint_aligned_and_kept(ops in proptest::collection::vec(op(), 1..400)) {
        let f = Fixture::new();
        // (address, layout, id)
        let mut live: Vec<(usize, Layout, usize)> = Vec::new();
        for (id, op) in ops.into_iter().enumerate() {
            match op {
                Op::Alloc { size, align_shift } => {
                    let l = Layout::from_size_align(size, 1 << align_shift).unwrap();
                    // SAFETY: a non-zero size.
                    let p = unsafe { f.heap.alloc(l) } as usize;
                    if p == 0 {
                        // Out of memory is allowed only when the heap is
                        // really full: what is live leaves no room.
                        let used: usize = live.iter().map(|(_, l, _)| l.size().max(l.align())).sum();
                        prop_assert!(used + l.size().max(l.align()) > HEAP / 4, "refused {l:?} with {used} bytes live");
                        continue;
                    }
                    prop_assert_eq!(p % l.align(), 0);
                    prop_assert!(p >= f.base && p + size <= f.base + HEAP);
                    for &(q, m, _) in &live {
                        prop_assert!(p + size <= q || q + m.size() <= p, "{p:#x}+{size} overlaps {q:#x}+{}", m.size());
                    }
                    for i in 0..size {
                        // SAFETY: the block is ours: `size` bytes at `p`.
                        unsafe { *((p + i) as *mut u8) = pattern(id, i) };
                    }
                    live.push((p, l, id));
                }
                Op::Free(k) => {
                    if live.is_empty() {
                        continue;
                    }
                    let (p, l, id) = live.swap_remove(k % live.len());
                    for i in 0..l.size() {
                        // SAFETY: still ours until the dealloc below.
                        let b = unsafe { *((p + i) as *const u8) };
                        prop_assert_eq!(b, pattern(id, i), "block {:#x} byte {} changed", p, i);
                    }
                    // SAFETY: `p` came from `alloc` with `l` and is freed once.
                    unsafe { f.heap.dealloc(p as *mut u8, l) };
                }
            }
        }
        for (p, l, _) in live.drain(..) {
            // SAFETY: as above.
            unsafe { f.heap.dealloc(p as *mut u8, l) };
        }
        // Everything is free again: one block of half the heap must fit,
        // whatever the cache holds.
        let half = Layout::from_size_align(HEAP / 2, 8).unwrap();
        // SAFETY: a non-zero size.
        let p = unsafe { f.heap.alloc(half) };
        prop_assert!(!p.is_null(), "the cache kept what a large block needs");
    }
}

/// A freed small block is the next one of its class (no buddy search),
/// up to `KEEP_BYTES` a class; more go back to the buddy allocator.
#[test]
fn a_freed_small_block_comes_back_first() {
    let f = Fixture::new();
    let l = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: a non-zero size; each block is freed once, with its layout.
    unsafe {
        let a = f.heap.alloc(l);
        let b = f.heap.alloc(l);
        f.heap.dealloc(a, l);
        assert_eq!(f.heap.alloc(l), a);
        f.heap.dealloc(a, l);
        f.heap.dealloc(b, l);
        // Last in, first out.
        assert_eq!(f.heap.alloc(l), b);
        assert_eq!(f.heap.alloc(l), a);
    }
    // The cache keeps at most KEEP_BYTES of a class.
    let big = Layout::from_size_align(MAX_CACHED, 8).unwrap();
    let n = KEEP_BYTES / MAX_CACHED + 4;
    // SAFETY: as above.
    let blocks: Vec<*mut u8> = (0..n).map(|_| unsafe { f.heap.alloc(big) }).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    for &p in &blocks {
        // SAFETY: as above.
        unsafe { f.heap.dealloc(p, big) };
    }
    assert_eq!(
        f.heap.0.lock().kept[super::CLASSES - 1],
        KEEP_BYTES / MAX_CACHED
    );
}
