//! Raw syscalls, for probes that must hand the kernel arguments no typed
//! wrapper would build (forged capabilities, wild pointers, bad numbers).
//!
//! Calling these is safe as far as the system is concerned: the kernel
//! validates every number, capability, pointer and length against the
//! calling task's own capabilities and address space, so no argument can
//! reach the kernel's or another task's memory. What the kernel cannot know
//! is Rust's view of this task's own memory: a raw syscall that makes the
//! kernel *write* (`Recv`'s info and buffer, `Call`'s reply buffer) into
//! memory this task's safe code is using would change it behind the
//! compiler's back. Point such writes only at buffers you own, or at memory
//! the kernel will refuse (unmapped, kernel, read-only).

use abi::{Error, SysResult};

/// Issues syscall `n` with `args` in x0..x5 and returns x0..x3 as the
/// kernel left them (x0 = 0 or an [`Error`] code). See the module doc.
pub fn raw_syscall(n: u64, args: [u64; 6]) -> [u64; 4] {
    crate::sys::syscall(n, args)
}

/// Reads the byte at `addr` with a single load, for isolation probes:
/// if `addr` is not readable by this task the kernel ends the task on the
/// fault; otherwise the byte is returned (zero-extended). The value means
/// nothing; only surviving the read does. No reference is made, so this
/// is safe whatever `addr` is. Never aim it at device memory whose reads
/// have side effects.
pub fn probe_read(addr: u64) -> u64 {
    crate::sys::probe_read(addr)
}

/// Executes an undefined instruction (UDF), for isolation probes: the
/// kernel reports the fault by the task's name and ends the task.
pub fn undefined_instruction() -> ! {
    crate::sys::undefined_instruction()
}

/// Decodes x0 of a syscall's result: `Ok` with all four registers on
/// success, `Err(code)` with the raw code otherwise.
pub fn decode(regs: [u64; 4]) -> Result<[u64; 4], u64> {
    match regs[0] {
        0 => Ok(regs),
        code => Err(code),
    }
}

/// Like [`decode`], with the code as an [`Error`]. A code this crate's
/// `abi` does not know (the kernel and userlib disagree about the ABI) is
/// reported as [`Error::BadSyscall`].
pub fn check(regs: [u64; 4]) -> SysResult<[u64; 4]> {
    decode(regs).map_err(|code| Error::from_code(code).unwrap_or(Error::BadSyscall))
}
