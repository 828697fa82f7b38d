//! Out-of-memory injection (security contract: "a server never panics on
//! client input, including by running out of memory"). A global allocator
//! over [`System`] fails, when told to, the Nth heap allocation the server
//! makes from now on (the hardware harness's own allocations are not
//! counted: they stand for the SMMU and the kernel, not the server's heap).
//! Each scenario builds a server, then for N = 0, 1, 2, ... repeats one
//! request with the Nth allocation failing, until the request completes
//! without reaching an Nth allocation. An infallible growth that fails
//! aborts the whole test process (`handle_alloc_error`): that is this
//! test's failure signal. Each refused request must answer `NoMemory` and
//! leave the server's observable state (client counters, server
//! counters but those of pin and unpin calls, table pages, pins,
//! descriptor writes, the software SMMU's counters, the IOVA space in
//! use) exactly as it was; the same request then succeeds without
//! injection.
//!
//! Set `OOM_TRACE=1` to print the backtrace of every injected failure
//! (the last one printed before an abort names the infallible site).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;

use abi::{Iova, PAGE_SIZE, PhysAddr, StreamId};
use common::{Frames, Hw, PER_UNMAP, STRICT, bytes, qemu_features};
use iommu_api::{ApiError, ClientQuota, Dir, Extent, List, Request, Response, Stats};
use iommu_core::server::{
    Grant, Handled, HwError, Presented, ReplyBytes, Server, ServerConfig, ServerStats, SmmuHw,
};
use iommu_core::{InvalidationPolicy, TrustLevel};
use smmuv3::idr::Features;

/// The System allocator, failing on request (see the module documentation).
struct Failing;

thread_local! {
    /// Allocations left before the one that fails; `None`: none fails.
    static LEFT: Cell<Option<u64>> = const { Cell::new(None) };
    /// An injected failure happened since the last arming.
    static HIT: Cell<bool> = const { Cell::new(false) };
    /// Depth of code whose allocations are not the server's (the harness).
    static OUTSIDE: Cell<u32> = const { Cell::new(0) };
}

