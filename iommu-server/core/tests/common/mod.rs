//! A test harness: [`SmmuHw`] over `smmu-model`'s software SMMU and sparse
//! memory, with a page allocator that reuses freed pages at once (so that
//! early reuse would show) and checks that every freed page saw a sync
//! after its last write, plus helpers to drive a [`Server`]. It records
//! the server's pins and unpins like the kernel's frame ledger would, and
//! checks on every unpin that no live entry, and no entry cleared since
//! the last completed sync, still reaches the frame beyond its remaining
//! pins; and on every entry written that the frame it maps is pinned.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use abi::{Iova, PAGE_SIZE, PhysAddr, StreamId};
use iommu_api::{ApiError, Dir, Extent, List, MSG_MAX, Request, Response};
use iommu_core::server::{Grant, Handled, HwError, Presented, Server, ServerConfig, SmmuHw};
use iommu_core::{InvalidationPolicy, TrustLevel};
use smmu_model::{ModelConfig, PhysMem, SmmuModel, SparseMem};
use smmuv3::cmd::{Command, Sync};
use smmuv3::idr::Features;

/// Where the harness allocates SMMU structures and tables.
const TABLE_BASE: u64 = 0x8000_0000;

pub struct Hw {
    pub model: SmmuModel,
    pub mem: SparseMem,
    pub features: Features,
    next: u64,
    free1: Vec<u64>,
    pub live: BTreeMap<u64, usize>,
    /// Sync count when each page was last written.
    last_write: HashMap<u64, u64>,
    pub syncs: u64,
    pub doorbells: u64,
    pub writes: u64,
    pub allocs: u64,
    pub frees: u64,
    /// Fail the next `submit` (hardware error injection).
    pub fail_submit: bool,
    /// Pins per frame (what the kernel's ledger would hold).
    pub pins: BTreeMap<u64, u32>,
    /// Every frame ever pinned (so entries mapping them are recognised).
    pub ever_pinned: BTreeSet<u64>,
    /// Live entries mapping each pinned frame.
    pub live_entries: HashMap<u64, u32>,
    /// Entries cleared since the last completed sync, per frame.
    pub unsynced_clears: HashMap<u64, u32>,
    /// Pin and unpin calls.
    pub pin_calls: u64,
    pub unpin_calls: u64,
    /// Every pin (`true`) and unpin call, with its frames, in order.
    pub pin_log: Vec<(bool, Vec<u64>)>,
    /// Refuse the next pin (the kernel says: not DMA memory).
    pub refuse_pin: bool,
    /// Most pages live at once (a finite pool), or no bound.
    pub capacity: Option<usize>,
    /// This many coming syncs fail (a timeout), as a broken SMMU's would.
    pub fail_syncs: u32,
}

/// The output address of a valid descriptor.
fn output(desc: u64) -> Option<u64> {
    (desc & 1 == 1).then_some(desc & 0x0000_ffff_ffff_f000)
}

pub fn qemu_features() -> Features {
    Features::decode([0x0d40_101a, 0x0273_0010, 0, 0x1404, 0, 0x74], 1).unwrap()
}

impl Hw {
    pub fn new(features: Features) -> Self {
        Self {
            model: SmmuModel::new(ModelConfig::from_features(&features)),
            mem: SparseMem::new(),
            features,
            next: TABLE_BASE,
            free1: Vec::new(),
            live: BTreeMap::new(),
            last_write: HashMap::new(),
            syncs: 0,
            doorbells: 0,
            writes: 0,
            allocs: 0,
            frees: 0,
            fail_submit: false,
            pins: BTreeMap::new(),
            ever_pinned: BTreeSet::new(),
            live_entries: HashMap::new(),
            unsynced_clears: HashMap::new(),
            pin_calls: 0,
            unpin_calls: 0,
            pin_log: Vec::new(),
            refuse_pin: false,
            capacity: None,
            fail_syncs: 0,
        }
    }

    /// Frames pinned now (once or more).
    pub fn pinned(&self) -> usize {
        self.pins.len()
    }

    /// Forgets the entries of a table page freed after its sync.
    fn forget_entries(&mut self, page: u64) {
        for i in 0..512 {
            let d = self.mem.read_u64(PhysAddr::new(page + i * 8));
            if let Some(oa) = output(d).filter(|oa| self.ever_pinned.contains(oa))
                && let Some(n) = self.live_entries.get_mut(&oa)
            {
                *n = n.saturating_sub(1);
            }
        }
    }

    /// Counters a refused request must leave alone.
    pub fn footprint(&self) -> (u64, u64, u64, u64, u64, smmu_model::ModelStats) {
        (
            self.writes,
            self.allocs,
            self.frees,
            self.syncs,
            self.doorbells,
            self.model.stats(),
        )
    }
}

