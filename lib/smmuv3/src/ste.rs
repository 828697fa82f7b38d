//! Stream Table Entries and the two-level Stream table's level-1
//! descriptors [SMMUv3 §5.1, §5.2], as pure builders returning the words to
//! store, plus a decoder for a software model of the SMMU.
//!
//! Only the configurations this system uses are built: abort, bypass (the
//! benchmark's ceiling) and stage-1 translation through a single CD.

use abi::{PhysAddr, StreamId};

use crate::bits::{bit, fits_addr, get, set, set_bit};
use crate::idr::{Features, StallModel};
use crate::{Error, Shareability};

/// 64-bit words in an STE (64 bytes) [SMMUv3 §5.2].
pub const STE_DWORDS: usize = 8;
/// Bytes in an STE.
pub const STE_BYTES: u64 = 64;

/// STE.Config values [SMMUv3 §5.2].
pub mod config {
    /// Abort all traffic, no event recorded.
    pub const ABORT: u64 = 0b000;
    /// Bypass both stages.
    pub const BYPASS: u64 = 0b100;
    /// Stage 1 translates, stage 2 bypassed.
    pub const S1_TRANS: u64 = 0b101;
    /// Stage 1 bypassed, stage 2 translates.
    pub const S2_TRANS: u64 = 0b110;
    /// Both stages translate (nested).
    pub const NESTED: u64 = 0b111;
}

/// Memory attribute encodings of STE.S1CIR/S1COR (CD fetch cacheability)
/// [SMMUv3 §5.2].
pub mod s1c {
    /// Normal Non-cacheable.
    pub const NC: u64 = 0b00;
    /// Write-Back, Read-Allocate.
    pub const WBRA: u64 = 0b01;
    /// Write-Through, Read-Allocate.
    pub const WTRA: u64 = 0b10;
    /// Write-Back, no Read-Allocate.
    pub const WB: u64 = 0b11;
}

/// STE.SHCFG value "use incoming Shareability" [SMMUv3 §5.2].
pub const SHCFG_INCOMING: u64 = 0b01;

/// Choices an STE builder needs from the ID registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SteOptions {
    /// Set SHCFG to "incoming". Only legal when IDR1.ATTR_TYPES_OVR == 1;
    /// otherwise SHCFG is RES0 and stays 0.
    pub shcfg_incoming: bool,
    /// Set S1STALLD so that a CD cannot select stalling (required for PCIe
    /// when the stall model is configurable; ILLEGAL otherwise).
    pub s1_stall_disable: bool,
    /// Fetch CDs as Write-Back Inner Shareable (IO-coherent SMMU) rather
    /// than Non-cacheable.
    pub coherent_cd_fetch: bool,
}

impl SteOptions {
    /// The options for a PCIe stream on an SMMU with these features.
    pub fn for_pcie(f: &Features) -> Self {
        Self {
            shcfg_incoming: f.attr_types_ovr,
            s1_stall_disable: f.stall_model == StallModel::StallAndTerminate,
            coherent_cd_fetch: f.coherent,
        }
    }
}

/// An STE with V == 0: traffic is terminated and C_BAD_STE is recorded.
/// Prefer [`abort`], which aborts silently.
pub const fn invalid() -> [u64; STE_DWORDS] {
    [0; STE_DWORDS]
}

/// An STE that aborts all traffic without recording events: V == 1,
/// Config == 0b000 [SMMUv3 §5.2]. Every stream starts here.
pub const fn abort() -> [u64; STE_DWORDS] {
    let mut s = [0; STE_DWORDS];
    s[0] = set(1, 3, 1, config::ABORT);
    s
}

/// An STE that lets traffic through untranslated: V == 1, Config == 0b100
/// [SMMUv3 §5.2]. Only the benchmark's ceiling uses this.
pub const fn bypass(opts: SteOptions) -> [u64; STE_DWORDS] {
    let mut s = [0; STE_DWORDS];
    s[0] = set(1, 3, 1, config::BYPASS);
    if opts.shcfg_incoming {
        s[1] = set(0, 45, 44, SHCFG_INCOMING);
    }
    s
}

