//! Context Descriptors [SMMUv3 §5.4]: the stage-1 translation context of a
//! stream (table base, ASID, TCR- and MAIR-equivalent fields), built for
//! this system's one format (VMSAv8-64, 4 KiB granule, TTB0 only,
//! little-endian walks, terminate-with-abort faults that are recorded),
//! and decoded for the software model.

use abi::{Asid, PhysAddr};

use crate::bits::{bit, get, set, set_bit};
use crate::idr::{Features, StallModel, TtEndian, bits_to_oas, oas_to_bits};
use crate::{Error, Shareability};

/// 64-bit words in a CD (64 bytes) [SMMUv3 §5.4].
pub const CD_DWORDS: usize = 8;
/// Bytes in a CD; also S1ContextPtr's alignment.
pub const CD_BYTES: u64 = 64;

/// CD.TG0 encodings (TCR_EL1.TG0 style) [SMMUv3 §5.4].
pub mod tg0 {
    /// 4 KiB granule.
    pub const GRANULE_4K: u64 = 0b00;
    /// 64 KiB granule.
    pub const GRANULE_64K: u64 = 0b01;
    /// 16 KiB granule.
    pub const GRANULE_16K: u64 = 0b10;
}

/// CD.IR0/OR0 encodings (walk cacheability, TCR style) [SMMUv3 §5.4].
pub mod rgn {
    /// Non-cacheable.
    pub const NC: u64 = 0b00;
    /// Write-Back, Read-Allocate, Write-Allocate.
    pub const WBWA: u64 = 0b01;
    /// Write-Through, Read-Allocate, no Write-Allocate.
    pub const WT: u64 = 0b10;
    /// Write-Back, Read-Allocate, no Write-Allocate.
    pub const WB: u64 = 0b11;
}

/// What a client domain's CD must say. The remaining fields follow from
/// the SMMU's [`Features`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CdConfig {
    /// The domain's ASID (tags its TLB entries; used by CMD_TLBI_NH_*).
    pub asid: Asid,
    /// Physical address of the starting-level translation table.
    pub ttb0: PhysAddr,
    /// MAIR value (MAIR0 in bits `[31:0]`, MAIR1 in `[63:32]`), as the page
    /// table format's attribute indices expect.
    pub mair: u64,
    /// Input (IOVA) address bits: T0SZ = 64 - `input_bits`.
    pub input_bits: u8,
    /// AFFD: treat descriptors with AF == 0 as accessed instead of
    /// faulting. Without HTTU, software sets AF in every descriptor and
    /// this may stay false; true makes a missed AF harmless.
    pub affd: bool,
}

/// Bytes (and hence alignment) of the starting-level table for a 4 KiB
/// granule walk of `input_bits` bits (VMSAv8-64: 9 bits per level above
/// the 12-bit page offset).
pub const fn start_table_bytes(input_bits: u8) -> u64 {
    let va = input_bits as u32 - 12;
    let levels = va.div_ceil(9);
    let top = va - 9 * (levels - 1);
    8 << top
}

