//! Host benchmarks of the IOMMU server's hot paths, in ns per operation:
//! mapping and unmapping one 4 KiB page and a run of [`RUN`] pages through
//! `Server::handle`, the IOVA
//! allocator's fast (per-size cache) and slow (free-range tree) paths, a
//! software page-table walk, a whole map + unmap + flush cycle of one
//! strict client, a block driver's batch (one request mapping 32 one-page
//! buffers, one unmapping them), a driver's whole batch cycle (map, unmap,
//! flush) in bypass and in strict, and the parts of a one-page map and
//! unmap alone.
//!
//! Method: the server runs on [`MemHw`], an in-memory `SmmuHw` whose
//! `submit` and `sync` do nothing, so the figures are the server's own CPU
//! cost (decoding, checks, IOVA allocation, page-table writes, the engine's
//! planning and bookkeeping, encoding the reply) without any SMMU or IPC
//! latency; what those cost on real hardware is counted, not timed (see
//! docs/DESIGN.md, "Measuring"). Where one operation needs another to be
//! repeatable (a map needs an unmap), the helper runs untimed between
//! timed batches of [`BATCH`] operations ([`RUN_BATCH`] for runs). Every
//! timed request is encoded before its timer starts (that is the client's
//! side of the call); a map's reply is decoded inside it.
//!
//! `cargo bench -p iommu-core --bench hot_paths` (add `-- --quick` for a
//! fast pass).

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use abi::{Iova, PAGE_SIZE, PhysAddr, StreamId};
use criterion::{Criterion, criterion_group, criterion_main};
use iommu_api::{Dir, Extent, List, MSG_MAX, Op, Request, Response};
use iommu_core::IovaAllocator;
use iommu_core::server::{
    Grant, Handled, HwError, Presented, ReplyBytes, Server, ServerConfig, SmmuHw,
};
use iommu_core::{InvalidationPolicy, TrustLevel};
use pgtable::{Attrs, Config, PageTable, TableMemory};
use smmuv3::idr::Features;

/// Timed operations per batch where an untimed helper must run between
/// batches.
const BATCH: u64 = 256;
/// The same for the run benchmarks: 64 live runs of 128 KiB stay within
/// the untrusted quota (16 MiB mapped).
const RUN_BATCH: u64 = 64;
/// Where `MemHw` hands out pages.
const MEM_BASE: u64 = 0x8000_0000;
/// The client's granted frames (never touched: the server only maps them).
const CLIENT_FRAME: u64 = 0x1_0000_0000;
/// Pages in the run benchmarks: a 128 KiB buffer, granted as frames that
/// are not physically contiguous (every other page), as a task's heap
/// buffer usually is.
const RUN: usize = 32;
const BADGE: u32 = 1;
const SID: u32 = 8;

/// SMMU memory as a vector of zeroed pages; commands go nowhere.
struct MemHw {
    features: Features,
    pages: Vec<Box<[u64; 512]>>,
    free1: Vec<usize>,
}

impl MemHw {
    fn new() -> Self {
        Self {
            // QEMU 7.2's SMMUv3 ID registers (stage 1, RIL, 16-bit ASIDs).
            features: Features::decode([0x0d40_101a, 0x0273_0010, 0, 0x1404, 0, 0x74], 1)
                .expect("features decode"),
            pages: Vec::new(),
            free1: Vec::new(),
        }
    }

    fn word(&self, pa: PhysAddr) -> (usize, usize) {
        let off = pa.get() - MEM_BASE;
        ((off / PAGE_SIZE) as usize, ((off % PAGE_SIZE) / 8) as usize)
    }
}

impl SmmuHw for MemHw {
    fn features(&self) -> &Features {
        &self.features
    }
    fn alloc_pages(&mut self, count: usize) -> Option<PhysAddr> {
        if count == 1
            && let Some(p) = self.free1.pop()
        {
            *self.pages[p] = [0; 512];
            return Some(PhysAddr::new(MEM_BASE + p as u64 * PAGE_SIZE));
        }
        let first = self.pages.len().next_multiple_of(count);
        self.pages.resize_with(first + count, || Box::new([0; 512]));
        Some(PhysAddr::new(MEM_BASE + first as u64 * PAGE_SIZE))
    }
    fn free_pages(&mut self, pa: PhysAddr, count: usize) {
        if count == 1 {
            self.free1.push(self.word(pa).0);
        }
    }
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        let (p, w) = self.word(pa);
        self.pages[p][w]
    }
    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        let (p, w) = self.word(pa);
        self.pages[p][w] = value;
    }
    fn publish(&mut self) {}
    fn submit(&mut self, _cmds: &[[u64; 2]]) -> Result<(), HwError> {
        Ok(())
    }
    fn sync(&mut self) -> Result<(), HwError> {
        Ok(())
    }
    fn pin(&mut self, _frames: &[PhysAddr]) -> Result<(), HwError> {
        Ok(())
    }
    fn unpin(&mut self, _frames: &[PhysAddr]) {}
}

