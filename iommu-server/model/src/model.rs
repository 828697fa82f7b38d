//! The software SMMU: stream table lookup, configuration caches (L1STD,
//! STE, CD), stage-1 translation through the IOTLB and walk cache, command
//! execution, event records, and the stale-translation detector.
//!
//! Owns the model's behaviour and its counters. It must never repair what
//! the server under test forgot: a cached structure or translation is used
//! until a command removes it, exactly as QEMU's SMMUv3 does, and the only
//! place it looks at memory behind the caches' back is the detector, whose
//! result it reports but never returns.

use std::collections::HashMap;
use std::fmt;

use abi::{Asid, Iova, PAGE_SIZE, PhysAddr, StreamId};
use smmuv3::cd::{CD_DWORDS, Cd, tg0};
use smmuv3::cmd::{Command, TlbiVa, opcode};
use smmuv3::evt::{EVT_DWORDS, Event, EventKind, FaultClass};
use smmuv3::idr::Features;
use smmuv3::regs::StrtabFormat;
use smmuv3::ste::{L1Desc, STE_BYTES, STE_DWORDS, Ste, StreamConfig};

use crate::mem::PhysMem;
use crate::tlb::{TlbCaches, TlbEntry, WALK_REGION_SHIFT, WalkEntry};
use crate::walk::{Start, WalkFault, WalkParams, level_shift, walk};

/// What the modelled SMMU implements (the ID-register facts the model
/// depends on).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelConfig {
    /// IDR3.RIL: range TLBI (TG/TTL/NUM/SCALE). Without it a TLBI_NH_VA
    /// with TG != 0 is refused as CERROR_ILL.
    pub ril: bool,
    /// IDR1.SIDSIZE: StreamID bits.
    pub sid_bits: u8,
    /// IDR5.OAS in bits: the output size walks check against.
    pub oas_bits: u8,
    /// IOTLB entries (and walk-cache entries), least recently used evicted.
    pub iotlb_capacity: usize,
    /// IDR0.ASID16: 16-bit ASIDs (else 8-bit, upper bits ignored in CDs
    /// and refused in TLBI commands).
    pub asid16: bool,
}

impl ModelConfig {
    /// QEMU's `virt` SMMUv3: RIL, 16-bit StreamIDs and ASIDs, 44-bit
    /// output, a 256-entry IOTLB.
    pub const fn qemu() -> Self {
        Self {
            ril: true,
            sid_bits: 16,
            oas_bits: 44,
            iotlb_capacity: 256,
            asid16: true,
        }
    }

    /// The configuration an SMMU with these features implies, with a
    /// 256-entry IOTLB.
    pub fn from_features(f: &Features) -> Self {
        Self {
            ril: f.ril,
            sid_bits: f.sid_bits,
            oas_bits: f.oas_bits,
            iotlb_capacity: 256,
            asid16: f.asid16,
        }
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self::qemu()
    }
}

/// Why a transaction did not reach memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// StreamID beyond the stream table (or none configured): C_BAD_STREAMID.
    BadStreamId,
    /// STE (or L1STD) invalid, or ILLEGAL for this SMMU: C_BAD_STE.
    BadSte,
    /// STE.Config == abort: terminated silently, no event.
    Abort,
    /// CD invalid or ILLEGAL for this SMMU: C_BAD_CD.
    BadCd,
    /// No valid translation (invalid descriptor at `level`, input address
    /// outside T0SZ, or EPD0): F_TRANSLATION.
    Translation {
        /// Level of the walk that failed.
        level: u8,
    },
    /// Table or output address beyond the output size: F_ADDR_SIZE.
    AddrSize {
        /// Level of the walk that failed.
        level: u8,
    },
    /// AF == 0: F_ACCESS.
    Access {
        /// Level of the leaf.
        level: u8,
    },
    /// Write to a read-only mapping: F_PERMISSION.
    Permission {
        /// Level of the leaf.
        level: u8,
    },
}

