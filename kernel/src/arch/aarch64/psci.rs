//! PSCI calls (SYSTEM_OFF) through the conduit the device tree names.
//! Must never be used for anything but powering the machine off.

/// The PSCI conduit from the device tree's `psci` node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    /// `hvc`: QEMU entered us at EL1, PSCI sits in the emulated hypervisor.
    Hvc,
    /// `smc`: QEMU entered us at EL2, PSCI sits in the emulated firmware.
    Smc,
}

const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

static CONDUIT: hermit_sync::OnceCell<Conduit> = hermit_sync::OnceCell::new();

/// Records the conduit the device tree names.
pub fn set_conduit(conduit: Conduit) {
    let _ = CONDUIT.set(conduit);
}

/// Powers the machine off. Returns only if the call failed or no conduit
/// is known.
pub fn system_off() {
    let Some(conduit) = CONDUIT.get() else { return };
    match conduit {
        // SAFETY: PSCI SYSTEM_OFF takes no arguments and does not return on
        // success; on failure it returns an error code in x0 and clobbers
        // x0..x3 per SMCCC, all declared.
        Conduit::Hvc => unsafe {
            core::arch::asm!("hvc #0", inout("x0") PSCI_SYSTEM_OFF => _,
                out("x1") _, out("x2") _, out("x3") _, options(nostack));
        },
        // SAFETY: as above, through the SMC conduit.
        Conduit::Smc => unsafe {
            core::arch::asm!("smc #0", inout("x0") PSCI_SYSTEM_OFF => _,
                out("x1") _, out("x2") _, out("x3") _, options(nostack));
        },
    }
}
