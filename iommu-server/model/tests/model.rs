//! The model against hand-built STEs, CDs and page tables: translation,
//! the caches' staleness until the right invalidation, faults and their
//! event records, and command checking.

use abi::{Asid, Iova, PhysAddr, StreamId};
use smmu_model::{
    CmdError, Fault, ModelConfig, PhysMem, SmmuModel, SparseMem, Split, StrtabFormat,
};
use smmuv3::cd::{self, CdConfig};
use smmuv3::cmd::{Command, Granule, LeafLevel, Sync, TlbiRange, TlbiVa};
use smmuv3::evt::{Event, EventKind};
use smmuv3::idr::Features;
use smmuv3::ste::{self, L1Desc, SteOptions};

const STRTAB: u64 = 0x1000_0000;
const CD_ADDR: u64 = 0x1001_0000;
const TTB: u64 = 0x1002_0000;
const TABLES: u64 = 0x1100_0000;
const SID: StreamId = StreamId(8);
const ASID: Asid = Asid(5);

const VALID_TABLE: u64 = 0b11;
const AF: u64 = 1 << 10;
const AP_RO: u64 = 1 << 7;
const AP_EL0: u64 = 1 << 6;

fn features() -> Features {
    Features::decode([0x0d40_101a, 0x0273_0010, 0, 0x1404, 0, 0x74], 1).unwrap()
}

fn page_desc(pa: u64, writable: bool) -> u64 {
    pa | VALID_TABLE | AF | AP_EL0 | if writable { 0 } else { AP_RO }
}

struct Rig {
    mem: SparseMem,
    smmu: SmmuModel,
    next_table: u64,
}

impl Rig {
    /// SID 8 translating through a 48-bit CD with ASID 5, in a linear
    /// 256-entry stream table, SMMU enabled.
    fn new() -> Self {
        Self::with_config(ModelConfig::from_features(&features()))
    }

    fn with_config(cfg: ModelConfig) -> Self {
        let f = features();
        let mut mem = SparseMem::new();
        let ste = ste::s1_translate(PhysAddr::new(CD_ADDR), SteOptions::for_pcie(&f)).unwrap();
        mem.write_words(ste_addr(SID), &ste);
        let cd = cd::build(&cd_config(ASID, TTB), &f).unwrap();
        mem.write_words(PhysAddr::new(CD_ADDR), &cd);
        let mut smmu = SmmuModel::new(cfg);
        smmu.set_stream_table(PhysAddr::new(STRTAB), StrtabFormat::Linear, 8);
        smmu.set_enabled(true);
        Self {
            mem,
            smmu,
            next_table: TABLES,
        }
    }

    /// The address of the descriptor for `iova` at `level`, creating the
    /// tables above it from TTB.
    fn desc_addr(&mut self, iova: u64, level: u8) -> PhysAddr {
        let mut table = TTB;
        for l in 0..level {
            let idx = (iova >> (39 - 9 * u32::from(l))) & 511;
            let a = PhysAddr::new(table + 8 * idx);
            let d = self.mem.read_u64(a);
            table = if d & 1 == 0 {
                let t = self.next_table;
                self.next_table += 0x1000;
                self.mem.write_u64(a, t | VALID_TABLE);
                t
            } else {
                d & 0x0000_ffff_ffff_f000
            };
        }
        let idx = (iova >> (39 - 9 * u32::from(level))) & 511;
        PhysAddr::new(table + 8 * idx)
    }

    fn map(&mut self, iova: u64, pa: u64, writable: bool) {
        let a = self.desc_addr(iova, 3);
        self.mem.write_u64(a, page_desc(pa, writable));
    }

    fn cmd(&mut self, c: Command) {
        self.smmu.command(&self.mem, c.encode()).unwrap();
    }

    fn sync(&mut self) {
        self.cmd(Command::Sync(Sync::polled()));
    }

    fn tlbi_page(&mut self, iova: u64, leaf: bool) {
        self.cmd(Command::TlbiNhVa(TlbiVa::page(
            ASID,
            Iova::new(iova),
            leaf,
            true,
        )));
    }

    fn tr(&mut self, iova: u64, write: bool) -> Result<PhysAddr, Fault> {
        self.smmu.translate(&self.mem, SID, Iova::new(iova), write)
    }

    fn events(&mut self) -> Vec<Event> {
        self.smmu.take_events().iter().map(Event::decode).collect()
    }
}