impl SmmuHw for Hw {
    fn features(&self) -> &Features {
        &self.features
    }

    fn alloc_pages(&mut self, count: usize) -> Option<PhysAddr> {
        if self
            .capacity
            .is_some_and(|c| self.live.values().sum::<usize>() + count > c)
        {
            return None;
        }
        self.allocs += 1;
        let pa = if count == 1 && !self.free1.is_empty() {
            self.free1.pop().unwrap()
        } else {
            let size = count as u64 * PAGE_SIZE;
            let pa = self.next.next_multiple_of(size);
            self.next = pa + size;
            pa
        };
        for p in 0..count as u64 {
            self.mem
                .write_bytes(PhysAddr::new(pa + p * PAGE_SIZE), &[0; PAGE_SIZE as usize]);
        }
        self.live.insert(pa, count);
        Some(PhysAddr::new(pa))
    }

    fn free_pages(&mut self, pa: PhysAddr, count: usize) {
        self.frees += 1;
        assert_eq!(self.live.remove(&pa.get()), Some(count), "free of {pa:?}");
        for p in 0..count as u64 {
            let page = pa.get() + p * PAGE_SIZE;
            if let Some(&w) = self.last_write.get(&page) {
                assert!(
                    w < self.syncs,
                    "page {page:#x} freed without a sync after its last write"
                );
            }
        }
        for p in 0..count as u64 {
            self.forget_entries(pa.get() + p * PAGE_SIZE);
        }
        if count == 1 {
            self.free1.push(pa.get());
        }
    }

    fn read_u64(&self, pa: PhysAddr) -> u64 {
        self.mem.read_u64(pa)
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        self.writes += 1;
        let old = output(self.mem.read_u64(pa)).filter(|oa| self.ever_pinned.contains(oa));
        let new = output(value).filter(|oa| self.ever_pinned.contains(oa));
        if old != new {
            if let Some(oa) = old {
                *self.live_entries.entry(oa).or_insert(1) -= 1;
                *self.unsynced_clears.entry(oa).or_insert(0) += 1;
            }
            if let Some(oa) = new {
                assert!(
                    self.pins.get(&oa).is_some_and(|&n| n > 0),
                    "an entry maps frame {oa:#x}, which is not pinned"
                );
                *self.live_entries.entry(oa).or_insert(0) += 1;
            }
        }
        self.last_write
            .insert(pa.get() & !(PAGE_SIZE - 1), self.syncs);
        self.mem.write_u64(pa, value);
    }

    fn publish(&mut self) {}

