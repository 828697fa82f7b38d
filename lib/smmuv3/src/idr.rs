//! Decoding of the ID registers (SMMU_IDR0..5, SMMU_AIDR) into the set of
//! features the driver may use [SMMUv3 §6.3.1-§6.3.8]. The driver follows
//! these, not assumptions about the emulator.

use core::fmt;

use crate::Error;
use crate::bits::{bit, get};

/// Architecture revision from SMMU_AIDR [SMMUv3 §6.3.8].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ArchVersion {
    /// ArchMajorRev + 3 (0b0000 means SMMUv3.x).
    pub major: u8,
    /// ArchMinorRev: 0 for v3.0, 1 for v3.1, ...
    pub minor: u8,
}

impl fmt::Display for ArchVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SMMUv{}.{}", self.major, self.minor)
    }
}

/// Hardware update of translation table flags, IDR0.HTTU [SMMUv3 §6.3.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Httu {
    /// No hardware update: software sets AF in every descriptor.
    None,
    /// Access flag update.
    Access,
    /// Access flag and dirty state.
    AccessDirty,
    /// Access flag, dirty state and Access flag for table descriptors.
    AccessDirtyTable,
}

/// Stall model, IDR0.STALL_MODEL [SMMUv3 §6.3.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallModel {
    /// Stall and terminate both supported (0b00): STE.S1STALLD chooses.
    StallAndTerminate,
    /// Terminate only (0b01): CD.S and STE.S2S must be 0.
    TerminateOnly,
    /// Stall forced (0b10): CD.S and STE.S2S must be 1.
    StallForced,
}

/// Stream table formats, IDR0.ST_LEVEL [SMMUv3 §6.3.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StLevels {
    /// Linear tables only.
    Linear,
    /// Two-level tables supported as well as linear.
    TwoLevel,
}

/// Translation table walk endianness, IDR0.TTENDIAN [SMMUv3 §6.3.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtEndian {
    /// Either, chosen per CD/STE.
    Mixed,
    /// Little-endian only.
    Little,
    /// Big-endian only.
    Big,
}

/// Largest virtual address translated per TTB, IDR5.VAX [SMMUv3 §6.3.6].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vax {
    /// 48-bit VAs.
    Bits48,
    /// 52-bit VAs.
    Bits52,
    /// 56-bit VAs.
    Bits56,
}

