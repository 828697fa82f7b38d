//! The Stream table in SMMU memory: its shape chosen from the ID registers
//! (linear when every StreamID fits a small table, else two-level with
//! 256-STE level-2 tables allocated when a stream is first attached), and
//! the address of each StreamID's STE. Every STE it creates is abort. It
//! never issues commands: the server invalidates after each change.

use abi::{PAGE_SIZE, PhysAddr, StreamId};
use smmuv3::idr::{Features, StLevels};
use smmuv3::regs::{StrtabCfg, StrtabFormat};
use smmuv3::ste::{self, L1Desc, STE_BYTES, STE_DWORDS, Split};

use super::hw::SmmuHw;

/// Largest StreamID width given a linear table (2^8 STEs = 16 KiB).
const LINEAR_MAX_BITS: u8 = 8;
/// Largest StreamID width when only linear tables exist (256 KiB).
const LINEAR_ONLY_MAX_BITS: u8 = 12;
/// Largest StreamID width of a two-level table (64 KiB of L1 descriptors).
const TWO_LEVEL_MAX_BITS: u8 = 21;
/// Level-2 split: one PCI bus per 16 KiB level-2 table.
const SPLIT: Split = Split::Bits8;

/// Why the stream table could not do something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StrtabError {
    /// No memory for a table.
    NoMemory,
    /// The StreamID is beyond the table.
    OutOfRange,
}

pub(crate) struct StreamTable {
    base: PhysAddr,
    base_pages: usize,
    cfg: StrtabCfg,
    /// Level-1 index -> level-2 table (two-level only).
    l2: hashbrown::HashMap<u32, PhysAddr>,
}

fn pages_for(bytes: u64) -> usize {
    bytes.div_ceil(PAGE_SIZE).max(1) as usize
}

/// Writes abort STEs over `count` entries at `at`.
fn fill_abort<H: SmmuHw>(hw: &mut H, at: PhysAddr, count: u64) {
    let abort = ste::abort();
    for i in 0..count {
        let e = at.get() + i * STE_BYTES;
        for (w, v) in abort.iter().enumerate() {
            if *v != 0 {
                hw.write_u64(PhysAddr::new(e + 8 * w as u64), *v);
            }
        }
    }
}

impl StreamTable {
    pub(crate) fn new<H: SmmuHw>(hw: &mut H, f: &Features) -> Result<Self, StrtabError> {
        let two_level = f.st_levels == StLevels::TwoLevel && f.sid_bits > LINEAR_MAX_BITS;
        let cfg = if two_level {
            StrtabCfg {
                format: StrtabFormat::TwoLevel(SPLIT),
                log2size: f.sid_bits.min(TWO_LEVEL_MAX_BITS),
            }
        } else {
            StrtabCfg {
                format: StrtabFormat::Linear,
                log2size: f.sid_bits.min(LINEAR_ONLY_MAX_BITS),
            }
        };
        let base_pages = pages_for(cfg.base_table_bytes());
        let base = hw.alloc_pages(base_pages).ok_or(StrtabError::NoMemory)?;
        if !two_level {
            fill_abort(hw, base, 1 << cfg.log2size);
        }
        // Two-level: every L1 descriptor stays 0 (Span 0: no STE, traffic
        // terminated) until a stream under it is attached.
        hw.publish();
        Ok(Self {
            base,
            base_pages,
            cfg,
            l2: hashbrown::HashMap::new(),
        })
    }

    pub(crate) fn base(&self) -> PhysAddr {
        self.base
    }

    pub(crate) fn cfg(&self) -> StrtabCfg {
        self.cfg
    }

    pub(crate) fn covers(&self, sid: StreamId) -> bool {
        u64::from(sid.0) >> self.cfg.log2size == 0
    }

    /// The STE of `sid` if it exists in memory.
    pub(crate) fn ste(&self, sid: StreamId) -> Option<PhysAddr> {
        if !self.covers(sid) {
            return None;
        }
        match self.cfg.format {
            StrtabFormat::Linear => Some(PhysAddr::new(
                self.base.get() + u64::from(sid.0) * STE_BYTES,
            )),
            StrtabFormat::TwoLevel(split) => {
                let (l1, l2) = split.sid_index(sid);
                let table = self.l2.get(&l1)?;
                Some(PhysAddr::new(table.get() + u64::from(l2) * STE_BYTES))
            }
        }
    }

