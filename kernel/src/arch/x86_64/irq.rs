//! Device interrupts through MSI [PCI 3.0 §6.8.1; Intel SDM Vol. 3A,
//! 11.11 "Message Signalled Interrupts"]: a PCI function's MSI capability is
//! programmed to write its own IDT vector (one of [`FIRST_DEVICE_VECTOR`]..
//! [`END_DEVICE_VECTOR`]) to the boot CPU's local APIC, edge-triggered, and
//! its INTx is turned off (bus mastering, which the message needs, is not
//! this module's to grant). Owns the vector allocation and each vector's
//! mask state; the shared kernel decides who owns a line. Masking uses the
//! function's per-vector mask bit where it has one; otherwise an interrupt
//! that arrives while masked is kept pending here and delivered once (a
//! self-IPI) when the line is unmasked. Never touches a vector nobody bound.

use alloc::format;
use alloc::string::String;

use hermit_sync::InterruptSpinMutex;
use kernel_core::dt::{Irq, Platform, Trigger as DtTrigger};
use kernel_core::pci::regs::{COMMAND, Command};
use kernel_core::pci::{Bdf, Function};

use super::apic;

/// The first IDT vector handed to devices (vectors.S has stubs for these).
pub const FIRST_DEVICE_VECTOR: u32 = 48;
/// One past the last device vector.
pub const END_DEVICE_VECTOR: u32 = 64;
const LINES: usize = (END_DEVICE_VECTOR - FIRST_DEVICE_VECTOR) as usize;

/// The MSI address for fixed delivery to local APIC `id`, physical
/// destination mode [SDM Vol. 3A, 11.11.1].
const MSI_ADDRESS_BASE: u32 = 0xfee0_0000;

/// The MSI capability's message control bits [PCI 3.0 §6.8.1.3].
mod cfg {
    /// MSI message control (high half of the capability's first dword):
    /// MSI enable.
    pub const MSI_ENABLE: u32 = 1 << 0;
    /// MSI message control: multiple message enable (bits 6:4).
    pub const MSI_MME_MASK: u32 = 0x7 << 4;
}

/// A line's trigger mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Edge-triggered.
    Edge,
    /// Level-sensitive.
    Level,
}

/// One device vector's state.
#[derive(Clone, Copy)]
struct Line {
    /// The function that signals it.
    bdf: Bdf,
    /// Configuration offset of the function's MSI mask bits, if it has
    /// per-vector masking.
    mask_reg: Option<u16>,
    /// Masked (until the owner's acknowledgement).
    masked: bool,
    /// Arrived while masked without a mask bit: delivered on unmask.
    pending: bool,
}

static LINES_STATE: InterruptSpinMutex<[Option<Line>; LINES]> =
    InterruptSpinMutex::new([None; LINES]);

fn slot(line: u32) -> Option<usize> {
    (FIRST_DEVICE_VECTOR..END_DEVICE_VECTOR)
        .contains(&line)
        .then(|| (line - FIRST_DEVICE_VECTOR) as usize)
}

/// Whether `line` is a device vector a task may own.
pub fn is_device_line(line: u32) -> bool {
    slot(line).is_some()
}

/// The interrupt of PCI function `function`: its MSI, programmed to a
/// device vector (the one it already has, after a restart, or a free one)
/// and enabled with INTx off; the vector starts masked until
/// [`enable_line`]. A function without an MSI capability is refused.
pub fn route_pci(_platform: &Platform<'_>, function: &Function) -> Result<Irq, String> {
    let bdf = function.bdf;
    let msi = function.caps.msi.ok_or(format!(
        "PCI function {:#06x} has no MSI capability (x86_64 delivers device interrupts by MSI only)",
        bdf.rid()
    ))?;
    let mut lines = LINES_STATE.lock();
    let index = lines
        .iter()
        .position(|l| l.is_some_and(|l| l.bdf == bdf))
        .or_else(|| lines.iter().position(Option::is_none))
        .ok_or("no free MSI vector")?;
    let vector = FIRST_DEVICE_VECTOR + index as u32;
    let mask_reg = msi.mask();
    // A vector kept from the function's earlier owner keeps its mask state
    // (masked since that owner ended); a new one starts masked.
    let earlier = lines[index];
    if let (None, Some(m)) = (earlier, mask_reg) {
        crate::pci::config_write(bdf, m, 1);
    }
    crate::pci::config_write(bdf, msi.address(), MSI_ADDRESS_BASE | (apic::id() << 12));
    if let Some(high) = msi.address_high() {
        crate::pci::config_write(bdf, high, 0);
    }
    crate::pci::config_write(bdf, msi.data(), vector);
    let head = crate::pci::config_read(bdf, msi.control());
    let control = ((head >> 16) & !cfg::MSI_MME_MASK) | cfg::MSI_ENABLE;
    crate::pci::config_write(bdf, msi.control(), (head & 0xffff) | (control << 16));
    // The status half is write-one-to-clear: written as zeros. Bus
    // mastering is left as it is: an MSI is a memory write by the device,
    // so it arrives only once the function may master (the shared kernel's
    // rule, the same as for its DMA).
    let command = Command(crate::pci::config_read(bdf, COMMAND) as u16);
    crate::pci::config_write(
        bdf,
        COMMAND,
        u32::from(command.union(Command::INTX_DISABLE).0),
    );
    lines[index] = Some(Line {
        bdf,
        mask_reg,
        masked: earlier.is_none_or(|l| l.masked),
        pending: earlier.is_some_and(|l| l.pending),
    });
    crate::kprintln!(
        "msi: PCI {:#06x} -> vector {vector} at local APIC {}, {}-bit address, per-vector mask {}",
        bdf.rid(),
        apic::id(),
        if msi.addr64 { 64 } else { 32 },
        if msi.per_vector_mask {
            "yes"
        } else {
            "no (pending flag)"
        }
    );
    Ok(Irq {
        intid: vector,
        trigger: DtTrigger::Edge,
    })
}

/// Enables a device vector [`route_pci`] programmed (MSI is always edge).
pub fn enable_line(line: u32, _trigger: Trigger) {
    unmask(line);
}

/// Masks a device vector: its mask bit, or a flag that keeps what arrives
/// pending.
pub fn mask(line: u32) {
    let Some(i) = slot(line) else { return };
    if let Some(l) = LINES_STATE.lock()[i].as_mut() {
        l.masked = true;
        if let Some(m) = l.mask_reg {
            crate::pci::config_write(l.bdf, m, 1);
        }
    }
}

/// Unmasks a device vector; one that arrived while masked (no mask bit)
/// is delivered now, once, by a self-IPI.
pub fn unmask(line: u32) {
    let Some(i) = slot(line) else { return };
    let mut lines = LINES_STATE.lock();
    let Some(l) = lines[i].as_mut() else { return };
    l.masked = false;
    if let Some(m) = l.mask_reg {
        crate::pci::config_write(l.bdf, m, 0);
    }
    if core::mem::take(&mut l.pending) {
        apic::send_self(line as u8);
    }
}

/// Whether device vector `line` may be handed on now; if it is masked (no
/// mask bit held it back), it is recorded as pending instead.
pub(super) fn arrived(line: u32) -> bool {
    let Some(i) = slot(line) else { return true };
    let mut lines = LINES_STATE.lock();
    match lines[i].as_mut() {
        Some(l) if l.masked => {
            l.pending = true;
            false
        }
        _ => true,
    }
}
