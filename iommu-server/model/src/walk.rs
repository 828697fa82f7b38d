//! The model's own VMSAv8-64 stage-1 table walker for the 4 KiB granule
//! (Arm ARM D8.3, as SMMUv3 §3.4 applies it to CD.TTB0): levels from T0SZ,
//! table/block/page descriptors, AF, `AP[2]` and `APTable[1]`, output size.
//!
//! It is written here on purpose, independently of the `pgtable` crate
//! whose tables it checks; it must never call into that crate, and it never
//! touches a cache: it only reads descriptors from memory.

use abi::PhysAddr;

use crate::mem::PhysMem;

/// Descriptor bit 0: valid.
const DESC_VALID: u64 = 1 << 0;
/// Descriptor bit 1: table (levels 0-2) or page (level 3).
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;
/// `AP[2]`: read-only at every Exception level.
const DESC_AP2_RO: u64 = 1 << 7;
/// AF: Access flag.
const DESC_AF: u64 = 1 << 10;
/// `APTable[1]` in a table descriptor: no writes through this subtree.
const TABLE_APTABLE_RO: u64 = 1 << 62;
/// Output address bits `[51:12]` of a descriptor. With the 4 KiB granule
/// and no FEAT_LPA2, bits `[51:48]` are RES0; keeping them in the address
/// makes a descriptor that sets them fail the output-size check (an
/// Address size fault), as the architecture requires.
const DESC_OA_MASK: u64 = ((1 << 52) - 1) & !0xfff;

/// log2 of the bytes one entry maps at `level` (0..=3).
pub const fn level_shift(level: u8) -> u32 {
    12 + 9 * (3 - level as u32)
}

/// What a walk needs from the CD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WalkParams {
    /// TTB0: the starting-level table.
    pub ttb: PhysAddr,
    /// Input address bits (64 - T0SZ), 16..=48.
    pub input_bits: u8,
    /// Effective output address bits: min(IDR5.OAS, CD.IPS).
    pub oas_bits: u8,
    /// CD.AFFD: AF == 0 does not fault.
    pub affd: bool,
}

impl WalkParams {
    /// Number of levels and the starting level: each level resolves 9 bits
    /// above the 12-bit page offset, the starting level whatever remains.
    pub const fn start_level(&self) -> u8 {
        let va_bits = self.input_bits as u32 - 12;
        (4 - va_bits.div_ceil(9)) as u8
    }

    /// Index bits resolved by the starting level.
    const fn start_index_bits(&self) -> u32 {
        let va_bits = self.input_bits as u32 - 12;
        va_bits - 9 * (3 - self.start_level() as u32)
    }
}

/// Where a walk may start: from TTB0, or from a level-3 table remembered
/// by the walk cache (with the write restriction accumulated above it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// From TTB0 at the starting level.
    Root,
    /// From this level-3 table.
    Level3 {
        /// The table's address.
        table: PhysAddr,
        /// `APTable[1]` was set on the way down.
        read_only: bool,
    },
}

/// A successful walk: the leaf entry that maps the input address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    /// First input address the entry maps.
    pub va_base: u64,
    /// Level of the leaf (1: 1 GiB block, 2: 2 MiB block, 3: page).
    pub level: u8,
    /// Output address of `va_base`.
    pub pa_base: u64,
    /// Writes allowed (`AP[2]` == 0 and no `APTable[1]` above).
    pub writable: bool,
    /// The level-3 table walked through, if any (what a walk cache keeps),
    /// with the write restriction accumulated above it.
    pub l3_table: Option<(PhysAddr, bool)>,
}

impl Leaf {
    /// Bytes the entry maps.
    pub const fn size(&self) -> u64 {
        1 << level_shift(self.level)
    }
}

/// Why a walk failed, with the level at which it did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    /// Invalid or reserved descriptor, or an input address outside T0SZ.
    Translation(u8),
    /// A table or output address beyond the output size.
    AddrSize(u8),
    /// AF == 0 with CD.AFFD == 0.
    Access(u8),
}

