//! The trap frame the vectors save and the Rust side of exception entry:
//! decodes which exception this is and hands it to the kernel's handlers.
//! Never handles a fault itself beyond describing it.

use aarch64_cpu::registers::{ESR_EL1, FAR_EL1, Readable};

/// Registers saved by `vectors.S`, in its layout (272 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// The EL0 stack pointer.
    pub sp_el0: u64,
    /// The return address (ELR_EL1).
    pub elr: u64,
    /// The saved program status (SPSR_EL1).
    pub spsr: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 272);

/// Where an exception came from and what kind it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// From EL1 (the kernel itself).
    Kernel,
    /// From EL0 (a task).
    User,
}

/// Which of the four exception types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Synchronous: faults, SVC, undefined instructions.
    Sync,
    /// IRQ.
    Irq,
    /// FIQ (unused: all interrupts are group 1 IRQs).
    Fiq,
    /// SError.
    SError,
}

/// Syndrome of a synchronous exception.
#[derive(Clone, Copy, Debug)]
pub struct Syndrome {
    /// ESR_EL1.
    pub esr: u64,
    /// FAR_EL1 (meaningful for aborts).
    pub far: u64,
}

impl Syndrome {
    fn read() -> Self {
        Self {
            esr: ESR_EL1.get(),
            far: FAR_EL1.get(),
        }
    }
}

/// Called by `vectors.S` with the saved frame and the vector index.
#[unsafe(no_mangle)]
extern "C" fn trap_entry(frame: &mut TrapFrame, vector: u64) {
    let origin = if vector < 8 {
        Origin::Kernel
    } else {
        Origin::User
    };
    let kind = match vector & 3 {
        0 => Kind::Sync,
        1 => Kind::Irq,
        2 => Kind::Fiq,
        _ => Kind::SError,
    };
    let syndrome = Syndrome::read();
    crate::exceptions::handle(frame, origin, kind, syndrome, vector);
}

/// Reached from `trap_return` (vectors.S) when it is entered with IRQs
/// unmasked: the invariant that keeps ELR/SPSR consistent until the `eret`
/// is broken. Reports it as a kernel fault and ends the run; never returns
/// into the half-restored frame. `frame` is the frame being restored.
#[unsafe(no_mangle)]
extern "C" fn trap_return_irqs_unmasked(frame: &TrapFrame) -> ! {
    crate::exceptions::irqs_unmasked_at_return(frame)
}