impl TableMemory for MemHw {
    fn read(&self, table: PhysAddr, index: usize) -> u64 {
        self.read_u64(PhysAddr::new(table.get() + 8 * (index as u64 & 511)))
    }
    fn write(&mut self, table: PhysAddr, index: usize, value: u64) {
        self.write_u64(PhysAddr::new(table.get() + 8 * (index as u64 & 511)), value);
    }
    fn alloc_table(&mut self) -> Option<PhysAddr> {
        self.alloc_pages(1)
    }
}

fn encode(r: &Request<'_>) -> Vec<u8> {
    let mut buf = [0u8; MSG_MAX];
    let n = r.encode(&mut buf).expect("request encodes");
    buf[..n].to_vec()
}

/// A server with one strict, untrusted client whose device is attached.
struct Bench {
    server: Server<MemHw, u64>,
    map_msg: Vec<u8>,
    frames: Vec<PhysAddr>,
    now: u64,
    /// The released replies of a `cycle/` flush, kept from one to the next
    /// as the task keeps its list (`Server::poll_into`).
    replies: Vec<(u64, ReplyBytes)>,
}

impl Bench {
    /// One mapping is one page.
    fn new() -> Self {
        Self::with_pages(1)
    }

    /// One mapping is `pages` pages, on frames two pages apart.
    fn with_pages(pages: usize) -> Self {
        Self::with_policy(pages, InvalidationPolicy::Strict, TrustLevel::Untrusted)
    }

    /// The same for a client of `policy` and `trust`.
    fn with_policy(pages: usize, policy: InvalidationPolicy, trust: TrustLevel) -> Self {
        let mut server = Server::new(MemHw::new(), ServerConfig::default()).expect("server");
        server
            .add_client(BADGE, "bench", policy, trust)
            .expect("client");
        let attach = encode(&Request::Attach { dma_bits: 48 });
        let dev = Presented {
            rid: SID,
            sid: StreamId(SID),
        };
        match server.handle(0, BADGE, &attach, None, Some(dev), 0) {
            Handled::Reply(_, r) => {
                Response::decode(Op::Attach, &r).expect("attached");
            }
            Handled::Held => unreachable!(),
        }
        let len = pages as u64 * PAGE_SIZE;
        let range = [Extent::new(0, len)];
        Self {
            server,
            map_msg: encode(&Request::Map {
                dir: Dir::FromDevice,
                ranges: List::new(&range),
            }),
            frames: (0..pages as u64)
                .map(|i| PhysAddr::new(CLIENT_FRAME + 2 * i * PAGE_SIZE))
                .collect(),
            now: 0,
            replies: Vec::new(),
        }
    }

    fn map(&mut self) -> Iova {
        self.map_with(|iovas| iovas.get(0).expect("one IOVA"))
    }

