//! Exception policy: what the kernel does with each trap. A fault in the
//! kernel is reported (decoded ESR, FAR, ELR) and ends the run with a
//! failure status; interrupts are acknowledged and dispatched. Runs with
//! IRQs masked; must never block.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::trap::{Kind, Origin, Syndrome, TrapFrame};
use crate::{gic, task, timer};

/// Exit status for a fault taken in the kernel itself.
pub const EXIT_KERNEL_FAULT: u32 = 3;

/// The timer's INTID, set once the timer is started.
static TIMER_INTID: AtomicU32 = AtomicU32::new(u32::MAX);

/// Routes the timer's INTID to the tick handler.
pub fn set_timer_intid(intid: u32) {
    TIMER_INTID.store(intid, Ordering::Relaxed);
}

/// ESR_EL1.EC of an SVC from AArch64.
const EC_SVC64: u64 = 0x15;

/// Handles one exception taken to EL1.
pub fn handle(frame: &mut TrapFrame, origin: Origin, kind: Kind, syn: Syndrome, vector: u64) {
    match (origin, kind) {
        // While idling: handle, then return to the idle loop.
        (Origin::Kernel, Kind::Irq) => handle_irqs(),
        (Origin::Kernel, _) => kernel_fault(frame, origin, kind, syn, vector),
        (Origin::User, _) => {
            crate::latency::masked_begin();
            task::sched::save_current(frame);
            match kind {
                Kind::Irq => handle_irqs(),
                Kind::Sync if syn.esr >> 26 == EC_SVC64 => {
                    task::with_current(task::syscall::dispatch)
                }
                Kind::Sync => task::with_current(|k, t| {
                    task::lifecycle::fault(k, t, frame, syn, "synchronous exception")
                }),
                Kind::Fiq | Kind::SError => task::with_current(|k, t| {
                    task::lifecycle::fault(k, t, frame, syn, "SError/FIQ")
                }),
            }
            task::sched::schedule(frame);
            crate::latency::masked_end();
        }
    }
}

/// Interrupts taken so far (any INTID), for [`crate::arch::idle_poll`].
static IRQS_TAKEN: AtomicU32 = AtomicU32::new(0);

/// How many interrupts have been taken (wrapping).
pub fn irqs_taken() -> u32 {
    IRQS_TAKEN.load(Ordering::Relaxed)
}

fn handle_irqs() {
    while let Some(intid) = gic::acknowledge() {
        IRQS_TAKEN.fetch_add(1, Ordering::Relaxed);
        if intid == TIMER_INTID.load(Ordering::Relaxed) {
            timer::on_interrupt();
            task::on_tick();
        } else if !task::on_irq(intid) {
            crate::kprintln!("irq: spurious INTID {intid}");
        }
        gic::end_of_interrupt(intid);
    }
}

fn kernel_fault(frame: &TrapFrame, origin: Origin, kind: Kind, syn: Syndrome, vector: u64) -> ! {
    crate::console::force_write_fmt(format_args!(
        "\nKERNEL FAULT: {kind:?} exception from {origin:?} (vector {vector})\n  {}\n  ESR={:#018x} FAR={:#018x} ELR={:#018x} SPSR={:#x}\n",
        kernel_core::esr::Esr::new(syn.esr),
        syn.esr,
        syn.far,
        frame.elr,
        frame.spsr
    ));
    crate::exit(EXIT_KERNEL_FAULT)
}

/// `trap_return` was entered with IRQs unmasked (see vectors.S): a kernel
/// bug, reported like a fault, never continued.
pub fn irqs_unmasked_at_return(frame: &TrapFrame) -> ! {
    crate::arch::disable_irqs();
    crate::console::force_write_fmt(format_args!(
        "\nKERNEL FAULT: trap_return entered with IRQs unmasked (DAIF.I = 0): an IRQ there would clobber ELR/SPSR\n  returning to ELR={:#018x} SPSR={:#x}\n",
        frame.elr, frame.spsr
    ));
    crate::exit(EXIT_KERNEL_FAULT)
}