/// Everything the ID registers say that this system's driver uses or
/// reports. Field names follow the register fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// Architecture revision (AIDR).
    pub version: ArchVersion,
    /// IDR0.S1P: stage 1 translation.
    pub stage1: bool,
    /// IDR0.S2P: stage 2 translation.
    pub stage2: bool,
    /// `IDR0.TTF[1]`: VMSAv8-64 (AArch64) translation tables.
    pub ttf_aarch64: bool,
    /// `IDR0.TTF[0]`: VMSAv8-32 LPAE (AArch32) translation tables.
    pub ttf_aarch32: bool,
    /// IDR0.COHACC: table, queue and MSI accesses are IO-coherent.
    pub coherent: bool,
    /// IDR0.BTM: broadcast TLB maintenance.
    pub btm: bool,
    /// IDR0.HTTU.
    pub httu: Httu,
    /// IDR0.Hyp: EL2 StreamWorld and CMD_TLBI_EL2_*.
    pub hyp: bool,
    /// IDR0.ATS: PCIe ATS.
    pub ats: bool,
    /// IDR0.ASID16: 16-bit ASIDs (else 8-bit).
    pub asid16: bool,
    /// IDR0.MSI: message-signalled interrupts.
    pub msi: bool,
    /// IDR0.SEV: WFE wake-up events.
    pub sev: bool,
    /// IDR0.PRI: PCIe Page Request Interface.
    pub pri: bool,
    /// IDR0.VMID16: 16-bit VMIDs.
    pub vmid16: bool,
    /// IDR0.CD2L: two-level CD tables.
    pub cd2l: bool,
    /// IDR0.TTENDIAN.
    pub endian: TtEndian,
    /// IDR0.STALL_MODEL.
    pub stall_model: StallModel,
    /// IDR0.TERM_MODEL: terminated transactions always abort (CD.A must
    /// be 1); false means CD.A may choose RAZ/WI.
    pub term_abort_only: bool,
    /// IDR0.ST_LEVEL.
    pub st_levels: StLevels,
    /// IDR1.ATTR_TYPES_OVR: STE.{MTCFG,MemAttr,ALLOCCFG,SHCFG} are
    /// implemented (else RES0).
    pub attr_types_ovr: bool,
    /// IDR1.ATTR_PERMS_OVR: STE.{INSTCFG,PRIVCFG} are implemented.
    pub attr_perms_ovr: bool,
    /// IDR1.REL: base registers hold relative addresses (embedded only).
    pub rel: bool,
    /// IDR1.TABLES_PRESET: table bases are fixed.
    pub tables_preset: bool,
    /// IDR1.QUEUES_PRESET: queue bases are fixed.
    pub queues_preset: bool,
    /// IDR1.CMDQS: log2 of the largest command queue.
    pub cmdqs: u8,
    /// IDR1.EVENTQS: log2 of the largest event queue.
    pub eventqs: u8,
    /// IDR1.PRIQS: log2 of the largest PRI queue.
    pub priqs: u8,
    /// IDR1.SSIDSIZE: SubstreamID bits (0: no substreams).
    pub ssid_bits: u8,
    /// IDR1.SIDSIZE: StreamID bits.
    pub sid_bits: u8,
    /// IDR3.HAD: hierarchical attribute disables.
    pub had: bool,
    /// IDR3.XNX: EL0/EL1 execute-never distinction at stage 2.
    pub xnx: bool,
    /// IDR3.STT: small translation tables (T0SZ up to 48).
    pub stt: bool,
    /// IDR3.RIL: range invalidation and TTL hints in CMD_TLBI_*.
    pub ril: bool,
    /// IDR3.BBML: break-before-make level (0, 1 or 2).
    pub bbml: u8,
    /// IDR5.OAS decoded to bits: 32, 36, 40, 42, 44, 48, 52 or 56.
    pub oas_bits: u8,
    /// IDR5.GRAN4K.
    pub gran4k: bool,
    /// IDR5.GRAN16K.
    pub gran16k: bool,
    /// IDR5.GRAN64K.
    pub gran64k: bool,
    /// IDR5.DS: 52-bit addresses with 4K/16K granules (FEAT_LPA2).
    pub ds: bool,
    /// IDR5.VAX.
    pub vax: Vax,
    /// IDR5.STALL_MAX: most outstanding stalled transactions.
    pub stall_max: u16,
}

/// OAS field to bits [SMMUv3 §6.3.6].
pub const fn oas_to_bits(oas: u8) -> Option<u8> {
    match oas {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        6 => Some(52),
        7 => Some(56),
        _ => None,
    }
}

/// Address size in bits to the OAS/IPS encoding (the inverse of
/// [`oas_to_bits`]) [SMMUv3 §6.3.6, §5.4].
pub const fn bits_to_oas(bits: u8) -> Option<u8> {
    match bits {
        32 => Some(0),
        36 => Some(1),
        40 => Some(2),
        42 => Some(3),
        44 => Some(4),
        48 => Some(5),
        52 => Some(6),
        56 => Some(7),
        _ => None,
    }
}

