//! The discovery report's aarch64 lines: exception levels, the TTBR1 map
//! and ASID width, the GICv3 and the generic timer. Prints only; its lines
//! are what the boot scenarios (scenarios/boot.toml) assert.

use abi::PhysAddr;
use kernel_core::dt::Platform;

use super::{BootInfo, MachineInfo, timer};
use crate::kprintln;

/// The first line: where the kernel runs and where its image is.
pub fn boot(boot: &BootInfo, image: (PhysAddr, PhysAddr)) {
    kprintln!(
        "boot: running at EL{} (entered at EL{}), kernel image {:#x}..{:#x}",
        super::current_el(),
        boot.entry_el,
        image.0,
        image.1
    );
}

/// The kernel map and the image's page permissions: (executable, writable,
/// both) pages.
pub fn kernel_map(installed: bool, (x, w, wx): (usize, usize, usize)) {
    kprintln!(
        "mmu: kernel map {} (TTBR1), identity map dropped, ASIDs {} bits; image pages: {x} executable, {w} writable, {wx} both",
        if installed {
            "installed"
        } else {
            "NOT installed"
        },
        if super::mmu::has_asid16() { 16 } else { 8 }
    );
}

/// The interrupt controller and the timer.
pub fn machine(platform: &Platform<'_>, sys: &MachineInfo) {
    match (&sys.gic, &platform.gic) {
        (Ok(g), Some(node)) => kprintln!(
            "gic: GICv3 distributor {:#x} ({} INTIDs, IIDR {:#x}{}), redistributor {:#x}{}",
            node.gicd.base,
            g.lines,
            g.iidr,
            if g.single_security_state {
                ", single security state"
            } else {
                ""
            },
            g.redistributor,
            node.its
                .map(|r| alloc::format!(", ITS {:#x}", r.base))
                .unwrap_or_default()
        ),
        (Err(e), _) => kprintln!("gic: bring-up FAILED: {e:?}"),
        (Ok(_), None) => {}
    }
    let hz = super::counter_hz();
    match sys.timer_check {
        Some((ticks, us)) => kprintln!(
            "timer: virtual timer INTID {}, counter {}.{} MHz, {} ms tick: {ticks} ticks in {}.{} ms",
            sys.timer_intid,
            hz / 1_000_000,
            (hz % 1_000_000) / 100_000,
            timer::TICK_US / 1000,
            us / 1000,
            (us % 1000) / 100
        ),
        None => kprintln!("timer: not started (no GIC)"),
    }
}
