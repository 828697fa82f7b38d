//! The few PCI configuration registers the driver sets itself
//! [PCI Local Bus 3.0 §6.2.2 (Command), §6.7 (capability list);
//! PCIe Base 4.0 §7.7.2 (MSI-X)]: INTx enable/disable and keeping MSI-X
//! off, so that the function signals on its INTx pin. Never writes a BAR
//! (the kernel refuses) and never writes status bits (they are RW1C).

use abi::Error;
use userlib::{SysResult, pci_config_read, pci_config_write};

/// The dword holding Command (bits 15:0) and Status (bits 31:16).
const COMMAND: u32 = 0x04;
/// Command: the Interrupt Disable bit (INTx assertion off).
const COMMAND_INTX_DISABLE: u32 = 1 << 10;
/// Status (in the same dword): a capability list is present.
const STATUS_CAP_LIST: u32 = 1 << (16 + 4);
/// Capabilities Pointer (bits 7:0).
const CAP_PTR: u32 = 0x34;
/// Capability ID of MSI-X.
const CAP_ID_MSIX: u32 = 0x11;
/// MSI-X Message Control (bits 31:16 of the capability's first dword):
/// MSI-X Enable.
const MSIX_ENABLE: u32 = 1 << (16 + 15);
/// Most capabilities walked (the 192 bytes after the header hold at most
/// 48): bounds a looping list.
const MAX_CAPS: usize = 48;

/// Sets or clears Command.Interrupt Disable, keeping the other command
/// bits and writing 0 to the status half.
pub fn set_intx(cap: u32, enabled: bool) -> SysResult<()> {
    let command = pci_config_read(cap, COMMAND)? & 0xffff;
    let command = if enabled {
        command & !COMMAND_INTX_DISABLE
    } else {
        command | COMMAND_INTX_DISABLE
    };
    pci_config_write(cap, COMMAND, command)
}

/// Clears MSI-X Enable if the function has MSI-X and it is set (it is not
/// after reset); returns whether the function has MSI-X.
pub fn disable_msix(cap: u32) -> SysResult<bool> {
    if pci_config_read(cap, COMMAND)? & STATUS_CAP_LIST == 0 {
        return Ok(false);
    }
    let mut at = pci_config_read(cap, CAP_PTR)? & 0xfc;
    for _ in 0..MAX_CAPS {
        if at == 0 {
            return Ok(false);
        }
        let head = pci_config_read(cap, at)?;
        if head & 0xff == CAP_ID_MSIX {
            if head & MSIX_ENABLE != 0 {
                pci_config_write(cap, at, head & !MSIX_ENABLE)?;
            }
            return Ok(true);
        }
        at = (head >> 8) & 0xfc;
    }
    Err(Error::BadArgument)
}
