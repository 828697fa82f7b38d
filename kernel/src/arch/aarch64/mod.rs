//! The aarch64 architecture layer (QEMU `virt`): everything that needs an
//! instruction Rust cannot express (boot, vectors, system registers,
//! semihosting, PSCI), the GICv3, the generic timer, the PL011 and the
//! VMSAv8-64 kernel map, behind the interface `arch` re-exports.
//! This is one of the few places `unsafe` is allowed; each block says why it
//! holds. Policy lives elsewhere: this layer never decides, it only does.

pub mod boot;
pub mod console;
pub mod fpsimd;
pub mod gic;
pub mod gic_sysreg;
pub mod kernel_map;
pub mod mmu;
pub mod psci;
pub mod report;
pub mod semihosting;
pub mod timer;
pub mod trap;

use core::sync::atomic::{AtomicU32, Ordering};

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTVCT_EL0, CurrentEL, MPIDR_EL1, Readable};
use kernel_core::dt::{self, Platform};

pub use boot::{BootInfo, UNMAPPED_KERNEL_ADDR, provoke_kernel_fault};
pub use fpsimd::{FpState, install as install_fp_state};
pub use trap::{Fault, TrapFrame};

/// Task executables are AArch64 ELF files.
pub const ELF_MACHINE: kernel_core::elf::Machine = kernel_core::elf::Machine::Aarch64;

use super::Interrupt;

/// What interrupt and timer bring-up found, for the report.
pub struct MachineInfo {
    /// The GIC's facts, or why bring-up failed.
    pub gic: Result<gic::GicInfo, gic::GicError>,
    /// The timer's INTID.
    pub timer_intid: u32,
    /// Ticks counted while waiting for the timer, and the time it took.
    pub timer_check: Option<(u64, u64)>,
}

/// The timer's INTID, set once the timer is started.
static TIMER_INTID: AtomicU32 = AtomicU32::new(u32::MAX);

/// The PSCI conduit, the GICv3 and the virtual timer; checks that the timer
/// ticks (three ticks with IRQs on), then masks IRQs again.
pub fn bring_up(platform: &Platform<'_>) -> MachineInfo {
    if let Some(method) = platform.psci {
        psci::set_conduit(match method {
            dt::PsciMethod::Hvc => psci::Conduit::Hvc,
            dt::PsciMethod::Smc => psci::Conduit::Smc,
        });
    }
    let gic = match &platform.gic {
        Some(g) => gic::init(g.gicd.base, g.gicr.base, g.gicr.size as usize, affinity()),
        None => Err(gic::GicError::Missing),
    };
    let timer_intid = platform.timer.map_or(u32::MAX, |t| t.virt.intid);
    let mut timer_check = None;
    if gic.is_ok() && timer_intid != u32::MAX {
        TIMER_INTID.store(timer_intid, Ordering::Relaxed);
        gic::enable_ppi(timer_intid);
        timer::start();
        enable_irqs();
        timer_check = Some(timer::wait_ticks(3));
        // The kernel runs with IRQs masked from here on: only the idle
        // loop takes them (idle_once). An IRQ taken between
        // `trap_return`'s ELR/SPSR writes and its `eret` would clobber both
        // (vectors.S checks, and reports it as a kernel fault).
        disable_irqs();
    }
    MachineInfo {
        gic,
        timer_intid,
        timer_check,
    }
}

/// Tasks run on aarch64.
pub fn can_run_tasks() -> Result<(), &'static str> {
    Ok(())
}

/// Device interrupt lines: the GIC's SPIs.
pub mod irq {
    use alloc::format;
    use alloc::string::String;

    use kernel_core::dt::{Irq, Platform};
    use kernel_core::pci::Function;

    pub use super::gic::{
        Trigger, enable_spi as enable_line, is_spi as is_device_line, mask_spi as mask,
        unmask_spi as unmask,
    };

    /// The interrupt of PCI function `function`: its INTx pin (read at
    /// enumeration) through the host's `interrupt-map`.
    pub fn route_pci(platform: &Platform<'_>, function: &Function) -> Result<Irq, String> {
        let bdf = function.bdf.rid();
        let host = platform.pci.as_ref().ok_or("no PCI host")?;
        let pin = function.interrupt_pin;
        if pin == 0 {
            return Err(format!("PCI function {bdf:#06x} has no INTx pin"));
        }
        host.intx
            .lookup(bdf, pin)
            .ok_or(format!("no interrupt-map entry for {bdf:#06x} pin {pin}"))
    }
}

