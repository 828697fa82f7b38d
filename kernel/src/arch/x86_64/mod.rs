//! The x86_64 architecture layer (QEMU `q35`, TCG): PVH boot into long
//! mode, the GDT, TSS and IDT (`cpu`), trap entry and fault decoding
//! (`trap`), COM1 (`console`), the kernel map with NX and W^X (`mmu`,
//! `kernel_map`), the TSC as the counter and the local APIC's one-shot
//! timer as the tick (`timer`, `apic`), and the end of the run
//! through `isa-debug-exit`, behind the interface `arch` re-exports. The
//! `x86_64` crate provides the registers, instructions and page-table types.
//!
//! Tasks run in ring 3 with `syscall` entry, their x87/SSE state kept with
//! XSAVE (FXSAVE without it), their page tables in x86 format through
//! `pgtable::x86`; device interrupts arrive by MSI (`irq`). Not built yet
//! (docs/ARCHITECTURE.md): the IOAPIC, PCID.
//! It never decides policy.

pub mod acpi;
pub mod apic;
pub mod boot;
pub mod console;
pub mod cpu;
pub mod irq;
pub mod kernel_map;
pub mod mmu;
pub mod report;
pub mod timer;
pub mod trap;

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, Ordering};

use kernel_core::dt::Platform;
use x86_64::instructions::port::Port;

pub use boot::{BootInfo, UNMAPPED_KERNEL_ADDR, discover, provoke_kernel_fault};
pub use trap::{Fault, TrapFrame};

/// Task executables are x86-64 ELF files.
pub const ELF_MACHINE: kernel_core::elf::Machine = kernel_core::elf::Machine::X86_64;

use super::Interrupt;

/// The I/O port of QEMU's `isa-debug-exit` device (`-device
/// isa-debug-exit,iobase=0xf4,iosize=0x04`): writing `v` ends QEMU with exit
/// status `2 * v + 1`.
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// What bring-up found, for the report.
pub struct MachineInfo {
    /// The CPU features the kernel cares about.
    pub cpu: cpu::Features,
    /// The TSC's frequency, as calibrated against the PIT.
    pub tsc_hz: u64,
    /// The local APIC: (physical base, ID, version).
    pub apic: (abi::PhysAddr, u32, u32),
    /// Ticks counted while waiting for the timer, and the time it took.
    pub timer_check: (u64, u64),
}

/// Reads the CPU's features and turns on SMEP/SMAP where present (the
/// counter was calibrated at entry); masks the 8259s, enables the local
/// APIC and its one-shot timer, and checks that it ticks (three ticks with
/// interrupts on), then masks interrupts again.
pub fn bring_up(_platform: &Platform<'_>) -> MachineInfo {
    let cpu = cpu::Features::read();
    cpu::enable_user_protection(&cpu);
    let _ = cpu::enable_xsave(&cpu, FP_AREA);
    apic::mask_legacy_pics();
    let (id, version) = apic::init();
    timer::start();
    enable_irqs();
    let timer_check = timer::wait_ticks(3);
    // The kernel runs with interrupts masked from here on: only the idle
    // loop takes them.
    x86_64::instructions::interrupts::disable();
    MachineInfo {
        cpu,
        tsc_hz: counter_hz(),
        apic: (apic::base(), id, version),
        timer_check,
    }
}

/// Tasks run on x86_64.
pub fn can_run_tasks() -> Result<(), &'static str> {
    Ok(())
}