impl Features {
    /// Decodes IDR0..IDR5 (`idr[n]` is SMMU_IDRn) and SMMU_AIDR. Fails on a
    /// value the architecture marks Reserved, or a combination that leaves
    /// nothing usable (no translation stage, no table format).
    pub fn decode(idr: [u32; 6], aidr: u32) -> Result<Features, Error> {
        let [i0, i1, _i2, i3, _i4, i5] = idr.map(u64::from);
        let aidr = u64::from(aidr);

        let ttf = get(i0, 3, 2);
        if ttf == 0 {
            return Err(Error::Reserved("IDR0.TTF"));
        }
        let stage1 = bit(i0, 1);
        let stage2 = bit(i0, 0);
        if !stage1 && !stage2 {
            return Err(Error::Reserved("IDR0.S1P/S2P (no stage)"));
        }
        let endian = match get(i0, 22, 21) {
            0b00 => TtEndian::Mixed,
            0b10 => TtEndian::Little,
            0b11 => TtEndian::Big,
            _ => return Err(Error::Reserved("IDR0.TTENDIAN")),
        };
        let stall_model = match get(i0, 25, 24) {
            0b00 => StallModel::StallAndTerminate,
            0b01 => StallModel::TerminateOnly,
            0b10 => StallModel::StallForced,
            _ => return Err(Error::Reserved("IDR0.STALL_MODEL")),
        };
        let st_levels = match get(i0, 28, 27) {
            0b00 => StLevels::Linear,
            0b01 => StLevels::TwoLevel,
            _ => return Err(Error::Reserved("IDR0.ST_LEVEL")),
        };
        let httu = match get(i0, 7, 6) {
            0b00 => Httu::None,
            0b01 => Httu::Access,
            0b10 => Httu::AccessDirty,
            _ => Httu::AccessDirtyTable,
        };
        let sid_bits = get(i1, 5, 0) as u8;
        if sid_bits > 32 {
            return Err(Error::Reserved("IDR1.SIDSIZE"));
        }
        let ssid_bits = get(i1, 10, 6) as u8;
        if ssid_bits > 20 {
            return Err(Error::Reserved("IDR1.SSIDSIZE"));
        }
        let cmdqs = get(i1, 25, 21) as u8;
        let eventqs = get(i1, 20, 16) as u8;
        let priqs = get(i1, 15, 11) as u8;
        if cmdqs > 19 || eventqs > 19 || priqs > 19 {
            return Err(Error::Reserved("IDR1 queue size"));
        }
        let bbml = get(i3, 12, 11) as u8;
        if bbml == 0b11 {
            return Err(Error::Reserved("IDR3.BBML"));
        }
        let oas_bits = match oas_to_bits(get(i5, 2, 0) as u8) {
            Some(b) => b,
            None => return Err(Error::Reserved("IDR5.OAS")),
        };
        let vax = match get(i5, 11, 10) {
            0b00 => Vax::Bits48,
            0b01 => Vax::Bits52,
            0b10 => Vax::Bits56,
            _ => return Err(Error::Reserved("IDR5.VAX")),
        };
        let (gran4k, gran16k, gran64k) = (bit(i5, 4), bit(i5, 5), bit(i5, 6));
        if !(gran4k || gran16k || gran64k) {
            return Err(Error::Reserved("IDR5.GRAN* (no granule)"));
        }

        Ok(Features {
            version: ArchVersion {
                major: 3 + get(aidr, 7, 4) as u8,
                minor: get(aidr, 3, 0) as u8,
            },
            stage1,
            stage2,
            ttf_aarch64: ttf & 0b10 != 0,
            ttf_aarch32: ttf & 0b01 != 0,
            coherent: bit(i0, 4),
            btm: bit(i0, 5),
            httu,
            hyp: bit(i0, 9),
            ats: bit(i0, 10),
            asid16: bit(i0, 12),
            msi: bit(i0, 13),
            sev: bit(i0, 14),
            pri: bit(i0, 16),
            vmid16: bit(i0, 18),
            cd2l: bit(i0, 19),
            endian,
            stall_model,
            term_abort_only: bit(i0, 26),
            st_levels,
            attr_types_ovr: bit(i1, 27),
            attr_perms_ovr: bit(i1, 26),
            rel: bit(i1, 28),
            queues_preset: bit(i1, 29),
            tables_preset: bit(i1, 30),
            cmdqs,
            eventqs,
            priqs,
            ssid_bits,
            sid_bits,
            had: bit(i3, 2),
            xnx: bit(i3, 4),
            stt: bit(i3, 9),
            ril: bit(i3, 10),
            bbml,
            oas_bits,
            gran4k,
            gran16k,
            gran64k,
            ds: bit(i5, 7),
            vax,
            stall_max: get(i5, 31, 16) as u16,
        })
    }

