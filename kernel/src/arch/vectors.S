// Exception vectors (VBAR_EL1). Each entry saves x0/x1, loads its kind
// (0..15: {current EL with SP0, current EL with SPx, lower EL AArch64,
// lower EL AArch32} x {sync, IRQ, FIQ, SError}) and joins the common path,
// which saves a full TrapFrame (see trap.rs; 272 bytes) on the current
// stack and, for exceptions from EL0, the task's FP/SIMD registers into its
// installed FpState (fpsimd.rs), calls `trap_entry(frame, kind)`, then
// restores (the FP/SIMD registers only when returning to EL0) and returns.

.macro VECTOR kind
    .balign 0x80
    sub     sp, sp, #272
    stp     x0, x1, [sp, #0]
    mov     x1, #\kind
    b       trap_common
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
    stp     q0, q1, [x10, #0]
    stp     q2, q3, [x10, #32]
    stp     q4, q5, [x10, #64]
    stp     q6, q7, [x10, #96]
    stp     q8, q9, [x10, #128]
    stp     q10, q11, [x10, #160]
    stp     q12, q13, [x10, #192]
    stp     q14, q15, [x10, #224]
    stp     q16, q17, [x10, #256]
    stp     q18, q19, [x10, #288]
    stp     q20, q21, [x10, #320]
    stp     q22, q23, [x10, #352]
    stp     q24, q25, [x10, #384]
    stp     q26, q27, [x10, #416]
    stp     q28, q29, [x10, #448]
    stp     q30, q31, [x10, #480]
    mrs     x11, fpsr
    mrs     x12, fpcr
    str     x11, [x10, #512]
    str     x12, [x10, #520]
1:
    mov     x0, sp
    bl      trap_entry
.global trap_return
trap_return:
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
    ldp     q0, q1, [x12, #0]
    ldp     q2, q3, [x12, #32]
    ldp     q4, q5, [x12, #64]
    ldp     q6, q7, [x12, #96]
    ldp     q8, q9, [x12, #128]
    ldp     q10, q11, [x12, #160]
    ldp     q12, q13, [x12, #192]
    ldp     q14, q15, [x12, #224]
    ldp     q16, q17, [x12, #256]
    ldp     q18, q19, [x12, #288]
    ldp     q20, q21, [x12, #320]
    ldp     q22, q23, [x12, #352]
    ldp     q24, q25, [x12, #384]
    ldp     q26, q27, [x12, #416]
    ldp     q28, q29, [x12, #448]
    ldp     q30, q31, [x12, #480]
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