fn ste_addr(sid: StreamId) -> PhysAddr {
    PhysAddr::new(STRTAB + 64 * u64::from(sid.0))
}

fn cd_config(asid: Asid, ttb: u64) -> CdConfig {
    CdConfig {
        asid,
        ttb0: PhysAddr::new(ttb),
        mair: 0x0000_0000_0004_ff44,
        input_bits: 48,
        affd: false,
    }
}

#[test]
fn hand_built_tables_translate_and_fill_the_iotlb() {
    let mut r = Rig::new();
    r.map(0x1234_5000, 0x8000_0000, true);
    assert_eq!(r.tr(0x1234_5678, false), Ok(PhysAddr::new(0x8000_0678)));
    let s = r.smmu.stats();
    assert_eq!((s.ste_fetches, s.cd_fetches), (1, 1));
    assert_eq!((s.iotlb_misses, s.walks, s.iotlb_hits), (1, 1, 0));
    assert_eq!(r.smmu.cached_translations(ASID), 1);
    assert_eq!(r.smmu.cached_walks(ASID), 1);
    assert_eq!(r.tr(0x1234_5000, true), Ok(PhysAddr::new(0x8000_0000)));
    let s = r.smmu.stats();
    assert_eq!((s.ste_fetches, s.cd_fetches), (1, 1));
    assert_eq!((s.iotlb_hits, s.walks, s.stale_hits), (1, 1, 0));
    assert!(r.events().is_empty());
}

#[test]
fn retargeted_pte_stays_stale_until_tlbi() {
    let mut r = Rig::new();
    r.map(0x4000, 0x8000_0000, true);
    assert_eq!(r.tr(0x4000, true), Ok(PhysAddr::new(0x8000_0000)));
    // Retarget without invalidation: the device still reaches the old page.
    r.map(0x4000, 0x9000_0000, true);
    assert_eq!(r.tr(0x4010, true), Ok(PhysAddr::new(0x8000_0010)));
    assert_eq!(r.smmu.stats().stale_hits, 1);
    assert_eq!(
        r.smmu.would_translate(&r.mem, SID, Iova::new(0x4000)),
        Some(PhysAddr::new(0x8000_0000))
    );
    let stale = r.smmu.take_stale();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].cached, Ok(PhysAddr::new(0x8000_0010)));
    assert_eq!(stale[0].memory, Ok(PhysAddr::new(0x9000_0010)));
    // TLBI + SYNC: the new PTE is followed.
    r.tlbi_page(0x4000, true);
    r.sync();
    assert_eq!(r.tr(0x4010, true), Ok(PhysAddr::new(0x9000_0010)));
    let s = r.smmu.stats();
    assert_eq!(
        (s.stale_hits, s.tlbi_commands, s.syncs, s.commands),
        (1, 1, 1, 2)
    );
    // Unmapping without TLBI: the device still writes the old page.
    let pte = r.desc_addr(0x4000, 3);
    r.mem.write_u64(pte, 0);
    assert_eq!(r.tr(0x4000, true), Ok(PhysAddr::new(0x9000_0000)));
    assert_eq!(r.smmu.stats().stale_hits, 2);
    assert_eq!(
        r.smmu.take_stale()[0].memory,
        Err(Fault::Translation { level: 3 })
    );
}

#[test]
fn abort_ste_needs_cfgi() {
    let mut r = Rig::new();
    r.map(0x4000, 0x8000_0000, true);
    r.tr(0x4000, false).unwrap();
    r.mem.write_words(ste_addr(SID), &ste::abort());
    // No CFGI: the cached STE keeps translating.
    assert_eq!(r.tr(0x4000, false), Ok(PhysAddr::new(0x8000_0000)));
    assert_eq!(r.smmu.stats().stale_hits, 1);
    r.cmd(Command::CfgiSte {
        sid: SID,
        leaf: true,
    });
    r.sync();
    assert_eq!(r.tr(0x4000, false), Err(Fault::Abort));
    let s = r.smmu.stats();
    assert_eq!(
        (s.aborted, s.faults, s.cfgi_commands, s.stale_hits),
        (1, 1, 1, 1)
    );
    // Silent: no event for an abort STE.
    assert!(r.events().is_empty());
    // And back: attaching again also needs the CFGI (abort is cached).
    let f = features();
    let ste = ste::s1_translate(PhysAddr::new(CD_ADDR), SteOptions::for_pcie(&f)).unwrap();
    r.mem.write_words(ste_addr(SID), &ste);
    assert_eq!(r.tr(0x4000, false), Err(Fault::Abort));
    r.cmd(Command::CfgiSte {
        sid: SID,
        leaf: true,
    });
    assert_eq!(r.tr(0x4000, false), Ok(PhysAddr::new(0x8000_0000)));
}

