//! VMSAv8-64 translation table descriptors for the 4 KiB granule: bit
//! positions, encoding and decoding, and the typed leaf attributes
//! ([`Attrs`]). Pure functions only: this module never touches memory and
//! never decides policy (which attributes a caller should ask for).
//!
//! Encodes [Arm ARM D8.3] (DDI0487 K.a, "Translation table descriptor
//! formats"): table descriptors (D8.3.1), block and page descriptors
//! (D8.3.2), and the attribute fields of [Arm ARM D8.4] (access
//! permissions, execute-never) and [Arm ARM D8.6] (AttrIndx into MAIR,
//! shareability). Output addresses are at most 48 bits (no FEAT_LPA/LPA2),
//! so a level-0 descriptor can only be a table.

use abi::PhysAddr;

/// Bit 0: the descriptor is valid [Arm ARM D8.3].
pub const VALID: u64 = 1 << 0;
/// Bit 1: at levels 0–2 a table descriptor (1) or a block (0); at level 3 it
/// must be 1 for a page descriptor (0 there is reserved, treated as invalid).
pub const TABLE_OR_PAGE: u64 = 1 << 1;
/// Bits \[4:2\]: AttrIndx, an index into MAIR_ELx (for the SMMU: CD.MAIR).
pub const ATTR_INDX_SHIFT: u32 = 2;
/// Mask of AttrIndx in place.
pub const ATTR_INDX_MASK: u64 = 0b111 << ATTR_INDX_SHIFT;
/// Bit 6: AP\[1\], access from EL0 (for the SMMU: from unprivileged
/// transactions) is permitted.
pub const AP_EL0: u64 = 1 << 6;
/// Bit 7: AP\[2\], read-only at every level (for the SMMU: device writes fault).
pub const AP_RO: u64 = 1 << 7;
/// Bits \[9:8\]: SH, shareability of Normal memory.
pub const SH_SHIFT: u32 = 8;
/// Mask of SH in place.
pub const SH_MASK: u64 = 0b11 << SH_SHIFT;
/// Bit 10: the Access Flag. Always set by this crate: neither the CPU tables
/// (no FEAT_HAFDBS assumed) nor QEMU's SMMU (no HTTU) update it in hardware.
pub const AF: u64 = 1 << 10;
/// Bit 11: nG, the entry is tagged with the ASID (not global).
pub const NG: u64 = 1 << 11;
/// Bit 53: PXN, privileged execute-never.
pub const PXN: u64 = 1 << 53;
/// Bit 54: UXN (XN), unprivileged execute-never.
pub const UXN: u64 = 1 << 54;
/// Bits \[47:12\]: output address of a page, or next-level table address.
pub const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
/// Attribute bits this crate writes into leaves (lower \[11:2\], upper
/// \[63:50\]); copied verbatim when a block is split.
pub const LEAF_ATTR_MASK: u64 = 0xfffc_0000_0000_0ffc;

/// Number of descriptors in one 4 KiB table.
pub const ENTRIES: usize = 512;
/// Deepest level (pages) with the 4 KiB granule.
pub const LAST_LEVEL: u8 = 3;

/// log2 of the bytes one descriptor at `level` (0..=3) maps
/// [Arm ARM D8.2]: 39, 30, 21, 12.
pub const fn level_shift(level: u8) -> u32 {
    12 + 9 * (LAST_LEVEL as u32 - level as u32)
}

/// Bytes one descriptor at `level` maps: 512 GiB, 1 GiB, 2 MiB, 4 KiB.
pub const fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

/// Index of `addr` in a table at `level`.
pub const fn level_index(addr: u64, level: u8) -> usize {
    ((addr >> level_shift(level)) as usize) & (ENTRIES - 1)
}

/// Shareability of Normal memory (SH\[1:0\]) [Arm ARM D8.6].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shareability {
    /// 0b00: non-shareable.
    NonShareable,
    /// 0b10: outer shareable.
    Outer,
    /// 0b11: inner shareable (what an SMP kernel and a coherent SMMU want).
    Inner,
}

impl Shareability {
    const fn bits(self) -> u64 {
        match self {
            Self::NonShareable => 0b00,
            Self::Outer => 0b10,
            Self::Inner => 0b11,
        }
    }

    /// 0b01 is reserved; it is never written by this crate and decodes as
    /// non-shareable.
    const fn from_bits(bits: u64) -> Self {
        match bits & 0b11 {
            0b10 => Self::Outer,
            0b11 => Self::Inner,
            _ => Self::NonShareable,
        }
    }
}

