// Exception vectors (VBAR_EL1). Each entry saves x0/x1, loads its kind
// (0..15: {current EL with SP0, current EL with SPx, lower EL AArch64,
// lower EL AArch32} x {sync, IRQ, FIQ, SError}) and joins the common path,
// which saves a full TrapFrame (see trap.rs; 272 bytes) on the current
// stack and, for exceptions from EL0, the task's FP/SIMD registers into its
// installed FpState (fpsimd.rs), calls `trap_entry(frame, kind)`, then
// restores (the FP/SIMD registers only when returning to EL0) and returns.
// `trap_return` requires IRQs masked (PSTATE.I = 1) and checks it.

.macro VECTOR kind
    .balign 0x80
    sub     sp, sp, #272
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       trap_common
.endm

// q0..q31 in pairs at 16-byte steps from `base` (FpState, fpsimd.rs):
// `op` is stp to save, ldp to load.
.macro FP_PAIRS op, base
    \op    q0, q1, [\base, #0]
    \op    q2, q3, [\base, #32]
    \op    q4, q5, [\base, #64]
    \op    q6, q7, [\base, #96]
    \op    q8, q9, [\base, #128]
    \op    q10, q11, [\base, #160]
    \op    q12, q13, [\base, #192]
    \op    q14, q15, [\base, #224]
    \op    q16, q17, [\base, #256]
    \op    q18, q19, [\base, #288]
    \op    q20, q21, [\base, #320]
    \op    q22, q23, [\base, #352]
    \op    q24, q25, [\base, #384]
    \op    q26, q27, [\base, #416]
    \op    q28, q29, [\base, #448]
    \op    q30, q31, [\base, #480]
.endm

.section .text.vectors, "ax"
.balign 0x800
.global exception_vectors
exception_vectors:
    VECTOR 0
    VECTOR 1
    VECTOR 2
    VECTOR 3
    VECTOR 4
    VECTOR 5
    VECTOR 6
    VECTOR 7
    VECTOR 8
    VECTOR 9
    VECTOR 10
    VECTOR 11
    VECTOR 12
    VECTOR 13
    VECTOR 14
    VECTOR 15

trap_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x10, sp_el0
    stp     x30, x10, [sp, #240]
    mrs     x10, elr_el1
    mrs     x11, spsr_el1
    stp     x10, x11, [sp, #256]
    // From EL0 (kinds 8..11): save the task's FP/SIMD registers into the
    // state the scheduler installed (USER_FP, see fpsimd.rs) before any
    // Rust code can use them.
    sub     x10, x1, #8
    cmp     x10, #4
    b.hs    1f
    adrp    x10, USER_FP
    ldr     x10, [x10, :lo12:USER_FP]
    FP_PAIRS stp, x10
    mrs     x11, fpsr
    mrs     x12, fpcr
    str     x11, [x10, #512]
    str     x12, [x10, #520]
1:
    mov     x0, sp
    bl      trap_entry
.global trap_return
trap_return:
    // Invariant: IRQs are masked on every path into here. An IRQ taken
    // after the ELR/SPSR writes below would overwrite both, and the eret
    // would go somewhere else. Checked on every return (two instructions):
    // a violation is reported as a kernel fault, never run through.
    mrs     x10, daif
    tbnz    x10, #7, 2f
    mov     x0, sp
    b       trap_return_irqs_unmasked
2:
    ldp     x10, x11, [sp, #256]
    msr     elr_el1, x10
    msr     spsr_el1, x11
    // Back to EL0 (SPSR.M = EL0t): load the FP/SIMD registers of the task
    // the scheduler installed, which may be another task than the one
    // that entered.
    tst     x11, #0x1f
    b.ne    1f
    adrp    x12, USER_FP
    ldr     x12, [x12, :lo12:USER_FP]
    FP_PAIRS ldp, x12
    ldr     x10, [x12, #512]
    ldr     x11, [x12, #520]
    msr     fpsr, x10
    msr     fpcr, x11
1:
    ldp     x30, x10, [sp, #240]
    msr     sp_el0, x10
    ldp     x0, x1, [sp, #0]
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    add     sp, sp, #272
    eret