#[test]
fn cd_change_needs_cfgi_cd() {
    let mut r = Rig::new();
    r.map(0x4000, 0x8000_0000, true);
    r.tr(0x4000, false).unwrap();
    // Point the CD at an empty table under another ASID.
    let cd = cd::build(&cd_config(Asid(6), 0x1003_0000), &features()).unwrap();
    r.mem.write_words(PhysAddr::new(CD_ADDR), &cd);
    assert!(r.tr(0x4000, false).is_ok());
    r.cmd(Command::CfgiCd {
        sid: SID,
        ssid: 0,
        leaf: true,
    });
    assert_eq!(r.tr(0x4000, false), Err(Fault::Translation { level: 0 }));
    assert_eq!(r.smmu.cached_cd(SID).map(|c| c.asid), Some(Asid(6)));
    // An invalid CD: C_BAD_CD, and it is not cached.
    r.mem.write_words(PhysAddr::new(CD_ADDR), &cd::invalid());
    r.cmd(Command::CfgiCdAll { sid: SID });
    assert_eq!(r.tr(0x4000, false), Err(Fault::BadCd));
    assert_eq!(r.smmu.cached_cd(SID), None);
    let kinds: Vec<_> = r.events().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Translation, EventKind::BadCd]);
}

#[test]
fn range_tlbi_invalidates_exactly_the_covered_pages() {
    let mut r = Rig::new();
    let base = 0x20_0000u64;
    for i in 0..8 {
        r.map(base + i * 0x1000, 0x8000_0000 + i * 0x1000, true);
        r.tr(base + i * 0x1000, false).unwrap();
    }
    assert_eq!(r.smmu.cached_translations(ASID), 8);
    for i in 0..8 {
        r.map(base + i * 0x1000, 0x9000_0000 + i * 0x1000, true);
    }
    // Pages 2..6: one range command (NUM = 3, SCALE = 0).
    let cmds: Vec<_> = TlbiRange::new(ASID, Iova::new(base + 0x2000), 4, LeafLevel::L3, true)
        .unwrap()
        .collect();
    assert_eq!(cmds.len(), 1);
    for c in cmds {
        r.cmd(c);
    }
    r.sync();
    assert_eq!(r.smmu.cached_translations(ASID), 4);
    for i in 0..8 {
        let want = if (2..6).contains(&i) {
            0x9000_0000
        } else {
            0x8000_0000
        };
        assert_eq!(
            r.tr(base + i * 0x1000, false),
            Ok(PhysAddr::new(want + i * 0x1000)),
            "page {i}"
        );
    }
    assert_eq!(r.smmu.stats().stale_hits, 4);
    // A range that is not a power of two: 3 pages from page 5 (two commands).
    for c in TlbiRange::new(ASID, Iova::new(base + 0x5000), 3, LeafLevel::L3, true).unwrap() {
        r.cmd(c);
    }
    for i in 5..8 {
        assert_eq!(
            r.tr(base + i * 0x1000, false),
            Ok(PhysAddr::new(0x9000_0000 + i * 0x1000))
        );
    }
    assert_eq!(r.tr(base, false), Ok(PhysAddr::new(0x8000_0000)));
}

#[test]
fn tlbi_asid_and_all_scopes() {
    let mut r = Rig::new();
    r.map(0x4000, 0x8000_0000, true);
    r.tr(0x4000, false).unwrap();
    assert_eq!(r.smmu.cached_translations(ASID), 1);
    r.cmd(Command::TlbiNhAsid {
        vmid: 0,
        asid: Asid(7),
    });
    assert_eq!(r.smmu.cached_translations(ASID), 1);
    r.cmd(Command::TlbiNhAsid {
        vmid: 0,
        asid: ASID,
    });
    assert_eq!(r.smmu.cached_translations(ASID), 0);
    assert_eq!(r.smmu.cached_walks(ASID), 0);
    r.tr(0x4000, false).unwrap();
    r.cmd(Command::TlbiNsnhAll);
    assert_eq!(r.smmu.cached_translations(ASID), 0);
    // An unhinted TLBI by VA drops a 2 MiB block containing the address.
    let l2 = r.desc_addr(0x4000_0000, 2);
    r.mem.write_u64(l2, 0x4000_0000 | 0b01 | AF);
    assert_eq!(r.tr(0x4012_3456, false), Ok(PhysAddr::new(0x4012_3456)));
    assert_eq!(r.smmu.cached_translations(ASID), 1);
    r.cmd(Command::TlbiNhVa(TlbiVa::page(
        ASID,
        Iova::new(0x4010_0000),
        true,
        false,
    )));
    assert_eq!(r.smmu.cached_translations(ASID), 0);
}

