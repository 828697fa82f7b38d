//! Exception policy: what the kernel does with each trap. A fault in the
//! kernel is reported (decoded ESR, FAR, ELR) and ends the run with a
//! failure status; interrupts are acknowledged and dispatched. Runs with
//! IRQs masked; must never block.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::trap::{Kind, Origin, Syndrome, TrapFrame};
use crate::{gic, timer};

/// Exit status for a fault taken in the kernel itself.
pub const EXIT_KERNEL_FAULT: u32 = 3;

/// The timer's INTID, set once the timer is started.
static TIMER_INTID: AtomicU32 = AtomicU32::new(u32::MAX);

/// Routes the timer's INTID to the tick handler.
pub fn set_timer_intid(intid: u32) {
    TIMER_INTID.store(intid, Ordering::Relaxed);
}

/// Handles one exception taken to EL1.
pub fn handle(frame: &mut TrapFrame, origin: Origin, kind: Kind, syn: Syndrome, vector: u64) {
    match (origin, kind) {
        (_, Kind::Irq) => handle_irqs(),
        _ => kernel_fault(frame, origin, kind, syn, vector),
    }
}

fn handle_irqs() {
    while let Some(intid) = gic::acknowledge() {
        if intid == TIMER_INTID.load(Ordering::Relaxed) {
            timer::on_interrupt();
        } else {
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