/// Data access permissions, AP\[2:1\] of a stage-1 descriptor
/// [Arm ARM D8.4.1, "Data access permissions for stage 1"].
///
/// For the SMMU (stage 1 from a context descriptor), "privileged" and
/// "unprivileged" are the PnU attribute of each transaction (or STE.PRIVCFG
/// overriding it), AP\[2\] decides whether a device may write, and stage 1
/// always permits reads. The IOMMU server should use [`Access::UserRw`] for
/// a device-writable buffer and [`Access::UserRo`] for a device-read-only
/// one, so that the device reaches the page whatever PnU it sends (Linux's
/// io-pgtable sets AP\[1\] for every non-`IOMMU_PRIV` mapping for the same
/// reason). [`Attrs::dma`] does this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// AP = 0b00: read/write at EL1 (privileged), no access at EL0.
    KernelRw,
    /// AP = 0b10: read-only at EL1, no access at EL0.
    KernelRo,
    /// AP = 0b01: read/write at EL1 and EL0 (for the SMMU: a device may read
    /// and write with either PnU). EL0-writable memory is also implicitly
    /// PXN on the CPU.
    UserRw,
    /// AP = 0b11: read-only at EL1 and EL0 (for the SMMU: a device may only
    /// read, with either PnU).
    UserRo,
}

impl Access {
    const fn bits(self) -> u64 {
        match self {
            Self::KernelRw => 0,
            Self::KernelRo => AP_RO,
            Self::UserRw => AP_EL0,
            Self::UserRo => AP_RO | AP_EL0,
        }
    }

    const fn from_bits(raw: u64) -> Self {
        match (raw & AP_RO != 0, raw & AP_EL0 != 0) {
            (false, false) => Self::KernelRw,
            (true, false) => Self::KernelRo,
            (false, true) => Self::UserRw,
            (true, true) => Self::UserRo,
        }
    }

    /// Whether writes are permitted (AP\[2\] = 0).
    pub const fn writable(self) -> bool {
        matches!(self, Self::KernelRw | Self::UserRw)
    }
}

/// What a leaf (page or block) descriptor says about its memory. AF is not
/// a field: it is always 1. NS and the contiguous hint are always 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// AttrIndx: which MAIR attribute (0..=7) describes the memory type.
    /// The MAIR contents belong to the caller (kernel MAIR_EL1, CD.MAIR).
    pub mair_index: u8,
    /// SH\[1:0\].
    pub shareability: Shareability,
    /// AP\[2:1\].
    pub access: Access,
    /// PXN: no instruction fetch at EL1 (for the SMMU: by privileged
    /// instruction transactions).
    pub pxn: bool,
    /// UXN/XN: no instruction fetch at EL0 (for the SMMU: by unprivileged
    /// instruction transactions).
    pub uxn: bool,
    /// nG: the TLB entry is tagged with the ASID. Must be set for every
    /// per-task CPU mapping and every SMMU domain mapping; a global entry
    /// would be visible under every ASID.
    pub not_global: bool,
}

impl Attrs {
    /// Attributes for a device buffer in an SMMU stage-1 domain: inner
    /// shareable, unprivileged-accessible (AP\[1\] = 1, see [`Access`]),
    /// writable by the device iff `device_writable`, never executable,
    /// ASID-tagged: the same bits as [`user_data`](Self::user_data), as the
    /// SMMU reads AP\[1\] and XN the way a task's CPU page table does.
    pub const fn dma(mair_index: u8, device_writable: bool) -> Self {
        Self::user_data(mair_index, device_writable)
    }

    /// Attributes for task (EL0) data: inner shareable, ASID-tagged, never
    /// executable.
    pub const fn user_data(mair_index: u8, writable: bool) -> Self {
        Self {
            mair_index,
            shareability: Shareability::Inner,
            access: if writable {
                Access::UserRw
            } else {
                Access::UserRo
            },
            pxn: true,
            uxn: true,
            not_global: true,
        }
    }

    /// Attributes for task (EL0) code: read-only, executable at EL0 only.
    pub const fn user_code(mair_index: u8) -> Self {
        Self {
            uxn: false,
            ..Self::user_data(mair_index, false)
        }
    }

    /// Attributes for kernel-only data: inner shareable, global, never
    /// executable.
    pub const fn kernel_data(mair_index: u8, writable: bool) -> Self {
        Self {
            mair_index,
            shareability: Shareability::Inner,
            access: if writable {
                Access::KernelRw
            } else {
                Access::KernelRo
            },
            pxn: true,
            uxn: true,
            not_global: false,
        }
    }