    fn submit(&mut self, cmds: &[[u64; 2]]) -> Result<(), HwError> {
        self.doorbells += 1;
        if std::mem::take(&mut self.fail_submit) {
            return Err(HwError::Timeout);
        }
        for c in cmds {
            self.model
                .command(&self.mem, *c)
                .map_err(|e| HwError::CommandError(e.opcode))?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), HwError> {
        if self.fail_syncs > 0 {
            self.fail_syncs -= 1;
            return Err(HwError::Timeout);
        }
        self.model
            .command(&self.mem, Command::Sync(Sync::polled()).encode())
            .map_err(|e| HwError::CommandError(e.opcode))?;
        self.syncs += 1;
        self.unsynced_clears.clear();
        Ok(())
    }

    fn pin(&mut self, frames: &[PhysAddr]) -> Result<(), HwError> {
        if std::mem::take(&mut self.refuse_pin) {
            return Err(HwError::PinRefused);
        }
        self.pin_calls += 1;
        for f in frames {
            assert!(f.is_page_aligned(), "pin of {f:?}");
            *self.pins.entry(f.get()).or_insert(0) += 1;
            self.ever_pinned.insert(f.get());
        }
        self.pin_log
            .push((true, frames.iter().map(|f| f.get()).collect()));
        Ok(())
    }

    fn unpin(&mut self, frames: &[PhysAddr]) {
        self.unpin_calls += 1;
        for f in frames {
            let f = f.get();
            let n = self
                .pins
                .get_mut(&f)
                .expect("unpin of a frame never pinned");
            assert!(*n > 0, "unpin of frame {f:#x}, not pinned");
            *n -= 1;
            let left = *n;
            if left == 0 {
                self.pins.remove(&f);
            }
            let live = self.live_entries.get(&f).copied().unwrap_or(0);
            let unsynced = self.unsynced_clears.get(&f).copied().unwrap_or(0);
            assert!(
                live + unsynced <= left,
                "frame {f:#x} unpinned while {live} live entries and {unsynced} entries cleared without a sync since still reach it ({left} pins left)"
            );
        }
        self.pin_log
            .push((false, frames.iter().map(|f| f.get()).collect()));
    }
}

pub type Srv = Server<Hw, u64>;

/// A server on a QEMU-like model, enabled, with `clients` registered as
/// (badge, policy, trust).
pub fn server(cfg: ServerConfig, clients: &[(u32, InvalidationPolicy, TrustLevel)]) -> Srv {
    let mut s = Server::new(Hw::new(qemu_features()), cfg).expect("server starts");
    let (base, st) = s.strtab();
    let hw = s.hw_mut();
    hw.model.set_stream_table(base, st.format, st.log2size);
    hw.model.set_enabled(true);
    for &(b, p, t) in clients {
        s.add_client(b, &format!("client{b}"), p, t).unwrap();
    }
    s
}

pub fn bytes(r: &Request<'_>) -> Vec<u8> {
    let mut buf = [0; MSG_MAX];
    let n = r.encode(&mut buf).unwrap();
    buf[..n].to_vec()
}

/// Client memory the kernel would grant: frames from a region per badge.
pub struct Frames {
    next: u64,
}

impl Frames {
    pub fn new(badge: u32) -> Self {
        Self {
            next: 0x1_0000_0000 + u64::from(badge) * 0x1000_0000,
        }
    }
    /// `n` frames, contiguous or each followed by a gap.
    pub fn take(&mut self, n: usize, contiguous: bool) -> Vec<PhysAddr> {
        let step = if contiguous { PAGE_SIZE } else { 2 * PAGE_SIZE };
        let v = (0..n as u64)
            .map(|i| PhysAddr::new(self.next + i * step))
            .collect();
        self.next += n as u64 * step + PAGE_SIZE;
        v
    }
}

pub fn attach(s: &mut Srv, now: u64, badge: u32, sid: u32, dma_bits: u8) -> Result<(), ApiError> {
    let m = bytes(&Request::Attach { dma_bits });
    let dev = Presented {
        rid: sid,
        sid: StreamId(sid),
    };
    match s.handle(now, badge, &m, None, Some(dev), 0) {
        Handled::Reply(_, r) => Response::decode(iommu_api::Op::Attach, &r).map(|_| ()),
        Handled::Held => panic!("attach held"),
    }
}

/// Maps `ranges` of a grant of `frames` starting at page offset `va_off`.
pub fn map(
    s: &mut Srv,
    now: u64,
    badge: u32,
    dir: Dir,
    ranges: &[Extent],
    frames: &[PhysAddr],
    va_off: u64,
) -> Result<Vec<Iova>, ApiError> {
    let m = bytes(&Request::Map {
        dir,
        ranges: List::new(ranges),
    });
    let grant = Grant {
        frames,
        va: 0x1000_0000_0000 + va_off,
        len: frames.len() as u64 * PAGE_SIZE - va_off,
    };
    match s.handle(now, badge, &m, Some(grant), None, 0) {
        Handled::Reply(_, r) => match Response::decode(iommu_api::Op::Map, &r)? {
            Response::Mapped { iovas } => Ok(iovas.iter().collect()),
            other => panic!("{other:?}"),
        },
        Handled::Held => panic!("map held"),
    }
}

/// Maps the first page of `frames` (one 4 KiB range at offset 0) and
/// returns its IOVA; panics if the server refuses.
pub fn map_page(s: &mut Srv, now: u64, badge: u32, dir: Dir, frames: &[PhysAddr]) -> Iova {
    map(s, now, badge, dir, &[Extent::new(0, 4096)], frames, 0).unwrap()[0]
}

/// Sends an unmap with reply token `token`: `Ok(true)` if held.
pub fn unmap(
    s: &mut Srv,
    now: u64,
    badge: u32,
    ranges: &[Extent],
    token: u64,
) -> Result<bool, ApiError> {
    let m = bytes(&Request::Unmap {
        ranges: List::new(ranges),
    });
    match s.handle(now, badge, &m, None, None, token) {
        Handled::Reply(t, r) => {
            assert_eq!(t, token);
            Response::decode(iommu_api::Op::Unmap, &r).map(|_| false)
        }
        Handled::Held => Ok(true),
    }
}

pub fn simple(s: &mut Srv, now: u64, badge: u32, req: Request<'_>) -> Result<Vec<u8>, ApiError> {
    let op = req.op();
    match s.handle(now, badge, &bytes(&req), None, None, 0) {
        Handled::Reply(_, r) => match Response::decode(op, &r) {
            Ok(_) => Ok(r.to_vec()),
            Err(e) => Err(e),
        },
        Handled::Held => Ok(Vec::new()),
    }
}

pub const STRICT: InvalidationPolicy = InvalidationPolicy::Strict;
pub const PER_UNMAP: InvalidationPolicy = InvalidationPolicy::StrictPerUnmap;
pub const UNTRUSTED: TrustLevel = TrustLevel::Untrusted;
pub const TRUSTED: TrustLevel = TrustLevel::Trusted;
