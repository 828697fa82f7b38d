//! Unit tests of the frame ledger, and a property test against a
//! per-frame reference model.

use super::*;
use proptest::prelude::*;

fn pa(f: u64) -> PhysAddr {
    Frame(f).addr()
}

fn ledger(frames: u64) -> FrameLedger {
    let mut l = FrameLedger::new();
    l.add_free(frames);
    l
}

const DMA: Owner = Owner::Task { task: 1, dma: true };

#[test]
fn a_pinned_frame_of_a_dead_task_is_held_then_freed_by_the_last_unpin() {
    let mut l = ledger(64);
    l.allocated(Frame(16), 4, 4, DMA).unwrap();
    l.pin(&[pa(17), pa(17), pa(18)]).unwrap();
    let r = l.release(Frame(16)).unwrap();
    assert_eq!(r.held, 2);
    assert_eq!(r.freed, vec![(Frame(16), 1), (Frame(19), 1)]);
    assert_eq!(l.totals().held, 2);
    assert_eq!(l.unpin(&[pa(17), pa(18)]).unwrap(), vec![Frame(18)]);
    assert_eq!(l.totals().held, 1);
    assert_eq!(l.unpin(&[pa(17)]).unwrap(), vec![Frame(17)]);
    assert_eq!(l.audit().unwrap().free, 64);
}

#[test]
fn only_task_dma_memory_can_be_pinned_and_a_refused_batch_changes_nothing() {
    let mut l = ledger(64);
    l.allocated(Frame(0), 4, 4, Owner::Kernel).unwrap();
    l.allocated(
        Frame(4),
        4,
        4,
        Owner::Task {
            task: 1,
            dma: false,
        },
    )
    .unwrap();
    l.allocated(Frame(8), 8, 5, DMA).unwrap();
    l.allocated(Frame(16), 4, 4, Owner::Pool { task: 0 })
        .unwrap();
    let cases = [
        (pa(0), PinRefusal::Kernel),
        (pa(5), PinRefusal::NotDma),
        (pa(14), PinRefusal::NotDma), // the allocator's round-up
        (pa(16), PinRefusal::Pool),
        (pa(40), PinRefusal::NotAllocated),
        (PhysAddr::new(0x1_0000_0000), PinRefusal::NotAllocated),
        (PhysAddr::new(pa(9).get() + 8), PinRefusal::Unaligned),
    ];
    for (bad, why) in cases {
        assert_eq!(l.pin(&[pa(8), pa(9), bad]), Err((bad, why)));
        assert_eq!(l.pinned_frames(), 0, "a refused batch pinned something");
    }
    assert_eq!(l.unpin(&[pa(8)]), Err((pa(8), PinRefusal::NotPinned)));
    l.pin(&[pa(8)]).unwrap();
    assert_eq!(
        l.unpin(&[pa(8), pa(8)]),
        Err((pa(8), PinRefusal::NotPinned))
    );
    assert_eq!(l.pins_of(pa(8)), 1);
    l.release(Frame(8)).unwrap();
    assert_eq!(l.pin(&[pa(8)]), Err((pa(8), PinRefusal::Held)));
    l.audit().unwrap();
}

#[test]
fn the_iommu_pool_is_kept_when_its_owner_dies() {
    let mut l = ledger(16);
    l.allocated(Frame(0), 8, 8, Owner::Pool { task: 0 })
        .unwrap();
    let r = l.release(Frame(0)).unwrap();
    assert_eq!((r.pool_kept, r.freed.len()), (8, 0));
    assert_eq!(l.release(Frame(0)).unwrap(), Released::default());
    let t = l.audit().unwrap();
    assert_eq!((t.pool, t.free), (8, 8));
}

#[test]
fn kernel_misuse_is_an_error() {
    let mut l = ledger(8);
    l.allocated(Frame(0), 4, 4, DMA).unwrap();
    assert_eq!(l.allocated(Frame(2), 2, 2, DMA), Err(LedgerError::Overlap));
    assert_eq!(
        l.allocated(Frame(4), 8, 8, DMA),
        Err(LedgerError::NotEnoughFree)
    );
    assert_eq!(l.release(Frame(1)), Err(LedgerError::UnknownRun));
    l.pin(&[pa(1)]).unwrap();
    l.release(Frame(0)).unwrap();
    // A held frame is not free: nothing may be allocated over it.
    assert_eq!(l.allocated(Frame(0), 2, 2, DMA), Err(LedgerError::Overlap));
}

