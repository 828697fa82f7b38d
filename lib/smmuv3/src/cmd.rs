//! Command queue entries [SMMUv3 §4]: encoders for the commands this
//! system issues (configuration and TLB invalidation, CMD_SYNC), a decoder
//! for the software model and for error reports, and the planner that
//! turns an unmapped IOVA range into the fewest range-invalidation commands.
//!
//! Encoding is infallible and masks each value to its field; use
//! [`Command::check`] (or the checked constructors) to refuse what the
//! SMMU would treat as CERROR_ILL or as an UNPREDICTABLE range.

use core::fmt;

use abi::{Asid, Iova, PAGE_SHIFT, PhysAddr, StreamId};

use crate::bits::{bit, get, set, set_bit};
use crate::{Error, Shareability};

/// 64-bit words in a command (16 bytes) [SMMUv3 §4.1.1].
pub const CMD_DWORDS: usize = 2;

/// Command opcodes, bits `[7:0]` of every command [SMMUv3 §4.1.1].
pub mod opcode {
    /// CMD_PREFETCH_CONFIG [SMMUv3 §4.2.1].
    pub const PREFETCH_CONFIG: u8 = 0x01;
    /// CMD_PREFETCH_ADDR [SMMUv3 §4.2.2].
    pub const PREFETCH_ADDR: u8 = 0x02;
    /// CMD_CFGI_STE [SMMUv3 §4.3.1].
    pub const CFGI_STE: u8 = 0x03;
    /// CMD_CFGI_STE_RANGE; CMD_CFGI_ALL is this with Range == 31 [SMMUv3 §4.3.2, §4.3.6].
    pub const CFGI_STE_RANGE: u8 = 0x04;
    /// CMD_CFGI_ALL (same opcode as CFGI_STE_RANGE) [SMMUv3 §4.3.6].
    pub const CFGI_ALL: u8 = 0x04;
    /// CMD_CFGI_CD [SMMUv3 §4.3.3].
    pub const CFGI_CD: u8 = 0x05;
    /// CMD_CFGI_CD_ALL [SMMUv3 §4.3.4].
    pub const CFGI_CD_ALL: u8 = 0x06;
    /// CMD_TLBI_NH_ALL [SMMUv3 §4.4.2.1].
    pub const TLBI_NH_ALL: u8 = 0x10;
    /// CMD_TLBI_NH_ASID [SMMUv3 §4.4.2.2].
    pub const TLBI_NH_ASID: u8 = 0x11;
    /// CMD_TLBI_NH_VA [SMMUv3 §4.4.2.4].
    pub const TLBI_NH_VA: u8 = 0x12;
    /// CMD_TLBI_NH_VAA [SMMUv3 §4.4.2.3].
    pub const TLBI_NH_VAA: u8 = 0x13;
    /// CMD_TLBI_EL2_ALL [SMMUv3 §4.4.2.7].
    pub const TLBI_EL2_ALL: u8 = 0x20;
    /// CMD_TLBI_S12_VMALL [SMMUv3 §4.4.3.2].
    pub const TLBI_S12_VMALL: u8 = 0x28;
    /// CMD_TLBI_NSNH_ALL [SMMUv3 §4.4.4.1].
    pub const TLBI_NSNH_ALL: u8 = 0x30;
    /// CMD_ATC_INV [SMMUv3 §4.5].
    pub const ATC_INV: u8 = 0x40;
    /// CMD_PRI_RESP [SMMUv3 §4.5].
    pub const PRI_RESP: u8 = 0x41;
    /// CMD_RESUME [SMMUv3 §4.7.1].
    pub const RESUME: u8 = 0x44;
    /// CMD_STALL_TERM [SMMUv3 §4.7.2].
    pub const STALL_TERM: u8 = 0x45;
    /// CMD_SYNC [SMMUv3 §4.7.3].
    pub const SYNC: u8 = 0x46;
}

/// CMD_CFGI_STE_RANGE.Range value meaning "every StreamID" (CMD_CFGI_ALL).
pub const CFGI_RANGE_ALL: u8 = 31;
/// Largest NUM of a range invalidation [SMMUv3 §4.4.1.1].
pub const TLBI_NUM_MAX: u8 = 31;
/// Largest SCALE of a range invalidation when IDR5.DS == 0 (5-bit field)
/// [SMMUv3 §4.4.1.1].
pub const TLBI_SCALE_MAX: u8 = 31;

/// Translation granule of the entries a TLBI targets, the TG field
/// [SMMUv3 §4.4.1.1]. TG == 0b00 (any granule, no range, no TTL) is
/// expressed as `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granule {
    /// 4 KiB (TG == 0b01).
    G4K = 1,
    /// 16 KiB (TG == 0b10).
    G16K = 2,
    /// 64 KiB (TG == 0b11).
    G64K = 3,
}

impl Granule {
    /// log2 of the granule size in bytes.
    pub const fn shift(self) -> u32 {
        match self {
            Granule::G4K => 12,
            Granule::G16K => 14,
            Granule::G64K => 16,
        }
    }

    const fn from_tg(tg: u64) -> Option<Self> {
        match tg {
            1 => Some(Granule::G4K),
            2 => Some(Granule::G16K),
            3 => Some(Granule::G64K),
            _ => None,
        }
    }
}

/// The translation level holding the leaf entries being invalidated: the
/// TTL hint (0b01..0b11) [SMMUv3 §4.4.1.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafLevel {
    /// Level 1 blocks (1 GiB with 4 KiB pages).
    L1 = 1,
    /// Level 2 blocks (2 MiB with 4 KiB pages).
    L2 = 2,
    /// Level 3 pages.
    L3 = 3,
}

