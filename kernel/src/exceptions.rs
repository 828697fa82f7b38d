//! Exception policy: what the kernel does with each trap (fault reports,
//! interrupts). Runs with IRQs masked; must never block.

use crate::arch::trap::{Kind, Origin, Syndrome, TrapFrame};

/// Handles one exception taken to EL1.
pub fn handle(frame: &mut TrapFrame, origin: Origin, kind: Kind, syn: Syndrome, vector: u64) {
    crate::console::force_write_fmt(format_args!(
        "\nKERNEL FAULT: {:?} from {:?} (vector {}), ESR={:#x} FAR={:#x} ELR={:#x}\n",
        kind, origin, vector, syn.esr, syn.far, frame.elr
    ));
    crate::exit(3);
}