/// The platform: the device tree the loader left (its frames are kept from
/// the frame allocator: everything below the image is reserved).
pub fn discover(boot: &BootInfo) -> Option<Platform<'static>> {
    dt::parse(boot_device_tree(boot.device_tree)?).ok()
}

/// The device tree blob the loader left at `pa`, if its header is valid.
/// Its frames are reserved from the frame allocator (`kmain` reserves
/// everything below the image), so nothing writes them afterwards.
fn boot_device_tree(pa: abi::PhysAddr) -> Option<&'static [u8]> {
    let layout = crate::mm::image_layout();
    let image_start = crate::mm::virt_to_phys(layout.start);
    // Only RAM below the image and above the start of the boot-mapped RAM
    // can hold it (QEMU: 0x4000_0000, the image at 0x4020_0000).
    let room = image_start.offset_from(pa)?;
    if room < 40 || pa.get() < mmu::BOOT_LINEAR_RAM_START {
        return None;
    }
    let p = crate::mm::phys_to_virt(pa).get() as *const u8;
    // SAFETY: pa..pa+40 lies in RAM below the kernel image, mapped by the
    // boot tables' RAM block; nothing writes it (reserved, see above).
    let header = unsafe { core::slice::from_raw_parts(p, 40) };
    let size = kernel_core::dt::blob_size(header).ok()?;
    if size as u64 > room {
        return None;
    }
    // SAFETY: as above, for the size the header states, checked to end
    // below the image.
    Some(unsafe { core::slice::from_raw_parts(p, size) })
}

/// Acknowledges every pending interrupt, hands each to `f` (the timer
/// re-armed first), and ends it at the GIC.
pub fn take_interrupts(mut f: impl FnMut(Interrupt)) {
    while let Some(intid) = gic::acknowledge() {
        if intid == TIMER_INTID.load(Ordering::Relaxed) {
            timer::on_interrupt();
            f(Interrupt::Timer);
        } else {
            f(Interrupt::Line(intid));
        }
        gic::end_of_interrupt(intid);
    }
}

/// Ends the run: semihosting exit status, or PSCI power-off without it.
pub fn exit(code: u32) -> ! {
    semihosting::exit(code);
    psci::system_off();
    loop {
        wait_for_interrupt();
    }
}