    /// Sends the map request and hands its IOVAs to `take`.
    fn map_with<T>(&mut self, take: impl FnOnce(List<'_, Iova>) -> T) -> T {
        let grant = Grant {
            frames: &self.frames,
            va: 0x1000_0000,
            len: self.frames.len() as u64 * PAGE_SIZE,
        };
        match self
            .server
            .handle(self.now, BADGE, &self.map_msg, Some(grant), None, 0)
        {
            Handled::Reply(_, r) => {
                let out = match Response::decode(Op::Map, &r) {
                    Ok(Response::Mapped { iovas }) => take(iovas),
                    other => panic!("map: {other:?}"),
                };
                // Handed back once sent, as the server task does.
                self.server.recycle(r);
                out
            }
            Handled::Held => unreachable!(),
        }
    }

    /// What a block driver sends at QD32: one `Map` of [`RUN`] one-page
    /// buffers scattered through the client's grant (every other page of
    /// it, on frames two pages apart), unmapped later in one `Unmap`.
    fn batch() -> Self {
        let mut s = Self::with_pages(2 * RUN);
        let ranges: Vec<Extent> = (0..RUN as u64)
            .map(|t| Extent::new(2 * t * PAGE_SIZE, PAGE_SIZE))
            .collect();
        s.map_msg = encode(&Request::Map {
            dir: Dir::FromDevice,
            ranges: List::new(&ranges),
        });
        s
    }

    /// The IOVAs of a [`Bench::batch`] map, one per buffer.
    fn map_all(&mut self) -> Vec<Iova> {
        self.map_with(|iovas| iovas.iter().collect())
    }

    /// Unmaps one mapping; a strict unmap's reply is held until `flush`.
    fn unmap(&mut self, iova: Iova) {
        let len = self.frames.len() as u64 * PAGE_SIZE;
        self.unmap_ranges(&[Extent::new(iova.get(), len)]);
    }

    /// The `Unmap` of a [`Bench::batch`]'s one-page buffers, one request.
    fn unmap_each_msg(iovas: &[Iova]) -> Vec<u8> {
        let r: Vec<Extent> = iovas
            .iter()
            .map(|v| Extent::new(v.get(), PAGE_SIZE))
            .collect();
        Self::unmap_msg(&r)
    }

    fn unmap_ranges(&mut self, r: &[Extent]) {
        let msg = Self::unmap_msg(r);
        self.send_unmap(&msg);
    }

    /// An `Unmap` request of `r`, encoded (the client's side of the call,
    /// kept out of the timed part as the map's request is).
    fn unmap_msg(r: &[Extent]) -> Vec<u8> {
        encode(&Request::Unmap {
            ranges: List::new(r),
        })
    }

    /// Sends an encoded `Unmap`; a strict unmap's reply is held.
    fn send_unmap(&mut self, msg: &[u8]) {
        let h = self.server.handle(self.now, BADGE, msg, None, None, 7);
        assert_eq!(h, Handled::Held);
    }

    /// Issues the pending invalidation (one doorbell, one sync) and
    /// collects the held replies.
    fn flush(&mut self) -> usize {
        self.now += 1;
        self.server.poll(self.now).len()
    }
}

fn server_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("server");

    for (pages, batch, name_map, name_unmap) in [
        (1, BATCH, "map_4k", "unmap_4k_queued"),
        (RUN, RUN_BATCH, "map_run32", "unmap_run32_queued"),
    ] {
        g.bench_function(name_map, |b| {
            let mut s = Bench::with_pages(pages);
            let mut live = Vec::with_capacity(batch as usize);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(batch);
                    let t = Instant::now();
                    for _ in 0..n {
                        live.push(s.map());
                    }
                    total += t.elapsed();
                    for iova in live.drain(..) {
                        s.unmap(iova);
                    }
                    s.flush();
                    left -= n;
                }
                total
            });
        });

        g.bench_function(name_unmap, |b| {
            let mut s = Bench::with_pages(pages);
            let mut msgs = Vec::with_capacity(batch as usize);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(batch);
                    let len = pages as u64 * PAGE_SIZE;
                    msgs.extend(
                        (0..n).map(|_| Bench::unmap_msg(&[Extent::new(s.map().get(), len)])),
                    );
                    let t = Instant::now();
                    for m in &msgs {
                        s.send_unmap(black_box(m));
                    }
                    total += t.elapsed();
                    msgs.clear();
                    s.flush();
                    left -= n;
                }
                total
            });
        });
    }

    g.bench_function("map_unmap_flush_strict", |b| {
        let mut s = Bench::new();
        b.iter(|| {
            let iova = s.map();
            s.unmap(iova);
            black_box(s.flush())
        });
    });
    g.finish();
}

/// A block driver's batch: one request maps [`RUN`] one-page buffers, one
/// request unmaps them (per request; divide by [`RUN`] for per I/O).
fn batch_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("batch");
    g.bench_function("map_32x4k", |b| {
        let mut s = Bench::batch();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let iovas = s.map_all();
                total += t.elapsed();
                s.send_unmap(&Bench::unmap_each_msg(&iovas));
                s.flush();
            }
            total
        });
    });
    g.bench_function("unmap_32x4k_queued", |b| {
        let mut s = Bench::batch();
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let msg = Bench::unmap_each_msg(&s.map_all());
                let t = Instant::now();
                s.send_unmap(black_box(&msg));
                total += t.elapsed();
                s.flush();
            }
            total
        });
    });
    g.finish();
}

