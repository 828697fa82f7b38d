//! Boot-time self-tests selected by the kernel command line
//! (`selftest=NAME`), used by the QEMU scenarios to prove that a failure is
//! reported and fails the run. Never runs anything unless asked.

use crate::{kprintln, status};

use crate::arch::UNMAPPED_KERNEL_ADDR;

/// Runs what `bootargs` asks for; returns the run's exit status.
pub fn run(bootargs: &str) -> u32 {
    let mut code = status::PASS;
    for arg in bootargs.split_whitespace() {
        let Some(name) = arg.strip_prefix("selftest=") else {
            continue;
        };
        match name {
            "kernel-fault" => {
                kprintln!("selftest: reading unmapped kernel address {UNMAPPED_KERNEL_ADDR:#x}");
                crate::arch::provoke_kernel_fault(UNMAPPED_KERNEL_ADDR);
            }
            "panic" => panic!("selftest: deliberate panic"),
            // The bug behind an intermittent boot fault: IRQs left unmasked
            // on the way into the first task. `trap_return` must catch it
            // on the first return, every time.
            "irqs-on-at-start" => {
                kprintln!("selftest: leaving IRQs unmasked on the way into the first task");
                crate::arch::enable_irqs();
            }
            other => {
                kprintln!("selftest: unknown self-test {other:?}");
                code = status::FAIL;
            }
        }
    }
    code
}
