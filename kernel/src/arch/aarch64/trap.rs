//! The trap frame the vectors save and the Rust side of exception entry:
//! decodes which exception this is and hands it to the kernel's handlers.
//! Never handles a fault itself beyond describing it.

use aarch64_cpu::registers::{ESR_EL1, FAR_EL1, Readable};

use crate::arch::{Origin, Trap, UserFrame};

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

/// Which of the four exception types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Synchronous: faults, SVC, undefined instructions.
    Sync,
    /// IRQ.
    Irq,
    /// FIQ (unused: all interrupts are group 1 IRQs).
    Fiq,
    /// SError.
    SError,
}

/// ESR_EL1.EC of an SVC from AArch64.
const EC_SVC64: u64 = 0x15;

/// SPSR for a task's first entry: EL0t, interrupts unmasked.
const SPSR_EL0T: u64 = 0;

impl UserFrame for TrapFrame {
    fn new_user(entry: u64, stack: u64, args: [u64; 2]) -> Self {
        let mut x = [0; 31];
        x[0] = args[0];
        x[1] = args[1];
        Self {
            x,
            sp_el0: stack,
            elr: entry,
            spsr: SPSR_EL0T,
        }
    }

    /// The number is in x8.
    fn syscall_number(&self) -> u64 {
        self.x[8]
    }

    /// The arguments are x0..x4.
    fn syscall_args(&self) -> [u64; 5] {
        [self.x[0], self.x[1], self.x[2], self.x[3], self.x[4]]
    }

    /// The status goes in x0, the values in x1..x3.
    fn set_syscall_ok(&mut self, values: [u64; 3]) {
        self.x[0] = 0;
        self.x[1..4].copy_from_slice(&values);
    }

    /// The error code goes in x0.
    fn set_syscall_error(&mut self, code: u64) {
        self.x[0] = code;
    }
}

/// A fault (any exception but an SVC from EL0 or an IRQ), with what the
/// reports need: the syndrome, the fault address and where it happened.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    origin: Origin,
    kind: Kind,
    vector: u64,
    /// ESR_EL1.
    esr: u64,
    /// FAR_EL1 (meaningful for aborts).
    far: u64,
    /// ELR_EL1.
    elr: u64,
    /// SPSR_EL1.
    spsr: u64,
}

impl Fault {
    /// The kernel-fault report's lines (after `KERNEL FAULT: `): the
    /// exception, the decoded ESR, and the raw registers.
    pub fn kernel_report(&self) -> impl core::fmt::Display + '_ {
        KernelReport(self)
    }
}

struct KernelReport<'a>(&'a Fault);

impl core::fmt::Display for KernelReport<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let x = self.0;
        write!(
            f,
            "{:?} exception from {:?} (vector {})\n  {}\n  ESR={:#018x} FAR={:#018x} ELR={:#018x} SPSR={:#x}",
            x.kind,
            x.origin,
            x.vector,
            kernel_core::esr::Esr::new(x.esr),
            x.esr,
            x.far,
            x.elr,
            x.spsr
        )
    }
}

/// A task's fault in one line: the kind, the decoded syndrome, FAR where
/// it is valid, and ELR.
impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let what = match self.kind {
            Kind::Sync => "synchronous exception",
            _ => "SError/FIQ",
        };
        let decoded = kernel_core::esr::Fault::new(self.esr);
        if decoded.far_valid() {
            write!(
                f,
                "{what}: {decoded}; FAR={:#x} ELR={:#x}",
                self.far, self.elr
            )
        } else {
            write!(f, "{what}: {decoded}; ELR={:#x}", self.elr)
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
    let esr = ESR_EL1.get();
    let trap = match kind {
        Kind::Irq => Trap::Irq,
        Kind::Sync if origin == Origin::User && esr >> 26 == EC_SVC64 => Trap::Syscall,
        _ => Trap::Fault(Fault {
            origin,
            kind,
            vector,
            esr,
            far: FAR_EL1.get(),
            elr: frame.elr,
            spsr: frame.spsr,
        }),
    };
    crate::exceptions::handle(frame, origin, trap);
}

/// Reached from `trap_return` (vectors.S) when it is entered with IRQs
/// unmasked: the invariant that keeps ELR/SPSR consistent until the `eret`
/// is broken. Reports it as a kernel fault and ends the run; never returns
/// into the half-restored frame. `frame` is the frame being restored.
#[unsafe(no_mangle)]
extern "C" fn trap_return_irqs_unmasked(frame: &TrapFrame) -> ! {
    super::disable_irqs();
    crate::console::force_write_fmt(format_args!(
        "\nKERNEL FAULT: trap_return entered with IRQs unmasked (DAIF.I = 0): an IRQ there would clobber ELR/SPSR\n  returning to ELR={:#018x} SPSR={:#x}\n",
        frame.elr, frame.spsr
    ));
    crate::exit(crate::status::KERNEL_FAULT)
}