/// A block driver's whole batch, per batch: one `Map` of `n` one-page
/// buffers, one `Unmap` of them, and the flush, with one other buffer
/// mapped throughout (as the driver's queues are), in bypass, strict and
/// deferred: the differences are what strict and deferred cost the server
/// per batch, their fixed part (`n` = 1) and their part per buffer. (The
/// deferred flush runs at once here, as the server runs it when no other
/// unmap can join the window.)
fn cycle_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("cycle");
    for n in [1u64, 8, 32] {
        for (mode, policy) in [
            ("bypass", InvalidationPolicy::Bypass),
            ("strict", InvalidationPolicy::Strict),
            (
                "deferred",
                // The benchmark's deferred bounds (systems/bench.toml).
                InvalidationPolicy::deferred(256, 1_000).expect("deferred bounds"),
            ),
        ] {
            g.bench_function(format!("qd{n}_{mode}"), |b| {
                let mut s =
                    Bench::with_policy(2 * RUN, InvalidationPolicy::Strict, TrustLevel::Bench);
                let set = encode(&Request::SetPolicy { policy });
                match s.server.handle(0, BADGE, &set, None, None, 0) {
                    Handled::Reply(_, r) => {
                        Response::decode(Op::SetPolicy, &r).expect("policy set");
                    }
                    Handled::Held => unreachable!(),
                }
                let ranges: Vec<Extent> = (0..n)
                    .map(|t| Extent::new(2 * t * PAGE_SIZE, PAGE_SIZE))
                    .collect();
                let keep = [Extent::new(PAGE_SIZE, PAGE_SIZE)];
                s.map_msg = encode(&Request::Map {
                    dir: Dir::FromDevice,
                    ranges: List::new(&keep),
                });
                black_box(s.map_all());
                s.map_msg = encode(&Request::Map {
                    dir: Dir::FromDevice,
                    ranges: List::new(&ranges),
                });
                b.iter(|| cycle_once(&mut s));
            });
        }
    }
    g.finish();
}

/// One batch of [`cycle_paths`]. It and its three parts stay out of line
/// so that a profiler (callgrind) counts each part per call; encoding the
/// unmap request (the driver's side) is outside them.
#[inline(never)]
fn cycle_once(s: &mut Bench) -> usize {
    let iovas = cycle_map(s);
    let msg = Bench::unmap_each_msg(&iovas);
    cycle_unmap(s, &msg);
    cycle_flush(s)
}

/// The batch's `Map`, its reply decoded.
#[inline(never)]
fn cycle_map(s: &mut Bench) -> Vec<Iova> {
    s.map_all()
}

/// The batch's `Unmap` (held in strict, answered in bypass).
#[inline(never)]
fn cycle_unmap(s: &mut Bench, msg: &[u8]) {
    black_box(s.server.handle(s.now, BADGE, msg, None, None, 7));
}

/// The flush (nothing to do in bypass), a deferred window included, as
/// the server task flushes one that no other unmap can join, its released
/// replies taken into a list kept from one flush to the next, as the task
/// takes them.
#[inline(never)]
fn cycle_flush(s: &mut Bench) -> usize {
    s.now += 1;
    s.replies.clear();
    s.server.poll_into(s.now, u64::MAX / 2, &mut s.replies);
    s.replies.len()
}

fn iova_paths(c: &mut Criterion) {
    let mut g = c.benchmark_group("iova");
    let base = Iova::new(0x10_0000);
    let limit = Iova::new((1 << 48) - 1);

    g.bench_function("alloc_free_fast", |b| {
        let mut a = IovaAllocator::new(base, limit, u64::MAX).expect("window");
        // Warm the one-page cache.
        let first = a.alloc(1).expect("alloc");
        a.free(first, 1).expect("free");
        b.iter(|| {
            let v = a.alloc(black_box(1)).expect("alloc");
            a.free(v, 1).expect("free");
        });
    });

    g.bench_function("alloc_free_slow", |b| {
        // Caches drained for good (depth 0): every free goes back to the
        // coalescing free-range tree and every alloc searches it; 1,024
        // live single pages with holes between them keep the tree busy.
        let mut a = IovaAllocator::with_cache_depth(base, limit, u64::MAX, 0).expect("window");
        let blocks: Vec<Iova> = (0..2048).map(|_| a.alloc(1).expect("alloc")).collect();
        for v in blocks.iter().step_by(2) {
            a.free(*v, 1).expect("free");
        }
        b.iter(|| {
            let v = a.alloc(black_box(1)).expect("alloc");
            a.free(v, 1).expect("free");
        });
    });
    g.finish();
}