impl LeafLevel {
    /// 4 KiB pages per leaf entry at this level.
    pub const fn pages_per_entry(self) -> u64 {
        match self {
            LeafLevel::L1 => 1 << 18,
            LeafLevel::L2 => 1 << 9,
            LeafLevel::L3 => 1,
        }
    }
}

/// CMD_TLBI_NH_VA: invalidate stage-1 entries by ASID and VA, optionally a
/// range [SMMUv3 §4.4.2.4, §4.4.1.1]. With `tg` set, the command covers
/// ((NUM+1) << SCALE) granules from `addr` and TTL hints the leaf level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbiVa {
    /// VMID (RES0 without stage 2: leave 0).
    pub vmid: u16,
    /// ASID of the domain.
    pub asid: Asid,
    /// First address; `Address[63:12]` is encoded, `[11:0]` taken as zero.
    pub addr: Iova,
    /// Leaf: only last-level entries; walk caches are kept. Must be false
    /// when table pages were freed.
    pub leaf: bool,
    /// TG; `None` is TG == 0b00 (single address, no hints).
    pub tg: Option<Granule>,
    /// TTL: 0 (no hint) or a level 1..=3. RES0 without `tg`.
    pub ttl: u8,
    /// NUM (0..=31). RES0 without `tg`.
    pub num: u8,
    /// SCALE (0..=31). RES0 without `tg`.
    pub scale: u8,
}

impl TlbiVa {
    /// The single-page form for a 4 KiB page at `addr`. With `hints` (only
    /// when IDR3.RIL == 1, where TG/TTL exist) it carries TG = 4K, TTL = 3,
    /// so the SMMU can find the entry without scanning (QEMU otherwise walks
    /// its whole IOTLB); without, TG = TTL = 0.
    pub const fn page(asid: Asid, addr: Iova, leaf: bool, hints: bool) -> Self {
        Self {
            vmid: 0,
            asid,
            addr,
            leaf,
            tg: if hints { Some(Granule::G4K) } else { None },
            ttl: if hints { LeafLevel::L3 as u8 } else { 0 },
            num: 0,
            scale: 0,
        }
    }

    /// Bytes covered: ((NUM+1) << SCALE) granules with `tg`, else the one
    /// entry containing `addr` (reported as one 4 KiB page).
    pub const fn bytes(&self) -> u64 {
        match self.tg {
            Some(g) => ((self.num as u64 + 1) << self.scale) << g.shift(),
            None => 1 << PAGE_SHIFT,
        }
    }

    /// Checks the rules of [SMMUv3 §4.4.1.1] for an SMMU with IDR5.DS == 0:
    /// fields RES0 without TG are zero; NUM, SCALE and TTL in range; the
    /// Reserved combination NUM == SCALE == TTL == 0 with TG set (CERROR_ILL)
    /// is refused, as is TTL == 1 with 16K; the address is granule aligned
    /// and, where a TTL hint names a block level, aligned to that block
    /// (otherwise the invalidated range is UNPREDICTABLE).
    pub const fn check(&self) -> Result<(), Error> {
        let a = self.addr.get();
        if a & ((1 << PAGE_SHIFT) - 1) != 0 {
            return Err(Error::BadAddress("TLBI Address[11:0]"));
        }
        let Some(g) = self.tg else {
            if self.num != 0 || self.scale != 0 || self.ttl != 0 {
                return Err(Error::OutOfRange("TLBI NUM/SCALE/TTL without TG"));
            }
            return Ok(());
        };
        if self.num > TLBI_NUM_MAX || self.scale > TLBI_SCALE_MAX || self.ttl > 3 {
            return Err(Error::OutOfRange("TLBI NUM/SCALE/TTL"));
        }
        if self.num == 0 && self.scale == 0 && self.ttl == 0 {
            return Err(Error::OutOfRange("TLBI NUM == SCALE == TTL == 0 with TG"));
        }
        // Low address bits that must be zero for this TG/TTL: the block size
        // at the TTL level (or the granule for TTL 0/3).
        let aligned_bits: u32 = match (g, self.ttl) {
            (Granule::G4K, 1) => 30,
            (Granule::G4K, 2) => 21,
            (Granule::G4K, _) => 12,
            (Granule::G16K, 1) => return Err(Error::OutOfRange("TLBI TTL 1 with 16K (DS == 0)")),
            (Granule::G16K, 2) => 25,
            (Granule::G16K, _) => 14,
            (Granule::G64K, 1) => 42,
            (Granule::G64K, 2) => 29,
            (Granule::G64K, _) => 16,
        };
        if a & ((1u64 << aligned_bits) - 1) != 0 {
            return Err(Error::BadAddress("TLBI Address for TG/TTL"));
        }
        Ok(())
    }
}

/// CMD_SYNC completion signal, CS [SMMUv3 §4.7.3].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncSignal {
    /// SIG_NONE: software polls CMDQ_CONS.
    None = 0,
    /// SIG_IRQ: MSI write (if MSIAddress != 0) or wired interrupt.
    Irq = 1,
    /// SIG_SEV: WFE wake-up event.
    Sev = 2,
}

/// CMD_SYNC: completes when every earlier command has completed
/// [SMMUv3 §4.7.3].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sync {
    /// CS.
    pub cs: SyncSignal,
    /// MSH: shareability of the MSI write.
    pub msh: Shareability,
    /// MSIAttr: memory type of the MSI write (STE.MemAttr encoding).
    pub msi_attr: u8,
    /// MSIData.
    pub msi_data: u32,
    /// `MSIAddress[55:2]`; 0 for no MSI write.
    pub msi_addr: PhysAddr,
}

