//! Typed MMIO access: a device's register block is an [`Mmio`] region and
//! each register a typed [`Reg`] constant declared beside its device driver.
//! Every access is one volatile load or store of the register's width,
//! bounds-checked against the region. No `&`/`&mut` to device memory is
//! ever made. This is the only module that dereferences MMIO.

use core::marker::PhantomData;

use abi::PhysAddr;

use crate::mm;

/// A value that a register holds: `u32` or `u64`.
pub trait RegValue: Copy {
    /// Size in bytes.
    const SIZE: usize = core::mem::size_of::<Self>();
}
impl RegValue for u32 {}
impl RegValue for u64 {}
impl RegValue for u16 {}
impl RegValue for u8 {}

/// A register of type `T` at a byte offset inside a device's block.
#[derive(Debug)]
pub struct Reg<T> {
    offset: usize,
    _t: PhantomData<T>,
}

impl<T> Clone for Reg<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Reg<T> {}

impl<T: RegValue> Reg<T> {
    /// A register at `offset`.
    pub const fn at(offset: usize) -> Self {
        Self {
            offset,
            _t: PhantomData,
        }
    }
    /// The `n`th register of an array of registers `stride` bytes apart.
    pub const fn index(self, n: usize, stride: usize) -> Self {
        Self::at(self.offset + n * stride)
    }
}

/// A device register block mapped in the kernel's linear map as device
/// memory.
#[derive(Clone, Copy, Debug)]
pub struct Mmio {
    base: usize,
    len: usize,
    phys: PhysAddr,
}

impl Mmio {
    /// The register block at physical `phys`, `len` bytes long. The kernel
    /// map (mm::kernel_map) maps every device window of the device tree as
    /// Device-nGnRE in the linear map; `phys` must lie in one.
    pub fn new(phys: PhysAddr, len: usize) -> Self {
        Self {
            base: mm::phys_to_virt(phys).get() as usize,
            len,
            phys,
        }
    }

    /// Physical base address.
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }

    /// A sub-block starting `offset` bytes in.
    pub fn sub(&self, offset: usize, len: usize) -> Self {
        assert!(
            offset + len <= self.len,
            "MMIO sub-block outside its region"
        );
        Self {
            base: self.base + offset,
            len,
            phys: PhysAddr::new(self.phys.get() + offset as u64),
        }
    }

    fn addr<T: RegValue>(&self, reg: Reg<T>) -> *mut T {
        assert!(
            reg.offset + T::SIZE <= self.len && reg.offset.is_multiple_of(T::SIZE),
            "register offset {:#x} outside or misaligned in a {:#x}-byte block",
            reg.offset,
            self.len
        );
        (self.base + reg.offset) as *mut T
    }

    /// One volatile read of `reg`.
    pub fn read<T: RegValue>(&self, reg: Reg<T>) -> T {
        let p = self.addr(reg);
        // SAFETY: `p` is inside this block (checked above) and naturally
        // aligned; the block is mapped as device memory for the kernel's
        // lifetime, and a volatile load of the register's width is the
        // access the device expects.
        unsafe { core::ptr::read_volatile(p) }
    }

    /// One volatile write of `value` to `reg`.
    pub fn write<T: RegValue>(&self, reg: Reg<T>, value: T) {
        let p = self.addr(reg);
        // SAFETY: as in `read`; the caller owns this device, so the write's
        // device-side effect is the one it intends.
        unsafe { core::ptr::write_volatile(p, value) }
    }

    /// Read-modify-write of `reg`.
    pub fn modify<T: RegValue>(&self, reg: Reg<T>, f: impl FnOnce(T) -> T) {
        let v = self.read(reg);
        self.write(reg, f(v));
    }
}
