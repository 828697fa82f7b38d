//! The x86_64 instructions of userlib's `sys`: `syscall`, the undefined
//! instruction, the probe load, the vector-register probe (through FXSAVE
//! images: tasks are built without SSE) and the TSC. Never used for
//! anything else.

use core::arch::asm;

use abi::Sysno;

/// Issues `syscall` with `n` in rax and `a` in rdi, rsi, rdx, r10, r8
/// (the kernel reads five); returns rax, rdi, rsi, rdx.
#[inline(always)]
pub(crate) fn syscall(n: u64, a: [u64; 6]) -> [u64; 4] {
    let (r0, r1, r2, r3): (u64, u64, u64, u64);
    // SAFETY: `syscall` enters the kernel, which checks every argument
    // against this task's own capabilities and address space, and changes
    // only rax, rdi, rsi, rdx (declared as outputs), rcx and r11 (the
    // instruction's, declared clobbered) and memory this task named by a
    // pointer (the asm is not `nomem`). It does not touch the stack.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n => r0,
            inlateout("rdi") a[0] => r1,
            inlateout("rsi") a[1] => r2,
            inlateout("rdx") a[2] => r3,
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            out("rcx") _,
            out("r11") _,
            options(nostack),
        );
    }
    [r0, r1, r2, r3]
}

/// Orders this task's stores before any later access, a device's included:
/// x86 never reorders stores with other stores (write-back or uncached), so
/// holding the compiler is enough.
pub(crate) fn dsb_st() {
    core::sync::atomic::compiler_fence(core::sync::atomic::Ordering::SeqCst);
}

/// Executes `ud2`: see [`crate::raw::undefined_instruction`].
pub(crate) fn undefined_instruction() -> ! {
    // SAFETY: UD2 touches no memory and no register; it traps to the
    // kernel, which ends the task (it never returns here).
    unsafe { asm!("ud2", options(noreturn, nomem, nostack)) }
}

/// Loads one byte from `addr`, whatever it is: see [`crate::raw::probe_read`].
pub(crate) fn probe_read(addr: u64) -> u64 {
    let v: u64;
    // SAFETY: a single byte load in asm creates no Rust reference and
    // cannot be misaligned. If `addr` is not readable by this task the
    // kernel ends the task on the fault; if it is, the load only reads.
    unsafe {
        asm!(
            "movzx {v:e}, byte ptr [{a}]",
            a = in(reg) addr,
            v = lateout(reg) v,
            options(nostack, readonly, preserves_flags),
        );
    }
    v
}

/// Vector registers the probe holds: xmm0..xmm15.
pub(crate) const VECTOR_REGISTERS: usize = 16;

/// Offset of xmm0 in an FXSAVE image.
const FXSAVE_XMM0: usize = 160;

/// An FXSAVE image (512 bytes, 16-byte aligned).
#[repr(C, align(16))]
struct FxImage([u8; 512]);

/// Loads `pattern[0..16]` into xmm0..xmm15 (through FXRSTOR), then `rounds`
/// times makes the `yield` syscall and spins for `spin_ticks` TSC ticks
/// touching no vector register, and finally reads xmm0..xmm15 back (through
/// FXSAVE) into the first 16 entries of the result (the rest stay 0: there
/// are 16 registers, [`VECTOR_REGISTERS`]).
pub(crate) fn hold_vector_registers(
    pattern: &[u128; 32],
    rounds: u64,
    spin_ticks: u64,
) -> [u128; 32] {
    let mut image = FxImage([0; 512]);
    let mut after = FxImage([0; 512]);
    let p = image.0.as_mut_ptr();
    // SAFETY: FXSAVE64 writes this task's x87/SSE state into the 512-byte,
    // 16-byte-aligned image (a live local); no reference to it is alive.
    unsafe { asm!("fxsave64 [{p}]", p = in(reg) p, options(nostack)) };
    for (i, v) in pattern.iter().take(VECTOR_REGISTERS).enumerate() {
        let at = FXSAVE_XMM0 + 16 * i;
        image.0[at..at + 16].copy_from_slice(&v.to_le_bytes());
    }
    // SAFETY: reads `image` (a valid FXSAVE image: saved above, only the
    // XMM fields changed) and writes `after` (512 bytes, aligned); between
    // them only the yield syscall (rax, rdi, rsi, rdx, rcx, r11 clobbered,
    // declared) and a TSC spin (rax, rdx, r12..r14, declared) run. The
    // compiler keeps nothing in vector registers (the target has no SSE),
    // so loading them breaks no value of its. It does not touch the stack.
    unsafe {
        asm!(
            "fxrstor64 [{img}]",
            "2:",
            "mov eax, {yield_no}",
            "syscall",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "lea r14, [rax + r13]",
            "3:",
            "rdtsc",
            "shl rdx, 32",
            "or rax, rdx",
            "cmp rax, r14",
            "jb 3b",
            "dec r12",
            "jnz 2b",
            "fxsave64 [{out}]",
            img = in(reg) image.0.as_ptr(),
            out = in(reg) after.0.as_mut_ptr(),
            yield_no = const Sysno::Yield as u64,
            inout("r12") rounds.max(1) => _,
            inout("r13") spin_ticks => _,
            out("r14") _,
            out("rax") _,
            out("rdi") _,
            out("rsi") _,
            out("rdx") _,
            out("rcx") _,
            out("r11") _,
        );
    }
    let mut out = [0u128; 32];
    for (i, v) in out.iter_mut().take(VECTOR_REGISTERS).enumerate() {
        let at = FXSAVE_XMM0 + 16 * i;
        let mut b = [0; 16];
        b.copy_from_slice(&after.0[at..at + 16]);
        *v = u128::from_le_bytes(b);
    }
    out
}

/// The time-stamp counter (readable in user mode: the kernel leaves CR4.TSD
/// clear). Its frequency is the `hz` of `time`.
pub(crate) fn counter() -> u64 {
    // SAFETY: RDTSC only reads the counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}
