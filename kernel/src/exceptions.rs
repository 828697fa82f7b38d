//! Exception policy: what the kernel does with each trap the architecture
//! decoded (`arch::Trap`). A fault in the kernel is reported (the
//! architecture's description of it) and ends the run with a failure
//! status; interrupts are dispatched to the tick and to the tasks that own
//! their lines. Runs with IRQs masked; must never block.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::arch::{Fault, Interrupt, Origin, Trap, TrapFrame};
use crate::task;

/// Handles one trap taken into the kernel.
pub fn handle(frame: &mut TrapFrame, origin: Origin, trap: Trap) {
    match (origin, trap) {
        // While idling: handle, then return to the idle loop.
        (Origin::Kernel, Trap::Irq) => handle_irqs(),
        (Origin::Kernel, Trap::Fault(f)) => kernel_fault(&f),
        (Origin::Kernel, Trap::Syscall) => panic!("syscall trap from the kernel itself"),
        (Origin::User, trap) => {
            crate::latency::masked_begin();
            task::sched::save_current(frame);
            match trap {
                Trap::Irq => handle_irqs(),
                Trap::Syscall => task::with_current(task::syscall::dispatch),
                Trap::Fault(f) => task::with_current(|k, t| task::lifecycle::fault(k, t, &f)),
            }
            task::sched::schedule(frame);
            crate::latency::masked_end();
        }
    }
}

/// Interrupts taken so far (any source), for [`crate::arch::idle_poll`].
static IRQS_TAKEN: AtomicU32 = AtomicU32::new(0);

/// How many interrupts have been taken (wrapping).
pub fn irqs_taken() -> u32 {
    IRQS_TAKEN.load(Ordering::Relaxed)
}

fn handle_irqs() {
    crate::arch::irq::take_interrupts(|irq| {
        IRQS_TAKEN.fetch_add(1, Ordering::Relaxed);
        match irq {
            Interrupt::Timer => task::on_tick(),
            Interrupt::Line(line) => {
                if !task::on_irq(line) {
                    crate::kprintln!("irq: spurious INTID {line}");
                }
            }
        }
    });
}

fn kernel_fault(fault: &Fault) -> ! {
    crate::console::force_write_fmt(format_args!("\nKERNEL FAULT: {}\n", fault.kernel_report()));
    crate::exit(crate::status::KERNEL_FAULT)
}