impl Failing {
    /// Whether this allocation is the one to fail (counting it).
    fn fail_now() -> bool {
        let outside = OUTSIDE.try_with(Cell::get).unwrap_or(1);
        if outside > 0 {
            return false;
        }
        let Ok(Some(left)) = LEFT.try_with(Cell::get) else {
            return false;
        };
        if left > 0 {
            let _ = LEFT.try_with(|l| l.set(Some(left - 1)));
            return false;
        }
        let _ = LEFT.try_with(|l| l.set(None));
        let _ = HIT.try_with(|h| h.set(true));
        if std::env::var_os("OOM_TRACE").is_some() {
            outside_harness(|| {
                eprintln!(
                    "injected allocation failure at:\n{}",
                    std::backtrace::Backtrace::force_capture()
                );
            });
        }
        true
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, or returns null (a failed allocation, which the `GlobalAlloc`
// contract allows) without touching memory; the bookkeeping is in
// const-initialised thread-locals that never allocate.
unsafe impl GlobalAlloc for Failing {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if Self::fail_now() {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout, passed on (non-zero size, as the
        // `GlobalAlloc::alloc` contract requires of the caller).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if Self::fail_now() {
            return std::ptr::null_mut();
        }
        // SAFETY: as `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` (this allocator only forwards)
        // with this layout, as the caller guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::fail_now() {
            // A failed realloc leaves the old block as it was.
            return std::ptr::null_mut();
        }
        // SAFETY: `ptr` came from `System` with `layout`; `new_size` is
        // the caller's, valid for `layout`'s alignment as it guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Failing = Failing;

/// Runs `f` with its allocations not counted (the harness's, not the
/// server's).
fn outside_harness<T>(f: impl FnOnce() -> T) -> T {
    OUTSIDE.with(|o| o.set(o.get() + 1));
    let out = f();
    OUTSIDE.with(|o| o.set(o.get() - 1));
    out
}

/// Runs `f` with its `n`th allocation (from 0) failing; returns its result
/// and whether that allocation happened.
fn with_failure<T>(n: u64, f: impl FnOnce() -> T) -> (T, bool) {
    HIT.with(|h| h.set(false));
    LEFT.with(|l| l.set(Some(n)));
    let out = f();
    LEFT.with(|l| l.set(None));
    (out, HIT.with(Cell::get))
}

/// The harness's hardware, its allocations kept out of the count.
struct OomHw(Hw);

impl SmmuHw for OomHw {
    fn features(&self) -> &Features {
        &self.0.features
    }
    fn alloc_pages(&mut self, count: usize) -> Option<PhysAddr> {
        outside_harness(|| self.0.alloc_pages(count))
    }
    fn free_pages(&mut self, pa: PhysAddr, count: usize) {
        outside_harness(|| self.0.free_pages(pa, count))
    }
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        outside_harness(|| self.0.read_u64(pa))
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        outside_harness(|| self.0.write_u64(pa, value))
    }
    fn publish(&mut self) {
        outside_harness(|| self.0.publish())
    }
    fn submit(&mut self, cmds: &[[u64; 2]]) -> Result<(), HwError> {
        outside_harness(|| self.0.submit(cmds))
    }
    fn sync(&mut self) -> Result<(), HwError> {
        outside_harness(|| self.0.sync())
    }
    fn pin(&mut self, frames: &[PhysAddr]) -> Result<(), HwError> {
        outside_harness(|| self.0.pin(frames))
    }
    fn unpin(&mut self, frames: &[PhysAddr]) {
        outside_harness(|| self.0.unpin(frames))
    }
}

type Srv = Server<OomHw, u64>;

const A: u32 = 1;
const B: u32 = 2;
const SID_A: u32 = 0x8;
const SID_B: u32 = 0x10;
const DEFERRED: InvalidationPolicy = InvalidationPolicy::Deferred {
    max_entries: 4,
    max_age_us: 1000,
};

/// A server on the QEMU-like model with `clients` registered.
fn server(clients: &[(u32, InvalidationPolicy, TrustLevel)]) -> Srv {
    let mut s = Server::new(OomHw(Hw::new(qemu_features())), ServerConfig::default())
        .expect("server starts");
    let (base, st) = s.strtab();
    let hw = &mut s.hw_mut().0;
    hw.model.set_stream_table(base, st.format, st.log2size);
    hw.model.set_enabled(true);
    for &(b, p, t) in clients {
        s.add_client(b, &format!("client{b}"), p, t).unwrap();
    }
    s
}

/// What a refused request must leave as it was.
#[derive(Debug, PartialEq)]
struct Snapshot {
    stats: Vec<Option<Stats>>,
    server: ServerStats,
    pins: BTreeMap<u64, u32>,
    pages: BTreeMap<u64, usize>,
    hw: (u64, u64, u64, u64, u64, smmu_model::ModelStats),
    deadline: Option<u64>,
}

/// The pin and unpin counters are left out: a map refused by the page
/// table's own reservations (made inside its walk, after the pin) pins and
/// unpins its frames at once. `pins` shows none is left pinned.
fn snapshot(s: &Srv) -> Snapshot {
    outside_harness(|| Snapshot {
        stats: [A, B].iter().map(|&b| s.stats(b)).collect(),
        server: ServerStats {
            pinned_frames: 0,
            pin_calls: 0,
            unpinned_frames: 0,
            unpin_calls: 0,
            ..s.server_stats()
        },
        pins: s.hw().0.pins.clone(),
        pages: s.hw().0.live.clone(),
        hw: s.hw().0.footprint(),
        deadline: s.next_deadline(),
    })
}

/// The decoded answer to a call: the error, or `Ok(held)`, with the
/// mapped IOVAs of a `Map`.
type Answer = Result<(bool, Vec<Iova>), ApiError>;

fn decode(op: iommu_api::Op, h: Handled<u64>) -> Answer {
    outside_harness(|| match h {
        Handled::Held => Ok((true, Vec::new())),
        Handled::Reply(_, r) => decode_bytes(op, &r).map(|v| (false, v)),
    })
}

fn decode_bytes(op: iommu_api::Op, r: &ReplyBytes) -> Result<Vec<Iova>, ApiError> {
    match Response::decode(op, r)? {
        Response::Mapped { iovas } => Ok(iovas.iter().collect()),
        _ => Ok(Vec::new()),
    }
}

/// One client call with its message encoded outside the count.
fn call(
    s: &mut Srv,
    now: u64,
    badge: u32,
    req: &Request<'_>,
    grant: Option<Grant<'_>>,
    presented: Option<Presented>,
) -> Answer {
    let op = req.op();
    let msg = outside_harness(|| bytes(req));
    let h = s.handle(now, badge, &msg, grant, presented, 7);
    decode(op, h)
}

fn attach(s: &mut Srv, badge: u32, sid: u32) -> Answer {
    let dev = Presented {
        rid: sid,
        sid: StreamId(sid),
    };
    call(
        s,
        0,
        badge,
        &Request::Attach { dma_bits: 48 },
        None,
        Some(dev),
    )
}

fn map(s: &mut Srv, badge: u32, ranges: &[Extent], frames: &[PhysAddr]) -> Answer {
    let grant = Grant {
        frames,
        va: 0x1000_0000_0000,
        len: frames.len() as u64 * PAGE_SIZE,
    };
    let req = Request::Map {
        dir: Dir::Bidirectional,
        ranges: List::new(ranges),
    };
    call(s, 0, badge, &req, Some(grant), None)
}

fn unmap(s: &mut Srv, now: u64, badge: u32, ranges: &[Extent]) -> Answer {
    let req = Request::Unmap {
        ranges: List::new(ranges),
    };
    call(s, now, badge, &req, None, None)
}

/// The extents of `iovas`, `len` bytes each.
fn extents(iovas: &[Iova], len: u64) -> Vec<Extent> {
    outside_harness(|| iovas.iter().map(|i| Extent::new(i.get(), len)).collect())
}

/// For N = 0, 1, ...: a fresh `setup()`, then `request` with its Nth
/// allocation failing: it must be refused with `NoMemory` and change
/// nothing, and then succeed without injection; or, where the failure
/// only costs an optimisation (an emptied page table that stays linked),
/// succeed anyway. Stops at the first N the request does not reach.
/// Returns how many failures were injected and how many the request
/// absorbed.
fn every_failure<T>(
    name: &str,
    setup: impl Fn() -> (Srv, T),
    request: impl Fn(&mut Srv, &T) -> Answer,
) -> (u64, u64) {
    let mut absorbed = 0;
    for n in 0.. {
        let (mut s, t) = setup();
        let before = snapshot(&s);
        let (answer, hit) = with_failure(n, || request(&mut s, &t));
        if !hit {
            assert!(answer.is_ok(), "{name}: {answer:?} with no failure");
            eprintln!("{name}: each of {n} allocations failed in turn, {absorbed} absorbed");
            return (n, absorbed);
        }
        match answer {
            Ok(_) => absorbed += 1,
            Err(e) => {
                assert_eq!(e, ApiError::NoMemory, "{name}: allocation {n} failed");
                assert_eq!(
                    snapshot(&s),
                    before,
                    "{name}: allocation {n} failed, and the refusal changed state"
                );
                let again = request(&mut s, &t);
                assert!(again.is_ok(), "{name}: the retry after {n}: {again:?}");
            }
        }
        // Whatever it left pending completes, and every pin it took is
        // still accounted for (the harness checks each unpin).
        outside_harness(|| {
            let _ = s.poll(1_000_000);
            assert_eq!(s.stats(A).unwrap().pending_unmaps, 0, "{name} at {n}");
        });
    }
    unreachable!()
}

/// A client of `policy` attached, with `n` one-page mappings of its own.
fn mapped(policy: InvalidationPolicy, n: usize) -> (Srv, Vec<Iova>) {
    outside_harness(|| {
        let mut s = server(&[
            (A, policy, TrustLevel::Trusted),
            (B, STRICT, TrustLevel::Trusted),
        ]);
        attach(&mut s, A, SID_A).unwrap();
        attach(&mut s, B, SID_B).unwrap();
        let mut fr = Frames::new(A);
        let iovas = (0..n)
            .map(|_| {
                let f = fr.take(1, false);
                map(&mut s, A, &[Extent::new(0, PAGE_SIZE)], &f).unwrap().1[0]
            })
            .collect();
        (s, iovas)
    })
}

/// [`mapped`] deferred with `n` pages, then the first `unmapped` of them
/// unmapped one request each (into A's deferred queue).
fn queued(n: usize, unmapped: usize) -> (Srv, Vec<Iova>) {
    let (mut s, iovas) = mapped(DEFERRED, n);
    outside_harness(|| {
        for i in &iovas[..unmapped] {
            unmap(&mut s, 1, A, &extents(&[*i], PAGE_SIZE)).unwrap();
        }
    });
    (s, iovas)
}

#[test]
fn map_one_range_fails_cleanly_at_every_allocation() {
    let frames = Frames::new(A).take(3, false);
    every_failure(
        "map one page",
        || mapped(STRICT, 2),
        |s, _| map(s, A, &[Extent::new(0, PAGE_SIZE)], &frames),
    );
    let frames = Frames::new(A).take(3, true);
    every_failure(
        "map one range of 3 pages",
        || mapped(DEFERRED, 0),
        |s, _| map(s, A, &[Extent::new(0x10, 3 * PAGE_SIZE - 0x10)], &frames),
    );
}

#[test]
fn map_several_ranges_fails_cleanly_at_every_allocation() {
    let frames = Frames::new(A).take(8, false);
    let ranges: Vec<_> = (0..6).map(|i| Extent::new(i * PAGE_SIZE, 100)).collect();
    every_failure(
        "packed map of 6 ranges",
        || mapped(STRICT, 1),
        |s, _| map(s, A, &ranges, &frames),
    );
    // A block-sized range and a small one: one IOVA block each.
    let (frames, ranges) = block_and_page();
    every_failure(
        "map of a block and a page",
        || mapped(STRICT, 1),
        |s, _| map(s, A, &ranges, &frames),
    );
}

#[test]
fn unmap_one_range_fails_cleanly_at_every_allocation() {
    for (name, policy) in [
        ("strict unmap", STRICT),
        ("per-unmap unmap", PER_UNMAP),
        ("deferred unmap", DEFERRED),
    ] {
        every_failure(
            name,
            || mapped(policy, 3),
            |s, iovas| unmap(s, 1, A, &extents(&iovas[1..2], PAGE_SIZE)),
        );
    }
    // The deferred queue is full after this one: it moves to the flush.
    every_failure(
        "deferred unmap filling the queue",
        || queued(6, 3),
        |s, iovas| unmap(s, 2, A, &extents(&iovas[3..4], PAGE_SIZE)),
    );
}

#[test]
fn unmap_several_ranges_fails_cleanly_at_every_allocation() {
    for (name, policy) in [
        ("strict unmap of 5", STRICT),
        ("per-unmap unmap of 5", PER_UNMAP),
        ("deferred unmap of 2", DEFERRED),
    ] {
        every_failure(
            name,
            || mapped(policy, 8),
            |s, iovas| {
                let n = if policy == DEFERRED { 2 } else { 5 };
                unmap(s, 1, A, &extents(&iovas[1..1 + n], PAGE_SIZE))
            },
        );
    }
    // A packed map's ranges, unmapped together (the table below them is
    // freed: walk-cache regions go stale).
    let frames = Frames::new(A).take(8, false);
    let ranges: Vec<_> = (0..6).map(|i| Extent::new(i * PAGE_SIZE, 100)).collect();
    every_failure(
        "unmap of a packed map",
        || {
            let (mut s, _) = mapped(STRICT, 0);
            let iovas = outside_harness(|| map(&mut s, A, &ranges, &frames).unwrap().1);
            (s, iovas)
        },
        |s, iovas| unmap(s, 1, A, &extents(iovas, 100)),
    );
}

#[test]
fn bypass_maps_and_unmaps_fail_cleanly_at_every_allocation() {
    let frames = Frames::new(A).take(8, true);
    let ranges: Vec<_> = (0..6).map(|i| Extent::new(i * PAGE_SIZE, 100)).collect();
    let setup = |mapped: bool| {
        outside_harness(|| {
            let mut s = server(&[(A, STRICT, TrustLevel::Bench)]);
            attach(&mut s, A, SID_A).unwrap();
            let bypass = Request::SetPolicy {
                policy: InvalidationPolicy::Bypass,
            };
            call(&mut s, 0, A, &bypass, None, None).unwrap();
            let iovas = match mapped {
                true => map(&mut s, A, &ranges, &frames).unwrap().1,
                false => Vec::new(),
            };
            (s, iovas)
        })
    };
    every_failure(
        "bypass map of 6 ranges",
        || setup(false),
        |s, _| map(s, A, &ranges, &frames),
    );
    every_failure(
        "bypass unmap of 6 ranges",
        || setup(true),
        |s, iovas| unmap(s, 1, A, &extents(iovas, 100)),
    );
}

/// Frames for a 2 MiB block and a page after it, and the two ranges that
/// map them.
fn block_and_page() -> (Vec<PhysAddr>, [Extent; 2]) {
    let frames = Frames::new(A).take(600, true);
    let ranges = [
        Extent::new(0, 512 * PAGE_SIZE),
        Extent::new(512 * PAGE_SIZE, PAGE_SIZE),
    ];
    (frames, ranges)
}

#[test]
fn unmap_of_blocks_fails_cleanly_at_every_allocation() {
    // Ranges a 2 MiB block maps are cleared by the page table's general
    // walk, in room reserved before anything is cleared.
    let (frames, ranges) = block_and_page();
    let setup = |n: usize| {
        let (mut s, _) = mapped(STRICT, 1);
        let iovas = outside_harness(|| map(&mut s, A, &ranges[..n], &frames).unwrap().1);
        (s, iovas)
    };
    every_failure(
        "unmap of a block",
        || setup(1),
        |s, iovas| unmap(s, 1, A, &extents(iovas, 512 * PAGE_SIZE)),
    );
    every_failure(
        "unmap of a block and a page",
        || setup(2),
        |s, iovas| {
            let both = outside_harness(|| {
                vec![
                    Extent::new(iovas[0].get(), 512 * PAGE_SIZE),
                    Extent::new(iovas[1].get(), PAGE_SIZE),
                ]
            });
            unmap(s, 1, A, &both)
        },
    );
}

/// A map past the client's table quota is rolled back (its first range,
/// a block, was written): with any allocation failing it is still
/// refused, and once its sync completed nothing of it is left (no pin, no
/// IOVA, no table page).
#[test]
fn a_map_rolled_back_survives_every_allocation_failure() {
    let (frames, ranges) = block_and_page();
    let setup = || {
        outside_harness(|| {
            let mut cfg = ServerConfig::default();
            // The root, then a level-1 and a level-2 table for the block:
            // the page's last-level table is one too many.
            cfg.quota_trusted.table_pages = 3;
            let mut s = Server::new(OomHw(Hw::new(qemu_features())), cfg).unwrap();
            let (base, st) = s.strtab();
            let hw = &mut s.hw_mut().0;
            hw.model.set_stream_table(base, st.format, st.log2size);
            hw.model.set_enabled(true);
            s.add_client(A, "a", STRICT, TrustLevel::Trusted).unwrap();
            attach(&mut s, A, SID_A).unwrap();
            s
        })
    };
    for n in 0.. {
        let mut s = setup();
        let before = snapshot(&s);
        let (answer, hit) = with_failure(n, || map(&mut s, A, &ranges, &frames));
        assert!(
            matches!(
                answer,
                Err(ApiError::QuotaExceeded) | Err(ApiError::NoMemory)
            ),
            "rollback at {n}: {answer:?}"
        );
        outside_harness(|| {
            let _ = s.poll(1_000_000);
            let after = snapshot(&s);
            assert!(after.pins.is_empty(), "rollback at {n}: pins left");
            assert_eq!(after.stats[0].unwrap().iova_bytes_in_use, 0, "at {n}");
            assert_eq!(after.stats[0].unwrap().table_pages, 1, "at {n}");
            assert_eq!(after.pages.len(), before.pages.len(), "at {n}");
        });
        if !hit {
            assert_eq!(answer, Err(ApiError::QuotaExceeded));
            eprintln!("map rollback: each of {n} allocations failed in turn");
            break;
        }
    }
}

#[test]
fn flush_fails_cleanly_at_every_allocation() {
    every_failure(
        "flush of a deferred queue",
        || queued(3, 2),
        |s, _| call(s, 2, A, &Request::Flush, None, None),
    );
}

/// One F_TRANSLATION record of `sid` at `iova` (a DMA write the model
/// refuses).
fn fault_record(s: &mut Srv, sid: u32, iova: u64) -> [u64; 4] {
    outside_harness(|| {
        let hw = &mut s.hw_mut().0;
        assert!(
            hw.model
                .dma_write(&mut hw.mem, StreamId(sid), Iova::new(iova), &[1])
                .is_err()
        );
        let ev = hw.model.take_events();
        assert_eq!(ev.len(), 1);
        ev[0]
    })
}

#[test]
fn faults_fail_cleanly_at_every_allocation() {
    let setup = || {
        let (mut s, _) = mapped(STRICT, 1);
        for i in 0..3u64 {
            let r = fault_record(&mut s, SID_A, 0x7000_0000 + i * PAGE_SIZE);
            outside_harness(|| s.on_event(r));
        }
        (s, ())
    };
    every_failure("faults", setup, |s, _| {
        call(s, 2, A, &Request::Faults, None, None)
    });
    // A record the ledger has no room for counts as untracked: noting it
    // never aborts, and it is counted.
    for n in 0.. {
        let (mut s, _) = mapped(STRICT, 1);
        let r = fault_record(&mut s, SID_A, 0x7000_0000);
        let (_, hit) = with_failure(n, || s.on_event(r));
        outside_harness(|| assert_eq!(s.stats(A).unwrap().faults, 1, "at {n}"));
        if !hit {
            break;
        }
    }
}

#[test]
fn attach_fails_cleanly_at_every_allocation() {
    every_failure(
        "first attach",
        || {
            outside_harness(|| {
                (
                    server(&[
                        (A, STRICT, TrustLevel::Trusted),
                        (B, STRICT, TrustLevel::Trusted),
                    ]),
                    (),
                )
            })
        },
        |s, _| attach(s, A, SID_A),
    );
    every_failure(
        "second stream",
        || mapped(STRICT, 1),
        |s, _| attach(s, A, 0x400),
    );
}

#[test]
fn set_policy_fails_cleanly_at_every_allocation() {
    every_failure(
        "deferred to strict with a queue",
        || {
            let (mut s, iovas) = outside_harness(|| {
                let mut s = server(&[(A, DEFERRED, TrustLevel::Bench)]);
                attach(&mut s, A, SID_A).unwrap();
                let f = Frames::new(A).take(1, false);
                let i = map(&mut s, A, &[Extent::new(0, PAGE_SIZE)], &f).unwrap().1;
                (s, i)
            });
            outside_harness(|| unmap(&mut s, 1, A, &extents(&iovas, PAGE_SIZE)).unwrap());
            (s, ())
        },
        |s, _| call(s, 2, A, &Request::SetPolicy { policy: STRICT }, None, None),
    );
}

/// A client's death and a poll cannot be refused: with any allocation
/// failing they must not abort, must keep every release until a
/// completed sync covers it (the harness checks that on every free and
/// unpin), and must finish the work once memory is back.
#[test]
fn death_and_poll_survive_every_allocation_failure() {
    let setup = || {
        let (mut s, iovas) = mapped(STRICT, 4);
        outside_harness(|| {
            unmap(&mut s, 1, A, &extents(&iovas[..1], PAGE_SIZE)).unwrap();
            let f = Frames::new(B).take(1, false);
            map(&mut s, B, &[Extent::new(0, PAGE_SIZE)], &f).unwrap();
        });
        s
    };
    for n in 0.. {
        let mut s = setup();
        let (_, hit) = with_failure(n, || {
            let _ = s.client_died(A);
        });
        outside_harness(|| {
            let _ = s.poll(10);
            let _ = s.poll(20);
            assert!(s.teardown_complete(A), "death, failure {n}");
            assert_eq!(s.hw().0.pins.len(), 1, "only B's frame stays pinned");
        });
        if !hit {
            break;
        }
    }
    for n in 0.. {
        let mut s = setup();
        let (_, hit) = with_failure(n, || {
            let _ = s.poll(10);
        });
        outside_harness(|| {
            let _ = s.poll(20);
            assert_eq!(s.stats(A).unwrap().pending_unmaps, 0, "poll, failure {n}");
        });
        if !hit {
            break;
        }
    }
}

/// The harness itself: a failure is injected, counted once, and only in
/// the server's allocations.
#[test]
fn the_allocator_fails_the_nth_allocation_only() {
    let (v, hit) = with_failure(1, || {
        let a: Result<Vec<u8>, _> = Vec::<u8>::new().try_reserve(8).map(|_| Vec::new());
        let mut b = Vec::<u8>::new();
        let second = b.try_reserve(8);
        let third = outside_harness(|| Vec::<u8>::with_capacity(8));
        (a.is_ok(), second.is_err(), third.capacity() >= 8)
    });
    assert!(hit);
    assert_eq!(v, (true, true, true));
    let _quota = ClientQuota::default_for(TrustLevel::Trusted);
}

/// Table memory for the page-table scenarios (harness memory: its
/// allocations are not counted).
#[derive(Default)]
struct Arena {
    pages: std::collections::HashMap<u64, Box<[u64; 512]>>,
    next: u64,
}

impl pgtable::TableMemory for Arena {
    fn read(&self, table: PhysAddr, index: usize) -> u64 {
        outside_harness(|| self.pages.get(&table.get()).map_or(0, |p| p[index & 511]))
    }
    fn write(&mut self, table: PhysAddr, index: usize, value: u64) {
        outside_harness(|| {
            if let Some(p) = self.pages.get_mut(&table.get()) {
                p[index & 511] = value;
            }
        })
    }
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        outside_harness(|| {
            self.next += PAGE_SIZE;
            let pa = 0x4000_0000 + self.next;
            self.pages.insert(pa, Box::new([0; 512]));
            Some(PhysAddr::new(pa))
        })
    }
}

/// What a page-table walk left: every descriptor of every page.
fn arena_state(a: &Arena) -> Vec<(u64, Vec<u64>)> {
    outside_harness(|| {
        let mut v: Vec<_> = a.pages.iter().map(|(&k, p)| (k, p.to_vec())).collect();
        v.sort();
        v
    })
}

/// `pgtable`'s unmap of pages (one walk) and of a block (the general
/// walk, which splits it), each emptying the tables below: with any
/// allocation failing, the unmap is refused with nothing changed, or done
/// (the tables it could not list as freed stay linked, empty); never an
/// abort.
#[test]
fn page_table_unmaps_survive_every_allocation_failure() {
    use pgtable::{Attrs, Config, LargestLeaf, PageTable};
    let setup = |block: bool| {
        outside_harness(|| {
            let mut mem = Arena::default();
            let cfg = Config::new(48, 48).with_largest_leaf(LargestLeaf::Block2M);
            let mut t = PageTable::<Iova>::new(&mut mem, cfg).unwrap();
            let attrs = Attrs::dma(0, true);
            if block {
                let len = 2 << 20;
                t.map(
                    &mut mem,
                    Iova::new(0x4000_0000),
                    PhysAddr::new(0x8000_0000),
                    len,
                    attrs,
                )
                .unwrap();
            } else {
                let frames: Vec<_> = (0..3)
                    .map(|i| PhysAddr::new(0x9000_0000 + i * PAGE_SIZE))
                    .collect();
                t.map_pages(&mut mem, Iova::new(0x4000_0000), &frames, attrs)
                    .unwrap();
            }
            (t, mem)
        })
    };
    for (name, block, len) in [
        ("pages", false, 3 * PAGE_SIZE),
        ("a whole block", true, 2 << 20),
        ("part of a block", true, PAGE_SIZE),
    ] {
        for n in 0.. {
            let (mut t, mut mem) = setup(block);
            let before = arena_state(&mem);
            let (done, hit) = with_failure(n, || {
                t.unmap_exact(&mut mem, Iova::new(0x4000_0000), len)
                    .map(|tok| tok.into_freed_tables().len())
            });
            if let Err(e) = done {
                assert!(hit, "{name}: {e:?}");
                assert_eq!(arena_state(&mem), before, "{name}: refused at {n}");
            }
            if !hit {
                break;
            }
        }
        // With its room reserved first, an exact unmap is never refused.
        for n in 0.. {
            let (mut t, mut mem) = setup(block);
            let room = outside_harness(|| pgtable::Unmapped::with_room(3, 3).unwrap());
            let (done, hit) = with_failure(n, || {
                t.unmap_exact_in(&mut mem, Iova::new(0x4000_0000), len, room)
                    .is_ok()
            });
            assert!(done || len == PAGE_SIZE, "{name}: refused at {n} with room");
            if !hit {
                break;
            }
        }
    }
}

/// The IOVA allocator's free ranges grow when a freed block lies between
/// live ones: with any allocation failing, an `alloc` is refused with
/// nothing changed and a `free` (which cannot be refused) never aborts.
#[test]
fn iova_allocator_survives_every_allocation_failure() {
    use iommu_core::iova::{IovaAllocator, IovaError};
    // Every other block of a fragmented window freed: many free ranges.
    let setup = || {
        outside_harness(|| {
            let mut a = IovaAllocator::with_cache_depth(
                Iova::new(0x10_0000),
                Iova::new(0x1ff_ffff),
                u64::MAX,
                0,
            )
            .unwrap();
            let all: Vec<_> = (0..64).map(|_| a.alloc(2).unwrap()).collect();
            for b in all.iter().step_by(2) {
                a.free(*b, 2).unwrap();
            }
            let live: Vec<_> = all.iter().skip(1).step_by(2).copied().collect();
            (a, live)
        })
    };
    for n in 0.. {
        let (mut a, live) = setup();
        let (in_use, count) = (a.in_use_bytes(), a.live_allocations());
        let (got, hit) = with_failure(n, || a.alloc(8));
        match got {
            Err(e) => {
                assert_eq!(e, IovaError::NoMemory);
                assert_eq!((a.in_use_bytes(), a.live_allocations()), (in_use, count));
            }
            Ok(b) => assert_eq!(a.free(b, 8), Ok(())),
        }
        // Frees never fail, whatever the heap says.
        let (freed, hit_free) =
            with_failure(n, || live.iter().step_by(3).all(|b| a.free(*b, 2).is_ok()));
        assert!(freed);
        if !hit && !hit_free {
            break;
        }
    }
}

/// Eight rounds of `io` at each queue depth of `qds`, on a `policy`
/// client with one mapping that stays, as a driver's queues do (without
/// one, every round empties the page table's last tables, whose freed list
/// an unmap allocates), each round ending with the poll that flushes it,
/// its replies put in a list the caller keeps. The first four warm the
/// server up and may allocate; in the others the server's first heap
/// allocation fails. Each round must release `held(qd)` replies and leave
/// nothing pending. `io` gets the server, the time, the depth and
/// `frames` frames of the client, scattered.
fn warm_rounds_allocate_nothing(
    policy: InvalidationPolicy,
    qds: &[usize],
    frames: usize,
    held: impl Fn(usize) -> usize,
    mut io: impl FnMut(&mut Srv, u64, usize, &[PhysAddr]) -> Result<(), ApiError>,
) {
    let (mut s, _) = mapped(policy, 1);
    let frames = outside_harness(|| {
        let mut fr = Frames::new(A);
        // Past the frame of `mapped`'s mapping.
        fr.take(1, false);
        fr.take(frames, false)
    });
    let mut replies = Vec::new();
    let mut now = 10;
    for &qd in qds {
        for round in 0..8 {
            now += 10_000;
            let mut round_io = || {
                io(&mut s, now, qd, &frames)?;
                s.poll_into(now + 5_000, 0, &mut replies);
                Ok::<_, ApiError>(replies.len())
            };
            let (released, hit) = match round {
                0..4 => (round_io(), false),
                _ => with_failure(0, round_io),
            };
            assert_eq!(released, Ok(held(qd)), "{policy:?} QD{qd} round {round}");
            assert!(
                !hit,
                "{policy:?} QD{qd} round {round}: the server allocated"
            );
            outside_harness(|| replies.clear());
            assert_eq!(s.stats(A).unwrap().pending_unmaps, 0);
        }
    }
}

/// The I/O path allocates nothing once it is warm: one-page maps of one
/// request each and their unmaps of one request each
/// ([`warm_rounds_allocate_nothing`]), strict and deferred, at QD 1 and 8.
/// Before the engine kept its plan's lists, each flush made about a dozen.
#[test]
fn steady_io_allocates_nothing() {
    for policy in [STRICT, DEFERRED] {
        let held = |qd| if policy == STRICT { qd } else { 0 };
        warm_rounds_allocate_nothing(policy, &[1, 8], 8, held, |s, now, qd, frames| {
            let mut iovas = [Iova::new(0); 8];
            for (i, v) in iovas.iter_mut().take(qd).enumerate() {
                let grant = &frames[i..i + 1];
                *v = map(s, A, &[Extent::new(0, PAGE_SIZE)], grant)?.1[0];
            }
            for v in &iovas[..qd] {
                unmap(s, now, A, &extents(&[*v], PAGE_SIZE))?;
            }
            Ok(())
        });
    }
}

/// The same for a driver that batches: one `Map` of `qd` one-page buffers
/// (one grant), one `Unmap` of them all. Its reply is included: the
/// caller hands each heap reply back with `Server::recycle`, as the task
/// does after sending it. Strict and deferred, QD 8 and 32.
#[test]
fn steady_batched_io_allocates_nothing() {
    for policy in [STRICT, DEFERRED] {
        let held = |_| usize::from(policy == STRICT);
        warm_rounds_allocate_nothing(policy, &[8, 32], 32, held, |s, now, qd, frames| {
            let ranges: Vec<Extent> = outside_harness(|| {
                (0..qd as u64)
                    .map(|i| Extent::new(i * PAGE_SIZE, PAGE_SIZE))
                    .collect()
            });
            let grant = Grant {
                frames: &frames[..qd],
                va: 0x1000_0000_0000,
                len: qd as u64 * PAGE_SIZE,
            };
            let req = Request::Map {
                dir: Dir::Bidirectional,
                ranges: List::new(&ranges),
            };
            let msg = outside_harness(|| bytes(&req));
            let Handled::Reply(_, r) = s.handle(now, A, &msg, Some(grant), None, 7) else {
                panic!("map held")
            };
            let iovas = outside_harness(|| decode_bytes(req.op(), &r))?;
            s.recycle(r);
            assert_eq!(iovas.len(), qd);
            unmap(s, now, A, &extents(&iovas, PAGE_SIZE))?;
            Ok(())
        });
    }
}