/// The exception level the kernel runs at (always 1 after boot).
fn current_el() -> u64 {
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

/// Masks IRQs at this EL: the kernel's normal state (see
/// docs/ARCHITECTURE.md, "When the kernel takes interrupts").
pub fn disable_irqs() {
    // SAFETY: setting PSTATE.I only defers IRQ exceptions; nothing else
    // changes.
    unsafe { core::arch::asm!("msr daifset, #2", options(nomem, nostack)) };
}

/// Unmasks IRQs at this EL. Only the boot timer check uses it, and masks
/// again with [`disable_irqs`] before anything else runs.
pub fn enable_irqs() {
    // SAFETY: clearing PSTATE.I only allows IRQ exceptions, whose vector
    // (installed at boot) saves and restores all state.
    unsafe { core::arch::asm!("msr daifclr, #2", options(nomem, nostack)) };
}

/// Waits for an interrupt (or event) with IRQs in whatever state they are.
pub fn wait_for_interrupt() {
    aarch64_cpu::asm::wfi();
}

/// Idles without `wfi` until the counter reaches `until` or an interrupt
/// has been taken, whichever comes first: IRQs are opened for a moment on
/// every turn ([`take_pending_irqs`]), so a pending one is taken at once.
///
/// For deadlines a moment away only. Under TCG a sleeping CPU is woken by
/// a host timer that QEMU's main loop fires, and that loop also runs the
/// devices' emulation: with I/O in flight the wake-up came up to 3 ms late
/// (`docs/ARCHITECTURE.md`, "When the kernel takes interrupts"). Reading
/// the counter needs no such help.
pub fn idle_poll(until: u64) {
    let taken = crate::exceptions::irqs_taken();
    while counter() < until {
        take_pending_irqs();
        if crate::exceptions::irqs_taken() != taken {
            return;
        }
    }
}

/// Idles until an interrupt has been taken: waits with IRQs still masked,
/// then takes the pending one ([`take_pending_irqs`]).
///
/// The wait comes first on purpose. WFI wakes on a pending IRQ whatever
/// PSTATE.I says, so an interrupt that became pending before the WFI (a
/// deadline the scheduler just programmed, already passed) ends the wait at
/// once. Unmasking first would take that IRQ before the WFI; its handler
/// re-arms the timer for the next tick, and the WFI would then sleep until
/// that tick (up to 10 ms) with an expired deadline nobody processed.
pub fn idle_once() {
    wait_for_interrupt();
    take_pending_irqs();
}

/// Unmasks IRQs for a moment, so that any pending one is taken, then masks
/// them again. Only for the idle loop: the caller holds no lock the
/// handler takes.
fn take_pending_irqs() {
    // SAFETY: unmasking IRQs at EL1 lets the vectors (installed at boot)
    // run the handler on this stack, and the idle loop holds no lock the
    // handler takes. The ISB makes the unmask take effect (and a pending
    // IRQ be taken) before IRQs are masked again, which restores the
    // kernel's normal state.
    unsafe {
        core::arch::asm!(
            "msr daifclr, #2",
            "isb",
            "msr daifset, #2",
            // The handler is Rust code built with FP/SIMD: it may change
            // any register the C ABI lets a callee change.
            clobber_abi("C"),
            options(nomem, nostack)
        )
    };
}

/// Leaves the kernel for the first time: returns from exception into the
/// task whose registers (SPSR for EL0) are in `frame`. The kernel stack is
/// reset to its top first: nothing of the boot path on it (kmain's frames,
/// the device-tree and PCI records) is needed any more, and every later
/// trap from EL0 then has the whole stack.
pub fn enter_user(frame: &trap::TrapFrame) -> ! {
    unsafe extern "C" {
        static __boot_stack_top: u8;
    }
    const SIZE: usize = core::mem::size_of::<trap::TrapFrame>();
    let top = (&raw const __boot_stack_top) as usize;
    let src = frame as *const trap::TrapFrame as usize;
    // The frame is a local deep below the top (kmain and its callers are
    // above it), so the copy below reads and writes disjoint memory.
    assert!(
        src + SIZE <= top - SIZE,
        "the first frame overlaps the top of the stack"
    );
    // SAFETY: copies the 272-byte frame (17 pairs) from `src` to the top
    // 272 bytes of the kernel stack (disjoint, checked), points sp at it and
    // branches to `trap_return`, which restores exactly that frame and
    // erets to EL0. Everything that was on the stack belongs to calls that
    // never return; the asm never returns to Rust.
    unsafe {
        core::arch::asm!(
            "sub x2, x0, #272",
            "mov x3, x2",
            "2:",
            "ldp x4, x5, [x1], #16",
            "stp x4, x5, [x3], #16",
            "cmp x3, x0",
            "b.lo 2b",
            "mov sp, x2",
            "b trap_return",
            in("x0") top,
            in("x1") src,
            options(noreturn)
        )
    }
}

/// Lets EL0 read the virtual counter (CNTVCT_EL0) and its frequency, so
/// tasks can time things without a syscall. Nothing else is exposed.
pub fn allow_user_counter() {
    use aarch64_cpu::registers::{CNTKCTL_EL1, ReadWriteable};
    CNTKCTL_EL1.modify(CNTKCTL_EL1::EL0VCTEN::SET);
}

/// This CPU's affinity, in the layouts the GIC wants.
#[derive(Clone, Copy, Debug)]
pub struct Affinity {
    mpidr: u64,
}

impl Affinity {
    /// The value GICD_IROUTER takes to route an SPI to this CPU
    /// (Aff3 at bits 39:32, Aff2..Aff0 at 23:0).
    pub fn irouter(self) -> u64 {
        self.mpidr & 0xff_00ff_ffff
    }
    /// The value GICR_TYPER[63:32] holds for this CPU's redistributor
    /// (Aff3..Aff0 packed into 32 bits).
    pub fn gicr_typer(self) -> u64 {
        (self.mpidr & 0xff_ffff) | (((self.mpidr >> 32) & 0xff) << 24)
    }
}

/// This CPU's affinity (MPIDR_EL1).
fn affinity() -> Affinity {
    Affinity {
        mpidr: MPIDR_EL1.get(),
    }
}