    /// Whether every field can be encoded (AttrIndx has three bits).
    pub const fn is_valid(&self) -> bool {
        self.mair_index <= 7
    }

    /// The attribute bits of a leaf descriptor, AF included, without the
    /// valid/type bits or the output address.
    // Always inlined: a few ORs, which the map of a page called out of line.
    #[inline(always)]
    pub const fn bits(&self) -> u64 {
        let mut raw = ((self.mair_index as u64) << ATTR_INDX_SHIFT) & ATTR_INDX_MASK;
        raw |= self.shareability.bits() << SH_SHIFT;
        raw |= self.access.bits();
        raw |= AF;
        if self.not_global {
            raw |= NG;
        }
        if self.pxn {
            raw |= PXN;
        }
        if self.uxn {
            raw |= UXN;
        }
        raw
    }

    /// Decodes the attribute fields of a leaf descriptor.
    pub const fn from_bits(raw: u64) -> Self {
        Self {
            mair_index: ((raw & ATTR_INDX_MASK) >> ATTR_INDX_SHIFT) as u8,
            shareability: Shareability::from_bits(raw >> SH_SHIFT),
            access: Access::from_bits(raw),
            pxn: raw & PXN != 0,
            uxn: raw & UXN != 0,
            not_global: raw & NG != 0,
        }
    }
}

/// A table descriptor pointing at `next` [Arm ARM D8.3.1]. The hierarchical
/// attributes (APTable, XNTable, PXNTable, NSTable) are left 0: permissions
/// live in the leaves only.
pub const fn table(next: PhysAddr) -> u64 {
    (next.get() & ADDR_MASK) | TABLE_OR_PAGE | VALID
}

/// A leaf at `level` (block at 1 or 2, page at 3) mapping `oa` with the
/// attribute bits `attr_bits` (as from [`Attrs::bits`]) [Arm ARM D8.3.2].
/// `oa` must be aligned to [`level_size`]`(level)`; low bits are dropped.
pub const fn leaf_raw(level: u8, oa: u64, attr_bits: u64) -> u64 {
    let oa = oa & ADDR_MASK & !(level_size(level) - 1);
    let kind = if level == LAST_LEVEL {
        TABLE_OR_PAGE | VALID
    } else {
        VALID
    };
    oa | (attr_bits & LEAF_ATTR_MASK) | kind
}

/// A leaf at `level` mapping `oa` with `attrs`.
pub const fn leaf(level: u8, oa: PhysAddr, attrs: &Attrs) -> u64 {
    leaf_raw(level, oa.get(), attrs.bits())
}

/// What a descriptor at a given level is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Descriptor {
    /// Invalid (faults), or a reserved encoding that behaves as invalid.
    Invalid,
    /// Points at a next-level table.
    Table(PhysAddr),
    /// Maps [`level_size`]`(level)` bytes at `oa`.
    Leaf {
        /// Output address of the block or page.
        oa: PhysAddr,
        /// The raw attribute bits ([`LEAF_ATTR_MASK`]).
        attr_bits: u64,
    },
}

