//! The architecture interface: the one place that picks an architecture
//! (by `target_arch`, here and nowhere else) and the list of what each one
//! provides to the rest of the kernel. Everything that needs an instruction
//! Rust cannot express, a system register, a trap vector or a hardware
//! table format lives below this module; the kernel outside it never names
//! an architecture. It owns no policy: the shared kernel decides, the arch
//! layer only does (docs/ARCHITECTURE.md, "The arch interface").
//!
//! Each implementation provides the items re-exported below, with the
//! meaning their documentation in that implementation states, and
//! implements [`UserFrame`] for its trap frame.

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "aarch64")]
use aarch64 as imp;
#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
use self::x86_64 as imp;

// Boot and the end of the run: what the loader handed over, the platform
// it describes (`kernel_core::dt::Platform`), the per-architecture bring-up of the interrupt controller and the timer, the
// lines of the discovery report only the architecture can write, and the
// exit with a status the emulator passes on.
pub use imp::{BootInfo, MachineInfo, bring_up, can_run_tasks, discover, exit, report};

// Entry and trap frames: the saved user registers and what a trap was;
// the machine task executables are built for.
pub use imp::{ELF_MACHINE, Fault, TrapFrame};

// The user/kernel boundary and context switch: the first entry into a
// task, a task's floating-point/vector state and which one the trap path
// saves and loads, what user code may read without a syscall.
pub use imp::{FpState, allow_user_counter, enter_user, install_fp_state};

// Interrupt masking and idling (docs/ARCHITECTURE.md, "When the kernel takes
// interrupts").
pub use imp::{enable_irqs, idle_once, idle_poll};

// The time base: a monotonic counter and its frequency.
pub use imp::{counter, counter_hz};

// The fault-report self-test: an address nothing maps, and a read of it.
pub use imp::{UNMAPPED_KERNEL_ADDR, provoke_kernel_fault};

/// Address spaces: the kernel's own map, task tables tagged with an address
/// space ID (so a switch needs no TLB flush), the memory types page-table
/// entries take, and the layout of the kernel's linear map.
pub mod mmu {
    pub use super::imp::kernel_map::{self, KernelMap};
    pub use super::imp::mmu::{
        BOOT_LINEAR_RAM_END, BOOT_LINEAR_RAM_START, LINEAR_BASE, MEM_DEVICE, MEM_NORMAL,
        USER_VA_BITS, clear_user_space, decode_table_entry, encode_table_entry, flush_tag,
        install_kernel_tables, pa_bits, prepare_user_root, set_user_space, table_barrier,
        virt_to_phys,
    };
}

/// The interrupt controller, by device interrupt line: what the kernel
/// needs to hand a line to a task and to dispatch what arrives.
pub mod irq {
    pub use super::imp::irq::{Trigger, enable_line, is_device_line, mask, route_pci, unmask};
    pub use super::imp::take_interrupts;
}

/// The system tick and one-shot deadlines.
pub mod timer {
    pub use super::imp::timer::{program, writes};
}

/// The boot console's output device.
pub mod console {
    pub use super::imp::console::{Uart, init};
}

/// How a trap arrived: from the kernel or from a task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// From the kernel itself.
    Kernel,
    /// From a task (user mode).
    User,
}

/// What a trap is, decoded by the architecture for the shared handler.
#[derive(Debug)]
pub enum Trap {
    /// A task asked for a syscall; its number and arguments are in the
    /// frame ([`UserFrame`]).
    Syscall,
    /// One or more interrupts are pending ([`irq::take_interrupts`]).
    Irq,
    /// Anything else: a fault, described for the report.
    Fault(Fault),
}

/// Where an interrupt [`irq::take_interrupts`] hands over came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interrupt {
    /// The system timer (tick or deadline); already re-armed.
    Timer,
    /// A device interrupt line (the numbers [`irq::enable_line`] takes).
    Line(u32),
}

/// A task's saved registers as the shared kernel sees them: the syscall
/// convention (number, arguments, results) and the first entry.
pub trait UserFrame: Copy + Default {
    /// The frame a task starts from: at `entry`, stack pointer `stack`, the
    /// first two argument registers `args`, user mode, interrupts enabled.
    fn new_user(entry: u64, stack: u64, args: [u64; 2]) -> Self;
    /// The syscall number of a [`Trap::Syscall`].
    fn syscall_number(&self) -> u64;
    /// The syscall's argument registers, in `abi` order.
    fn syscall_args(&self) -> [u64; 5];
    /// Sets a successful syscall's results: status 0 and three values, in
    /// `abi` order.
    fn set_syscall_ok(&mut self, values: [u64; 3]);
    /// Sets a failed syscall's status to the error `code`; the value
    /// registers keep what they held.
    fn set_syscall_error(&mut self, code: u64);
}
