//! The aarch64 instructions of userlib's `sys`: `svc`, barriers, the
//! undefined instruction, the probe load, the vector-register probe and the
//! counter. Never used for anything else.

use core::arch::asm;

use abi::Sysno;

/// Issues `svc #0` with `n` in x8 and `a` in x0..x5; returns x0..x3.
#[inline(always)]
pub(crate) fn syscall(n: u64, a: [u64; 6]) -> [u64; 4] {
    let (r0, r1, r2, r3): (u64, u64, u64, u64);
    // SAFETY: `svc #0` enters the kernel, which checks every argument
    // against this task's own capabilities and address space, and changes
    // only x0..x3 (declared as outputs) and memory this task named by a
    // pointer (the asm is not `nomem`, so the compiler assumes any exposed
    // memory may be read or written). It does not touch the stack.
    unsafe {
        asm!(
            "svc #0",
            inlateout("x0") a[0] => r0,
            inlateout("x1") a[1] => r1,
            inlateout("x2") a[2] => r2,
            inlateout("x3") a[3] => r3,
            in("x4") a[4],
            in("x5") a[5],
            in("x8") n,
            options(nostack),
        );
    }
    [r0, r1, r2, r3]
}

/// Data synchronisation barrier for stores: every store this task made
/// before it is observable (by a device too) before any access after it.
pub(crate) fn dsb_st() {
    // SAFETY: DSB ST only orders memory accesses; EL0 may execute it.
    unsafe { asm!("dsb st", options(nostack, preserves_flags)) }
}

/// Executes a permanently undefined instruction: see
/// [`crate::raw::undefined_instruction`].
pub(crate) fn undefined_instruction() -> ! {
    // SAFETY: UDF touches no memory and no register; it traps to the
    // kernel, which ends the task (it never returns here).
    unsafe { asm!("udf #0", options(noreturn, nomem, nostack)) }
}

/// Loads one byte from `addr`, whatever it is: see [`crate::raw::probe_read`].
pub(crate) fn probe_read(addr: u64) -> u64 {
    let v: u64;
    // SAFETY: a single byte load in asm creates no Rust reference and
    // cannot be misaligned. If `addr` is not readable by this task the
    // kernel ends the task on the fault; if it is, the load only reads.
    unsafe {
        asm!(
            "ldrb {v:w}, [{a}]",
            a = in(reg) addr,
            v = lateout(reg) v,
            options(nostack, readonly, preserves_flags),
        );
    }
    v
}

/// Loads `pattern` into v0..v31, then `rounds` times makes the `yield`
/// syscall and spins for `spin_ticks` counter ticks (long enough for the
/// scheduler tick to take the CPU away), touching no vector register, and
/// finally stores v0..v31. A kernel that keeps each task's FP/SIMD state
/// returns `pattern` unchanged; anything else is a kernel bug.
pub(crate) fn hold_vector_registers(
    pattern: &[u128; 32],
    rounds: u64,
    spin_ticks: u64,
) -> [u128; 32] {
    let mut out = [0u128; 32];
    // SAFETY: reads 512 bytes from `pattern` and writes 512 bytes to `out`
    // (both live, 16-byte aligned arrays of 32 u128) with no reference
    // alive to either during the asm; the `svc` (yield) changes x0..x3,
    // which are declared clobbered with every register the asm itself
    // changes (x8, x9..x14, v0..v31, the flags); it does not touch the
    // stack.
    unsafe {
        asm!(
            "ldp q0, q1, [x9, #0]",
            "ldp q2, q3, [x9, #32]",
            "ldp q4, q5, [x9, #64]",
            "ldp q6, q7, [x9, #96]",
            "ldp q8, q9, [x9, #128]",
            "ldp q10, q11, [x9, #160]",
            "ldp q12, q13, [x9, #192]",
            "ldp q14, q15, [x9, #224]",
            "ldp q16, q17, [x9, #256]",
            "ldp q18, q19, [x9, #288]",
            "ldp q20, q21, [x9, #320]",
            "ldp q22, q23, [x9, #352]",
            "ldp q24, q25, [x9, #384]",
            "ldp q26, q27, [x9, #416]",
            "ldp q28, q29, [x9, #448]",
            "ldp q30, q31, [x9, #480]",
            "2:",
            "mov x8, #{yield_no}",
            "svc #0",
            "mrs x13, cntvct_el0",
            "add x14, x13, x12",
            "3:",
            "mrs x13, cntvct_el0",
            "cmp x13, x14",
            "b.lo 3b",
            "subs x11, x11, #1",
            "b.ne 2b",
            "stp q0, q1, [x10, #0]",
            "stp q2, q3, [x10, #32]",
            "stp q4, q5, [x10, #64]",
            "stp q6, q7, [x10, #96]",
            "stp q8, q9, [x10, #128]",
            "stp q10, q11, [x10, #160]",
            "stp q12, q13, [x10, #192]",
            "stp q14, q15, [x10, #224]",
            "stp q16, q17, [x10, #256]",
            "stp q18, q19, [x10, #288]",
            "stp q20, q21, [x10, #320]",
            "stp q22, q23, [x10, #352]",
            "stp q24, q25, [x10, #384]",
            "stp q26, q27, [x10, #416]",
            "stp q28, q29, [x10, #448]",
            "stp q30, q31, [x10, #480]",
            yield_no = const Sysno::Yield as u64,
            inout("x9") pattern.as_ptr() => _,
            inout("x10") out.as_mut_ptr() => _,
            inout("x11") rounds.max(1) => _,
            inout("x12") spin_ticks => _,
            out("x13") _,
            out("x14") _,
            out("x0") _,
            out("x1") _,
            out("x2") _,
            out("x3") _,
            out("x8") _,
            out("v0") _,
            out("v1") _,
            out("v2") _,
            out("v3") _,
            out("v4") _,
            out("v5") _,
            out("v6") _,
            out("v7") _,
            out("v8") _,
            out("v9") _,
            out("v10") _,
            out("v11") _,
            out("v12") _,
            out("v13") _,
            out("v14") _,
            out("v15") _,
            out("v16") _,
            out("v17") _,
            out("v18") _,
            out("v19") _,
            out("v20") _,
            out("v21") _,
            out("v22") _,
            out("v23") _,
            out("v24") _,
            out("v25") _,
            out("v26") _,
            out("v27") _,
            out("v28") _,
            out("v29") _,
            out("v30") _,
            out("v31") _,
            options(nostack),
        );
    }
    out
}

/// The architected virtual counter (CNTVCT_EL0, readable at EL0), after an
/// ISB so it is not read ahead of earlier instructions.
pub(crate) fn counter() -> u64 {
    let v: u64;
    // SAFETY: ISB and a read of CNTVCT_EL0 (enabled at EL0 by the kernel)
    // touch no memory.
    unsafe {
        asm!("isb", "mrs {v}, cntvct_el0", v = out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Vector registers the probe holds: v0..v31.
pub(crate) const VECTOR_REGISTERS: usize = 32;
