//! CPU translation-regime constants (MAIR, TCR, boot block descriptors) and
//! the system-register writes that install a kernel page table. Owns no
//! tables itself: `mm::kernel_map` builds them with the shared `pgtable`
//! crate. Must never be used to change EL0 mappings of a running task
//! without the matching TLB maintenance.

/// MAIR_EL1 attribute index for normal write-back cacheable memory.
pub const MAIR_NORMAL: u8 = 0;
/// MAIR_EL1 attribute index for Device-nGnRE memory (MMIO).
pub const MAIR_DEVICE: u8 = 1;
/// The memory type page-table entries take for RAM.
pub const MEM_NORMAL: u8 = MAIR_NORMAL;
/// The memory type page-table entries take for device registers.
pub const MEM_DEVICE: u8 = MAIR_DEVICE;

/// Start of the kernel's linear map of physical memory (TTBR1 half): every
/// physical address `pa` is visible to the kernel at `LINEAR_BASE + pa`.
pub const LINEAR_BASE: u64 = 0xFFFF_0000_0000_0000;
/// Start of the RAM the boot tables map (one 1 GiB block at 0x4000_0000).
pub const BOOT_LINEAR_RAM_START: u64 = 0x4000_0000;
/// End of the RAM the boot tables map.
pub const BOOT_LINEAR_RAM_END: u64 = 0x8000_0000;
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
    // TG0 = 0b00: 4K
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

/// TCR_EL1.EPD0: no walks through TTBR0 (no task address space installed).
pub const TCR_EPD0: u64 = 1 << 7;
/// TCR_EL1.AS: 16-bit ASIDs.
pub const TCR_AS16: u64 = 1 << 36;

unsafe extern "C" {
    fn switch_kernel_tables(ttbr1: u64, tcr: u64);
}

/// The physical address behind a kernel address (the image is linked in
/// the linear map).
pub fn virt_to_phys(va: abi::VirtAddr) -> abi::PhysAddr {
    abi::PhysAddr::new(va.get() - LINEAR_BASE)
}

/// Input bits of a task's TTBR0 tables (T0SZ = 16).
pub const USER_VA_BITS: u8 = 48;

/// Task tables are in the walker's own format (VMSAv8-64): stored as is.
pub const fn encode_table_entry(vmsa: u64) -> u64 {
    vmsa
}

/// As [`encode_table_entry`]: read back as stored.
pub const fn decode_table_entry(raw: u64) -> u64 {
    raw
}

/// Nothing to add to a new task root: the kernel lives in TTBR1.
pub fn prepare_user_root(_root: abi::PhysAddr) {}

/// Makes page-table writes visible to the table walker before a
/// descriptor that links them is written.
pub fn table_barrier() {
    // SAFETY: a data synchronisation barrier has no memory effects.
    unsafe { core::arch::asm!("dsb ishst", options(nostack)) };
}

/// Whether the CPU has 16-bit ASIDs (ID_AA64MMFR0_EL1.ASIDBits = 0b0010).
pub fn has_asid16() -> bool {
    use aarch64_cpu::registers::{ID_AA64MMFR0_EL1, Readable};
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::ASIDBits) == 0b0010
}

/// Replaces the boot tables with the kernel's final TTBR1 tables at
/// `root` (physical), turns on 16-bit ASIDs where the CPU has them, then
/// drops the boot identity map (TTBR0 walks off until a task runs).
pub fn install_kernel_tables(root: abi::PhysAddr) {
    use aarch64_cpu::registers::{Readable, TCR_EL1, TTBR0_EL1, Writeable};
    let mut tcr = TCR_EL1.get();
    if has_asid16() {
        tcr |= TCR_AS16;
    }
    let phys_entry =
        crate::mm::virt_to_phys(abi::VirtAddr::new(switch_kernel_tables as *const () as u64));
    // SAFETY: `switch_kernel_tables` is position-independent code in the
    // kernel image; its physical address is mapped executable by the boot
    // identity map in TTBR0 (still installed), so calling it there is
    // calling the same function. It only writes TTBR1/TCR and invalidates
    // the TLB; `root` is a complete table that maps the whole image at the
    // same addresses (built by mm::kernel_map), so the return lands on
    // mapped code and the stack stays mapped.
    unsafe {
        let f: unsafe extern "C" fn(u64, u64) = core::mem::transmute(phys_entry.get() as usize);
        f(root.get(), tcr);
    }
    TCR_EL1.set(tcr | TCR_EPD0);
    TTBR0_EL1.set(0);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    // SAFETY: invalidating this CPU's EL1 TLB entries only drops cached
    // translations (the identity map's); the barriers complete it.
    unsafe { core::arch::asm!("tlbi vmalle1", "dsb nsh", "isb", options(nostack)) };
}

/// The CPU's physical address size in bits (ID_AA64MMFR0_EL1.PARange),
/// capped at 48 (no 52-bit output addresses in this kernel).
pub fn pa_bits() -> u8 {
    use aarch64_cpu::registers::{ID_AA64MMFR0_EL1, Readable};
    match ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) {
        0 => 32,
        1 => 36,
        2 => 40,
        3 => 42,
        4 => 44,
        _ => 48,
    }
}

/// Removes every TLB entry tagged with `asid` (all CPUs in the inner
/// shareable domain), completing before return.
pub fn flush_tag(asid: abi::Asid) {
    let arg = u64::from(asid.0) << 48;
    // SAFETY: TLB invalidation by ASID only drops cached translations; the
    // DSB waits for it to complete everywhere, the ISB for this CPU.
    unsafe {
        core::arch::asm!("dsb ishst", "tlbi aside1is, {}", "dsb ish", "isb", in(reg) arg, options(nostack))
    };
}

/// Leaves no task's address space installed: TTBR0 walks off (EPD0) and
/// TTBR0 cleared, so no walk, speculative or not, reads a table about to
/// be freed. The next `set_user_space` turns walks back on.
pub fn clear_user_space() {
    use aarch64_cpu::registers::{Readable, TCR_EL1, TTBR0_EL1, Writeable};
    TCR_EL1.set(TCR_EL1.get() | TCR_EPD0);
    TTBR0_EL1.set(0);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Installs a task's address space (TTBR0 = root | ASID << 48) and
/// enables TTBR0 walks. No TLB maintenance: entries are ASID-tagged.
pub fn set_user_space(root: abi::PhysAddr, asid: abi::Asid) {
    use aarch64_cpu::registers::{Readable, TCR_EL1, TTBR0_EL1, Writeable};
    TTBR0_EL1.set(root.get() | (u64::from(asid.0) << 48));
    let tcr = TCR_EL1.get();
    if tcr & TCR_EPD0 != 0 {
        TCR_EL1.set(tcr & !TCR_EPD0);
    }
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}