fn walk_path(c: &mut Criterion) {
    // A 48-bit table (4 levels) with 4,096 scattered 4 KiB pages mapped.
    let mut mem = MemHw::new();
    let mut table: PageTable<Iova> = PageTable::new(&mut mem, Config::new(48, 48)).expect("table");
    let attrs = Attrs::dma(0, true);
    let vas: Vec<Iova> = (0..4096u64)
        .map(|i| Iova::new(0x10_0000 + i * 0x20_3000))
        .collect();
    for (i, va) in vas.iter().enumerate() {
        let pa = PhysAddr::new(CLIENT_FRAME + i as u64 * PAGE_SIZE);
        table.map(&mut mem, *va, pa, PAGE_SIZE, attrs).expect("map");
    }
    let mut i = 0usize;
    c.bench_function("pgtable/translate_4level", |b| {
        b.iter(|| {
            i = (i + 1) & (vas.len() - 1);
            black_box(table.translate(&mem, black_box(vas[i])))
        });
    });
}

/// The parts of a one-page map and unmap, each alone, for the breakdown
/// in docs/BENCHMARKS.md: what the request decode, the reply encode
/// (straight into the server's inline `ReplyBytes`), one heap allocation,
/// the mapping record (a hash-table insert and remove among 256 live ones)
/// and the page-table write and clear of one page (one walk each) cost.
fn parts(c: &mut Criterion) {
    let mut g = c.benchmark_group("part");
    let page = [Extent::new(0, PAGE_SIZE)];
    let map_msg = encode(&Request::Map {
        dir: Dir::FromDevice,
        ranges: List::new(&page),
    });
    g.bench_function("decode_map", |b| {
        b.iter(|| black_box(Request::decode(black_box(&map_msg)).is_ok()))
    });
    let iova = [Iova::new(0x10_0000)];
    g.bench_function("encode_mapped_reply", |b| {
        b.iter(|| {
            let r = Response::Mapped {
                iovas: List::new(black_box(&iova)),
            };
            black_box(ReplyBytes::encode_inline(&r))
        })
    });
    g.bench_function("heap_alloc_free_8b", |b| {
        b.iter(|| black_box(vec![black_box(PhysAddr::new(CLIENT_FRAME))]))
    });
    g.bench_function("mapping_record_insert_remove", |b| {
        // As the server keeps them: a hash table sized once, 40-byte
        // entries (the key, a length and an inline frame list).
        let mut m = hashbrown::HashMap::new();
        m.try_reserve(512).expect("room");
        for i in 0..256u64 {
            m.insert(i << 12, [i; 4]);
        }
        let mut k = 256u64;
        b.iter(|| {
            m.insert(k << 12, [k; 4]);
            black_box(m.remove(&((k - 256) << 12)));
            k += 1;
        })
    });
    g.bench_function("pte_map_unmap_4k", |b| {
        let mut mem = MemHw::new();
        let mut table: PageTable<Iova> =
            PageTable::new(&mut mem, Config::new(48, 48)).expect("table");
        let attrs = Attrs::dma(0, true);
        let frame = [PhysAddr::new(CLIENT_FRAME)];
        // Keep the last-level table linked, as the server's live mappings do.
        table
            .map_pages(&mut mem, Iova::new(0x10_0000), &frame, attrs)
            .expect("map");
        let va = Iova::new(0x10_1000);
        b.iter(|| {
            table
                .map_pages(&mut mem, black_box(va), &frame, attrs)
                .expect("map");
            let token = table.unmap_exact(&mut mem, va, PAGE_SIZE).expect("unmap");
            // Nothing to invalidate on this host memory; no table is freed.
            black_box(token.into_freed_tables());
        })
    });
    g.finish();
}

criterion_group!(
    benches,
    server_paths,
    batch_paths,
    cycle_paths,
    iova_paths,
    walk_path,
    parts
);
criterion_main!(benches);