    /// Whether this SMMU can run this system's configuration: stage 1 with
    /// AArch64 tables, 4 KiB granule, and little-endian (or mixed) walks.
    pub fn supports_stage1_aarch64_4k(&self) -> bool {
        self.stage1 && self.ttf_aarch64 && self.gran4k && self.endian != TtEndian::Big
    }

    /// Whether a terminated transaction can only abort (TERM_MODEL == 1),
    /// so that CD.A must be 1. (With TERM_MODEL == 0, A == 1 is still legal.)
    pub fn cd_a_required(&self) -> bool {
        self.term_abort_only
    }
}

impl fmt::Display for Features {
    /// A one-line report for the boot log, e.g.
    /// `SMMUv3.1: stage1 AArch64 | coherent | ASID16 | SID 16 bits (2-level ST) |
    /// cmdq 2^19 evtq 2^19 | RIL BBML2 | OAS 44 bits | granules 4K 16K 64K |
    /// no: MSI ATS PRI SEV HTTU SSID stall`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.version)?;
        match (self.stage1, self.stage2) {
            (true, true) => f.write_str("stage1+2")?,
            (true, false) => f.write_str("stage1")?,
            _ => f.write_str("stage2")?,
        }
        if self.ttf_aarch64 {
            f.write_str(" AArch64")?;
        }
        if self.ttf_aarch32 {
            f.write_str(" AArch32")?;
        }
        if self.endian == TtEndian::Big {
            f.write_str(" big-endian")?;
        }
        f.write_str(if self.coherent {
            " | coherent"
        } else {
            " | non-coherent"
        })?;
        f.write_str(if self.asid16 { " | ASID16" } else { " | ASID8" })?;
        if self.stage2 {
            f.write_str(if self.vmid16 { " VMID16" } else { " VMID8" })?;
        }
        if self.hyp {
            f.write_str(" Hyp")?;
        }
        write!(f, " | SID {} bits", self.sid_bits)?;
        f.write_str(match self.st_levels {
            StLevels::TwoLevel => " (2-level ST)",
            StLevels::Linear => " (linear ST)",
        })?;
        if self.ssid_bits > 0 {
            write!(f, " SSID {} bits", self.ssid_bits)?;
        }
        write!(f, " | cmdq 2^{} evtq 2^{}", self.cmdqs, self.eventqs)?;
        if self.pri {
            write!(f, " priq 2^{}", self.priqs)?;
        }
        f.write_str(" |")?;
        let mut any = false;
        if self.ril {
            any = true;
            f.write_str(" RIL")?;
        }
        if self.bbml > 0 {
            any = true;
            write!(f, " BBML{}", self.bbml)?;
        }
        let others = [
            (self.xnx, "XNX"),
            (self.stt, "STT"),
            (self.btm, "BTM"),
            (self.ats, "ATS"),
            (self.pri, "PRI"),
            (self.msi, "MSI"),
            (self.sev, "SEV"),
            (self.cd2l, "CD2L"),
        ];
        for (on, name) in others {
            if on {
                any = true;
                write!(f, " {name}")?;
            }
        }
        if !any {
            f.write_str(" -")?;
        }
        write!(f, " | OAS {} bits", self.oas_bits)?;
        match self.vax {
            Vax::Bits48 => {}
            Vax::Bits52 => f.write_str(" VA 52")?,
            Vax::Bits56 => f.write_str(" VA 56")?,
        }
        f.write_str(" | granules")?;
        for (on, name) in [
            (self.gran4k, "4K"),
            (self.gran16k, "16K"),
            (self.gran64k, "64K"),
        ] {
            if on {
                write!(f, " {name}")?;
            }
        }
        match self.httu {
            Httu::None => {}
            Httu::Access => f.write_str(" | HTTU AF")?,
            Httu::AccessDirty => f.write_str(" | HTTU AF+dirty")?,
            Httu::AccessDirtyTable => f.write_str(" | HTTU AF+dirty+table-AF")?,
        }
        match self.stall_model {
            StallModel::TerminateOnly => {}
            StallModel::StallAndTerminate => f.write_str(" | stall optional")?,
            StallModel::StallForced => f.write_str(" | stall forced")?,
        }
        let missing = [
            (!self.msi, "MSI"),
            (!self.ats, "ATS"),
            (!self.pri, "PRI"),
            (!self.sev, "SEV"),
            (self.httu == Httu::None, "HTTU"),
            (self.ssid_bits == 0, "SSID"),
            (self.stall_model == StallModel::TerminateOnly, "stall"),
        ];
        if missing.iter().any(|(m, _)| *m) {
            f.write_str(" | no:")?;
            for (m, name) in missing {
                if m {
                    write!(f, " {name}")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// QEMU 7.2's `virt` SMMUv3 (docs/PLATFORM.md).
    pub(crate) const QEMU72: [u32; 6] = [0x0d40_101a, 0x0273_0010, 0, 0x1404, 0, 0x74];
    /// QEMU 10.0.2's `virt` SMMUv3 (docs/PLATFORM.md).
    pub(crate) const QEMU10: [u32; 6] = [0x0d44_101b, 0x0273_0010, 0, 0x1414, 0, 0x74];

    fn common(f: &Features) {
        assert_eq!(f.version, ArchVersion { major: 3, minor: 1 });
        assert!(f.stage1);
        assert!(f.ttf_aarch64 && !f.ttf_aarch32);
        assert!(f.coherent);
        assert!(f.asid16);
        assert_eq!(f.sid_bits, 16);
        assert_eq!(f.ssid_bits, 0);
        assert_eq!(f.st_levels, StLevels::TwoLevel);
        assert!(f.ril);
        assert_eq!(f.bbml, 2);
        assert_eq!(f.oas_bits, 44);
        assert!(f.gran4k && f.gran16k && f.gran64k);
        assert_eq!(f.cmdqs, 19);
        assert_eq!(f.eventqs, 19);
        assert_eq!(f.priqs, 0);
        assert_eq!(f.stall_model, StallModel::TerminateOnly);
        assert!(f.term_abort_only && f.cd_a_required());
        assert_eq!(f.endian, TtEndian::Little);
        assert_eq!(f.httu, Httu::None);
        assert!(!f.msi && !f.ats && !f.pri && !f.sev && !f.btm && !f.hyp);
        assert!(!f.attr_types_ovr && !f.attr_perms_ovr);
        assert!(!f.rel && !f.tables_preset && !f.queues_preset);
        assert_eq!(f.vax, Vax::Bits48);
        assert!(!f.ds);
        assert!(f.had);
        assert!(f.supports_stage1_aarch64_4k());
    }

    #[test]
    fn qemu_7_2() {
        let f = Features::decode(QEMU72, 1).unwrap();
        common(&f);
        assert!(!f.stage2);
        assert!(!f.vmid16);
        assert!(!f.xnx);
        assert_eq!(
            format!("{f}"),
            "SMMUv3.1: stage1 AArch64 | coherent | ASID16 | SID 16 bits (2-level ST) | \
             cmdq 2^19 evtq 2^19 | RIL BBML2 | OAS 44 bits | granules 4K 16K 64K | \
             no: MSI ATS PRI SEV HTTU SSID stall"
        );
    }

    #[test]
    fn qemu_10_0_2() {
        let f = Features::decode(QEMU10, 1).unwrap();
        common(&f);
        assert!(f.stage2);
        assert!(f.vmid16);
        assert!(f.xnx);
        assert_eq!(
            format!("{f}"),
            "SMMUv3.1: stage1+2 AArch64 | coherent | ASID16 VMID16 | SID 16 bits (2-level ST) | \
             cmdq 2^19 evtq 2^19 | RIL BBML2 XNX | OAS 44 bits | granules 4K 16K 64K | \
             no: MSI ATS PRI SEV HTTU SSID stall"
        );
    }

    #[test]
    fn version_from_aidr() {
        let f = Features::decode(QEMU72, 0).unwrap();
        assert_eq!(format!("{}", f.version), "SMMUv3.0");
        let f = Features::decode(QEMU72, 2).unwrap();
        assert_eq!(format!("{}", f.version), "SMMUv3.2");
    }

    #[test]
    fn rich_smmu() {
        // Stage 1+2, both table formats, HTTU AF+dirty, ATS, PRI, MSI,
        // SEV, stall optional, 20-bit SSIDs, 52-bit OAS.
        let idr0 = (1 << 0)
            | (1 << 1)
            | (0b11 << 2)
            | (1 << 4)
            | (1 << 5)
            | (0b10 << 6)
            | (1 << 9)
            | (1 << 10)
            | (1 << 12)
            | (1 << 13)
            | (1 << 14)
            | (1 << 16)
            | (1 << 18)
            | (1 << 19)
            | (0b01 << 27);
        let idr1 = (19 << 21) | (19 << 16) | (19 << 11) | (20 << 6) | 32 | (1 << 27);
        let idr5 = 6 | (1 << 4) | (1 << 6) | (0b01 << 10) | (8 << 16);
        let f = Features::decode([idr0, idr1, 0, 1 << 10, 0, idr5], 2).unwrap();
        assert!(f.ttf_aarch32 && f.ttf_aarch64);
        assert_eq!(f.httu, Httu::AccessDirty);
        assert_eq!(f.stall_model, StallModel::StallAndTerminate);
        assert_eq!(f.endian, TtEndian::Mixed);
        assert_eq!(f.ssid_bits, 20);
        assert_eq!(f.sid_bits, 32);
        assert_eq!(f.oas_bits, 52);
        assert_eq!(f.vax, Vax::Bits52);
        assert_eq!(f.stall_max, 8);
        assert!(f.attr_types_ovr && f.cd2l);
        let s = format!("{f}");
        assert!(s.starts_with("SMMUv3.2: stage1+2 AArch64 AArch32 | coherent | ASID16 VMID16 Hyp"));
        assert!(s.contains("SSID 20 bits"));
        assert!(s.contains("HTTU AF+dirty"));
        assert!(s.contains("stall optional"));
        assert!(!s.contains("no:"));
    }

    #[test]
    fn reserved_values_are_refused() {
        let mut idr = QEMU72;
        idr[0] &= !(0b11 << 2);
        assert_eq!(Features::decode(idr, 1), Err(Error::Reserved("IDR0.TTF")));
        let mut idr = QEMU72;
        idr[0] &= !0b11;
        assert!(Features::decode(idr, 1).is_err());
        let mut idr = QEMU72;
        idr[0] |= 0b11 << 24;
        assert!(Features::decode(idr, 1).is_err());
        let mut idr = QEMU72;
        idr[0] = (idr[0] & !(0b11 << 21)) | (0b01 << 21);
        assert!(Features::decode(idr, 1).is_err());
        let mut idr = QEMU72;
        idr[0] |= 0b10 << 27;
        assert!(Features::decode(idr, 1).is_err());
        let mut idr = QEMU72;
        idr[1] = (idr[1] & !0x3f) | 33;
        assert!(Features::decode(idr, 1).is_err());
        let mut idr = QEMU72;
        idr[5] &= !0x70;
        assert!(Features::decode(idr, 1).is_err());
        let mut idr = QEMU72;
        idr[3] |= 0b11 << 11;
        assert!(Features::decode(idr, 1).is_err());
    }

    #[test]
    fn oas_table_round_trips() {
        for oas in 0..8 {
            let bits = oas_to_bits(oas).unwrap();
            assert_eq!(bits_to_oas(bits), Some(oas));
        }
        assert_eq!(oas_to_bits(8), None);
        assert_eq!(bits_to_oas(47), None);
    }
}
