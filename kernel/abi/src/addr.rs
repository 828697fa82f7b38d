//! Address newtypes: one type per address space, so that a physical address
//! can never be handed to a device or put in a page table as an IOVA by
//! mistake. Arithmetic is checked: overflow is a `None`, never a wrap.

use core::fmt;

/// Size of the translation granule used everywhere in this system (4 KiB).
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

macro_rules! address_type {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw address.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            /// The raw address.
            pub const fn get(self) -> u64 {
                self.0
            }
            /// `self + bytes`, or `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// `self - bytes`, or `None` on underflow.
            pub const fn checked_sub(self, bytes: u64) -> Option<Self> {
                match self.0.checked_sub(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
            /// Bytes from `base` up to `self`, or `None` if `self < base`.
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                debug_assert!(align.is_power_of_two());
                self.0 & (align - 1) == 0
            }
            /// Whether the address is 4 KiB aligned.
            pub const fn is_page_aligned(self) -> bool {
                self.is_aligned(PAGE_SIZE)
            }
            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                debug_assert!(align.is_power_of_two());
                Self(self.0 & !(align - 1))
            }
            /// Rounds up to a multiple of `align` (a power of two), or `None`
            /// on overflow.
            pub const fn align_up(self, align: u64) -> Option<Self> {
                debug_assert!(align.is_power_of_two());
                match self.0.checked_add(align - 1) {
                    Some(v) => Some(Self(v & !(align - 1))),
                    None => None,
                }
            }
            /// Offset of the address inside its 4 KiB page.
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, ":{:#x}"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }
    };
}

address_type!(
    /// A physical (output) address: what RAM and MMIO decode.
    PhysAddr,
    "PA"
);
address_type!(
    /// A virtual address in some CPU address space (kernel or a task's).
    VirtAddr,
    "VA"
);
address_type!(
    /// An I/O virtual address: what a device puts on the bus, translated by
    /// the SMMU in the device's domain.
    Iova,
    "IOVA"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic_refuses_overflow() {
        assert_eq!(PhysAddr::new(u64::MAX).checked_add(1), None);
        assert_eq!(Iova::new(0).checked_sub(1), None);
        assert_eq!(
            VirtAddr::new(0xfff).align_up(PAGE_SIZE),
            Some(VirtAddr::new(0x1000))
        );
        assert_eq!(VirtAddr::new(u64::MAX).align_up(PAGE_SIZE), None);
    }

    #[test]
    fn alignment_helpers() {
        let a = PhysAddr::new(0x4020_1234);
        assert!(!a.is_page_aligned());
        assert_eq!(a.align_down(PAGE_SIZE), PhysAddr::new(0x4020_1000));
        assert_eq!(a.page_offset(), 0x234);
        assert_eq!(a.offset_from(PhysAddr::new(0x4020_0000)), Some(0x1234));
        assert_eq!(PhysAddr::new(1).offset_from(a), None);
        assert_eq!(format!("{a:?}"), "PA:0x40201234");
    }
}