/// A stage-1 translating STE whose single CD is at `cd` [SMMUv3 §5.2]:
/// V == 1, Config == 0b101, S1Fmt == linear, S1CDMax == 0 (no substreams,
/// so S1DSS is IGNORED and left 0), CD fetch attributes from `opts`,
/// EATS == 0 (no ATS), STRW == NS-EL1, SHCFG and S1STALLD from `opts`.
/// `cd` must fit `S1ContextPtr[55:6]` (64-byte aligned).
pub const fn s1_translate(cd: PhysAddr, opts: SteOptions) -> Result<[u64; STE_DWORDS], Error> {
    let a = cd.get();
    if !fits_addr(a, 55, 6) {
        return Err(Error::BadAddress("STE.S1ContextPtr"));
    }
    let mut s = [0; STE_DWORDS];
    // Word 0: V, Config, S1Fmt = 0 (linear), S1ContextPtr, S1CDMax = 0.
    s[0] = set(1, 3, 1, config::S1_TRANS) | a;
    // Word 1.
    let (c, sh) = if opts.coherent_cd_fetch {
        (s1c::WBRA, Shareability::Inner)
    } else {
        (s1c::NC, Shareability::Outer)
    };
    let mut w1 = 0;
    w1 = set(w1, 3, 2, c); // S1CIR
    w1 = set(w1, 5, 4, c); // S1COR
    w1 = set(w1, 7, 6, sh.bits()); // S1CSH
    w1 = set_bit(w1, 27, opts.s1_stall_disable); // S1STALLD
    // EATS [29:28] = 0b00 and STRW [31:30] = 0b00 (NS-EL1).
    if opts.shcfg_incoming {
        w1 = set(w1, 45, 44, SHCFG_INCOMING);
    }
    s[1] = w1;
    Ok(s)
}

/// What an STE tells the SMMU to do with a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamConfig {
    /// V == 0: terminate and record C_BAD_STE.
    Invalid,
    /// Config == 0b0xx: abort silently (0b001..0b011 are Reserved and
    /// behave as 0b000).
    Abort,
    /// Config == 0b100.
    Bypass,
    /// Config == 0b101.
    S1Translate,
    /// Config == 0b110.
    S2Translate,
    /// Config == 0b111.
    Nested,
}

/// The fields of an STE that the software model and error reports use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ste {
    /// What happens to traffic.
    pub config: StreamConfig,
    /// S1ContextPtr: the CD (or CD table) address.
    pub cd_ptr: PhysAddr,
    /// S1Fmt.
    pub s1_fmt: u8,
    /// S1CDMax: log2 of the number of CDs.
    pub s1_cd_max: u8,
    /// S1DSS.
    pub s1_dss: u8,
    /// S1CIR.
    pub s1_cir: u8,
    /// S1COR.
    pub s1_cor: u8,
    /// S1CSH.
    pub s1_csh: u8,
    /// S1STALLD.
    pub s1_stall_disable: bool,
    /// EATS.
    pub eats: u8,
    /// STRW.
    pub strw: u8,
    /// SHCFG.
    pub shcfg: u8,
    /// S2VMID.
    pub s2_vmid: u16,
}

impl Ste {
    /// Decodes the words of an STE [SMMUv3 §5.2].
    pub const fn decode(s: &[u64; STE_DWORDS]) -> Ste {
        let config = if !bit(s[0], 0) {
            StreamConfig::Invalid
        } else {
            match get(s[0], 3, 1) {
                config::BYPASS => StreamConfig::Bypass,
                config::S1_TRANS => StreamConfig::S1Translate,
                config::S2_TRANS => StreamConfig::S2Translate,
                config::NESTED => StreamConfig::Nested,
                _ => StreamConfig::Abort,
            }
        };
        Ste {
            config,
            cd_ptr: PhysAddr::new(get(s[0], 55, 6) << 6),
            s1_fmt: get(s[0], 5, 4) as u8,
            s1_cd_max: get(s[0], 63, 59) as u8,
            s1_dss: get(s[1], 1, 0) as u8,
            s1_cir: get(s[1], 3, 2) as u8,
            s1_cor: get(s[1], 5, 4) as u8,
            s1_csh: get(s[1], 7, 6) as u8,
            s1_stall_disable: bit(s[1], 27),
            eats: get(s[1], 29, 28) as u8,
            strw: get(s[1], 31, 30) as u8,
            shcfg: get(s[1], 45, 44) as u8,
            s2_vmid: get(s[2], 15, 0) as u16,
        }
    }

    /// Whether traffic on this stream can reach memory at all.
    pub const fn passes_traffic(&self) -> bool {
        !matches!(self.config, StreamConfig::Invalid | StreamConfig::Abort)
    }
}

// ---------------------------------------------------------------------------
// Two-level Stream table.

/// SMMU_STRTAB_BASE_CFG.SPLIT: StreamID bits resolved by the level-2 table
/// [SMMUv3 §6.3.25]. Only these three values are architected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// 6 bits: 4 KiB level-2 tables of 64 STEs.
    Bits6,
    /// 8 bits: 16 KiB level-2 tables of 256 STEs (one PCI bus).
    Bits8,
    /// 10 bits: 64 KiB level-2 tables of 1024 STEs.
    Bits10,
}

