//! Boot: the entry assembly (EL2 → EL1 drop, FP/SIMD enable, .bss zeroing,
//! boot page tables, MMU on, jump to the high half) and the constants it
//! is assembled with. Owns nothing after `kernel_entry` is called; must never
//! be re-entered.

use super::mmu::LINEAR_BASE;
use super::mmu::{MAIR_VALUE, TCR_BOOT, boot_device_block, boot_normal_block};

/// HCR_EL2: RW=1, EL1 is AArch64. Nothing else is trapped or virtualised.
const HCR_EL2_RW: u64 = 1 << 31;
/// CNTHCTL_EL2: EL1PCTEN | EL1PCEN, EL1 may use the physical counter/timer.
const CNTHCTL_EL1_ACCESS: u64 = 0b11;
/// CPTR_EL2 with TFP=0 (FP/SIMD not trapped to EL2); RES1 bits 13:12, 9:0.
const CPTR_EL2_NO_TRAPS: u64 = 0x33ff;
/// ICC_SRE_EL2: SRE | DFB | DIB | Enable: EL1 uses the GIC system registers.
const ICC_SRE_EL2_ENABLE: u64 = 0xf;
/// SCTLR_EL1 RES1 bits (ARMv8.0: 29, 28, 23, 22, 20, 11), MMU and caches off.
const SCTLR_EL1_RES1: u64 = 0x30d0_0800;
/// SPSR for the eret to EL1h with D, A, I and F masked.
const SPSR_EL1H_MASKED: u64 = 0x3c5;
/// CPACR_EL1.FPEN = 0b11: FP/SIMD not trapped at EL0 or EL1.
const CPACR_FPEN: u64 = 0b11 << 20;
/// SCTLR_EL1 with M (MMU), C (data cache), SA/SA0 (SP alignment checks),
/// I (instruction cache) and UCT (EL0 may read CTR_EL0) over the RES1 bits.
const SCTLR_EL1_MMU: u64 =
    SCTLR_EL1_RES1 | 1 | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 12) | (1 << 15);

core::arch::global_asm!(
    include_str!("boot.S"),
    hcr_el2 = const HCR_EL2_RW,
    cnthctl_el2 = const CNTHCTL_EL1_ACCESS,
    cptr_el2 = const CPTR_EL2_NO_TRAPS,
    icc_sre_el2 = const ICC_SRE_EL2_ENABLE,
    sctlr_el1_reset = const SCTLR_EL1_RES1,
    spsr_el1h_masked = const SPSR_EL1H_MASKED,
    cpacr_fpen = const CPACR_FPEN,
    mair = const MAIR_VALUE,
    tcr = const TCR_BOOT,
    sctlr_el1_mmu = const SCTLR_EL1_MMU,
    boot_normal_block = const boot_normal_block(),
    boot_device_block = const boot_device_block(),
);
core::arch::global_asm!(include_str!("vectors.S"), options(raw));

const _: () = assert!(
    LINEAR_BASE == 0xFFFF_0000_0000_0000,
    "linker.ld repeats LINEAR_BASE"
);

/// Where QEMU `virt` leaves the device tree when the loader does not pass
/// it in x0: the start of RAM (see docs/ARCHITECTURE.md, "Boot").
const QEMU_VIRT_DTB: u64 = 0x4000_0000;

/// What the loader handed over.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// The device tree blob (physical).
    pub(super) device_tree: abi::PhysAddr,
    /// The exception level QEMU entered at (for the report).
    pub(super) entry_el: u64,
}

/// Called by `boot.S` with the MMU on, at EL1, on the boot stack, with what
/// the loader passed in x0 and the exception level QEMU entered at.
#[unsafe(no_mangle)]
extern "C" fn kernel_entry(loader_dtb: u64, entry_el: u64) -> ! {
    // QEMU passes 0 and leaves the DTB at the start of RAM.
    let dtb = if loader_dtb != 0 {
        loader_dtb
    } else {
        QEMU_VIRT_DTB
    };
    crate::kmain(&BootInfo {
        device_tree: abi::PhysAddr::new(dtb),
        entry_el,
    })
}

impl BootInfo {
    /// The start of what below the kernel image the kernel must keep from
    /// the frame allocator: the device tree (QEMU's first MiB).
    pub fn keep_below_image(&self) -> abi::PhysAddr {
        self.device_tree
    }
}

/// An address no table maps: the start of the TTBR1 half's second 256 TiB,
/// far above the linear map.
pub const UNMAPPED_KERNEL_ADDR: u64 = 0xFFFF_8000_DEAD_0000;

/// Deliberately reads an unmapped kernel address, for the fault-report
/// self-test. Never returns: the data abort is fatal in the kernel.
pub fn provoke_kernel_fault(addr: u64) -> ! {
    // SAFETY: the read faults before any value is produced (the caller
    // passes an address no translation table maps); the fault handler
    // reports and ends the run instead of returning here.
    let _ = unsafe { core::ptr::read_volatile(addr as *const u64) };
    unreachable!("read of unmapped {addr:#x} did not fault");
}