    /// The STE of `sid`, creating its level-2 table (all abort, linked
    /// after a publish) if needed. The caller invalidates with a non-leaf
    /// CFGI_STE before relying on it.
    pub(crate) fn ensure<H: SmmuHw>(
        &mut self,
        hw: &mut H,
        sid: StreamId,
    ) -> Result<PhysAddr, StrtabError> {
        if !self.covers(sid) {
            return Err(StrtabError::OutOfRange);
        }
        if let Some(a) = self.ste(sid) {
            return Ok(a);
        }
        let StrtabFormat::TwoLevel(split) = self.cfg.format else {
            return Err(StrtabError::OutOfRange);
        };
        let (l1, _) = split.sid_index(sid);
        // Room to record the table first: a refusal changes nothing.
        self.l2.try_reserve(1).map_err(|_| StrtabError::NoMemory)?;
        let pages = pages_for(split.l2_bytes());
        let table = hw.alloc_pages(pages).ok_or(StrtabError::NoMemory)?;
        let Ok(desc) = L1Desc::full(table, split).encode() else {
            hw.free_pages(table, pages);
            return Err(StrtabError::NoMemory);
        };
        fill_abort(hw, table, u64::from(split.l2_entries()));
        hw.publish();
        hw.write_u64(PhysAddr::new(self.base.get() + 8 * u64::from(l1)), desc);
        hw.publish();
        self.l2.insert(l1, table);
        self.ste(sid).ok_or(StrtabError::OutOfRange)
    }

    /// Pages the table occupies (base plus level-2 tables).
    pub(crate) fn pages(&self) -> usize {
        let l2 = match self.cfg.format {
            StrtabFormat::TwoLevel(split) => pages_for(split.l2_bytes()),
            StrtabFormat::Linear => 0,
        };
        self.base_pages + self.l2.len() * l2
    }
}

/// Words 1.. of an STE, then word 0 (V, Config, S1ContextPtr) in one
/// store: the hitless order for leaving abort, whose config ignores words
/// 1.. [SMMUv3 §3.21.3].
pub(crate) fn write_live<H: SmmuHw>(hw: &mut H, at: PhysAddr, words: &[u64; STE_DWORDS]) {
    for (i, w) in words.iter().enumerate().skip(1) {
        hw.write_u64(PhysAddr::new(at.get() + 8 * i as u64), *w);
    }
    hw.publish();
    hw.write_u64(at, words[0]);
    hw.publish();
}

/// Word 0 := abort in one store: the hitless first step of going back to
/// abort. The other words are ignored from then on and are cleared by
/// [`clear_tail`] after the CFGI_STE's sync.
pub(crate) fn write_abort<H: SmmuHw>(hw: &mut H, at: PhysAddr) {
    hw.write_u64(at, ste::abort()[0]);
    hw.publish();
}

/// Word 0 := `word0` in one store (the hitless switch between two valid
/// configurations whose other words both serve).
pub(crate) fn write_word0<H: SmmuHw>(hw: &mut H, at: PhysAddr, word0: u64) {
    hw.write_u64(at, word0);
    hw.publish();
}

/// Words 1.. := `words[1..]` (after a word-0 switch whose config ignores
/// the fields that change, and the sync that made the SMMU forget the old
/// one).
pub(crate) fn write_tail<H: SmmuHw>(hw: &mut H, at: PhysAddr, words: &[u64; STE_DWORDS]) {
    for (i, w) in words.iter().enumerate().skip(1) {
        hw.write_u64(PhysAddr::new(at.get() + 8 * i as u64), *w);
    }
    hw.publish();
}

/// Clears words 1.. of an abort STE (after the sync that made the SMMU
/// forget the old configuration).
pub(crate) fn clear_tail<H: SmmuHw>(hw: &mut H, at: PhysAddr) {
    for i in 1..STE_DWORDS as u64 {
        hw.write_u64(PhysAddr::new(at.get() + 8 * i), 0);
    }
    hw.publish();
}
