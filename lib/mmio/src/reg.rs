//! Register declarations: a byte offset and a width, as plain data. Owns
//! the [`Value`] types a register may hold. Never touches memory: a
//! [`Reg`] means nothing until a [`crate::Region`] reads or writes it.

use core::fmt;
use core::marker::PhantomData;

/// What one volatile access may load or store: `u8`, `u16`, `u32` or `u64`.
/// Sealed, because a load from device memory may return any bit pattern,
/// and every bit pattern of these types is a valid value.
pub trait Value: Copy + sealed::Sealed {
    /// Width in bytes.
    const SIZE: usize = core::mem::size_of::<Self>();
}
impl Value for u8 {}
impl Value for u16 {}
impl Value for u32 {}
impl Value for u64 {}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for u16 {}
    impl Sealed for u32 {}
    impl Sealed for u64 {}
}

/// A register holding a `T` at a byte offset in a device's register block;
/// read and written with single accesses of `T`'s width.
pub struct Reg<T> {
    offset: usize,
    name: &'static str,
    _width: PhantomData<fn() -> T>,
}

impl<T> Clone for Reg<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Reg<T> {}

impl<T> PartialEq for Reg<T> {
    fn eq(&self, other: &Self) -> bool {
        self.offset == other.offset && self.name == other.name
    }
}
impl<T> Eq for Reg<T> {}

impl<T: Value> fmt::Debug for Reg<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "Reg<u{}>({:#x})", T::SIZE * 8, self.offset)
        } else {
            write!(f, "{}<u{}>({:#x})", self.name, T::SIZE * 8, self.offset)
        }
    }
}

impl<T: Value> Reg<T> {
    /// An unnamed register at `offset`.
    pub const fn at(offset: usize) -> Self {
        Self::named(offset, "")
    }

    /// A register at `offset` with its architectural name (for listings
    /// and reports).
    pub const fn named(offset: usize, name: &'static str) -> Self {
        Self {
            offset,
            name,
            _width: PhantomData,
        }
    }

    /// Byte offset from the start of the register block.
    pub const fn offset(self) -> usize {
        self.offset
    }

    /// The name given by [`Reg::named`]; empty if none.
    pub const fn name(self) -> &'static str {
        self.name
    }

    /// Width in bytes.
    pub const fn width(self) -> usize {
        T::SIZE
    }

    /// The `n`th register of an array of registers `stride` bytes apart
    /// starting here (unnamed).
    pub const fn index(self, n: usize, stride: usize) -> Self {
        Self::at(self.offset + n * stride)
    }
}

impl Reg<u64> {
    /// The low 32-bit half, for devices that take 64-bit registers as two
    /// 32-bit accesses, low first (NVMe, virtio).
    pub const fn lo(self) -> Reg<u32> {
        Reg::at(self.offset)
    }

    /// The high 32-bit half.
    pub const fn hi(self) -> Reg<u32> {
        Reg::at(self.offset + 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn width_follows_the_type() {
        assert_eq!(Reg::<u8>::at(3).width(), 1);
        assert_eq!(Reg::<u16>::at(2).width(), 2);
        assert_eq!(Reg::<u32>::at(4).width(), 4);
        assert_eq!(Reg::<u64>::at(8).width(), 8);
    }

    #[test]
    fn index_and_halves() {
        const R: Reg<u32> = Reg::named(0x100, "ISENABLER");
        assert_eq!(R.index(3, 4).offset(), 0x10c);
        assert_eq!(R.name(), "ISENABLER");
        const Q: Reg<u64> = Reg::at(0x28);
        assert_eq!(Q.lo(), Reg::at(0x28));
        assert_eq!(Q.hi(), Reg::at(0x2c));
    }

    #[test]
    fn debug_shows_name_width_offset() {
        extern crate std;
        use std::format;
        assert_eq!(
            format!("{:?}", Reg::<u32>::named(0x24, "CR0ACK")),
            "CR0ACK<u32>(0x24)"
        );
        assert_eq!(format!("{:?}", Reg::<u16>::at(0x16)), "Reg<u16>(0x16)");
    }
}
