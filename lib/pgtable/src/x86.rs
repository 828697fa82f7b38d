//! The x86-64 4-level paging format for the same walker: a [`TableMemory`]
//! adapter ([`X86Memory`]) that stores every descriptor the walker writes
//! in x86-64 form and hands it back in VMSAv8-64 form, so the walker, the
//! unmap tokens and the callers' [`Attrs`](crate::Attrs) stay one code
//! path for both formats [Intel SDM Vol. 3A, 4.5 "4-Level Paging",
//! Tables 4-15 to 4-20].
//!
//! The two formats share what the walker relies on: 512 eight-byte entries
//! per 4 KiB table, bit 0 as "present", the same address bits (12..47 here)
//! and the same level structure (PML4/PDPT/PD/PT = levels 0..3; PS marks a
//! 1 GiB or 2 MiB leaf). Hardware ignores bits 9..11 and 52..58, which keep
//! what x86 cannot encode so a descriptor reads back exactly as written:
//! bit 9 marks a table this walker linked, bit 10 a leaf it wrote, 52..54
//! the memory-type index, 55/56 PXN/UXN, 57/58 the shareability. An entry
//! with neither mark (one the kernel wrote itself, e.g. its own half of a
//! PML4) reads as invalid, so the walker never follows or frees it.
//!
//! It never decides attributes: memory-type index 0 is write-back, any
//! other is uncached (PCD|PWT); NX is the UXN of a user page and the PXN of
//! a supervisor page. Pure bit arithmetic: no memory of its own.

use abi::PhysAddr;

use crate::desc::{
    ADDR_MASK, AF, AP_EL0, AP_RO, ATTR_INDX_MASK, ATTR_INDX_SHIFT, NG, PXN, SH_MASK, SH_SHIFT,
    TABLE_OR_PAGE, UXN, VALID,
};
use crate::memory::TableMemory;

/// Present.
pub const P: u64 = 1 << 0;
/// Writable.
pub const RW: u64 = 1 << 1;
/// User-accessible.
pub const US: u64 = 1 << 2;
/// Page-level write-through.
pub const PWT: u64 = 1 << 3;
/// Page-level cache disable.
pub const PCD: u64 = 1 << 4;
/// Page size: a 1 GiB (PDPT) or 2 MiB (PD) leaf.
pub const PS: u64 = 1 << 7;
/// Global: survives CR3 writes.
pub const G: u64 = 1 << 8;
/// Software bit 9: a table this walker linked.
pub const SW_TABLE: u64 = 1 << 9;
/// Software bit 10: a leaf this walker wrote.
pub const SW_LEAF: u64 = 1 << 10;
/// Execute-disable.
pub const NX: u64 = 1 << 63;
/// Address bits of an x86-64 entry (up to 52-bit physical addresses).
const X86_ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Software field: memory-type index (bits 52..54).
const SW_ATTR_SHIFT: u32 = 52;
/// Software bits: PXN and UXN as written.
const SW_PXN: u64 = 1 << 55;
const SW_UXN: u64 = 1 << 56;
/// Software field: shareability (bits 57..58).
const SW_SH_SHIFT: u32 = 57;

/// The x86-64 form of a VMSAv8-64 descriptor the walker wrote.
pub const fn to_x86(vmsa: u64) -> u64 {
    if vmsa & VALID == 0 {
        return 0;
    }
    let addr = vmsa & ADDR_MASK;
    if vmsa & AF == 0 {
        // A table descriptor (leaves always carry AF): permissions are
        // decided at the leaf, so tables allow everything.
        return addr | P | RW | US | SW_TABLE;
    }
    let attr_index = (vmsa & ATTR_INDX_MASK) >> ATTR_INDX_SHIFT;
    let user = vmsa & AP_EL0 != 0;
    let mut x = addr | P | SW_LEAF | (attr_index << SW_ATTR_SHIFT);
    x |= ((vmsa & SH_MASK) >> SH_SHIFT) << SW_SH_SHIFT;
    if vmsa & AP_RO == 0 {
        x |= RW;
    }
    if user {
        x |= US;
    }
    if attr_index != 0 {
        x |= PCD | PWT;
    }
    if vmsa & TABLE_OR_PAGE == 0 {
        x |= PS;
    }
    if vmsa & NG == 0 {
        x |= G;
    }
    if vmsa & PXN != 0 {
        x |= SW_PXN;
    }
    if vmsa & UXN != 0 {
        x |= SW_UXN;
    }
    let never_execute = if user {
        vmsa & UXN != 0
    } else {
        vmsa & PXN != 0
    };
    if never_execute {
        x |= NX;
    }
    x
}

/// The VMSAv8-64 form of an x86-64 entry: exactly what [`to_x86`] was
/// given for an entry this walker wrote, invalid for any other.
pub const fn from_x86(x: u64) -> u64 {
    if x & P == 0 {
        return 0;
    }
    let addr = x & X86_ADDR & ADDR_MASK;
    if x & SW_TABLE != 0 {
        return addr | VALID | TABLE_OR_PAGE;
    }
    if x & SW_LEAF == 0 {
        return 0;
    }
    let mut v = addr | VALID | AF;
    if x & PS == 0 {
        v |= TABLE_OR_PAGE;
    }
    v |= ((x >> SW_ATTR_SHIFT) & 0b111) << ATTR_INDX_SHIFT;
    v |= ((x >> SW_SH_SHIFT) & 0b11) << SH_SHIFT;
    if x & RW == 0 {
        v |= AP_RO;
    }
    if x & US != 0 {
        v |= AP_EL0;
    }
    if x & G == 0 {
        v |= NG;
    }
    if x & SW_PXN != 0 {
        v |= PXN;
    }
    if x & SW_UXN != 0 {
        v |= UXN;
    }
    v
}

/// Table memory holding x86-64 entries, for the walker that speaks
/// VMSAv8-64: wraps the memory that reaches the pages.
pub struct X86Memory<M>(pub M);

impl<M: TableMemory> TableMemory for X86Memory<M> {
    fn read(&self, table: PhysAddr, index: usize) -> u64 {
        from_x86(self.0.read(table, index))
    }

    fn write(&mut self, table: PhysAddr, index: usize, value: u64) {
        self.0.write(table, index, to_x86(value));
    }

    fn alloc_table(&mut self) -> Option<PhysAddr> {
        self.0.alloc_table()
    }

    fn barrier(&mut self) {
        self.0.barrier();
    }
}