impl Sync {
    /// A CMD_SYNC that signals nothing: completion is observed by polling
    /// CMDQ_CONS past it (this system's use: QEMU has no MSI).
    pub const fn polled() -> Self {
        Self {
            cs: SyncSignal::None,
            msh: Shareability::NonShareable,
            msi_attr: 0,
            msi_data: 0,
            msi_addr: PhysAddr::new(0),
        }
    }

    /// A CMD_SYNC that writes `data` to `addr` on completion (CS = IRQ),
    /// with Inner Shareable Write-Back attributes (MemAttr 0xF).
    pub const fn msi(addr: PhysAddr, data: u32) -> Self {
        Self {
            cs: SyncSignal::Irq,
            msh: Shareability::Inner,
            msi_attr: 0xf,
            msi_data: data,
            msi_addr: addr,
        }
    }
}

/// A decoded or to-be-encoded command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// CMD_PREFETCH_CONFIG(StreamID, SubstreamID if SSV) [SMMUv3 §4.2.1].
    PrefetchConfig {
        /// StreamID.
        sid: StreamId,
        /// SubstreamID (SSV == 1) or none.
        ssid: Option<u32>,
    },
    /// CMD_CFGI_STE(StreamID, Leaf) [SMMUv3 §4.3.1].
    CfgiSte {
        /// StreamID.
        sid: StreamId,
        /// Leaf: the STE only, not level-1 descriptors.
        leaf: bool,
    },
    /// CMD_CFGI_STE_RANGE: the aligned 2^(Range+1) StreamIDs around `sid`
    /// [SMMUv3 §4.3.2]. Range 31 decodes as [`Command::CfgiAll`].
    CfgiSteRange {
        /// Any StreamID in the range.
        sid: StreamId,
        /// Range, 0..=30.
        range: u8,
    },
    /// CMD_CFGI_ALL: every STE, L1STD and CD [SMMUv3 §4.3.6].
    CfgiAll,
    /// CMD_CFGI_CD(StreamID, SubstreamID, Leaf) [SMMUv3 §4.3.3].
    CfgiCd {
        /// StreamID.
        sid: StreamId,
        /// SubstreamID (CD table index; 0 without substreams).
        ssid: u32,
        /// Leaf: the CD only, not L1CDs.
        leaf: bool,
    },
    /// CMD_CFGI_CD_ALL(StreamID) [SMMUv3 §4.3.4].
    CfgiCdAll {
        /// StreamID.
        sid: StreamId,
    },
    /// CMD_TLBI_NH_ALL(VMID) [SMMUv3 §4.4.2.1].
    TlbiNhAll {
        /// VMID (0 without stage 2).
        vmid: u16,
    },
    /// CMD_TLBI_NH_ASID(VMID, ASID) [SMMUv3 §4.4.2.2].
    TlbiNhAsid {
        /// VMID (0 without stage 2).
        vmid: u16,
        /// ASID.
        asid: Asid,
    },
    /// CMD_TLBI_NH_VA [SMMUv3 §4.4.2.4].
    TlbiNhVa(TlbiVa),
    /// CMD_TLBI_EL2_ALL [SMMUv3 §4.4.2.7]; CERROR_ILL unless IDR0.Hyp.
    TlbiEl2All,
    /// CMD_TLBI_NSNH_ALL [SMMUv3 §4.4.4.1].
    TlbiNsnhAll,
    /// CMD_SYNC [SMMUv3 §4.7.3].
    Sync(Sync),
    /// Any other opcode, kept raw.
    Other {
        /// The opcode.
        opcode: u8,
        /// The command words.
        raw: [u64; CMD_DWORDS],
    },
}

const fn with_sid(w0: u64, sid: StreamId) -> u64 {
    set(w0, 63, 32, sid.0 as u64)
}

impl Command {
    /// The opcode this command encodes with.
    pub const fn opcode(&self) -> u8 {
        match self {
            Command::PrefetchConfig { .. } => opcode::PREFETCH_CONFIG,
            Command::CfgiSte { .. } => opcode::CFGI_STE,
            Command::CfgiSteRange { .. } | Command::CfgiAll => opcode::CFGI_STE_RANGE,
            Command::CfgiCd { .. } => opcode::CFGI_CD,
            Command::CfgiCdAll { .. } => opcode::CFGI_CD_ALL,
            Command::TlbiNhAll { .. } => opcode::TLBI_NH_ALL,
            Command::TlbiNhAsid { .. } => opcode::TLBI_NH_ASID,
            Command::TlbiNhVa(_) => opcode::TLBI_NH_VA,
            Command::TlbiEl2All => opcode::TLBI_EL2_ALL,
            Command::TlbiNsnhAll => opcode::TLBI_NSNH_ALL,
            Command::Sync(_) => opcode::SYNC,
            Command::Other { opcode, .. } => *opcode,
        }
    }