impl Fault {
    /// The event the SMMU records for this fault; `None` for a silent
    /// abort.
    pub const fn event_kind(self) -> Option<EventKind> {
        match self {
            Fault::BadStreamId => Some(EventKind::BadStreamId),
            Fault::BadSte => Some(EventKind::BadSte),
            Fault::Abort => None,
            Fault::BadCd => Some(EventKind::BadCd),
            Fault::Translation { .. } => Some(EventKind::Translation),
            Fault::AddrSize { .. } => Some(EventKind::AddrSize),
            Fault::Access { .. } => Some(EventKind::Access),
            Fault::Permission { .. } => Some(EventKind::Permission),
        }
    }

    const fn from_walk(w: WalkFault) -> Self {
        match w {
            WalkFault::Translation(level) => Fault::Translation { level },
            WalkFault::AddrSize(level) => Fault::AddrSize { level },
            WalkFault::Access(level) => Fault::Access { level },
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.event_kind() {
            None => f.write_str("aborted by STE"),
            Some(k) => {
                f.write_str(k.name())?;
                match self {
                    Fault::Translation { level }
                    | Fault::AddrSize { level }
                    | Fault::Access { level }
                    | Fault::Permission { level } => write!(f, " at level {level}"),
                    _ => Ok(()),
                }
            }
        }
    }
}

impl std::error::Error for Fault {}

/// A command the SMMU refuses: the queue would stop with CONS.ERR =
/// CERROR_ILL and GERROR.CMDQ_ERR toggled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdError {
    /// Opcode of the refused command.
    pub opcode: u8,
    /// Why.
    pub reason: &'static str,
}

impl CmdError {
    /// CMDQ_CONS.ERR value for an illegal command [SMMUv3 §7.1].
    pub const CERROR_ILL: u8 = 1;
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CERROR_ILL on opcode {:#04x}: {}",
            self.opcode, self.reason
        )
    }
}

impl std::error::Error for CmdError {}

/// What the model counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelStats {
    /// Commands executed (refused ones not counted).
    pub commands: u64,
    /// TLBI_* commands among them.
    pub tlbi_commands: u64,
    /// CMD_SYNCs among them.
    pub syncs: u64,
    /// CFGI_* commands among them.
    pub cfgi_commands: u64,
    /// Translations asked for (including bypassed ones).
    pub translations: u64,
    /// Translations with SMMUEN == 0 (passed through untranslated).
    pub bypassed: u64,
    /// Translations answered by the IOTLB.
    pub iotlb_hits: u64,
    /// Translations that missed the IOTLB (each one walks).
    pub iotlb_misses: u64,
    /// Table walks done for translations.
    pub walks: u64,
    /// Walks that started from a walk-cache entry.
    pub walk_cache_hits: u64,
    /// IOTLB entries evicted for capacity.
    pub iotlb_evictions: u64,
    /// STEs read from memory.
    pub ste_fetches: u64,
    /// CDs read from memory.
    pub cd_fetches: u64,
    /// Translations that faulted (aborts included).
    pub faults: u64,
    /// Translations terminated silently by an abort STE.
    pub aborted: u64,
    /// Event records produced.
    pub events: u64,
    /// Translations whose cached answer differed from what memory says
    /// now (see [`SmmuModel::translate`]).
    pub stale_hits: u64,
}

/// One translation answered from a cache that memory no longer agrees
/// with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleHit {
    /// The stream.
    pub sid: StreamId,
    /// The address the device used.
    pub iova: Iova,
    /// A write.
    pub write: bool,
    /// What the device got (the caches' answer).
    pub cached: Result<PhysAddr, Fault>,
    /// What memory says now.
    pub memory: Result<PhysAddr, Fault>,
}

#[derive(Clone, Copy, Debug)]
struct StreamTable {
    base: u64,
    format: StrtabFormat,
    log2size: u8,
}

/// What a stream's configuration makes of its traffic.
#[derive(Clone, Copy, Debug)]
enum Route {
    Abort,
    Bypass,
    Translate(Context),
}