#[test]
fn buddy_chunks_tile_a_run_with_aligned_powers_of_two() {
    let got: Vec<_> = buddy_chunks(Frame(3), 13).collect();
    assert_eq!(got, vec![(Frame(3), 1), (Frame(4), 4), (Frame(8), 8)]);
    let got: Vec<_> = buddy_chunks(Frame(0), 6).collect();
    assert_eq!(got, vec![(Frame(0), 4), (Frame(4), 2)]);
}

// ---- property test against a reference model ----

const N: u64 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum M {
    Free,
    Kernel,
    Task { task: u32, dma: bool, usable: bool },
    Pool { task: u32 },
    Held,
}

struct Model {
    state: Vec<M>,
    pins: Vec<u32>,
    /// Live runs: (first, frames, owner task or None for the kernel).
    runs: Vec<(u64, u64, Option<u32>)>,
}

impl Model {
    fn totals(&self) -> Totals {
        let mut t = Totals {
            boot: N,
            ..Totals::default()
        };
        for s in &self.state {
            match s {
                M::Free => t.free += 1,
                M::Kernel => t.kernel += 1,
                M::Task { .. } => t.task += 1,
                M::Pool { .. } => t.pool += 1,
                M::Held => t.held += 1,
            }
        }
        t
    }

    /// The lowest free, naturally aligned block of `size` frames.
    fn find(&self, size: u64) -> Option<u64> {
        (0..N)
            .step_by(size as usize)
            .find(|&s| s + size <= N && (s..s + size).all(|f| self.state[f as usize] == M::Free))
    }

    fn pinnable(&self, f: u64) -> bool {
        matches!(
            self.state.get(f as usize),
            Some(M::Task {
                dma: true,
                usable: true,
                ..
            })
        )
    }
}

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        kind: u8,
        task: u32,
        pages: u64,
    },
    Pin(Vec<u64>),
    Unpin(Vec<u64>),
    /// Release the live run with this index (mod the count).
    Release(usize),
    /// A task dies: every run it owns is released.
    Die(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..4, 0u32..3, 1u64..9).prop_map(|(kind, task, pages)| Op::Alloc { kind, task, pages }),
        3 => proptest::collection::vec(0u64..N + 2, 1..6).prop_map(Op::Pin),
        3 => proptest::collection::vec(0u64..N + 2, 1..6).prop_map(Op::Unpin),
        // Batches over the ledger's inline buffer (sorted on the heap),
        // of a few frames repeated, so that some are valid.
        1 => big_batch().prop_map(Op::Pin),
        1 => big_batch().prop_map(Op::Unpin),
        1 => (0usize..16).prop_map(Op::Release),
        1 => (0u32..3).prop_map(Op::Die),
    ]
}

fn big_batch() -> impl Strategy<Value = Vec<u64>> {
    (proptest::collection::vec(0u64..N + 2, 1..4), 65usize..100)
        .prop_map(|(frames, len)| frames.iter().cycle().take(len).copied().collect())
}