/// Builds the CD for `cfg` on an SMMU with features `f` [SMMUv3 §5.4]:
/// T0SZ from `input_bits`, TG0 = 4 KiB, IR0/OR0 = WBWA and SH0 = Inner
/// Shareable when the SMMU is coherent (else Non-cacheable, Outer), EPD0 = 0,
/// EPD1 = 1 (no TTB1 walks), ENDI = 0, V = 1, IPS = OAS, AFFD from `cfg`,
/// AA64 = 1, HA = HD = 0, S = 0, R = 1, A = 1, ASET = 0, ASID, TTB0, MAIR.
///
/// Refuses what the architecture makes ILLEGAL or this format cannot
/// express: a T0SZ out of range, a TTB0 beyond 48 bits or the OAS or not
/// aligned to its table, an ASID wider than IDR0.ASID16 allows, an SMMU
/// without stage 1 / AArch64 tables / 4 KiB granule / little-endian walks,
/// or one whose stall model forces CD.S = 1.
pub fn build(cfg: &CdConfig, f: &Features) -> Result<[u64; CD_DWORDS], Error> {
    if !f.supports_stage1_aarch64_4k() {
        return Err(Error::OutOfRange(
            "SMMU lacks stage 1 AArch64 4K little-endian",
        ));
    }
    if f.stall_model == StallModel::StallForced {
        return Err(Error::OutOfRange("CD.S (stall forced)"));
    }
    let max_bits = 48;
    let min_bits = if f.stt { 16 } else { 25 };
    if cfg.input_bits < min_bits || cfg.input_bits > max_bits {
        return Err(Error::OutOfRange("CD.T0SZ"));
    }
    let t0sz = 64 - cfg.input_bits as u64;
    if !f.asid16 && cfg.asid.0 > 0xff {
        return Err(Error::OutOfRange("CD.ASID (8-bit ASIDs)"));
    }
    let ips = match bits_to_oas(f.oas_bits) {
        Some(v) => v as u64,
        None => return Err(Error::Reserved("IDR5.OAS")),
    };
    let ttb = cfg.ttb0.get();
    let reach = if f.oas_bits < 48 { f.oas_bits } else { 48 };
    let align = start_table_bytes(cfg.input_bits);
    if ttb >> reach != 0 || ttb & (align - 1) != 0 || ttb & 0xf != 0 {
        return Err(Error::BadAddress("CD.TTB0"));
    }

    let (walk, sh) = if f.coherent {
        (rgn::WBWA, Shareability::Inner)
    } else {
        (rgn::NC, Shareability::Outer)
    };
    let mut w0 = 0;
    w0 = set(w0, 5, 0, t0sz);
    w0 = set(w0, 7, 6, tg0::GRANULE_4K);
    w0 = set(w0, 9, 8, walk); // IR0
    w0 = set(w0, 11, 10, walk); // OR0
    w0 = set(w0, 13, 12, sh.bits()); // SH0
    // EPD0 (14) = 0: TTB0 walks enabled. ENDI (15) = 0: little-endian.
    w0 = set_bit(w0, 30, true); // EPD1
    w0 = set_bit(w0, 31, true); // V
    w0 = set(w0, 34, 32, ips);
    w0 = set_bit(w0, 35, cfg.affd);
    w0 = set_bit(w0, 41, true); // AA64
    // HD (42) = HA (43) = 0, S (44) = 0.
    w0 = set_bit(w0, 45, true); // R: record faults
    w0 = set_bit(w0, 46, true); // A: abort terminated transactions
    // ASET (47) = 0: shared set, takes part in broadcast TLBI.
    w0 = set(w0, 63, 48, cfg.asid.0 as u64);

    let mut cd = [0; CD_DWORDS];
    cd[0] = w0;
    cd[1] = ttb; // TTB0[51:4] sits at bits [51:4] of word 1.
    cd[3] = cfg.mair;
    Ok(cd)
}

/// A CD with V == 0: transactions using it are terminated with C_BAD_CD.
pub const fn invalid() -> [u64; CD_DWORDS] {
    [0; CD_DWORDS]
}

/// The fields of a CD the software model walks with and reports show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cd {
    /// V.
    pub valid: bool,
    /// T0SZ.
    pub t0sz: u8,
    /// TG0 (see [`tg0`]).
    pub tg0: u8,
    /// IR0 (see [`rgn`]).
    pub ir0: u8,
    /// OR0.
    pub or0: u8,
    /// SH0.
    pub sh0: Shareability,
    /// EPD0: TTB0 walks disabled.
    pub epd0: bool,
    /// EPD1: TTB1 walks disabled.
    pub epd1: bool,
    /// ENDI: big-endian walks.
    pub endi: bool,
    /// IPS decoded to bits (None for a Reserved value).
    pub ips_bits: Option<u8>,
    /// AFFD.
    pub affd: bool,
    /// AA64: VMSAv8-64 tables.
    pub aa64: bool,
    /// HD.
    pub hd: bool,
    /// HA.
    pub ha: bool,
    /// S: stall on fault.
    pub s: bool,
    /// R: record faults.
    pub r: bool,
    /// A: abort (not RAZ/WI) terminated transactions.
    pub a: bool,
    /// ASET.
    pub aset: bool,
    /// ASID.
    pub asid: Asid,
    /// TTB0.
    pub ttb0: PhysAddr,
    /// MAIR0 | MAIR1 << 32.
    pub mair: u64,
}

impl Cd {
    /// Decodes the words of a CD [SMMUv3 §5.4].
    pub const fn decode(cd: &[u64; CD_DWORDS]) -> Cd {
        let w0 = cd[0];
        Cd {
            valid: bit(w0, 31),
            t0sz: get(w0, 5, 0) as u8,
            tg0: get(w0, 7, 6) as u8,
            ir0: get(w0, 9, 8) as u8,
            or0: get(w0, 11, 10) as u8,
            sh0: Shareability::from_bits(get(w0, 13, 12)),
            epd0: bit(w0, 14),
            endi: bit(w0, 15),
            epd1: bit(w0, 30),
            ips_bits: oas_to_bits(get(w0, 34, 32) as u8),
            affd: bit(w0, 35),
            aa64: bit(w0, 41),
            hd: bit(w0, 42),
            ha: bit(w0, 43),
            s: bit(w0, 44),
            r: bit(w0, 45),
            a: bit(w0, 46),
            aset: bit(w0, 47),
            asid: Asid(get(w0, 63, 48) as u16),
            ttb0: PhysAddr::new(get(cd[1], 51, 4) << 4),
            mair: cd[3],
        }
    }

    /// Input address bits (64 - T0SZ).
    pub const fn input_bits(&self) -> u8 {
        64 - self.t0sz
    }
}

