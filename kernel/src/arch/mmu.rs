//! CPU translation-regime constants (MAIR, TCR, boot block descriptors) and
//! the system-register writes that install a kernel page table. Owns no
//! tables itself: `mm::kernel_map` builds them with the shared `pgtable`
//! crate. Must never be used to change EL0 mappings of a running task
//! without the matching TLB maintenance.

/// MAIR_EL1 attribute index for normal write-back cacheable memory.
pub const MAIR_NORMAL: u8 = 0;
/// MAIR_EL1 attribute index for Device-nGnRE memory (MMIO).
pub const MAIR_DEVICE: u8 = 1;
/// MAIR_EL1: attr0 = 0xff (normal, inner/outer WB RW-allocate),
/// attr1 = 0x04 (Device-nGnRE), attr2 = 0x44 (normal non-cacheable).
pub const MAIR_VALUE: u64 = 0xff | (0x04 << 8) | (0x44 << 16);

/// TCR_EL1 at boot: T0SZ = T1SZ = 16 (48-bit VAs both halves), 4 KiB
/// granules, inner-shareable write-back walks. IPS is filled in from
/// ID_AA64MMFR0_EL1.PARange by the boot code.
pub const TCR_BOOT: u64 = 16 // T0SZ
    | (0b01 << 8) // IRGN0 WBWA
    | (0b01 << 10) // ORGN0 WBWA
    | (0b11 << 12) // SH0 inner
    | (0b00 << 14) // TG0 4K
    | (16 << 16) // T1SZ
    | (0b01 << 24) // IRGN1
    | (0b01 << 26) // ORGN1
    | (0b11 << 28) // SH1
    | (0b10 << 30); // TG1 4K

/// Level-1 (1 GiB) block descriptor for normal memory used by the boot
/// tables: valid block, AttrIndx 0, inner shareable, AF. Executable and
/// writable: only for the few instructions before `mm::kernel_map` runs.
pub const fn boot_normal_block() -> u64 {
    0b01 | ((MAIR_NORMAL as u64) << 2) | (0b11 << 8) | (1 << 10)
}

/// Level-1 (1 GiB) block descriptor for device memory: AttrIndx 1, AF,
/// PXN and UXN.
pub const fn boot_device_block() -> u64 {
    0b01 | ((MAIR_DEVICE as u64) << 2) | (1 << 10) | (1 << 53) | (1 << 54)
}
