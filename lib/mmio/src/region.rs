//! [`Region`]: a base pointer and a length over device (or DMA) memory,
//! and the only code in the project that loads or stores such memory.
//! Every access is one volatile load or store of a register's width,
//! inside the region and naturally aligned, through a raw pointer.
//!
//! It must never create a `&`/`&mut` to the memory (a device may change or
//! read it at any moment, which a reference's guarantees forbid), never
//! access it except by one volatile access of a [`Value`], and never
//! access outside `base..base + len`.

use core::fmt;

use crate::reg::{Reg, Value};

/// An access that does not fit the region: past its end, overflowing, or
/// not naturally aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    /// Byte offset of the access.
    pub offset: usize,
    /// Its width in bytes.
    pub width: usize,
    /// The region's length.
    pub len: usize,
}

impl fmt::Display for OutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-byte register at {:#x} outside or misaligned in a {:#x}-byte block",
            self.width, self.offset, self.len
        )
    }
}

/// `len` bytes of device (or DMA) memory at `base`, reached only through
/// [`Region::read`] and [`Region::write`].
#[derive(Clone, Debug)]
pub struct Region {
    base: *mut u8,
    len: usize,
}

// SAFETY: a `Region` is an address range plus the promise made to
// `Region::new`; it holds no reference and every access is a single
// volatile load or store, so moving it to another thread moves no data.
unsafe impl Send for Region {}
// SAFETY: as for `Send`: `&Region` only allows single volatile accesses,
// and `Region::new`'s contract makes whoever shares a region across
// threads responsible for accesses the device does not tolerate
// concurrently (the kernel runs one CPU; tasks are single-threaded).
unsafe impl Sync for Region {}

impl Region {
    /// The region of `len` bytes at `base`.
    ///
    /// # Safety
    ///
    /// For as long as this region or any region made from it (clones,
    /// [`Region::sub`]) exists, `base..base + len` must be mapped and valid
    /// for volatile loads and stores of `u8`, `u16`, `u32` and `u64` at
    /// naturally aligned addresses (device memory, or memory a device may
    /// also access); no Rust reference to any of it may exist; and if the
    /// region is shared between threads, concurrent accesses must be ones
    /// the memory's owner allows.
    pub const unsafe fn new(base: *mut u8, len: usize) -> Region {
        Region { base, len }
    }

