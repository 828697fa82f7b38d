//! The kernel's device register blocks: an [`Mmio`] is a shared
//! [`::mmio::Region`] built from the kernel's linear map, plus its physical
//! address. Registers are the shared [`Reg`] constants declared beside each
//! driver. Owns only the construction from a physical address and the
//! kernel's policy for a bad offset (a kernel bug: panic). Never accesses
//! device memory itself: every load and store is the shared region's one
//! volatile access, and no `&`/`&mut` to device memory is ever made.

use abi::PhysAddr;

pub use ::mmio::{Reg, Value};

use crate::mm;

/// A device register block mapped in the kernel's linear map as device
/// memory.
#[derive(Clone, Debug)]
// The physical base, sub-blocks and read-modify-write serve the GIC and
// the PL011 (aarch64); x86_64's APIC and console use none of them.
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
pub struct Mmio {
    region: ::mmio::Region,
    phys: PhysAddr,
}

#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
impl Mmio {
    /// The register block at physical `phys`, `len` bytes long. The kernel
    /// map (`arch::mmu::kernel_map`) maps every device window of the
    /// platform as device memory in the linear map; `phys` must lie in one.
    pub fn new(phys: PhysAddr, len: usize) -> Self {
        let va = mm::phys_to_virt(phys).get() as usize;
        // SAFETY: the linear map covers every device window of the platform
        // as device memory for the kernel's whole lifetime and is never
        // unmapped, so `va..va + len` is valid for volatile accesses; the
        // kernel makes no reference to device memory; it runs on one CPU,
        // and each device's owner (console, interrupt controller, PCI,
        // SMMU probe) serialises its own accesses.
        let region =
            unsafe { ::mmio::Region::new(core::ptr::with_exposed_provenance_mut(va), len) };
        Self { region, phys }
    }

    /// Physical base address.
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }

    /// A sub-block starting `offset` bytes in.
    pub fn sub(&self, offset: usize, len: usize) -> Self {
        Self {
            region: self
                .region
                .sub(offset, len)
                .expect("MMIO sub-block outside its region"),
            phys: PhysAddr::new(self.phys.get() + offset as u64),
        }
    }

    /// One volatile read of `reg`.
    pub fn read<T: Value>(&self, reg: Reg<T>) -> T {
        self.region.read(reg).unwrap_or_else(|e| panic!("{e}"))
    }

    /// One volatile write of `value` to `reg`.
    pub fn write<T: Value>(&self, reg: Reg<T>, value: T) {
        self.region
            .write(reg, value)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Read-modify-write of `reg`.
    pub fn modify<T: Value>(&self, reg: Reg<T>, f: impl FnOnce(T) -> T) {
        self.region.modify(reg, f).unwrap_or_else(|e| panic!("{e}"))
    }
}
