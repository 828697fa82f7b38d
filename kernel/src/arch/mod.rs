//! The aarch64 architecture layer: everything that needs an instruction
//! Rust cannot express (boot, vectors, system registers, semihosting, PSCI).
//! This is one of the few places `unsafe` is allowed; each block says why it
//! holds. Policy lives elsewhere: this layer never decides, it only does.

pub mod boot;
pub mod gic_sysreg;
pub mod mmu;
pub mod psci;
pub mod semihosting;
pub mod trap;

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTVCT_EL0, CurrentEL, MPIDR_EL1, Readable};

/// The exception level the kernel runs at (always 1 after boot).
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// The generic timer's counter frequency in Hz.
pub fn counter_hz() -> u64 {
    CNTFRQ_EL0.get()
}

/// The virtual counter (CNTVCT_EL0), in ticks of [`counter_hz`].
pub fn counter() -> u64 {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTVCT_EL0.get()
}

/// Unmasks IRQs at this EL.
pub fn enable_irqs() {
    // SAFETY: clearing PSTATE.I only allows IRQ exceptions, whose vector
    // (installed at boot) saves and restores all state.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nomem, nostack)) };
}

/// Waits for an interrupt (or event) with IRQs in whatever state they are.
pub fn wait_for_interrupt() {
    aarch64_cpu::asm::wfi();
}

/// This CPU's affinity in the layout GICR_TYPER and GICD_IROUTER use
/// (Aff3 at bits 39:32 for IROUTER; GICR_TYPER[63:32] holds Aff3..Aff0 as
/// one 32-bit value, see [`Affinity::gicr_typer`]).
#[derive(Clone, Copy, Debug)]
pub struct Affinity {
    mpidr: u64,
}

impl Affinity {
    /// The value GICR_TYPER[63:32] holds for this CPU's redistributor.
    pub fn gicr_typer(self) -> u64 {
        (self.mpidr & 0xff_ffff) | (((self.mpidr >> 32) & 0xff) << 24)
    }
}

/// This CPU's affinity (MPIDR_EL1).
pub fn affinity() -> Affinity {
    Affinity {
        mpidr: MPIDR_EL1.get(),
    }
}
