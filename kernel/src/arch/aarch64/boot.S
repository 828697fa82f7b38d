// Kernel entry. QEMU enters here with the MMU off, at EL1 (default) or EL2
// (`virtualization=on`), x0..x3 = 0 and DAIF masked. This code runs at the
// image's physical address: it only uses PC-relative addressing (adr/adrp)
// until the MMU is on and it has jumped to the high-half linked address.
//
// Constants come from Rust (boot.rs) as named `const` operands.

.section .text.boot, "ax"
.global _start
_start:
    mov     x19, x0                     // a loader may pass the DTB in x0

    mrs     x9, CurrentEL
    lsr     x9, x9, #2
    mov     x20, x9                     // the EL we were entered at
    cmp     x9, #2
    b.eq    1f
    cmp     x9, #1
    b.eq    2f
    b       .Lpark                      // EL3: not supported (no PSCI then)

1:  // At EL2: make EL1 an AArch64 kernel that owns timers, FP and the GIC
    // system registers, then drop to EL1h.
    ldr     x9, ={hcr_el2}
    msr     hcr_el2, x9
    mrs     x9, cnthctl_el2
    orr     x9, x9, #{cnthctl_el2}
    msr     cnthctl_el2, x9
    msr     cntvoff_el2, xzr
    ldr     x9, ={cptr_el2}
    msr     cptr_el2, x9
    mrs     x9, S3_4_C12_C9_5           // ICC_SRE_EL2
    orr     x9, x9, #{icc_sre_el2}
    msr     S3_4_C12_C9_5, x9
    isb
    ldr     x9, ={sctlr_el1_reset}
    msr     sctlr_el1, x9
    mov     x9, #{spsr_el1h_masked}
    msr     spsr_el2, x9
    adr     x9, 2f
    msr     elr_el2, x9
    eret

2:  // At EL1. FP/SIMD must be on before any Rust runs (core::fmt uses it).
    mov     x9, #{cpacr_fpen}
    msr     cpacr_el1, x9
    isb

    // Zero .bss and the boot stack (physical addresses, PC-relative).
    adrp    x9, __bss_start
    add     x9, x9, :lo12:__bss_start
    adrp    x10, __boot_stack_top
    add     x10, x10, :lo12:__boot_stack_top
3:  cmp     x9, x10
    b.hs    4f
    stp     xzr, xzr, [x9], #16
    b       3b
4:
    // Boot page tables: one L0 table shared by TTBR0 (identity) and TTBR1
    // (linear map at LINEAR_BASE + PA). L0[0] -> L1; L1 maps 1 GiB blocks:
    //   [0]   0x0000_0000  device (PL011, GIC, SMMU, PCIe MMIO32 window)
    //   [1]   0x4000_0000  normal memory (RAM: the kernel, DTB, frames)
    //   [256] 0x40_0000_0000 device (PCIe ECAM at 0x40_1000_0000)
    // The kernel replaces them with fine-grained tables in mm::kernel_map.
    adrp    x9, BOOT_L0
    adrp    x10, BOOT_L1
    orr     x11, x10, #3                // table descriptor
    str     x11, [x9]
    ldr     x11, ={boot_device_block}
    str     x11, [x10, #0]
    ldr     x11, ={boot_normal_block}
    mov     x12, #0x40000000
    orr     x11, x11, x12
    str     x11, [x10, #8]
    ldr     x11, ={boot_device_block}
    mov     x12, #0x4000000000
    orr     x11, x11, x12
    str     x11, [x10, #(256 * 8)]
    dsb     ishst

    ldr     x11, ={mair}
    msr     mair_el1, x11
    ldr     x11, ={tcr}
    mrs     x12, ID_AA64MMFR0_EL1       // IPS = PARange
    and     x12, x12, #7
    bfi     x11, x12, #32, #3
    msr     tcr_el1, x11
    msr     ttbr0_el1, x9
    msr     ttbr1_el1, x9
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x11, ={sctlr_el1_mmu}
    msr     sctlr_el1, x11
    isb

    // Now run at the linked (high) addresses.
    ldr     x9, =5f
    br      x9
5:
    ldr     x9, =__boot_stack_top
    mov     sp, x9
    ldr     x9, =exception_vectors
    msr     vbar_el1, x9
    isb
    mov     x0, x19
    mov     x1, x20
    bl      kernel_entry
.Lpark:
    wfe
    b       .Lpark

.section .bss.boot_tables, "aw", %nobits
.balign 4096
.global BOOT_L0
BOOT_L0:
    .space 4096
.global BOOT_L1
BOOT_L1:
    .space 4096

// switch_kernel_tables(x0 = TTBR1 root, x1 = TCR): installs the kernel's
// final TTBR1 tables. Called at its PHYSICAL address, through the boot
// identity map in TTBR0, so no TTBR1 translation is live while the old
// entries are invalidated (no TLB conflict between the boot blocks and the
// new pages, whatever the CPU's FEAT_BBM level). Returns to the caller's
// high-half address in x30. Touches no memory.
.section .text.boot, "ax"
.global switch_kernel_tables
switch_kernel_tables:
    dsb     ishst
    msr     ttbr1_el1, x0
    msr     tcr_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ret