    /// The command words [SMMUv3 §4]. Values are masked to their fields.
    pub const fn encode(&self) -> [u64; CMD_DWORDS] {
        let op = self.opcode() as u64;
        match *self {
            Command::PrefetchConfig { sid, ssid } => {
                let mut w0 = with_sid(op, sid);
                if let Some(ss) = ssid {
                    w0 = set_bit(w0, 11, true);
                    w0 = set(w0, 31, 12, ss as u64);
                }
                [w0, 0]
            }
            Command::CfgiSte { sid, leaf } => [with_sid(op, sid), leaf as u64],
            Command::CfgiSteRange { sid, range } => [with_sid(op, sid), get(range as u64, 4, 0)],
            Command::CfgiAll => [op, CFGI_RANGE_ALL as u64],
            Command::CfgiCd { sid, ssid, leaf } => {
                [set(with_sid(op, sid), 31, 12, ssid as u64), leaf as u64]
            }
            Command::CfgiCdAll { sid } => [with_sid(op, sid), 0],
            Command::TlbiNhAll { vmid } => [set(op, 47, 32, vmid as u64), 0],
            Command::TlbiNhAsid { vmid, asid } => {
                [set(set(op, 47, 32, vmid as u64), 63, 48, asid.0 as u64), 0]
            }
            Command::TlbiNhVa(t) => {
                let mut w0 = op;
                w0 = set(w0, 16, 12, t.num as u64);
                w0 = set(w0, 25, 20, t.scale as u64);
                w0 = set(w0, 47, 32, t.vmid as u64);
                w0 = set(w0, 63, 48, t.asid.0 as u64);
                let mut w1 = t.addr.get() & !((1 << PAGE_SHIFT) - 1);
                w1 = set_bit(w1, 0, t.leaf);
                w1 = set(w1, 9, 8, t.ttl as u64);
                let tg = match t.tg {
                    Some(g) => g as u64,
                    None => 0,
                };
                w1 = set(w1, 11, 10, tg);
                [w0, w1]
            }
            Command::TlbiEl2All | Command::TlbiNsnhAll => [op, 0],
            Command::Sync(s) => {
                let mut w0 = op;
                w0 = set(w0, 13, 12, s.cs as u64);
                w0 = set(w0, 23, 22, s.msh.bits());
                w0 = set(w0, 27, 24, s.msi_attr as u64);
                w0 = set(w0, 63, 32, s.msi_data as u64);
                let w1 = set(0, 55, 2, s.msi_addr.get() >> 2);
                [w0, w1]
            }
            Command::Other { raw, .. } => raw,
        }
    }

    /// Decodes command words; unknown or unmodelled opcodes come back as
    /// [`Command::Other`].
    pub const fn decode(raw: [u64; CMD_DWORDS]) -> Command {
        let [w0, w1] = raw;
        let sid = StreamId(get(w0, 63, 32) as u32);
        match get(w0, 7, 0) as u8 {
            opcode::PREFETCH_CONFIG => Command::PrefetchConfig {
                sid,
                ssid: if bit(w0, 11) {
                    Some(get(w0, 31, 12) as u32)
                } else {
                    None
                },
            },
            opcode::CFGI_STE => Command::CfgiSte {
                sid,
                leaf: bit(w1, 0),
            },
            opcode::CFGI_STE_RANGE => {
                let range = get(w1, 4, 0) as u8;
                if range == CFGI_RANGE_ALL {
                    Command::CfgiAll
                } else {
                    Command::CfgiSteRange { sid, range }
                }
            }
            opcode::CFGI_CD => Command::CfgiCd {
                sid,
                ssid: get(w0, 31, 12) as u32,
                leaf: bit(w1, 0),
            },
            opcode::CFGI_CD_ALL => Command::CfgiCdAll { sid },
            opcode::TLBI_NH_ALL => Command::TlbiNhAll {
                vmid: get(w0, 47, 32) as u16,
            },
            opcode::TLBI_NH_ASID => Command::TlbiNhAsid {
                vmid: get(w0, 47, 32) as u16,
                asid: Asid(get(w0, 63, 48) as u16),
            },
            opcode::TLBI_NH_VA => Command::TlbiNhVa(TlbiVa {
                vmid: get(w0, 47, 32) as u16,
                asid: Asid(get(w0, 63, 48) as u16),
                addr: Iova::new(w1 & !((1 << PAGE_SHIFT) - 1)),
                leaf: bit(w1, 0),
                tg: Granule::from_tg(get(w1, 11, 10)),
                ttl: get(w1, 9, 8) as u8,
                num: get(w0, 16, 12) as u8,
                scale: get(w0, 25, 20) as u8,
            }),
            opcode::TLBI_EL2_ALL => Command::TlbiEl2All,
            opcode::TLBI_NSNH_ALL => Command::TlbiNsnhAll,
            opcode::SYNC => Command::Sync(Sync {
                cs: match get(w0, 13, 12) {
                    1 => SyncSignal::Irq,
                    2 => SyncSignal::Sev,
                    _ => SyncSignal::None,
                },
                msh: Shareability::from_bits(get(w0, 23, 22)),
                msi_attr: get(w0, 27, 24) as u8,
                msi_data: get(w0, 63, 32) as u32,
                msi_addr: PhysAddr::new(get(w1, 55, 2) << 2),
            }),
            op => Command::Other { opcode: op, raw },
        }
    }

