//! The trap frame vectors.S saves and the Rust side of trap entry: decodes
//! the vector into an `arch::Trap` and hands it to the kernel's handler.
//! Never handles a fault itself beyond describing it.

use x86_64::registers::control::Cr2;

use crate::arch::{Origin, Trap, UserFrame};

/// Registers saved by vectors.S and the CPU, in that layout (176 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TrapFrame {
    /// rax, rbx, rcx, rdx, rsi, rdi, rbp, r8..r15.
    pub gpr: [u64; 15],
    /// The vector the stub pushed.
    pub vector: u64,
    /// The error code (0 where the CPU pushes none).
    pub error: u64,
    /// Where the trap happened.
    pub rip: u64,
    /// The code segment (its low two bits: the privilege level).
    pub cs: u64,
    /// RFLAGS.
    pub rflags: u64,
    /// The stack pointer.
    pub rsp: u64,
    /// The stack segment.
    pub ss: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 176);

/// Indices into [`TrapFrame::gpr`].
mod reg {
    pub const RAX: usize = 0;
    pub const RDX: usize = 3;
    pub const RSI: usize = 4;
    pub const RDI: usize = 5;
    pub const R8: usize = 7;
    pub const R10: usize = 9;
}

/// RFLAGS for a task's first entry: IF set, the reserved bit 1.
const RFLAGS_USER: u64 = (1 << 9) | (1 << 1);

/// The x86_64 syscall convention (the same numbers and argument blocks as
/// every architecture, from `abi`): number in rax, arguments in rdi, rsi,
/// rdx, r10, r8 (rcx and r11 belong to `syscall`); status back in rax,
/// values in rdi, rsi, rdx.
impl UserFrame for TrapFrame {
    fn new_user(entry: u64, stack: u64, args: [u64; 2]) -> Self {
        let sel = super::cpu::selectors();
        let mut gpr = [0; 15];
        gpr[reg::RDI] = args[0];
        gpr[reg::RSI] = args[1];
        Self {
            gpr,
            rip: entry,
            cs: u64::from(sel.user_code.0),
            rflags: RFLAGS_USER,
            // The SysV ABI's entry state: RSP + 8 16-byte aligned, as if
            // a call had pushed a return address.
            rsp: stack - 8,
            ss: u64::from(sel.user_data.0),
            ..Self::default()
        }
    }

    fn syscall_number(&self) -> u64 {
        self.gpr[reg::RAX]
    }

    fn syscall_args(&self) -> [u64; 5] {
        let g = &self.gpr;
        [
            g[reg::RDI],
            g[reg::RSI],
            g[reg::RDX],
            g[reg::R10],
            g[reg::R8],
        ]
    }

    fn set_syscall_ok(&mut self, values: [u64; 3]) {
        self.gpr[reg::RAX] = 0;
        self.gpr[reg::RDI] = values[0];
        self.gpr[reg::RSI] = values[1];
        self.gpr[reg::RDX] = values[2];
    }

    fn set_syscall_error(&mut self, code: u64) {
        self.gpr[reg::RAX] = code;
    }
}

/// A fault: an exception, with what the reports need.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    origin: Origin,
    exception: kernel_core::x86_exc::Exception,
    rip: u64,
    rsp: u64,
    rflags: u64,
    cs: u64,
}

impl Fault {
    /// The kernel-fault report's lines (after `KERNEL FAULT: `).
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
            "exception from {:?} (vector {})\n  {}\n  error={:#x} CR2={:#018x} RIP={:#018x} RSP={:#018x} RFLAGS={:#x} CS={:#x}",
            x.origin,
            x.exception.vector,
            x.exception,
            x.exception.error,
            x.exception.cr2,
            x.rip,
            x.rsp,
            x.rflags,
            x.cs
        )
    }
}

/// A task's fault in one line: the decoded exception, CR2 where it is the
/// address, and RIP.
impl core::fmt::Display for Fault {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.exception.address_valid() {
            write!(
                f,
                "{}; CR2={:#x} RIP={:#x}",
                self.exception, self.exception.cr2, self.rip
            )
        } else {
            write!(f, "{}; RIP={:#x}", self.exception, self.rip)
        }
    }
}

/// The mark `syscall_entry` (vectors.S) puts in a frame's vector: above
/// every IDT vector.
pub const SYSCALL_VECTOR: u64 = 0x100;

/// The first interrupt vector (below it: exceptions).
const FIRST_INTERRUPT: u64 = 32;

/// The vector of the trap being handled (one CPU; traps do not nest: the
/// kernel runs with interrupts masked).
static CURRENT_VECTOR: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The vector of the trap being handled.
pub fn current_vector() -> u64 {
    CURRENT_VECTOR.load(core::sync::atomic::Ordering::Relaxed)
}

/// Called by vectors.S with the saved frame.
#[unsafe(no_mangle)]
extern "C" fn trap_entry(frame: &mut TrapFrame) {
    let origin = if frame.cs & 3 == 0 {
        Origin::Kernel
    } else {
        Origin::User
    };
    CURRENT_VECTOR.store(frame.vector, core::sync::atomic::Ordering::Relaxed);
    let trap = if frame.vector == SYSCALL_VECTOR && origin == Origin::User {
        Trap::Syscall
    } else if frame.vector >= FIRST_INTERRUPT && frame.vector < SYSCALL_VECTOR {
        Trap::Irq
    } else {
        Trap::Fault(Fault {
            origin,
            exception: kernel_core::x86_exc::Exception {
                vector: frame.vector,
                error: frame.error,
                cr2: Cr2::read_raw(),
            },
            rip: frame.rip,
            rsp: frame.rsp,
            rflags: frame.rflags,
            cs: frame.cs,
        })
    };
    crate::exceptions::handle(frame, origin, trap);
}

/// Reached from `trap_return` (vectors.S) when it is entered with IRQs
/// unmasked (RFLAGS.IF = 1): an interrupt before the `iretq` would run
/// the scheduler under a half-restored frame. Reports it as a kernel fault
/// and ends the run; never returns into the frame. `frame` is the frame
/// being restored.
#[unsafe(no_mangle)]
extern "C" fn trap_return_irqs_unmasked(frame: &TrapFrame) -> ! {
    x86_64::instructions::interrupts::disable();
    crate::console::force_write_fmt(format_args!(
        "\nKERNEL FAULT: trap_return entered with IRQs unmasked (RFLAGS.IF = 1): an IRQ there would run the scheduler under a half-restored frame\n  returning to RIP={:#018x} CS={:#x} RFLAGS={:#x}\n",
        frame.rip, frame.cs, frame.rflags
    ));
    crate::exit(crate::status::KERNEL_FAULT)
}