#[test]
fn leaf_tlbi_keeps_the_walk_cache_and_non_leaf_drops_it() {
    let mut r = Rig::new();
    let iova = 0x4000_3000u64;
    r.map(iova, 0x8000_0000, true);
    r.tr(iova, false).unwrap();
    assert_eq!(r.smmu.cached_walks(ASID), 1);
    // Unmap the page and free its level-3 table, with only a leaf TLBI.
    let l2 = r.desc_addr(iova, 2);
    let l3_table = r.mem.read_u64(l2) & 0x0000_ffff_ffff_f000;
    let l3 = r.desc_addr(iova, 3);
    r.mem.write_u64(l3, 0);
    r.mem.write_u64(l2, 0);
    r.tlbi_page(iova, true);
    r.sync();
    assert_eq!(r.smmu.cached_translations(ASID), 0);
    assert_eq!(r.smmu.cached_walks(ASID), 1);
    // The freed table page is reused for something else: the SMMU still
    // walks it through the walk cache.
    let reused = PhysAddr::new(l3_table + 8 * ((iova >> 12) & 511));
    r.mem.write_u64(reused, page_desc(0xdead_0000, true));
    assert_eq!(r.tr(iova, true), Ok(PhysAddr::new(0xdead_0000)));
    let s = r.smmu.stats();
    assert_eq!((s.walk_cache_hits, s.stale_hits), (1, 1));
    assert_eq!(
        r.smmu.take_stale()[0].memory,
        Err(Fault::Translation { level: 2 })
    );
    // A non-leaf TLBI drops the walk-cache entry too.
    r.tlbi_page(iova, false);
    r.sync();
    assert_eq!(r.smmu.cached_walks(ASID), 0);
    assert_eq!(r.tr(iova, true), Err(Fault::Translation { level: 2 }));
    assert_eq!(r.smmu.stats().stale_hits, 1);
}

#[test]
fn faults_produce_event_records() {
    let mut r = Rig::new();
    // Unmapped: F_TRANSLATION, a read.
    assert_eq!(
        r.tr(0x7000_0000, false),
        Err(Fault::Translation { level: 0 })
    );
    // AF == 0: F_ACCESS.
    let a = r.desc_addr(0x5000, 3);
    r.mem.write_u64(a, 0x8000_0000 | VALID_TABLE);
    assert_eq!(r.tr(0x5000, true), Err(Fault::Access { level: 3 }));
    // Write to read-only: F_PERMISSION (and a read succeeds).
    r.map(0x6000, 0x8000_1000, false);
    assert_eq!(r.tr(0x6004, false), Ok(PhysAddr::new(0x8000_1004)));
    assert_eq!(r.tr(0x6008, true), Err(Fault::Permission { level: 3 }));
    // Output beyond the 44-bit OAS: F_ADDR_SIZE.
    r.map(0x7000, 1 << 44, true);
    assert_eq!(r.tr(0x7000, false), Err(Fault::AddrSize { level: 3 }));
    // Outside the 48-bit input range.
    assert_eq!(r.tr(1 << 48, false), Err(Fault::Translation { level: 0 }));
    let ev = r.events();
    let got: Vec<_> = ev
        .iter()
        .map(|e| (e.kind, e.sid, e.input_addr, e.rnw))
        .collect();
    assert_eq!(
        got,
        [
            (EventKind::Translation, SID, 0x7000_0000, true),
            (EventKind::Access, SID, 0x5000, false),
            (EventKind::Permission, SID, 0x6008, false),
            (EventKind::AddrSize, SID, 0x7000, true),
            (EventKind::Translation, SID, 1 << 48, true),
        ]
    );
    assert_eq!(ev[0].iova(), Some(Iova::new(0x7000_0000)));
    // Invalid STE: C_BAD_STE; StreamID beyond the table: C_BAD_STREAMID.
    let other = StreamId(9);
    assert_eq!(
        r.smmu.translate(&r.mem, other, Iova::new(0), false),
        Err(Fault::BadSte)
    );
    assert_eq!(
        r.smmu
            .translate(&r.mem, StreamId(0x100), Iova::new(0), false),
        Err(Fault::BadStreamId)
    );
    let got: Vec<_> = r.events().iter().map(|e| (e.kind, e.sid)).collect();
    assert_eq!(
        got,
        [
            (EventKind::BadSte, other),
            (EventKind::BadStreamId, StreamId(0x100))
        ]
    );
    // Faults are not cached: the STE's V == 0 is not either.
    assert_eq!(r.smmu.cached_ste(other), None);
    assert_eq!(r.smmu.stats().faults, 7);
}