impl Split {
    /// The SPLIT field value (6, 8 or 10).
    pub const fn bits(self) -> u32 {
        match self {
            Split::Bits6 => 6,
            Split::Bits8 => 8,
            Split::Bits10 => 10,
        }
    }

    /// Decodes SPLIT; Reserved values behave as 6 [SMMUv3 §6.3.25].
    pub const fn from_bits(v: u8) -> Self {
        match v {
            8 => Split::Bits8,
            10 => Split::Bits10,
            _ => Split::Bits6,
        }
    }

    /// STEs in one full level-2 table.
    pub const fn l2_entries(self) -> u32 {
        1 << self.bits()
    }

    /// Bytes in one full level-2 table (also its required alignment).
    pub const fn l2_bytes(self) -> u64 {
        STE_BYTES << self.bits()
    }

    /// The L1STD.Span describing a full level-2 table: SPLIT + 1.
    pub const fn full_span(self) -> u8 {
        self.bits() as u8 + 1
    }

    /// Splits a StreamID into (level-1 index, level-2 index):
    /// `StreamID[LOG2SIZE-1:SPLIT]` and `StreamID[SPLIT-1:0]` [SMMUv3 §6.3.25].
    pub const fn sid_index(self, sid: StreamId) -> (u32, u32) {
        let s = self.bits();
        (sid.0 >> s, sid.0 & ((1 << s) - 1))
    }

    /// Level-1 descriptors needed for a table of 2^`log2size` StreamIDs:
    /// MAX(1, 2^(LOG2SIZE - SPLIT)) [SMMUv3 §6.3.25].
    pub const fn l1_entries(self, log2size: u8) -> u32 {
        let s = self.bits();
        if log2size as u32 > s {
            1 << (log2size as u32 - s)
        } else {
            1
        }
    }
}

/// An L1STD with Span == 0: no StreamID under it is valid.
pub const L1_INVALID: u64 = 0;

/// A valid level-1 Stream table descriptor [SMMUv3 §5.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1Desc {
    /// Address of the level-2 STE array.
    pub l2: PhysAddr,
    /// Span: the array holds 2^(Span-1) STEs; 1..=11.
    pub span: u8,
}

impl L1Desc {
    /// A descriptor for a full level-2 table at `l2` under `split`.
    pub const fn full(l2: PhysAddr, split: Split) -> Self {
        Self {
            l2,
            span: split.full_span(),
        }
    }

    /// STEs in the level-2 array.
    pub const fn l2_entries(self) -> u32 {
        1 << (self.span - 1)
    }

    /// The descriptor word. Span must be 1..=11 and at most SPLIT+1
    /// (checked by the caller's choice of split); L2Ptr must fit `[55:6]` and
    /// be aligned to the level-2 array's size, as the SMMU ignores
    /// `L2Ptr[5+Span-1:0]` [SMMUv3 §5.1].
    pub const fn encode(self) -> Result<u64, Error> {
        if self.span == 0 || self.span > 11 {
            return Err(Error::OutOfRange("L1STD.Span"));
        }
        let a = self.l2.get();
        let bytes = STE_BYTES << (self.span - 1);
        if !fits_addr(a, 55, 6) || a & (bytes - 1) != 0 {
            return Err(Error::BadAddress("L1STD.L2Ptr"));
        }
        Ok(a | self.span as u64)
    }

