//! PCI configuration space of a function this task holds a capability for.
//! The kernel refuses BAR writes, and bus mastering until the IOMMU
//! server has declared the SMMU on.

use abi::{SysResult, Sysno};

use crate::raw::check;
use crate::sys::syscall;

/// Reads the 32-bit configuration register at `offset`.
pub fn pci_config_read(cap: u32, offset: u32) -> SysResult<u32> {
    check(syscall(
        Sysno::PciConfigRead as u64,
        [cap as u64, offset as u64, 0, 0, 0, 0],
    ))
    .map(|r| r[1] as u32)
}

/// Writes the 32-bit configuration register at `offset`.
pub fn pci_config_write(cap: u32, offset: u32, value: u32) -> SysResult<()> {
    check(syscall(
        Sysno::PciConfigWrite as u64,
        [cap as u64, offset as u64, value as u64, 0, 0, 0],
    ))
    .map(|_| ())
}

/// Sets bus mastering in the function's command register, so the device
/// may DMA (through the SMMU). Refused (`Denied`) until the IOMMU server
/// has declared the SMMU on.
pub fn pci_enable_bus_master(cap: u32) -> SysResult<()> {
    const COMMAND: u32 = 0x04;
    const MEMORY_SPACE: u32 = 1 << 1;
    const BUS_MASTER: u32 = 1 << 2;
    let command = pci_config_read(cap, COMMAND)? & 0xffff;
    pci_config_write(cap, COMMAND, command | MEMORY_SPACE | BUS_MASTER)
}

/// Declares the SMMU enabled (only with the SMMU-owner capability: the
/// IOMMU server calls this once every stream aborts by default).
pub fn smmu_enabled(owner_cap: u32) -> SysResult<()> {
    check(syscall(
        Sysno::SmmuEnabled as u64,
        [owner_cap as u64, 0, 0, 0, 0, 0],
    ))
    .map(|_| ())
}
