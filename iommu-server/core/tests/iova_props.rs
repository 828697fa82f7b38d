//! Property test of the IOVA allocator against a reference model, and of
//! the room its free-range list keeps (no `free` may grow the heap).

use abi::{Iova, PAGE_SHIFT, PAGE_SIZE};
use iommu_core::iova::{IovaAllocator, IovaError};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Alloc(u64),
    Free(usize),
    FreeThenAlloc(usize),
    DoubleFree,
    FreeBogus(u64, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u64..=80).prop_map(Op::Alloc),
        2 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::FreeThenAlloc),
        1 => Just(Op::DoubleFree),
        1 => (0u64..800, 0u64..9).prop_map(|(p, n)| Op::FreeBogus(p, n)),
    ]
}

/// A live allocation in the model: start pfn, rounded size, requested size.
#[derive(Debug, Clone, Copy)]
struct Live {
    pfn: u64,
    size: u64,
    asked: u64,
}

struct Model {
    first: u64,
    end: u64,
    live: Vec<Live>,
    last_freed: Option<Live>,
}

impl Model {
    fn overlaps(&self, pfn: u64, size: u64) -> bool {
        self.live
            .iter()
            .any(|l| pfn < l.pfn + l.size && l.pfn < pfn + size)
    }

    fn fits_somewhere(&self, size: u64) -> bool {
        let mut a = self.first.div_ceil(size) * size;
        while a + size <= self.end {
            if !self.overlaps(a, size) {
                return true;
            }
            a += size;
        }
        false
    }

    fn in_use_bytes(&self) -> u64 {
        self.live.iter().map(|l| l.size * PAGE_SIZE).sum()
    }

    fn check_alloc(&mut self, asked: u64, got: Result<Iova, IovaError>) {
        let size = asked.next_power_of_two();
        match got {
            Ok(iova) => {
                let pfn = iova.get() >> PAGE_SHIFT;
                assert!(iova.is_page_aligned());
                assert_eq!(pfn % size, 0, "not naturally aligned");
                assert!(
                    pfn >= self.first && pfn + size <= self.end,
                    "outside window"
                );
                assert!(!self.overlaps(pfn, size), "overlaps a live allocation");
                self.live.push(Live { pfn, size, asked });
            }
            Err(IovaError::TooLarge) => assert!(size > self.end - self.first),
            Err(IovaError::Exhausted) => {
                assert!(size <= self.end - self.first);
                assert!(!self.fits_somewhere(size), "spurious exhaustion");
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn allocator_matches_model(
        first in 1u64..64,
        len in 16u64..600,
        mask_clip in 0u64..200,
        depth in 0usize..4,
        ops in prop::collection::vec(op(), 1..200),
    ) {
        let base = Iova::new(first << PAGE_SHIFT);
        let limit = Iova::new(((first + len) << PAGE_SHIFT) - 1);
        // The DMA mask clips the window further when it is below the limit.
        let mask = ((first + len).saturating_sub(mask_clip).max(first + 1) << PAGE_SHIFT) - 1;
        let mut a = IovaAllocator::with_cache_depth(base, limit, mask, depth).unwrap();
        let (lo, hi) = a.window();
        let end = (hi.get() + 1) >> PAGE_SHIFT;
        prop_assert_eq!(lo, base);
        prop_assert!(hi.get() <= mask && hi.get() <= limit.get());
        let mut m = Model { first, end, live: Vec::new(), last_freed: None };

        for op in ops {
            match op {
                Op::Alloc(n) => {
                    let got = a.alloc(n);
                    m.check_alloc(n, got);
                }
                Op::Free(i) | Op::FreeThenAlloc(i) if !m.live.is_empty() => {
                    let l = m.live.swap_remove(i % m.live.len());
                    prop_assert_eq!(a.free(Iova::new(l.pfn << PAGE_SHIFT), l.asked), Ok(()));
                    m.last_freed = Some(l);
                    if matches!(op, Op::FreeThenAlloc(_)) {
                        let got = a.alloc(l.asked);
                        prop_assert!(got.is_ok(), "free then alloc failed");
                        m.check_alloc(l.asked, got);
                    }
                }
                Op::Free(_) | Op::FreeThenAlloc(_) => {}
                Op::DoubleFree => {
                    if let Some(l) = m.last_freed
                        && !m.live.iter().any(|x| x.pfn == l.pfn)
                    {
                        let before = a.in_use_bytes();
                        prop_assert!(a.free(Iova::new(l.pfn << PAGE_SHIFT), l.asked).is_err());
                        prop_assert_eq!(a.in_use_bytes(), before);
                    }
                }
                Op::FreeBogus(pfn, n) => {
                    let legit = m
                        .live
                        .iter()
                        .any(|l| l.pfn == pfn && n != 0 && n.next_power_of_two() == l.size);
                    if !legit {
                        let before = a.in_use_bytes();
                        prop_assert!(a.free(Iova::new(pfn << PAGE_SHIFT), n).is_err());
                        prop_assert_eq!(a.in_use_bytes(), before);
                    }
                }
            }
            prop_assert_eq!(a.in_use_bytes(), m.in_use_bytes());
            prop_assert_eq!(a.live_allocations(), m.live.len());
            // The free-range list never holds more than one range past the
            // live and cached blocks that part them, and always has room
            // for that many, so that no `free` grows the heap.
            let (ranges, room) = a.free_ranges();
            prop_assert!(ranges <= a.held_blocks() + 1, "{} ranges", ranges);
            prop_assert!(room > a.held_blocks(), "room {}", room);
        }

        // Everything freed: the whole window is one naturally aligned
        // allocation away from use again.
        let (_, room) = a.free_ranges();
        for l in m.live.drain(..) {
            prop_assert_eq!(a.free(Iova::new(l.pfn << PAGE_SHIFT), l.size), Ok(()));
            prop_assert_eq!(a.free_ranges().1, room, "a free grew the list");
        }
        // Coalesced: back to one range (or none cached out of the list).
        prop_assert!(a.free_ranges().0 <= a.held_blocks() + 1);
        prop_assert_eq!(a.in_use_bytes(), 0);
        let biggest = 1u64 << (63 - (end - first).leading_zeros());
        let fits = m.fits_somewhere(biggest);
        m.check_alloc(biggest, a.alloc(biggest));
        prop_assert_eq!(fits, m.live.len() == 1);
    }
}