/// Whether `endian` lets a CD select little-endian walks (ENDI == 0).
pub const fn little_endian_walks_allowed(endian: TtEndian) -> bool {
    !matches!(endian, TtEndian::Big)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu72() -> Features {
        Features::decode([0x0d40_101a, 0x0273_0010, 0, 0x1404, 0, 0x74], 1).unwrap()
    }

    fn cfg() -> CdConfig {
        CdConfig {
            asid: Asid(0x1234),
            ttb0: PhysAddr::new(0x4567_8000),
            mair: 0x0000_0000_0004_ff44,
            input_bits: 48,
            affd: false,
        }
    }

    #[test]
    fn layout_for_qemu() {
        let cd = build(&cfg(), &qemu72()).unwrap();
        let expect_w0 = 16 // T0SZ
            | (0b01 << 8) | (0b01 << 10) | (0b11 << 12) // IR0 OR0 SH0
            | (1 << 30) | (1 << 31) // EPD1 V
            | (4 << 32) // IPS = 44 bits
            | (1 << 41) | (1 << 45) | (1 << 46) // AA64 R A
            | (0x1234 << 48);
        assert_eq!(cd[0], expect_w0);
        assert_eq!(cd[1], 0x4567_8000);
        assert_eq!(cd[2], 0);
        assert_eq!(cd[3], 0x4_ff44);
        assert!(cd[4..].iter().all(|&w| w == 0));
    }

    #[test]
    fn decode_round_trip() {
        let c = CdConfig {
            affd: true,
            input_bits: 39,
            ..cfg()
        };
        let d = Cd::decode(&build(&c, &qemu72()).unwrap());
        assert!(d.valid && d.aa64 && d.a && d.r && d.epd1 && d.affd);
        assert!(!d.s && !d.epd0 && !d.endi && !d.ha && !d.hd && !d.aset);
        assert_eq!(d.t0sz, 25);
        assert_eq!(d.input_bits(), 39);
        assert_eq!(u64::from(d.tg0), tg0::GRANULE_4K);
        assert_eq!(u64::from(d.ir0), rgn::WBWA);
        assert_eq!(d.sh0, Shareability::Inner);
        assert_eq!(d.ips_bits, Some(44));
        assert_eq!(d.asid, Asid(0x1234));
        assert_eq!(d.ttb0, PhysAddr::new(0x4567_8000));
        assert_eq!(d.mair, c.mair);
        assert!(!Cd::decode(&invalid()).valid);
    }

    #[test]
    fn non_coherent_walks_are_non_cacheable() {
        let mut f = qemu72();
        f.coherent = false;
        let d = Cd::decode(&build(&cfg(), &f).unwrap());
        assert_eq!(u64::from(d.ir0), rgn::NC);
        assert_eq!(u64::from(d.or0), rgn::NC);
        assert_eq!(d.sh0, Shareability::Outer);
    }

    #[test]
    fn start_table_sizes() {
        assert_eq!(start_table_bytes(48), 4096);
        assert_eq!(start_table_bytes(39), 4096);
        assert_eq!(start_table_bytes(40), 16);
        assert_eq!(start_table_bytes(32), 32);
        assert_eq!(start_table_bytes(25), 128);
    }

    #[test]
    fn refuses_illegal_contexts() {
        let f = qemu72();
        for bits in [24, 49, 52] {
            assert!(
                build(
                    &CdConfig {
                        input_bits: bits,
                        ..cfg()
                    },
                    &f
                )
                .is_err(),
                "{bits}"
            );
        }
        // TTB0 beyond the 44-bit OAS, or misaligned for its table.
        assert!(
            build(
                &CdConfig {
                    ttb0: PhysAddr::new(1 << 44),
                    ..cfg()
                },
                &f
            )
            .is_err()
        );
        assert!(
            build(
                &CdConfig {
                    ttb0: PhysAddr::new(0x4567_8800),
                    ..cfg()
                },
                &f
            )
            .is_err()
        );
        // A 40-bit walk starts with a 16-byte table.
        assert!(
            build(
                &CdConfig {
                    ttb0: PhysAddr::new(0x4567_8010),
                    input_bits: 40,
                    ..cfg()
                },
                &f
            )
            .is_ok()
        );
        let mut f8 = f;
        f8.asid16 = false;
        assert!(build(&cfg(), &f8).is_err());
        assert!(
            build(
                &CdConfig {
                    asid: Asid(0xff),
                    ..cfg()
                },
                &f8
            )
            .is_ok()
        );
        let mut fs = f;
        fs.stall_model = StallModel::StallForced;
        assert!(build(&cfg(), &fs).is_err());
        let mut fb = f;
        fb.endian = TtEndian::Big;
        assert!(build(&cfg(), &fb).is_err());
        assert!(!little_endian_walks_allowed(TtEndian::Big));
        let mut stt = f;
        stt.stt = true;
        assert!(
            build(
                &CdConfig {
                    input_bits: 20,
                    ..cfg()
                },
                &stt
            )
            .is_ok()
        );
    }
}