/// Walks `va` through the tables in `mem`, reading only descriptors.
pub fn walk(mem: &dyn PhysMem, p: &WalkParams, va: u64, start: Start) -> Result<Leaf, WalkFault> {
    let first = p.start_level();
    if p.input_bits < 64 && va >> p.input_bits != 0 {
        return Err(WalkFault::Translation(first));
    }
    let fits = |a: u64| p.oas_bits >= 64 || a >> p.oas_bits == 0;
    let (mut table, mut level, mut read_only, mut l3_table) = match start {
        Start::Root => {
            if !fits(p.ttb.get()) {
                return Err(WalkFault::AddrSize(first));
            }
            // TTB0 holds bits [51:4]; tables smaller than a page sit at a
            // 16-byte (at least 8-byte) aligned address.
            (p.ttb.get() & ((1 << 52) - 1) & !7, first, false, None)
        }
        Start::Level3 { table, read_only } => (table.get(), 3, read_only, Some((table, read_only))),
    };
    loop {
        let index_bits = if level == first && matches!(start, Start::Root) {
            p.start_index_bits()
        } else {
            9
        };
        let index = (va >> level_shift(level)) & ((1 << index_bits) - 1);
        let desc = mem.read_u64(PhysAddr::new(table + 8 * index));
        if desc & DESC_VALID == 0 {
            return Err(WalkFault::Translation(level));
        }
        let is_table_or_page = desc & DESC_TABLE_OR_PAGE != 0;
        if level < 3 && is_table_or_page {
            let next = desc & DESC_OA_MASK;
            if !fits(next) {
                return Err(WalkFault::AddrSize(level));
            }
            read_only |= desc & TABLE_APTABLE_RO != 0;
            table = next;
            level += 1;
            if level == 3 {
                l3_table = Some((PhysAddr::new(next), read_only));
            }
            continue;
        }
        // A block at level 0 does not exist with 4 KiB pages (no FEAT_LPA2),
        // and bit 1 == 0 at level 3 is reserved: both are invalid.
        if level == 0 || (level == 3 && !is_table_or_page) {
            return Err(WalkFault::Translation(level));
        }
        let shift = level_shift(level);
        let pa_base = desc & DESC_OA_MASK & !((1u64 << shift) - 1);
        if !fits(pa_base) {
            return Err(WalkFault::AddrSize(level));
        }
        if desc & DESC_AF == 0 && !p.affd {
            return Err(WalkFault::Access(level));
        }
        return Ok(Leaf {
            va_base: va & !((1u64 << shift) - 1),
            level,
            pa_base,
            writable: !read_only && desc & DESC_AP2_RO == 0,
            l3_table,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::SparseMem;

    const TABLE: u64 = 0b11 | DESC_AF;
    const PAGE: u64 = 0b11 | DESC_AF;
    const BLOCK: u64 = 0b01 | DESC_AF;

    fn params(input_bits: u8) -> WalkParams {
        WalkParams {
            ttb: PhysAddr::new(0x10_0000),
            input_bits,
            oas_bits: 44,
            affd: false,
        }
    }

    #[test]
    fn levels_follow_t0sz() {
        assert_eq!(params(48).start_level(), 0);
        assert_eq!(params(48).start_index_bits(), 9);
        assert_eq!(params(39).start_level(), 1);
        assert_eq!(params(40).start_level(), 0);
        assert_eq!(params(40).start_index_bits(), 1);
        assert_eq!(params(32).start_level(), 1);
        assert_eq!(params(32).start_index_bits(), 2);
        assert_eq!(params(21).start_level(), 3);
        assert_eq!(params(25).start_level(), 2);
    }

    #[test]
    fn three_level_walk_and_faults() {
        let mut m = SparseMem::new();
        let p = params(39);
        // L1 index 1, L2 index 0x11a, L3 index 0x156.
        let va = (1u64 << 30) | (0x11a << 21) | (0x156 << 12);
        m.write_u64(PhysAddr::new(0x10_0000 + 8), 0x20_0000 | TABLE);
        m.write_u64(PhysAddr::new(0x20_0000 + 8 * 0x11a), 0x30_0000 | TABLE);
        m.write_u64(PhysAddr::new(0x30_0000 + 8 * 0x156), 0x8000_0000 | PAGE);
        let leaf = walk(&m, &p, va, Start::Root).unwrap();
        assert_eq!(leaf.level, 3);
        assert_eq!(leaf.pa_base, 0x8000_0000);
        assert!(leaf.writable);
        assert_eq!(leaf.l3_table, Some((PhysAddr::new(0x30_0000), false)));
        assert_eq!(leaf.va_base, va);
        // The same from the remembered level-3 table.
        let again = walk(
            &m,
            &p,
            va,
            Start::Level3 {
                table: PhysAddr::new(0x30_0000),
                read_only: false,
            },
        )
        .unwrap();
        assert_eq!(again, leaf);
        // Outside T0SZ.
        assert_eq!(
            walk(&m, &p, 1 << 39, Start::Root),
            Err(WalkFault::Translation(1))
        );
        // Neighbouring page unmapped.
        assert_eq!(
            walk(&m, &p, va + 0x1000, Start::Root),
            Err(WalkFault::Translation(3))
        );
        // AF clear; AFFD hides it.
        m.write_u64(PhysAddr::new(0x30_0000 + 8 * 0x157), 0x8000_1000 | 0b11);
        assert_eq!(
            walk(&m, &p, va + 0x1000, Start::Root),
            Err(WalkFault::Access(3))
        );
        let affd = WalkParams { affd: true, ..p };
        assert!(walk(&m, &affd, va + 0x1000, Start::Root).is_ok());
        // Output beyond 44 bits.
        m.write_u64(PhysAddr::new(0x30_0000 + 8 * 0x158), (1 << 44) | PAGE);
        assert_eq!(
            walk(&m, &p, va + 0x2000, Start::Root),
            Err(WalkFault::AddrSize(3))
        );
        // Read-only page, and APTable[1] making a subtree read-only.
        m.write_u64(
            PhysAddr::new(0x30_0000 + 8 * 0x159),
            0x8000_3000 | PAGE | DESC_AP2_RO,
        );
        assert!(!walk(&m, &p, va + 0x3000, Start::Root).unwrap().writable);
        m.write_u64(
            PhysAddr::new(0x20_0000 + 8 * 0x11a),
            0x30_0000 | TABLE | TABLE_APTABLE_RO,
        );
        let ro = walk(&m, &p, va, Start::Root).unwrap();
        assert!(!ro.writable);
        assert_eq!(ro.l3_table, Some((PhysAddr::new(0x30_0000), true)));
    }

    #[test]
    fn blocks_and_reserved_encodings() {
        let mut m = SparseMem::new();
        let p = params(48);
        // L0[0] -> L1 table; L1[1] = 1 GiB block; L1[2] -> L2; L2[3] = 2 MiB block.
        m.write_u64(PhysAddr::new(0x10_0000), 0x20_0000 | TABLE);
        m.write_u64(PhysAddr::new(0x20_0008), 0x1_0000_0000 | BLOCK);
        m.write_u64(PhysAddr::new(0x20_0010), 0x30_0000 | TABLE);
        m.write_u64(PhysAddr::new(0x30_0018), 0x2_0060_0000 | BLOCK);
        let g = walk(&m, &p, 0x4123_4567, Start::Root).unwrap();
        assert_eq!(
            (g.level, g.pa_base, g.va_base),
            (1, 0x1_0000_0000, 0x4000_0000)
        );
        assert_eq!(g.size(), 1 << 30);
        let b = walk(&m, &p, 0x8067_8000, Start::Root).unwrap();
        assert_eq!(
            (b.level, b.pa_base, b.va_base),
            (2, 0x2_0060_0000, 0x8060_0000)
        );
        assert_eq!(b.l3_table, None);
        // A level-0 block and a level-3 "block" are invalid.
        m.write_u64(PhysAddr::new(0x10_0008), 0x40_0000 | BLOCK);
        assert_eq!(
            walk(&m, &p, 1 << 39, Start::Root),
            Err(WalkFault::Translation(0))
        );
        m.write_u64(PhysAddr::new(0x30_0020), 0x50_0000 | TABLE);
        m.write_u64(PhysAddr::new(0x50_0000), 0x9000_0000 | BLOCK);
        assert_eq!(
            walk(&m, &p, 0x8080_0000, Start::Root),
            Err(WalkFault::Translation(3))
        );
        // A table pointer beyond the output size.
        m.write_u64(PhysAddr::new(0x10_0010), (1 << 45) | TABLE);
        assert_eq!(
            walk(&m, &p, 2 << 39, Start::Root),
            Err(WalkFault::AddrSize(0))
        );
    }
}