    /// Decodes a descriptor word; `None` when Span is 0 or Reserved (12..),
    /// which makes every StreamID under it invalid.
    pub const fn decode(v: u64) -> Option<Self> {
        let span = get(v, 4, 0) as u8;
        if span == 0 || span > 11 {
            return None;
        }
        Some(Self {
            l2: PhysAddr::new(get(v, 55, 6) << 6),
            span,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idr::Features;

    fn qemu72() -> Features {
        Features::decode([0x0d40_101a, 0x0273_0010, 0, 0x1404, 0, 0x74], 1).unwrap()
    }

    #[test]
    fn abort_and_bypass() {
        let a = abort();
        assert_eq!(a, [1, 0, 0, 0, 0, 0, 0, 0]);
        let d = Ste::decode(&a);
        assert_eq!(d.config, StreamConfig::Abort);
        assert!(!d.passes_traffic());
        assert_eq!(Ste::decode(&invalid()).config, StreamConfig::Invalid);

        let opts = SteOptions::for_pcie(&qemu72());
        // QEMU has ATTR_TYPES_OVR == 0: SHCFG stays RES0.
        assert!(!opts.shcfg_incoming);
        let b = bypass(opts);
        assert_eq!(b[0], 0b1001);
        assert_eq!(b[1], 0);
        assert_eq!(Ste::decode(&b).config, StreamConfig::Bypass);
        let b = bypass(SteOptions {
            shcfg_incoming: true,
            ..opts
        });
        assert_eq!(b[1], 1 << 44);
        assert_eq!(Ste::decode(&b).shcfg, 1);
    }

    #[test]
    fn s1_translate_layout() {
        let opts = SteOptions::for_pcie(&qemu72());
        assert!(
            !opts.s1_stall_disable,
            "terminate-only model: S1STALLD must be 0"
        );
        assert!(opts.coherent_cd_fetch);
        let s = s1_translate(PhysAddr::new(0x4123_4540), opts).unwrap();
        assert_eq!(s[0], 0x4123_4540 | (0b101 << 1) | 1);
        // S1CIR = S1COR = WBRA, S1CSH = ISH.
        assert_eq!(s[1], 0b11_01_01_00);
        assert!(s[2..].iter().all(|&w| w == 0));
        let d = Ste::decode(&s);
        assert_eq!(d.config, StreamConfig::S1Translate);
        assert_eq!(d.cd_ptr, PhysAddr::new(0x4123_4540));
        assert_eq!((d.s1_fmt, d.s1_cd_max, d.eats, d.strw), (0, 0, 0, 0));
        assert_eq!((d.s1_cir, d.s1_cor, d.s1_csh), (1, 1, 3));
        assert!(d.passes_traffic());

        let nc = SteOptions {
            coherent_cd_fetch: false,
            s1_stall_disable: true,
            shcfg_incoming: true,
        };
        let s = s1_translate(PhysAddr::new(0x8000_0000), nc).unwrap();
        let d = Ste::decode(&s);
        assert_eq!((d.s1_cir, d.s1_cor, d.s1_csh), (0, 0, 2));
        assert!(d.s1_stall_disable);
        assert_eq!(d.shcfg, 1);

        assert!(s1_translate(PhysAddr::new(0x4000_0020), opts).is_err());
        assert!(s1_translate(PhysAddr::new(1 << 56), opts).is_err());
    }

    #[test]
    fn reserved_config_behaves_as_abort() {
        let s = [0b011 << 1 | 1, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(Ste::decode(&s).config, StreamConfig::Abort);
        let s = [0b111 << 1 | 1, 0, 5, 0, 0, 0, 0, 0];
        let d = Ste::decode(&s);
        assert_eq!(d.config, StreamConfig::Nested);
        assert_eq!(d.s2_vmid, 5);
    }

    #[test]
    fn split_indices() {
        // NVMe at 00:01.0 has SID 0x8; a device on bus 3 has SID 0x318.
        assert_eq!(Split::Bits8.sid_index(StreamId(0x8)), (0, 8));
        assert_eq!(Split::Bits8.sid_index(StreamId(0x318)), (3, 0x18));
        assert_eq!(Split::Bits6.sid_index(StreamId(0x318)), (0xc, 0x18));
        assert_eq!(Split::Bits10.sid_index(StreamId(0xffff)), (0x3f, 0x3ff));
        assert_eq!(Split::Bits8.l1_entries(16), 256);
        assert_eq!(Split::Bits8.l1_entries(4), 1);
        assert_eq!(Split::Bits8.l2_bytes(), 16 * 1024);
        assert_eq!(Split::from_bits(7), Split::Bits6);
        for split in [Split::Bits6, Split::Bits8, Split::Bits10] {
            for sid in [0u32, 1, 0x3f, 0x40, 0x1234, 0xffff] {
                let (l1, l2) = split.sid_index(StreamId(sid));
                assert!(l2 < split.l2_entries());
                assert_eq!((l1 << split.bits()) | l2, sid);
            }
        }
    }

    #[test]
    fn l1_descriptor_round_trip() {
        let d = L1Desc::full(PhysAddr::new(0x4400_4000), Split::Bits8);
        assert_eq!(d.span, 9);
        assert_eq!(d.l2_entries(), 256);
        let v = d.encode().unwrap();
        assert_eq!(v, 0x4400_4000 | 9);
        assert_eq!(L1Desc::decode(v), Some(d));
        assert_eq!(L1Desc::decode(L1_INVALID), None);
        assert_eq!(L1Desc::decode(0x4400_4000 | 12), None);
        // 16 KiB array: an 8 KiB-aligned pointer is refused.
        assert!(
            L1Desc::full(PhysAddr::new(0x4400_2000), Split::Bits8)
                .encode()
                .is_err()
        );
        assert!(
            L1Desc {
                l2: PhysAddr::new(0x4400_0000),
                span: 0
            }
            .encode()
            .is_err()
        );
        assert!(
            L1Desc {
                l2: PhysAddr::new(0x4400_0040),
                span: 1
            }
            .encode()
            .is_ok()
        );
    }
}