fn release_in_both(l: &mut FrameLedger, m: &mut Model, first: u64) {
    let (_, frames, _) = *m.runs.iter().find(|r| r.0 == first).unwrap();
    m.runs.retain(|r| r.0 != first);
    let got = l.release(Frame(first)).unwrap();
    let mut freed = Vec::new();
    for (f, n) in &got.freed {
        freed.extend(f.0..f.0 + n);
    }
    let (mut held, mut kept) = (0, 0);
    for f in first..first + frames {
        let s = &mut m.state[f as usize];
        match *s {
            M::Pool { .. } => kept += 1,
            _ if m.pins[f as usize] > 0 => {
                *s = M::Held;
                held += 1;
            }
            _ => {
                assert!(freed.contains(&f), "unpinned frame {f} not freed");
                *s = M::Free;
            }
        }
    }
    for f in &freed {
        assert_eq!(m.pins[*f as usize], 0, "pinned frame {f} freed");
    }
    assert_eq!(freed.len() as u64 + held + kept, frames);
    assert_eq!((got.held, got.pool_kept), (held, kept));
    if kept > 0 {
        // An orphaned pool run stays in the ledger; the model keeps it
        // out of `runs` so that it is never released twice.
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn pinned_frames_are_never_freed_and_the_states_add_up(ops in proptest::collection::vec(op(), 1..80)) {
        let mut l = ledger(N);
        let mut m = Model { state: vec![M::Free; N as usize], pins: vec![0; N as usize], runs: Vec::new() };
        for op in ops {
            match op {
                Op::Alloc { kind, task, pages } => {
                    let size = pages.next_power_of_two();
                    let Some(first) = m.find(size) else { continue };
                    let owner = match kind {
                        0 => Owner::Kernel,
                        1 => Owner::Task { task, dma: false },
                        2 => Owner::Task { task, dma: true },
                        _ => Owner::Pool { task },
                    };
                    l.allocated(Frame(first), size, pages, owner).unwrap();
                    for f in first..first + size {
                        m.state[f as usize] = match owner {
                            Owner::Kernel => M::Kernel,
                            Owner::Task { task, dma } => M::Task { task, dma, usable: f < first + pages },
                            Owner::Pool { task } => M::Pool { task },
                        };
                    }
                    let who = match owner { Owner::Kernel => None, Owner::Task { task, .. } | Owner::Pool { task } => Some(task) };
                    m.runs.push((first, size, who));
                }
                Op::Pin(fs) => {
                    let batch: Vec<_> = fs.iter().map(|&f| pa(f)).collect();
                    let ok = fs.iter().all(|&f| m.pinnable(f));
                    let before: Vec<u32> = m.pins.clone();
                    prop_assert_eq!(l.pin(&batch).is_ok(), ok);
                    if ok {
                        for f in fs { m.pins[f as usize] += 1; }
                    }
                    for f in 0..N {
                        prop_assert_eq!(l.pins_of(pa(f)), m.pins[f as usize]);
                    }
                    if !ok { prop_assert_eq!(&before, &m.pins); }
                }
                Op::Unpin(fs) => {
                    let batch: Vec<_> = fs.iter().map(|&f| pa(f)).collect();
                    let mut want = vec![0u32; N as usize + 2];
                    for &f in &fs { want[f as usize] += 1; }
                    let ok = (0..N as usize + 2).all(|f| want[f] <= m.pins.get(f).copied().unwrap_or(0));
                    let got = l.unpin(&batch);
                    prop_assert_eq!(got.is_ok(), ok);
                    if let Ok(freed) = got {
                        let mut expect = Vec::new();
                        for (f, &w) in want.iter().enumerate().take(N as usize) {
                            if w == 0 { continue; }
                            m.pins[f] -= w;
                            if m.pins[f] == 0 && m.state[f] == M::Held {
                                m.state[f] = M::Free;
                                expect.push(Frame(f as u64));
                            }
                        }
                        prop_assert_eq!(freed, expect);
                    }
                }
                Op::Release(i) => {
                    let live: Vec<u64> = m.runs.iter().map(|r| r.0).collect();
                    if live.is_empty() { continue; }
                    release_in_both(&mut l, &mut m, live[i % live.len()]);
                }
                Op::Die(task) => {
                    let runs: Vec<u64> = m.runs.iter().filter(|r| r.2 == Some(task)).map(|r| r.0).collect();
                    for first in runs {
                        release_in_both(&mut l, &mut m, first);
                    }
                }
            }
            let t = l.audit();
            prop_assert!(t.is_ok(), "{:?}", t);
            prop_assert_eq!(l.totals(), m.totals());
            prop_assert!(l.totals().adds_up());
            // Never free while pinned.
            for f in 0..N as usize {
                if m.pins[f] > 0 { prop_assert_ne!(m.state[f], M::Free); }
            }
        }
    }
}