#[test]
fn disabled_smmu_and_bypass_ste_pass_through() {
    let mut r = Rig::new();
    r.smmu.set_enabled(false);
    assert_eq!(
        r.smmu
            .translate(&r.mem, StreamId(0x77), Iova::new(0x1234), true),
        Ok(PhysAddr::new(0x1234))
    );
    assert_eq!(r.smmu.stats().bypassed, 1);
    r.smmu.set_enabled(true);
    let f = features();
    r.mem.write_words(
        ste_addr(StreamId(3)),
        &ste::bypass(SteOptions::for_pcie(&f)),
    );
    assert_eq!(
        r.smmu
            .translate(&r.mem, StreamId(3), Iova::new(0x4321), false),
        Ok(PhysAddr::new(0x4321))
    );
}

#[test]
fn two_level_stream_table() {
    let mut r = Rig::new();
    let l1 = 0x2000_0000u64;
    let l2 = 0x2001_0000u64;
    let sid = StreamId(0x318); // bus 3
    r.smmu
        .set_stream_table(PhysAddr::new(l1), StrtabFormat::TwoLevel(Split::Bits8), 16);
    let d = L1Desc::full(PhysAddr::new(l2), Split::Bits8)
        .encode()
        .unwrap();
    r.mem.write_u64(PhysAddr::new(l1 + 8 * 3), d);
    let f = features();
    let s = ste::s1_translate(PhysAddr::new(CD_ADDR), SteOptions::for_pcie(&f)).unwrap();
    r.mem.write_words(PhysAddr::new(l2 + 64 * 0x18), &s);
    r.map(0x4000, 0x8000_0000, true);
    assert_eq!(
        r.smmu.translate(&r.mem, sid, Iova::new(0x4000), false),
        Ok(PhysAddr::new(0x8000_0000))
    );
    // Bus 4 has no level-2 table: C_BAD_STE.
    assert_eq!(
        r.smmu
            .translate(&r.mem, StreamId(0x418), Iova::new(0x4000), false),
        Err(Fault::BadSte)
    );
    // Moving the level-2 table needs a non-leaf CFGI_STE for the L1STD.
    let l2b = 0x2002_0000u64;
    r.mem
        .write_words(PhysAddr::new(l2b + 64 * 0x18), &ste::abort());
    let d = L1Desc::full(PhysAddr::new(l2b), Split::Bits8)
        .encode()
        .unwrap();
    r.mem.write_u64(PhysAddr::new(l1 + 8 * 3), d);
    r.cmd(Command::CfgiSte { sid, leaf: true });
    assert!(
        r.smmu
            .translate(&r.mem, sid, Iova::new(0x4000), false)
            .is_ok()
    );
    r.cmd(Command::CfgiSte { sid, leaf: false });
    assert_eq!(
        r.smmu.translate(&r.mem, sid, Iova::new(0x4000), false),
        Err(Fault::Abort)
    );
}

#[test]
fn dma_goes_page_by_page() {
    let mut r = Rig::new();
    r.map(0x10_0000, 0x8000_0000, true);
    r.map(0x10_1000, 0x8800_0000, true);
    let data: Vec<u8> = (0..200u8).collect();
    r.smmu
        .dma_write(&mut r.mem, SID, Iova::new(0x10_0fa0), &data)
        .unwrap();
    let mut a = [0u8; 96];
    r.mem.read_bytes(PhysAddr::new(0x8000_0fa0), &mut a);
    assert_eq!(&a[..], &data[..96]);
    let mut b = [0u8; 104];
    r.mem.read_bytes(PhysAddr::new(0x8800_0000), &mut b);
    assert_eq!(&b[..], &data[96..]);
    let mut back = vec![0u8; 200];
    r.smmu
        .dma_read(&r.mem, SID, Iova::new(0x10_0fa0), &mut back)
        .unwrap();
    assert_eq!(back, data);
    // Into an unmapped third page: the first two pages are written, the
    // fault is reported once.
    let err = r
        .smmu
        .dma_write(&mut r.mem, SID, Iova::new(0x10_1f00), &[1; 0x200]);
    assert_eq!(err, Err(Fault::Translation { level: 3 }));
    assert_eq!(
        r.mem.read_u64(PhysAddr::new(0x8800_0f00)),
        0x0101_0101_0101_0101
    );
    assert_eq!(r.events().len(), 1);
}