    /// Checks what encoding would silently truncate or the SMMU would
    /// reject: TLBI rules ([`TlbiVa::check`]), SubstreamIDs beyond 20 bits,
    /// CFGI ranges beyond 30 (use [`Command::CfgiAll`]), MSI addresses that
    /// are unaligned or beyond 56 bits.
    pub const fn check(&self) -> Result<(), Error> {
        match self {
            Command::TlbiNhVa(t) => t.check(),
            Command::PrefetchConfig { ssid: Some(s), .. } | Command::CfgiCd { ssid: s, .. }
                if *s >= 1 << 20 =>
            {
                Err(Error::OutOfRange("SubstreamID"))
            }
            Command::CfgiSteRange { range, .. } if *range >= CFGI_RANGE_ALL => {
                Err(Error::OutOfRange("CFGI_STE_RANGE.Range"))
            }
            Command::Sync(s) if s.msi_addr.get() & 3 != 0 || s.msi_addr.get() >> 56 != 0 => {
                Err(Error::BadAddress("CMD_SYNC.MSIAddress"))
            }
            Command::Sync(s) if s.msi_attr > 0xf => Err(Error::OutOfRange("CMD_SYNC.MSIAttr")),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::PrefetchConfig { sid, ssid: None } => write!(f, "PREFETCH_CONFIG sid {sid}"),
            Command::PrefetchConfig { sid, ssid: Some(s) } => {
                write!(f, "PREFETCH_CONFIG sid {sid} ssid {s:#x}")
            }
            Command::CfgiSte { sid, leaf } => {
                write!(f, "CFGI_STE sid {sid}{}", if *leaf { " leaf" } else { "" })
            }
            Command::CfgiSteRange { sid, range } => {
                write!(
                    f,
                    "CFGI_STE_RANGE sid {sid} range 2^{}",
                    u32::from(*range) + 1
                )
            }
            Command::CfgiAll => f.write_str("CFGI_ALL"),
            Command::CfgiCd { sid, ssid, leaf } => write!(
                f,
                "CFGI_CD sid {sid} ssid {ssid:#x}{}",
                if *leaf { " leaf" } else { "" }
            ),
            Command::CfgiCdAll { sid } => write!(f, "CFGI_CD_ALL sid {sid}"),
            Command::TlbiNhAll { vmid } => write!(f, "TLBI_NH_ALL vmid {vmid}"),
            Command::TlbiNhAsid { vmid, asid } => write!(f, "TLBI_NH_ASID vmid {vmid} asid {asid}"),
            Command::TlbiNhVa(t) => {
                write!(f, "TLBI_NH_VA asid {} va {:#x}", t.asid, t.addr)?;
                if let Some(g) = t.tg {
                    write!(
                        f,
                        " +{} KiB (num {} scale {}) tg {}K ttl {}",
                        t.bytes() >> 10,
                        t.num,
                        t.scale,
                        1u32 << (g.shift() - 10),
                        t.ttl
                    )?;
                }
                if t.leaf {
                    f.write_str(" leaf")?;
                }
                Ok(())
            }
            Command::TlbiEl2All => f.write_str("TLBI_EL2_ALL"),
            Command::TlbiNsnhAll => f.write_str("TLBI_NSNH_ALL"),
            Command::Sync(s) => match s.cs {
                SyncSignal::None => f.write_str("CMD_SYNC"),
                SyncSignal::Irq => {
                    write!(f, "CMD_SYNC irq msi {:#x}={:#x}", s.msi_addr, s.msi_data)
                }
                SyncSignal::Sev => f.write_str("CMD_SYNC sev"),
            },
            Command::Other { opcode, raw } => {
                write!(
                    f,
                    "opcode {opcode:#04x} [{:#018x} {:#018x}]",
                    raw[0], raw[1]
                )
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Range invalidation planning.

/// One step of the range plan: for `remaining` units, the (count, scale)
/// of the next command, with scale at most `max_scale`. Takes the lowest
/// set bit of `remaining` and the up to four bits above it (NUM+1 <= 31 of
/// them); once only multiples of 2^max_scale remain, takes up to 32 of
/// those per command.
const fn plan_step(remaining: u64, max_scale: u32) -> (u64, u32) {
    let tz = remaining.trailing_zeros();
    if tz <= max_scale {
        ((remaining >> tz) & 31, tz)
    } else {
        let units = remaining >> max_scale;
        (if units < 32 { units } else { 32 }, max_scale)
    }
}

/// Commands needed by [`plan_step`] to cover `remaining` units.
const fn plan_len(mut remaining: u64, max_scale: u32) -> usize {
    let mut n = 0;
    while remaining != 0 {
        let (k, s) = plan_step(remaining, max_scale);
        remaining -= k << s;
        n += 1;
    }
    n
}

/// The fewest range CMD_TLBI_NH_VA commands covering exactly the 4 KiB
/// pages [iova, iova + pages) of one ASID [SMMUv3 §4.4.1.1]: each covers
/// (NUM+1) << SCALE pages (NUM, SCALE <= 31) from its address, with TG =
/// 4K and TTL = the caller's leaf level; consecutive commands abut.
/// Requires IDR3.RIL. An iterator, so no allocation: `len()` tells how many
/// queue slots to reserve before writing them.
#[derive(Clone, Debug)]
pub struct TlbiRange {
    asid: Asid,
    next: u64,
    remaining: u64,
    unit_shift: u32,
    level: LeafLevel,
    leaf: bool,
}

impl TlbiRange {
    /// Plans the invalidation of `pages` 4 KiB pages from `iova`, whose
    /// leaf entries all sit at `level`. The address must be page aligned
    /// and, for block levels, the range must be made of whole blocks (the
    /// TTL hint makes a partial block UNPREDICTABLE); the end must not pass
    /// 2^64. `leaf` restricts the invalidation to last-level entries.
    pub const fn new(
        asid: Asid,
        iova: Iova,
        pages: u64,
        level: LeafLevel,
        leaf: bool,
    ) -> Result<Self, Error> {
        let per = level.pages_per_entry();
        let a = iova.get();
        if a & ((per << PAGE_SHIFT) - 1) != 0 {
            return Err(Error::BadAddress("TLBI range start"));
        }
        if !pages.is_multiple_of(per) {
            return Err(Error::OutOfRange("TLBI range length (partial block)"));
        }
        if pages > (u64::MAX >> PAGE_SHIFT) + 1 - (a >> PAGE_SHIFT) {
            return Err(Error::OutOfRange("TLBI range end"));
        }
        Ok(Self {
            asid,
            next: a,
            remaining: pages / per,
            unit_shift: per.trailing_zeros(),
            level,
            leaf,
        })
    }

    const fn max_scale(&self) -> u32 {
        TLBI_SCALE_MAX as u32 - self.unit_shift
    }
}

impl Iterator for TlbiRange {
    type Item = Command;

    fn next(&mut self) -> Option<Command> {
        if self.remaining == 0 {
            return None;
        }
        let (k, s) = plan_step(self.remaining, self.max_scale());
        let scale = s + self.unit_shift;
        let cmd = Command::TlbiNhVa(TlbiVa {
            vmid: 0,
            asid: self.asid,
            addr: Iova::new(self.next),
            leaf: self.leaf,
            tg: Some(Granule::G4K),
            ttl: self.level as u8,
            num: (k - 1) as u8,
            scale: scale as u8,
        });
        self.remaining -= k << s;
        // Wraps only after the last command of a range ending at 2^64.
        self.next = self.next.wrapping_add((k << scale) << PAGE_SHIFT);
        Some(cmd)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = plan_len(self.remaining, self.max_scale());
        (n, Some(n))
    }
}

impl ExactSizeIterator for TlbiRange {}

/// One CMD_TLBI_NH_VA per 4 KiB page of [iova, iova + pages): the form for
/// an SMMU without range invalidation (`hints` false: TG = TTL = 0, as
/// they are RES0 there) or for single pages with RIL (`hints` true: TG =
/// 4K, TTL = 3) [SMMUv3 §4.4.2.4].
#[derive(Clone, Debug)]
pub struct TlbiPages {
    asid: Asid,
    next: u64,
    remaining: u64,
    hints: bool,
    leaf: bool,
}

impl TlbiPages {
    /// Plans per-page invalidation; `iova` must be page aligned and the
    /// range must not pass 2^64.
    pub const fn new(
        asid: Asid,
        iova: Iova,
        pages: u64,
        hints: bool,
        leaf: bool,
    ) -> Result<Self, Error> {
        let a = iova.get();
        if !iova.is_page_aligned() {
            return Err(Error::BadAddress("TLBI page start"));
        }
        if pages > (u64::MAX >> PAGE_SHIFT) + 1 - (a >> PAGE_SHIFT) {
            return Err(Error::OutOfRange("TLBI range end"));
        }
        Ok(Self {
            asid,
            next: a,
            remaining: pages,
            hints,
            leaf,
        })
    }
}

impl Iterator for TlbiPages {
    type Item = Command;

    fn next(&mut self) -> Option<Command> {
        if self.remaining == 0 {
            return None;
        }
        let cmd = Command::TlbiNhVa(TlbiVa::page(
            self.asid,
            Iova::new(self.next),
            self.leaf,
            self.hints,
        ));
        self.remaining -= 1;
        self.next = self.next.wrapping_add(1 << PAGE_SHIFT);
        Some(cmd)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

impl ExactSizeIterator for TlbiPages {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tlbi(c: Command) -> TlbiVa {
        match c {
            Command::TlbiNhVa(t) => t,
            other => panic!("not a TLBI_NH_VA: {other}"),
        }
    }

    #[test]
    fn config_invalidations() {
        let c = Command::CfgiSte {
            sid: StreamId(0x10),
            leaf: true,
        };
        assert_eq!(c.encode(), [0x10_0000_0003, 1]);
        assert_eq!(Command::decode(c.encode()), c);
        assert_eq!(Command::CfgiAll.encode(), [0x04, 31]);
        assert_eq!(Command::decode([0x04, 31]), Command::CfgiAll);
        let r = Command::CfgiSteRange {
            sid: StreamId(0x100),
            range: 7,
        };
        assert_eq!(r.encode(), [0x100_0000_0004, 7]);
        assert_eq!(Command::decode(r.encode()), r);
        assert!(
            Command::CfgiSteRange {
                sid: StreamId(0),
                range: 31
            }
            .check()
            .is_err()
        );
        let cd = Command::CfgiCd {
            sid: StreamId(8),
            ssid: 5,
            leaf: true,
        };
        assert_eq!(cd.encode(), [(8 << 32) | (5 << 12) | 0x05, 1]);
        assert_eq!(Command::decode(cd.encode()), cd);
        assert!(
            Command::CfgiCd {
                sid: StreamId(8),
                ssid: 1 << 20,
                leaf: true
            }
            .check()
            .is_err()
        );
        let all = Command::CfgiCdAll { sid: StreamId(8) };
        assert_eq!(Command::decode(all.encode()), all);
        let p = Command::PrefetchConfig {
            sid: StreamId(8),
            ssid: None,
        };
        assert_eq!(p.encode(), [(8 << 32) | 1, 0]);
        let p = Command::PrefetchConfig {
            sid: StreamId(8),
            ssid: Some(3),
        };
        assert_eq!(p.encode(), [(8 << 32) | (3 << 12) | (1 << 11) | 1, 0]);
        assert_eq!(Command::decode(p.encode()), p);
    }

    #[test]
    fn tlbi_global_and_asid() {
        let c = Command::TlbiNhAsid {
            vmid: 0,
            asid: Asid(0xabcd),
        };
        assert_eq!(c.encode(), [(0xabcd << 48) | 0x11, 0]);
        assert_eq!(Command::decode(c.encode()), c);
        assert_eq!(Command::TlbiNhAll { vmid: 0 }.encode(), [0x10, 0]);
        assert_eq!(Command::TlbiNsnhAll.encode(), [0x30, 0]);
        assert_eq!(Command::TlbiEl2All.encode(), [0x20, 0]);
        assert_eq!(Command::decode([0x30, 0]), Command::TlbiNsnhAll);
        assert_eq!(Command::decode([0x20, 0]), Command::TlbiEl2All);
        assert_eq!(
            Command::decode(Command::TlbiNhAll { vmid: 3 }.encode()),
            Command::TlbiNhAll { vmid: 3 }
        );
    }

    #[test]
    fn tlbi_va_fields() {
        let t = TlbiVa {
            vmid: 0,
            asid: Asid(7),
            addr: Iova::new(0x1234_5000),
            leaf: true,
            tg: Some(Granule::G4K),
            ttl: 3,
            num: 31,
            scale: 2,
        };
        let c = Command::TlbiNhVa(t);
        let [w0, w1] = c.encode();
        assert_eq!(w0, (7 << 48) | (2 << 20) | (31 << 12) | 0x12);
        assert_eq!(w1, 0x1234_5000 | (1 << 10) | (3 << 8) | 1);
        assert_eq!(Command::decode([w0, w1]), c);
        assert_eq!(t.bytes(), 128 * 4096);
        assert!(t.check().is_ok());
        assert_eq!(
            format!("{c}"),
            "TLBI_NH_VA asid 7 va 0x12345000 +512 KiB (num 31 scale 2) tg 4K ttl 3 leaf"
        );

        let p = TlbiVa::page(Asid(1), Iova::new(0x9000), false, true);
        assert_eq!(
            Command::TlbiNhVa(p).encode()[1],
            0x9000 | (1 << 10) | (3 << 8)
        );
        assert!(p.check().is_ok());
        let p = TlbiVa::page(Asid(1), Iova::new(0x9000), false, false);
        assert_eq!(Command::TlbiNhVa(p).encode()[1], 0x9000);
        assert!(p.check().is_ok());
    }

    #[test]
    fn tlbi_va_rules() {
        let base = TlbiVa::page(Asid(1), Iova::new(0x20_0000), false, true);
        // NUM == SCALE == TTL == 0 with TG is Reserved.
        assert!(TlbiVa { ttl: 0, ..base }.check().is_err());
        assert!(
            TlbiVa {
                ttl: 0,
                num: 1,
                ..base
            }
            .check()
            .is_ok()
        );
        // Without TG, NUM/SCALE/TTL are RES0.
        assert!(TlbiVa { tg: None, ..base }.check().is_err());
        assert!(
            TlbiVa {
                tg: None,
                ttl: 0,
                ..base
            }
            .check()
            .is_ok()
        );
        assert!(TlbiVa { num: 32, ..base }.check().is_err());
        assert!(TlbiVa { scale: 32, ..base }.check().is_err());
        // A level-2 hint needs a 2 MiB aligned address.
        assert!(TlbiVa { ttl: 2, ..base }.check().is_ok());
        assert!(
            TlbiVa {
                ttl: 2,
                addr: Iova::new(0x20_1000),
                ..base
            }
            .check()
            .is_err()
        );
        assert!(TlbiVa { ttl: 1, ..base }.check().is_err());
        assert!(
            TlbiVa {
                tg: Some(Granule::G16K),
                ttl: 1,
                ..base
            }
            .check()
            .is_err()
        );
        assert!(
            TlbiVa {
                addr: Iova::new(0x20_0800),
                ..base
            }
            .check()
            .is_err()
        );
        assert!(
            TlbiVa {
                tg: Some(Granule::G64K),
                addr: Iova::new(0x1_0000),
                ..base
            }
            .check()
            .is_ok()
        );
        assert!(
            TlbiVa {
                tg: Some(Granule::G64K),
                addr: Iova::new(0x1000),
                ..base
            }
            .check()
            .is_err()
        );
    }

    #[test]
    fn sync_layout() {
        let s = Command::Sync(Sync::polled());
        assert_eq!(s.encode(), [0x46, 0]);
        assert_eq!(Command::decode([0x46, 0]), s);
        assert_eq!(format!("{s}"), "CMD_SYNC");
        let m = Command::Sync(Sync::msi(PhysAddr::new(0x4000_1004), 0xdead_beef));
        let [w0, w1] = m.encode();
        assert_eq!(
            w0,
            (0xdead_beef << 32) | (0xf << 24) | (0b11 << 22) | (1 << 12) | 0x46
        );
        assert_eq!(w1, 0x4000_1004);
        assert_eq!(Command::decode([w0, w1]), m);
        assert!(m.check().is_ok());
        assert!(
            Command::Sync(Sync::msi(PhysAddr::new(0x4000_1002), 0))
                .check()
                .is_err()
        );
    }

    #[test]
    fn unknown_opcodes_are_kept() {
        let raw = [0x8000_0000_0000_0044, 0x55];
        assert_eq!(Command::decode(raw), Command::Other { opcode: 0x44, raw });
        assert_eq!(Command::decode(raw).encode(), raw);
        assert_eq!(Command::decode(raw).opcode(), opcode::RESUME);
    }

    #[test]
    fn range_plans() {
        let plan = |iova: u64, pages: u64| -> Vec<TlbiVa> {
            TlbiRange::new(Asid(3), Iova::new(iova), pages, LeafLevel::L3, true)
                .unwrap()
                .map(tlbi)
                .collect()
        };
        assert!(plan(0x1000, 0).is_empty());
        // One page: NUM = SCALE = 0 with TTL 3.
        let p = plan(0x5000, 1);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].num, p[0].scale, p[0].ttl), (0, 0, 3));
        // 32 pages: one command (NUM 0, SCALE 5).
        let p = plan(0x1000, 32);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].num, p[0].scale), (0, 5));
        // 31 pages: one command (NUM 30, SCALE 0).
        let p = plan(0x1000, 31);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].num, p[0].scale), (30, 0));
        // 512 pages (2 MiB): one command, NUM 15 SCALE 5.
        let p = plan(0x4000_0000, 512);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].bytes(), 2 << 20);
        // 33 pages: two.
        let p = plan(0x1000, 33);
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].addr, Iova::new(0x2000));
        // Huge: 2^40 pages (the whole 52-bit space) from 0, at most
        // 32 << 31 pages per command.
        let r = TlbiRange::new(Asid(3), Iova::new(0), 1 << 40, LeafLevel::L3, false).unwrap();
        assert_eq!(r.len(), 16);
        // Block levels work in blocks.
        let r =
            TlbiRange::new(Asid(3), Iova::new(0x20_0000), 512 * 3, LeafLevel::L2, false).unwrap();
        let p: Vec<_> = r.map(tlbi).collect();
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].num, p[0].scale, p[0].ttl), (2, 9, 2));
        assert!(p[0].check().is_ok());
        assert!(TlbiRange::new(Asid(3), Iova::new(0x1000), 512, LeafLevel::L2, false).is_err());
        assert!(TlbiRange::new(Asid(3), Iova::new(0x20_0000), 511, LeafLevel::L2, false).is_err());
        assert!(TlbiRange::new(Asid(3), Iova::new(0x800), 1, LeafLevel::L3, false).is_err());
        // Ending exactly at 2^64 is fine; past it is not.
        let top = u64::MAX - 0xfff;
        assert_eq!(
            TlbiRange::new(Asid(3), Iova::new(top), 1, LeafLevel::L3, false)
                .unwrap()
                .len(),
            1
        );
        assert!(TlbiRange::new(Asid(3), Iova::new(top), 2, LeafLevel::L3, false).is_err());
    }

    #[test]
    fn per_page_plans() {
        let p: Vec<_> = TlbiPages::new(Asid(2), Iova::new(0x3000), 3, true, true)
            .unwrap()
            .map(tlbi)
            .collect();
        assert_eq!(p.len(), 3);
        for (i, t) in p.iter().enumerate() {
            assert_eq!(t.addr, Iova::new(0x3000 + 0x1000 * i as u64));
            assert_eq!((t.tg, t.ttl, t.num, t.scale), (Some(Granule::G4K), 3, 0, 0));
            assert!(t.check().is_ok());
        }
        let it = TlbiPages::new(Asid(2), Iova::new(0x3000), 3, false, true).unwrap();
        assert_eq!(it.len(), 3);
        assert!(
            it.map(tlbi)
                .all(|t| t.tg.is_none() && t.ttl == 0 && t.check().is_ok())
        );
        assert!(TlbiPages::new(Asid(2), Iova::new(0x3001), 1, false, true).is_err());
    }

    /// Fewest terms k << s (1 <= k <= 32, s <= max_scale) summing to n, by
    /// dynamic programming: the reference the planner must match.
    fn optimal_counts(limit: usize, max_scale: u32) -> Vec<usize> {
        let mut best = vec![usize::MAX; limit + 1];
        best[0] = 0;
        for n in 1..=limit {
            for s in 0..=max_scale.min(20) {
                for k in 1..=32usize {
                    let t = k << s;
                    if t <= n && best[n - t] != usize::MAX {
                        best[n] = best[n].min(best[n - t] + 1);
                    }
                }
            }
        }
        best
    }

    #[test]
    fn planner_is_minimal() {
        for max_scale in [0, 1, 2, 3, 31] {
            let best = optimal_counts(3000, max_scale);
            for (n, &b) in best.iter().enumerate() {
                assert_eq!(
                    plan_len(n as u64, max_scale),
                    b,
                    "n {n} max_scale {max_scale}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn range_commands_tile_exactly(
            start_page in 0u64..(1 << 36),
            pages in 0u64..(1 << 24),
            leaf in any::<bool>(),
        ) {
            let iova = start_page << PAGE_SHIFT;
            let r = TlbiRange::new(Asid(9), Iova::new(iova), pages, LeafLevel::L3, leaf).unwrap();
            let expect = r.len();
            let mut next = iova;
            let mut n = 0;
            for c in r {
                let t = tlbi(c);
                prop_assert!(t.check().is_ok(), "{:?}", t);
                prop_assert!(t.num <= TLBI_NUM_MAX && t.scale <= TLBI_SCALE_MAX);
                prop_assert_eq!(t.tg, Some(Granule::G4K));
                prop_assert_eq!(t.ttl, 3);
                prop_assert_eq!(t.asid, Asid(9));
                prop_assert_eq!(t.leaf, leaf);
                // No gap, no overlap: each starts where the last ended.
                prop_assert_eq!(t.addr.get(), next);
                next += t.bytes();
                // Round trip through the encoding.
                prop_assert_eq!(Command::decode(c.encode()), c);
                n += 1;
            }
            prop_assert_eq!(next, iova + (pages << PAGE_SHIFT));
            prop_assert_eq!(n, expect);
            prop_assert!(n <= 1 + (64 - pages.leading_zeros() as usize).div_ceil(5));
        }

        #[test]
        fn block_ranges_tile_exactly(start in 0u64..(1 << 20), blocks in 0u64..(1 << 20)) {
            let per = LeafLevel::L2.pages_per_entry();
            let iova = (start * per) << PAGE_SHIFT;
            let r = TlbiRange::new(Asid(1), Iova::new(iova), blocks * per, LeafLevel::L2, false)
                .unwrap();
            let mut next = iova;
            for c in r {
                let t = tlbi(c);
                prop_assert!(t.check().is_ok(), "{:?}", t);
                prop_assert_eq!(t.addr.get(), next);
                next += t.bytes();
            }
            prop_assert_eq!(next, iova + ((blocks * per) << PAGE_SHIFT));
        }
    }
}