    /// Address of the first byte.
    pub fn addr(&self) -> usize {
        self.base.addr()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region is empty (no access fits).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `len` bytes starting `offset` bytes in; `None` if they do not
    /// lie inside this region.
    pub fn sub(&self, offset: usize, len: usize) -> Option<Region> {
        let end = offset.checked_add(len)?;
        (end <= self.len).then(|| Region {
            base: self.base.wrapping_add(offset),
            len,
        })
    }

    /// Where `reg` lives, if it lies wholly inside and is naturally
    /// aligned.
    fn ptr<T: Value>(&self, reg: Reg<T>) -> Result<*mut T, OutOfRange> {
        let offset = reg.offset();
        let err = OutOfRange {
            offset,
            width: T::SIZE,
            len: self.len,
        };
        let end = offset.checked_add(T::SIZE).ok_or(err)?;
        let p = self.base.wrapping_add(offset);
        if end > self.len || !p.addr().is_multiple_of(T::SIZE) {
            return Err(err);
        }
        Ok(p.cast::<T>())
    }

    /// One volatile load of `reg`.
    pub fn read<T: Value>(&self, reg: Reg<T>) -> Result<T, OutOfRange> {
        let p = self.ptr(reg)?;
        // SAFETY: `p` lies inside the region and is aligned for `T`
        // (checked by `ptr`); `Region::new`'s contract makes the range
        // valid for volatile loads of `T` while the region exists; every
        // bit pattern is a valid `T` (sealed integer); no reference is made.
        Ok(unsafe { core::ptr::read_volatile(p) })
    }

    /// One volatile store of `value` to `reg`.
    pub fn write<T: Value>(&self, reg: Reg<T>, value: T) -> Result<(), OutOfRange> {
        let p = self.ptr(reg)?;
        // SAFETY: as in `read`; the contract covers volatile stores too,
        // and since no Rust reference to the range exists the store aliases
        // nothing the compiler knows of.
        unsafe { core::ptr::write_volatile(p, value) };
        Ok(())
    }

    /// Read-modify-write of `reg`: one load, then one store of `f(value)`.
    pub fn modify<T: Value>(&self, reg: Reg<T>, f: impl FnOnce(T) -> T) -> Result<(), OutOfRange> {
        let v = self.read(reg)?;
        self.write(reg, f(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 32 bytes of ordinary memory standing in for a register block.
    struct Fake {
        mem: [u64; 4],
    }

    impl Fake {
        fn region(&mut self) -> Region {
            // SAFETY: `mem` outlives every use of the region in these tests
            // (the region is not used again once `mem` is read directly), and
            // no reference to it is used while the region is.
            unsafe { Region::new(self.mem.as_mut_ptr().cast(), 32) }
        }
    }

    #[test]
    fn reads_back_what_it_wrote_at_each_width() {
        let mut f = Fake { mem: [0; 4] };
        let r = f.region();
        r.write(Reg::<u64>::at(0), 0x1122_3344_5566_7788).unwrap();
        r.write(Reg::<u32>::at(8), 0xdead_beef).unwrap();
        r.write(Reg::<u16>::at(12), 0xcafe).unwrap();
        r.write(Reg::<u8>::at(31), 0x5a).unwrap();
        assert_eq!(r.read(Reg::<u64>::at(0)), Ok(0x1122_3344_5566_7788));
        assert_eq!(r.read(Reg::<u32>::at(8)), Ok(0xdead_beef));
        assert_eq!(r.read(Reg::<u16>::at(12)), Ok(0xcafe));
        assert_eq!(r.read(Reg::<u8>::at(31)), Ok(0x5a));
        // A 32-bit store touches exactly 4 bytes.
        assert_eq!(r.read(Reg::<u16>::at(14)), Ok(0));
        r.modify(Reg::<u32>::at(8), |v| v | 1).unwrap();
        assert_eq!(r.read(Reg::<u32>::at(8)), Ok(0xdead_beef));
        r.modify(Reg::<u32>::at(8), |v| v & !0xffff).unwrap();
        assert_eq!(f.mem[1], 0x0000_cafe_dead_0000);
    }

    #[test]
    fn refuses_accesses_past_the_end() {
        let mut f = Fake { mem: [0; 4] };
        let r = f.region();
        assert_eq!(
            r.read(Reg::<u64>::at(32)),
            Err(OutOfRange {
                offset: 32,
                width: 8,
                len: 32
            })
        );
        assert!(r.read(Reg::<u64>::at(24)).is_ok());
        assert!(r.read(Reg::<u32>::at(28)).is_ok());
        assert!(r.write(Reg::<u32>::at(32), 1).is_err());
        assert!(r.read(Reg::<u8>::at(usize::MAX)).is_err());
        assert!(r.read(Reg::<u64>::at(usize::MAX - 3)).is_err());
    }

    #[test]
    fn refuses_misaligned_accesses() {
        let mut f = Fake { mem: [0; 4] };
        let r = f.region();
        assert!(r.read(Reg::<u64>::at(4)).is_err());
        assert!(r.read(Reg::<u32>::at(2)).is_err());
        assert!(r.write(Reg::<u16>::at(1), 0).is_err());
        assert!(r.read(Reg::<u8>::at(1)).is_ok());
    }

    #[test]
    fn sub_regions_are_bounded_and_offset() {
        let mut f = Fake { mem: [0; 4] };
        let r = f.region();
        let s = r.sub(16, 16).unwrap();
        assert_eq!(s.len(), 16);
        assert_eq!(s.addr(), r.addr() + 16);
        s.write(Reg::<u32>::at(0), 7).unwrap();
        assert_eq!(r.read(Reg::<u32>::at(16)), Ok(7));
        assert!(s.read(Reg::<u32>::at(16)).is_err());
        assert!(r.sub(16, 17).is_none());
        assert!(r.sub(usize::MAX, 2).is_none());
        assert!(r.sub(32, 0).unwrap().is_empty());
    }
}