/// Decodes `raw` found at `level` [Arm ARM D8.3]: bits\[1:0\] = 0b11 is a
/// table at levels 0–2 and a page at level 3; 0b01 is a block at levels 1
/// and 2, and invalid at levels 0 and 3 with the 4 KiB granule.
pub const fn decode(level: u8, raw: u64) -> Descriptor {
    if raw & VALID == 0 {
        return Descriptor::Invalid;
    }
    let addr = raw & ADDR_MASK;
    let bit1 = raw & TABLE_OR_PAGE != 0;
    if level == LAST_LEVEL {
        if bit1 {
            Descriptor::Leaf {
                oa: PhysAddr::new(addr),
                attr_bits: raw & LEAF_ATTR_MASK,
            }
        } else {
            Descriptor::Invalid
        }
    } else if bit1 {
        Descriptor::Table(PhysAddr::new(addr))
    } else if level == 0 {
        Descriptor::Invalid
    } else {
        Descriptor::Leaf {
            oa: PhysAddr::new(addr & !(level_size(level) - 1)),
            attr_bits: raw & LEAF_ATTR_MASK,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Attrs = Attrs {
        mair_index: 0,
        shareability: Shareability::NonShareable,
        access: Access::KernelRw,
        pxn: false,
        uxn: false,
        not_global: false,
    };

    #[test]
    fn page_descriptor_bit_positions() {
        let d = leaf(3, PhysAddr::new(0x1234_5678_9000), &BASE);
        // valid, page, AF, output address; nothing else.
        assert_eq!(d, 0x1234_5678_9000 | (1 << 10) | 0b11);
    }

    #[test]
    fn block_descriptors_have_bit1_clear() {
        let d2 = leaf(2, PhysAddr::new(0x4020_0000), &BASE);
        assert_eq!(d2, 0x4020_0000 | (1 << 10) | 0b01);
        let d1 = leaf(1, PhysAddr::new(0x8000_0000), &BASE);
        assert_eq!(d1, 0x8000_0000 | (1 << 10) | 0b01);
    }

    #[test]
    fn table_descriptor() {
        assert_eq!(table(PhysAddr::new(0xabc_d000)), 0xabc_d000 | 0b11);
    }

    #[test]
    fn each_attribute_field_lands_on_its_bit() {
        let field = |a: Attrs| a.bits() & !AF;
        for i in 0..8u8 {
            let a = Attrs {
                mair_index: i,
                ..BASE
            };
            assert_eq!(field(a), u64::from(i) << 2);
        }
        let sh = |s| {
            field(Attrs {
                shareability: s,
                ..BASE
            })
        };
        assert_eq!(sh(Shareability::NonShareable), 0);
        assert_eq!(sh(Shareability::Outer), 0b10 << 8);
        assert_eq!(sh(Shareability::Inner), 0b11 << 8);
        let ap = |a| field(Attrs { access: a, ..BASE });
        assert_eq!(ap(Access::KernelRw), 0);
        assert_eq!(ap(Access::UserRw), 1 << 6);
        assert_eq!(ap(Access::KernelRo), 1 << 7);
        assert_eq!(ap(Access::UserRo), (1 << 7) | (1 << 6));
        assert_eq!(
            field(Attrs {
                not_global: true,
                ..BASE
            }),
            1 << 11
        );
        assert_eq!(field(Attrs { pxn: true, ..BASE }), 1 << 53);
        assert_eq!(field(Attrs { uxn: true, ..BASE }), 1 << 54);
        assert_eq!(BASE.bits(), 1 << 10);
    }

    #[test]
    fn dma_attrs_match_what_the_smmu_needs() {
        let rw = Attrs::dma(1, true).bits();
        assert_eq!(rw & AP_RO, 0, "writable: AP[2] = 0");
        assert_ne!(rw & AP_EL0, 0, "AP[1] = 1: any PnU");
        assert_ne!(rw & NG, 0);
        assert_ne!(rw & AF, 0);
        assert_ne!(rw & UXN, 0);
        assert_ne!(rw & PXN, 0);
        let ro = Attrs::dma(1, false).bits();
        assert_ne!(ro & AP_RO, 0, "read-only: AP[2] = 1");
        assert!(!Attrs::dma(1, false).access.writable());
    }

    #[test]
    fn decode_round_trips_and_rejects_reserved_encodings() {
        let attrs = Attrs::user_code(4);
        for level in 1..=3 {
            let oa = PhysAddr::new(level_size(level) * 3);
            let d = leaf(level, oa, &attrs);
            match decode(level, d) {
                Descriptor::Leaf { oa: got, attr_bits } => {
                    assert_eq!(got, oa);
                    assert_eq!(Attrs::from_bits(attr_bits), attrs);
                }
                other => panic!("level {level}: {other:?}"),
            }
        }
        // A block encoding at level 0 or level 3 is invalid.
        assert_eq!(decode(0, 0x4000_0001), Descriptor::Invalid);
        assert_eq!(decode(3, 0x4000_0001), Descriptor::Invalid);
        assert_eq!(decode(2, 0), Descriptor::Invalid);
        assert_eq!(
            decode(0, table(PhysAddr::new(0x5000))),
            Descriptor::Table(PhysAddr::new(0x5000))
        );
    }

    #[test]
    fn level_geometry() {
        assert_eq!(level_size(3), 4096);
        assert_eq!(level_size(2), 2 << 20);
        assert_eq!(level_size(1), 1 << 30);
        assert_eq!(level_size(0), 512 << 30);
        assert_eq!(level_index(0x0000_ff80_4020_3000, 3), 3);
        assert_eq!(level_index(0x0000_ff80_4020_3000, 2), 1);
        assert_eq!(level_index(0x0000_ff80_4020_3000, 1), 1);
        assert_eq!(level_index(0x0000_ff80_4020_3000, 0), 0x1ff);
    }
}
