//! Arm semihosting, used only to end the run with an exit status that QEMU
//! (started with `-semihosting-config enable=on`) turns into its own exit
//! status. Must never be called from EL0 (QEMU refuses it there).

/// SYS_EXIT_EXTENDED.
const SYS_EXIT_EXTENDED: u64 = 0x20;
/// ADP_Stopped_ApplicationExit.
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

/// Ends the QEMU run with `code` as its exit status. Returns only if
/// semihosting is not enabled (the caller falls back to PSCI).
pub fn exit(code: u32) {
    let block: [u64; 2] = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
    // SAFETY: HLT #0xF000 with w0 = operation and x1 = pointer to a valid
    // two-word parameter block is the A64 semihosting call; it reads only
    // `block`, which lives across the instruction. Without a debugger or
    // semihosting it traps as an undefined instruction, which our vectors
    // report; QEMU is always started with semihosting enabled.
    unsafe {
        core::arch::asm!(
            "hlt #0xf000",
            inout("x0") SYS_EXIT_EXTENDED => _,
            in("x1") block.as_ptr(),
            options(nostack)
        );
    }
}