#[test]
fn iotlb_capacity_evicts() {
    let mut r = Rig::with_config(ModelConfig {
        iotlb_capacity: 4,
        ..ModelConfig::qemu()
    });
    for i in 0..6 {
        r.map(i * 0x1000, 0x8000_0000 + i * 0x1000, true);
        r.tr(i * 0x1000, false).unwrap();
    }
    assert_eq!(r.smmu.cached_translations(ASID), 4);
    assert_eq!(r.smmu.stats().iotlb_evictions, 2);
    // Page 0 was evicted: a retarget of it is seen without TLBI (no stale).
    r.map(0, 0x9000_0000, true);
    assert_eq!(r.tr(0, false), Ok(PhysAddr::new(0x9000_0000)));
    assert_eq!(r.smmu.stats().stale_hits, 0);
}

#[test]
fn illegal_commands_are_refused() {
    let mut r = Rig::with_config(ModelConfig {
        ril: false,
        asid16: false,
        ..ModelConfig::qemu()
    });
    let range = Command::TlbiNhVa(TlbiVa {
        vmid: 0,
        asid: ASID,
        addr: Iova::new(0x4000),
        leaf: true,
        tg: Some(Granule::G4K),
        ttl: 3,
        num: 3,
        scale: 0,
    });
    let refuse =
        |r: &mut Rig, raw: [u64; 2]| -> CmdError { r.smmu.command(&r.mem, raw).unwrap_err() };
    assert_eq!(refuse(&mut r, range.encode()).opcode, 0x12);
    assert_eq!(refuse(&mut r, [0xff, 0]).opcode, 0xff);
    assert_eq!(refuse(&mut r, Command::TlbiEl2All.encode()).opcode, 0x20);
    let wide = Command::TlbiNhAsid {
        vmid: 0,
        asid: Asid(0x100),
    };
    refuse(&mut r, wide.encode());
    // Reserved NUM == SCALE == TTL == 0 with TG (checked before RIL).
    let mut bad = range;
    if let Command::TlbiNhVa(t) = &mut bad {
        t.num = 0;
        t.ttl = 0;
    }
    refuse(&mut r, bad.encode());
    let beyond = Command::CfgiSte {
        sid: StreamId(1 << 16),
        leaf: true,
    };
    refuse(&mut r, beyond.encode());
    assert_eq!(r.smmu.stats().commands, 0);
    // TLBI_NH_VAA (all ASIDs) and PREFETCH_ADDR are accepted.
    r.map(0x4000, 0x8000_0000, true);
    r.tr(0x4000, false).unwrap();
    let vaa = Command::TlbiNhVa(TlbiVa::page(Asid(0), Iova::new(0x4000), true, false)).encode();
    r.smmu
        .command(&r.mem, [(vaa[0] & !0xff) | 0x13, vaa[1]])
        .unwrap();
    assert_eq!(r.smmu.cached_translations(ASID), 0);
    r.smmu.command(&r.mem, [0x02, 0]).unwrap();
    assert_eq!(r.smmu.stats().commands, 2);
}

#[test]
fn prefetch_config_loads_the_caches() {
    let mut r = Rig::new();
    r.cmd(Command::PrefetchConfig {
        sid: SID,
        ssid: None,
    });
    assert!(r.smmu.cached_ste(SID).is_some());
    assert_eq!(r.smmu.cached_cd(SID).map(|c| c.asid), Some(ASID));
    r.mem.write_words(ste_addr(SID), &ste::abort());
    r.map(0x4000, 0x8000_0000, true);
    assert!(r.tr(0x4000, false).is_ok());
    r.cmd(Command::CfgiAll);
    assert_eq!(r.tr(0x4000, false), Err(Fault::Abort));
}