/// The parts of a legal CD a translation uses.
#[derive(Clone, Copy, Debug)]
struct Context {
    asid: Asid,
    params: WalkParams,
    epd0: bool,
    record: bool,
}

#[derive(Clone, Copy, Debug, Default)]
enum TlbStep {
    #[default]
    NotReached,
    Hit(usize),
    Miss {
        walk_hit: Option<usize>,
        fill: Option<TlbEntry>,
        walk_fill: Option<WalkEntry>,
    },
}

/// What one resolution read and would put in the caches.
#[derive(Clone, Copy, Debug, Default)]
struct Trace {
    ste_fetched: bool,
    cd_fetched: bool,
    fill_l1: Option<(u32, L1Desc)>,
    fill_ste: Option<(u32, Ste)>,
    fill_cd: Option<(u32, Cd)>,
    tlb: TlbStep,
    record: bool,
}

/// A software SMMUv3 (stage 1 only, 4 KiB granule, one CD per stream) with
/// real configuration and translation caches.
#[derive(Clone, Debug)]
pub struct SmmuModel {
    cfg: ModelConfig,
    enabled: bool,
    strtab: Option<StreamTable>,
    l1: HashMap<u32, L1Desc>,
    stes: HashMap<u32, Ste>,
    cds: HashMap<u32, Cd>,
    tlb: TlbCaches,
    events: Vec<[u64; EVT_DWORDS]>,
    stale: Vec<StaleHit>,
    stats: ModelStats,
}