/// Ends the run through `isa-debug-exit` (QEMU's status is `2 * code + 1`);
/// without that device, halts.
pub fn exit(code: u32) -> ! {
    let mut port: Port<u32> = Port::new(DEBUG_EXIT_PORT);
    // SAFETY: a port write to isa-debug-exit ends the emulator; on a
    // machine without it, port 0xf4 is unassigned and the write is ignored.
    unsafe { port.write(code) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// The TSC, in ticks of [`counter_hz`].
pub fn counter() -> u64 {
    timer::tsc()
}

/// The TSC's frequency in Hz (calibrated once at boot).
pub fn counter_hz() -> u64 {
    timer::tsc_hz()
}

/// Sets RFLAGS.IF. Only the boot self-test that breaks the masking
/// invariant uses it.
pub fn enable_irqs() {
    x86_64::instructions::interrupts::enable();
}

/// Idles until an interrupt has been taken: `sti; hlt` (the `hlt` is in
/// the `sti` shadow, so an interrupt already pending wakes it), then masks
/// again.
pub fn idle_once() {
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}

/// Idles without halting until the counter reaches `until` or an
/// interrupt has been taken.
pub fn idle_poll(until: u64) {
    let taken = crate::exceptions::irqs_taken();
    while counter() < until {
        x86_64::instructions::interrupts::enable();
        core::hint::spin_loop();
        x86_64::instructions::interrupts::disable();
        if crate::exceptions::irqs_taken() != taken {
            return;
        }
    }
}

/// Hands the interrupt being taken (its vector, from the trap frame) to
/// `f`, the timer re-armed first, and ends it at the local APIC. The
/// spurious vector is dropped without an EOI, as the APIC requires.
pub fn take_interrupts(mut f: impl FnMut(Interrupt)) {
    match trap::current_vector() {
        v if v == u64::from(apic::TIMER_VECTOR) => {
            timer::on_interrupt();
            f(Interrupt::Timer);
            apic::end_of_interrupt();
        }
        v if v == u64::from(apic::SPURIOUS_VECTOR) => {}
        v => {
            if irq::arrived(v as u32) {
                f(Interrupt::Line(v as u32));
            }
            apic::end_of_interrupt();
        }
    }
}

/// Bytes of a task's FP state area: the XSAVE area for x87, SSE and AVX
/// (832 bytes on QEMU's `-cpu max`) with room to spare; FXSAVE uses the
/// first 512.
pub const FP_AREA: usize = 1024;

/// One task's floating-point state: the XSAVE area (x87, SSE, AVX) or, on a
/// CPU without XSAVE, the FXSAVE area (x87, MXCSR, XMM0-15), saved by the
/// trap path on every entry from user mode and loaded on every return to
/// it (vectors.S). The kernel is built without SSE, so nothing in between
/// touches these registers.
#[repr(C, align(64))]
#[derive(Clone)]
pub struct FpState {
    /// The XSAVE (or FXSAVE) image.
    pub area: [u8; FP_AREA],
}

impl Default for FpState {
    /// The state a task starts with: FCW 0x037f (x87 defaults), MXCSR
    /// 0x1f80 (all SSE exceptions masked), registers zero; an XSAVE header
    /// of zeros (every component in its initial state).
    fn default() -> Self {
        let mut area = [0; FP_AREA];
        area[0..2].copy_from_slice(&0x037f_u16.to_le_bytes());
        area[24..28].copy_from_slice(&0x1f80_u32.to_le_bytes());
        Self { area }
    }
}

/// The state the trap path saves to and loads from (read by vectors.S).
/// Null until the scheduler installs the first task's, which it does before
/// the first return to user mode.
#[unsafe(no_mangle)]
static USER_FP: AtomicPtr<FpState> = AtomicPtr::new(core::ptr::null_mut());

/// Makes `state` the one the next return to user mode loads and the next
/// entry from user mode saves (the scheduler keeps it alive while
/// installed, as on aarch64).
pub fn install_fp_state(state: &UnsafeCell<FpState>) {
    USER_FP.store(state.get(), Ordering::Relaxed);
}

/// User mode reads the TSC with `rdtsc` (CR4.TSD stays clear).
pub fn allow_user_counter() {}

/// Leaves the kernel for the first time into the task whose registers are
/// in `frame`: the frame is copied to the top of the kernel stack (nothing
/// below is needed any more; every later trap from user mode starts there,
/// TSS.RSP0) and `trap_return` restores it and `iretq`s.
pub fn enter_user(frame: &TrapFrame) -> ! {
    unsafe extern "C" {
        static __boot_stack_top: u8;
    }
    const SIZE: usize = core::mem::size_of::<TrapFrame>();
    let top = (&raw const __boot_stack_top) as usize;
    let src = frame as *const TrapFrame as usize;
    assert!(
        src + SIZE <= top - SIZE,
        "the first frame overlaps the top of the stack"
    );
    // SAFETY: copies the 176-byte frame from `src` to the top 176 bytes of
    // the kernel stack (disjoint, checked), points rsp at it and jumps to
    // `trap_return`, which restores exactly that frame and returns to user
    // mode. Everything on the stack belongs to calls that never return.
    unsafe {
        core::arch::asm!(
            "lea rdi, [{top} - {size}]",
            "mov rcx, {size}",
            "rep movsb",
            "lea rsp, [{top} - {size}]",
            "jmp trap_return",
            top = in(reg) top,
            size = const SIZE,
            in("rsi") src,
            options(noreturn)
        )
    }
}
