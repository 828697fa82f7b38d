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