impl SmmuModel {
    /// A disabled SMMU (SMMUEN == 0: traffic bypasses) with empty caches
    /// and no stream table.
    pub fn new(cfg: ModelConfig) -> Self {
        Self {
            cfg,
            enabled: false,
            strtab: None,
            l1: HashMap::new(),
            stes: HashMap::new(),
            cds: HashMap::new(),
            tlb: TlbCaches::new(cfg.iotlb_capacity),
            events: Vec::new(),
            stale: Vec::new(),
            stats: ModelStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> ModelConfig {
        self.cfg
    }

    /// SMMU_STRTAB_BASE and SMMU_STRTAB_BASE_CFG. The base is aligned down
    /// as the SMMU does (to the linear table's size, or to the larger of 64
    /// bytes and the level-1 table's size). Caches are kept: software must
    /// issue CFGI_ALL, as after any structure change.
    pub fn set_stream_table(&mut self, base: PhysAddr, format: StrtabFormat, log2size: u8) {
        let log2size = log2size.min(32);
        let bytes: u64 = match format {
            StrtabFormat::Linear => STE_BYTES << log2size,
            StrtabFormat::TwoLevel(split) => 8 * u64::from(split.l1_entries(log2size)),
        };
        let align = bytes.max(64).next_power_of_two();
        self.strtab = Some(StreamTable {
            base: base.get() & !(align - 1) & ((1 << 56) - 1),
            format,
            log2size,
        });
    }

    /// SMMU_CR0.SMMUEN. While off, every transaction bypasses (GBPA.ABORT
    /// == 0, QEMU's reset state). Caches survive either way.
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
    }

    /// Whether SMMUEN is set.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The counters.
    pub fn stats(&self) -> ModelStats {
        self.stats
    }

    /// Takes the event records produced so far, oldest first.
    pub fn take_events(&mut self) -> Vec<[u64; EVT_DWORDS]> {
        std::mem::take(&mut self.events)
    }

    /// Takes the stale translations seen so far, oldest first.
    pub fn take_stale(&mut self) -> Vec<StaleHit> {
        std::mem::take(&mut self.stale)
    }

    /// IOTLB entries tagged with `asid`.
    pub fn cached_translations(&self, asid: Asid) -> usize {
        self.tlb.iotlb.count(|e| e.asid == asid)
    }

    /// Walk-cache entries (level-3 table pointers) tagged with `asid`.
    pub fn cached_walks(&self, asid: Asid) -> usize {
        self.tlb.walk.count(|e| e.asid == asid)
    }

    /// The STE cached for `sid`, if any.
    pub fn cached_ste(&self, sid: StreamId) -> Option<Ste> {
        self.stes.get(&sid.0).copied()
    }

    /// The CD cached for `sid`, if any.
    pub fn cached_cd(&self, sid: StreamId) -> Option<Cd> {
        self.cds.get(&sid.0).copied()
    }

    // -----------------------------------------------------------------
    // Translation.

    /// Translates one device access. Uses and fills the caches, records an
    /// event for a recorded fault and counts everything.
    ///
    /// Then checks the answer against memory: a fresh lookup that reads the
    /// STE, CD and tables without any cache. If the two disagree about
    /// whether and where the access reaches memory, `stale_hits` counts it
    /// and a [`StaleHit`] is kept, and the cached (stale) answer is still
    /// what is returned — that is what the device gets. Two different
    /// faults are not a disagreement.
    pub fn translate(
        &mut self,
        mem: &dyn PhysMem,
        sid: StreamId,
        iova: Iova,
        write: bool,
    ) -> Result<PhysAddr, Fault> {
        self.stats.translations += 1;
        if !self.enabled {
            self.stats.bypassed += 1;
            return Ok(PhysAddr::new(iova.get()));
        }
        let mut tr = Trace::default();
        let got = self.resolve(mem, sid, iova, write, true, &mut tr);
        self.apply(&tr);
        let memory = self.resolve(mem, sid, iova, write, false, &mut Trace::default());
        if got.ok() != memory.ok() {
            self.stats.stale_hits += 1;
            self.stale.push(StaleHit {
                sid,
                iova,
                write,
                cached: got,
                memory,
            });
        }
        if let Err(f) = got {
            self.record_fault(sid, iova, write, f, tr.record);
        }
        got
    }

    /// What a device read at `iova` would reach right now, from the caches
    /// where they hold something and memory where they do not, without
    /// filling caches, counting or recording anything.
    pub fn would_translate(
        &self,
        mem: &dyn PhysMem,
        sid: StreamId,
        iova: Iova,
    ) -> Option<PhysAddr> {
        self.would_access(mem, sid, iova, false).ok()
    }

    /// [`SmmuModel::would_translate`] for a read or a write, with the fault.
    pub fn would_access(
        &self,
        mem: &dyn PhysMem,
        sid: StreamId,
        iova: Iova,
        write: bool,
    ) -> Result<PhysAddr, Fault> {
        if !self.enabled {
            return Ok(PhysAddr::new(iova.get()));
        }
        self.resolve(mem, sid, iova, write, true, &mut Trace::default())
    }

    /// A device writes `data` from `iova`, one translation per 4 KiB page
    /// touched. Stops at the first fault (pages before it are written) and
    /// records one event for it, not one per 4 bytes as QEMU does. A range
    /// that wraps past 2^64 faults there, unrecorded.
    pub fn dma_write(
        &mut self,
        mem: &mut dyn PhysMem,
        sid: StreamId,
        iova: Iova,
        data: &[u8],
    ) -> Result<(), Fault> {
        let mut off = 0;
        while off < data.len() {
            let (va, n) = chunk(iova, off, data.len())?;
            let pa = self.translate(&*mem, sid, va, true)?;
            mem.write_bytes(pa, &data[off..off + n]);
            off += n;
        }
        Ok(())
    }

    /// A device reads into `out` from `iova`, page by page as
    /// [`SmmuModel::dma_write`] writes.
    pub fn dma_read(
        &mut self,
        mem: &dyn PhysMem,
        sid: StreamId,
        iova: Iova,
        out: &mut [u8],
    ) -> Result<(), Fault> {
        let mut off = 0;
        while off < out.len() {
            let (va, n) = chunk(iova, off, out.len())?;
            let pa = self.translate(mem, sid, va, false)?;
            mem.read_bytes(pa, &mut out[off..off + n]);
            off += n;
        }
        Ok(())
    }

    /// Resolves one access. With `cached`, looks in the caches first and
    /// notes in `tr` what to fill; without, reads memory only.
    fn resolve(
        &self,
        mem: &dyn PhysMem,
        sid: StreamId,
        iova: Iova,
        write: bool,
        cached: bool,
        tr: &mut Trace,
    ) -> Result<PhysAddr, Fault> {
        let ctx = match self.route(mem, sid, cached, tr)? {
            Route::Abort => return Err(Fault::Abort),
            Route::Bypass => return Ok(PhysAddr::new(iova.get())),
            Route::Translate(ctx) => ctx,
        };
        tr.record = ctx.record;
        let va = iova.get();
        if ctx.epd0 {
            return Err(Fault::Translation {
                level: ctx.params.start_level(),
            });
        }
        let asid = ctx.asid;
        if cached && let Some(i) = self.tlb.iotlb.find(|e| e.asid == asid && e.covers(va)) {
            tr.tlb = TlbStep::Hit(i);
            let e = self.tlb.iotlb.get(i);
            if write && !e.writable {
                return Err(Fault::Permission { level: e.level });
            }
            return Ok(PhysAddr::new(e.pa_base + (va - e.va_base)));
        }
        let region = va >> WALK_REGION_SHIFT;
        let walk_hit = if cached {
            self.tlb.walk.find(|e| e.asid == asid && e.region == region)
        } else {
            None
        };
        tr.tlb = TlbStep::Miss {
            walk_hit,
            fill: None,
            walk_fill: None,
        };
        let start = match walk_hit {
            Some(i) => {
                let w = self.tlb.walk.get(i);
                Start::Level3 {
                    table: w.table,
                    read_only: w.read_only,
                }
            }
            None => Start::Root,
        };
        let leaf = walk(mem, &ctx.params, va, start).map_err(Fault::from_walk)?;
        if write && !leaf.writable {
            return Err(Fault::Permission { level: leaf.level });
        }
        if cached {
            tr.tlb = TlbStep::Miss {
                walk_hit,
                fill: Some(TlbEntry {
                    asid,
                    va_base: leaf.va_base,
                    level: leaf.level,
                    shift: level_shift(leaf.level),
                    pa_base: leaf.pa_base,
                    writable: leaf.writable,
                }),
                walk_fill: match (walk_hit, leaf.l3_table) {
                    (None, Some((table, read_only))) => Some(WalkEntry {
                        asid,
                        region,
                        table,
                        read_only,
                    }),
                    _ => None,
                },
            };
        }
        Ok(PhysAddr::new(leaf.pa_base + (va - leaf.va_base)))
    }

    /// The stream's configuration: STE (through the L1STD for a two-level
    /// table), then its CD.
    fn route(
        &self,
        mem: &dyn PhysMem,
        sid: StreamId,
        cached: bool,
        tr: &mut Trace,
    ) -> Result<Route, Fault> {
        let ste = self.stream_entry(mem, sid, cached, tr)?;
        match ste.config {
            StreamConfig::Abort => return Ok(Route::Abort),
            StreamConfig::Bypass => return Ok(Route::Bypass),
            StreamConfig::S1Translate => {}
            // Filtered out by `stream_entry`.
            _ => return Err(Fault::BadSte),
        }
        let cd = match self.cds.get(&sid.0) {
            Some(cd) if cached => *cd,
            _ => {
                let mut w = [0; CD_DWORDS];
                mem.read_words(ste.cd_ptr, &mut w);
                tr.cd_fetched = true;
                let cd = Cd::decode(&w);
                self.context(&cd).ok_or(Fault::BadCd)?;
                if cached {
                    tr.fill_cd = Some((sid.0, cd));
                }
                cd
            }
        };
        self.context(&cd).map(Route::Translate).ok_or(Fault::BadCd)
    }

    /// The STE for `sid`, checked legal for this SMMU.
    fn stream_entry(
        &self,
        mem: &dyn PhysMem,
        sid: StreamId,
        cached: bool,
        tr: &mut Trace,
    ) -> Result<Ste, Fault> {
        if cached && let Some(s) = self.stes.get(&sid.0) {
            return Ok(*s);
        }
        let st = self.strtab.ok_or(Fault::BadStreamId)?;
        let bits = u32::from(st.log2size.min(self.cfg.sid_bits));
        if bits < 32 && sid.0 >> bits != 0 {
            return Err(Fault::BadStreamId);
        }
        let addr = match st.format {
            StrtabFormat::Linear => st.base + STE_BYTES * u64::from(sid.0),
            StrtabFormat::TwoLevel(split) => {
                let (l1i, l2i) = split.sid_index(sid);
                let desc = match self.l1.get(&l1i) {
                    Some(d) if cached => *d,
                    _ => {
                        let raw = mem.read_u64(PhysAddr::new(st.base + 8 * u64::from(l1i)));
                        let d = L1Desc::decode(raw).ok_or(Fault::BadSte)?;
                        if cached {
                            tr.fill_l1 = Some((l1i, d));
                        }
                        d
                    }
                };
                if l2i >= desc.l2_entries() {
                    return Err(Fault::BadSte);
                }
                // The SMMU ignores L2Ptr[5+Span-1:0] [SMMUv3 §5.1].
                let l2 = desc.l2.get() & !((STE_BYTES << (desc.span - 1)) - 1);
                l2 + STE_BYTES * u64::from(l2i)
            }
        };
        let mut w = [0; STE_DWORDS];
        mem.read_words(PhysAddr::new(addr), &mut w);
        tr.ste_fetched = true;
        let ste = Ste::decode(&w);
        let legal = match ste.config {
            StreamConfig::Invalid => false,
            StreamConfig::Abort | StreamConfig::Bypass => true,
            // One CD per stream: SSIDSIZE == 0 makes S1CDMax > 0 ILLEGAL.
            StreamConfig::S1Translate => ste.s1_cd_max == 0,
            // No stage 2 in the model (QEMU 7.2).
            StreamConfig::S2Translate | StreamConfig::Nested => false,
        };
        if !legal {
            return Err(Fault::BadSte);
        }
        if cached {
            tr.fill_ste = Some((sid.0, ste));
        }
        Ok(ste)
    }

    /// The translation context of a CD, or `None` when the CD is invalid or
    /// ILLEGAL here: V == 0, not AArch64, a granule other than 4 KiB,
    /// big-endian walks, HA/HD (no HTTU), stall (S == 1), A == 0 (QEMU
    /// terminates with abort only), a Reserved IPS, or T0SZ outside 16..=48.
    fn context(&self, cd: &Cd) -> Option<Context> {
        let legal = cd.valid
            && cd.aa64
            && u64::from(cd.tg0) == tg0::GRANULE_4K
            && !cd.endi
            && !cd.ha
            && !cd.hd
            && !cd.s
            && cd.a
            && (16..=48).contains(&cd.t0sz);
        let ips = cd.ips_bits?;
        if !legal {
            return None;
        }
        let asid = if self.cfg.asid16 {
            cd.asid
        } else {
            Asid(cd.asid.0 & 0xff)
        };
        Some(Context {
            asid,
            params: WalkParams {
                ttb: cd.ttb0,
                input_bits: cd.input_bits(),
                oas_bits: ips.min(self.cfg.oas_bits),
                affd: cd.affd,
            },
            epd0: cd.epd0,
            record: cd.r,
        })
    }

    /// Puts what a resolution read into the caches and counters.
    fn apply(&mut self, tr: &Trace) {
        self.stats.ste_fetches += u64::from(tr.ste_fetched);
        self.stats.cd_fetches += u64::from(tr.cd_fetched);
        if let Some((i, d)) = tr.fill_l1 {
            self.l1.insert(i, d);
        }
        if let Some((s, ste)) = tr.fill_ste {
            self.stes.insert(s, ste);
        }
        if let Some((s, cd)) = tr.fill_cd {
            self.cds.insert(s, cd);
        }
        match tr.tlb {
            TlbStep::NotReached => {}
            TlbStep::Hit(i) => {
                self.stats.iotlb_hits += 1;
                self.tlb.iotlb.touch(i);
            }
            TlbStep::Miss {
                walk_hit,
                fill,
                walk_fill,
            } => {
                self.stats.iotlb_misses += 1;
                self.stats.walks += 1;
                // Touch before inserting: insertion may move entries.
                if let Some(i) = walk_hit {
                    self.stats.walk_cache_hits += 1;
                    self.tlb.walk.touch(i);
                }
                if let Some(e) = fill
                    && self.tlb.iotlb.insert(e)
                {
                    self.stats.iotlb_evictions += 1;
                }
                if let Some(w) = walk_fill {
                    self.tlb.walk.insert(w);
                }
            }
        }
    }

    fn record_fault(&mut self, sid: StreamId, iova: Iova, write: bool, f: Fault, record: bool) {
        self.stats.faults += 1;
        let Some(kind) = f.event_kind() else {
            self.stats.aborted += 1;
            return;
        };
        let event = if kind.is_translation_fault() {
            // CD.R == 0 suppresses the record of a translation-related fault.
            if !record {
                return;
            }
            Event::translation_fault(kind, sid, iova, !write)
        } else {
            Event {
                kind,
                sid,
                ssid: None,
                stag: 0,
                stall: false,
                pnu: false,
                ind: false,
                rnw: false,
                s2: false,
                class: FaultClass::Cd,
                input_addr: 0,
                addr2: 0,
            }
        };
        self.events.push(event.encode());
        self.stats.events += 1;
    }

    // -----------------------------------------------------------------
    // Commands.

    /// Executes one command, synchronously (as QEMU does inside the
    /// CMDQ_PROD write). A refused command changes nothing; the caller
    /// treats it as CMDQ_ERR.
    pub fn command(&mut self, mem: &dyn PhysMem, cmd: [u64; 2]) -> Result<(), CmdError> {
        let op = (cmd[0] & 0xff) as u8;
        let ill = |reason: &'static str| CmdError { opcode: op, reason };
        let decoded = match Command::decode(cmd) {
            // TLBI_NH_VAA has TLBI_NH_VA's layout with ASID ignored.
            Command::Other {
                opcode: opcode::TLBI_NH_VAA,
                raw,
            } => Command::decode([(raw[0] & !0xff) | u64::from(opcode::TLBI_NH_VA), raw[1]]),
            c => c,
        };
        decoded.check().map_err(|e| {
            ill(match e {
                smmuv3::Error::BadAddress(s)
                | smmuv3::Error::OutOfRange(s)
                | smmuv3::Error::Reserved(s) => s,
            })
        })?;
        let sid_ok = |sid: StreamId| self.cfg.sid_bits >= 32 || sid.0 >> self.cfg.sid_bits == 0;
        let asid_ok = |asid: Asid| self.cfg.asid16 || asid.0 <= 0xff;
        match decoded {
            Command::PrefetchConfig { sid, .. } => {
                if !sid_ok(sid) {
                    return Err(ill("StreamID beyond IDR1.SIDSIZE"));
                }
                self.prefetch_config(mem, sid);
            }
            Command::CfgiSte { sid, leaf } => {
                if !sid_ok(sid) {
                    return Err(ill("StreamID beyond IDR1.SIDSIZE"));
                }
                self.stats.cfgi_commands += 1;
                // The STE, and every CD cached through it [SMMUv3 §4.3.1].
                self.stes.remove(&sid.0);
                self.cds.remove(&sid.0);
                if !leaf && let Some(StrtabFormat::TwoLevel(split)) = self.strtab.map(|s| s.format)
                {
                    self.l1.remove(&split.sid_index(sid).0);
                }
            }
            Command::CfgiSteRange { sid, range } => {
                self.stats.cfgi_commands += 1;
                let span = 1u64 << (u32::from(range) + 1);
                let lo = u64::from(sid.0) & !(span - 1);
                let hi = lo + span - 1;
                let inside = |s: &u32| (lo..=hi).contains(&u64::from(*s));
                self.stes.retain(|s, _| !inside(s));
                self.cds.retain(|s, _| !inside(s));
                if let Some(StrtabFormat::TwoLevel(split)) = self.strtab.map(|s| s.format) {
                    let b = split.bits();
                    self.l1
                        .retain(|i, _| !((lo >> b)..=(hi >> b)).contains(&u64::from(*i)));
                }
            }
            Command::CfgiAll => {
                self.stats.cfgi_commands += 1;
                self.l1.clear();
                self.stes.clear();
                self.cds.clear();
            }
            Command::CfgiCd { sid, ssid, .. } => {
                if !sid_ok(sid) {
                    return Err(ill("StreamID beyond IDR1.SIDSIZE"));
                }
                self.stats.cfgi_commands += 1;
                // SSIDSIZE == 0: a non-zero SubstreamID is out of range and
                // (CONSTRAINED UNPREDICTABLE) has no effect here.
                if ssid == 0 {
                    self.cds.remove(&sid.0);
                }
            }
            Command::CfgiCdAll { sid } => {
                if !sid_ok(sid) {
                    return Err(ill("StreamID beyond IDR1.SIDSIZE"));
                }
                self.stats.cfgi_commands += 1;
                self.cds.remove(&sid.0);
            }
            Command::TlbiNhAll { .. } | Command::TlbiNsnhAll => {
                self.stats.tlbi_commands += 1;
                self.tlb.invalidate_all();
            }
            Command::TlbiNhAsid { asid, .. } => {
                if !asid_ok(asid) {
                    return Err(ill("ASID beyond 8 bits (IDR0.ASID16 == 0)"));
                }
                self.stats.tlbi_commands += 1;
                self.tlb.invalidate_asid(asid);
            }
            Command::TlbiNhVa(t) => {
                let all_asids = op == opcode::TLBI_NH_VAA;
                if !all_asids && !asid_ok(t.asid) {
                    return Err(ill("ASID beyond 8 bits (IDR0.ASID16 == 0)"));
                }
                if t.tg.is_some() && !self.cfg.ril {
                    return Err(ill("TLBI TG/TTL/NUM/SCALE without IDR3.RIL"));
                }
                self.stats.tlbi_commands += 1;
                let (start, end) = tlbi_span(&t);
                let asid = if all_asids { None } else { Some(t.asid) };
                self.tlb.invalidate_va(asid, start, end, t.leaf);
            }
            Command::Sync(_) => self.stats.syncs += 1,
            Command::Other {
                opcode: opcode::PREFETCH_ADDR,
                ..
            } => {}
            Command::TlbiEl2All => return Err(ill("CMD_TLBI_EL2_ALL without IDR0.Hyp")),
            Command::Other { .. } => return Err(ill("unknown or unsupported opcode")),
        }
        self.stats.commands += 1;
        Ok(())
    }

    /// CMD_PREFETCH_CONFIG: loads the stream's STE and CD into the caches
    /// (a fault is not recorded: prefetch is a hint).
    fn prefetch_config(&mut self, mem: &dyn PhysMem, sid: StreamId) {
        let mut tr = Trace::default();
        let _ = self.route(mem, sid, true, &mut tr);
        self.apply(&tr);
    }
}

/// The input-address range a TLBI_NH_VA covers: `(NUM+1) << SCALE`
/// granules from Address with TG, else the entries containing Address.
/// The TTL hint is ignored: every entry overlapping the range goes, at any
/// level (conservative: a wrong hint is not caught).
fn tlbi_span(t: &TlbiVa) -> (u64, u64) {
    let start = t.addr.get();
    match t.tg {
        Some(_) => (start, start.saturating_add(t.bytes())),
        None => (start, start.saturating_add(1)),
    }
}

/// The next page-bounded piece of a DMA: its IOVA and length.
fn chunk(iova: Iova, off: usize, len: usize) -> Result<(Iova, usize), Fault> {
    let va = iova
        .checked_add(off as u64)
        .ok_or(Fault::Translation { level: 0 })?;
    let room = (PAGE_SIZE - va.page_offset()) as usize;
    Ok((va, room.min(len - off)))
}
