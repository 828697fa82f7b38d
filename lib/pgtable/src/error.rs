//! The error enums of this crate's operations, with stable numeric codes.
//! Errors only describe what was refused; a refused operation has changed
//! nothing. This module never carries resources (pages) inside an error.

use core::fmt;

/// Why [`PageTable::new`](crate::PageTable::new) refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NewError {
    /// The input address size is outside 25..=48 bits (T0SZ 16..=39 with
    /// the 4 KiB granule) [Arm ARM D8.2].
    InputBits = 1,
    /// The output address size is outside 32..=48 bits.
    OutputBits = 2,
    /// The root table could not be allocated.
    NoMemory = 3,
}

/// Why [`PageTable::map`](crate::PageTable::map) refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MapError {
    /// The length is zero.
    Empty = 1,
    /// The address, output address or length is not 4 KiB aligned.
    Unaligned = 2,
    /// The input range goes past the input address size, or the output
    /// range past the output address size.
    OutOfRange = 3,
    /// The attributes cannot be encoded (AttrIndx above 7).
    BadAttrs = 4,
    /// Part of the range is already mapped.
    AlreadyMapped = 5,
    /// A table page could not be allocated.
    NoMemory = 6,
}

/// Why [`PageTable::unmap`](crate::PageTable::unmap) or
/// [`unmap_exact`](crate::PageTable::unmap_exact) refused. Nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum UnmapError {
    /// The length is zero.
    Empty = 1,
    /// The address or length is not 4 KiB aligned.
    Unaligned = 2,
    /// The range goes past the input address size.
    OutOfRange = 3,
    /// `unmap_exact` only: part of the range was not mapped.
    NotMapped = 4,
    /// Splitting a block needed a table page that could not be allocated.
    NoMemory = 5,
}

impl fmt::Display for NewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InputBits => "input address size out of range",
            Self::OutputBits => "output address size out of range",
            Self::NoMemory => "no memory for the root table",
        })
    }
}

impl fmt::Display for MapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty range",
            Self::Unaligned => "unaligned address or length",
            Self::OutOfRange => "address out of range",
            Self::BadAttrs => "attributes cannot be encoded",
            Self::AlreadyMapped => "range already mapped",
            Self::NoMemory => "no memory for a table page",
        })
    }
}

impl fmt::Display for UnmapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "empty range",
            Self::Unaligned => "unaligned address or length",
            Self::OutOfRange => "address out of range",
            Self::NotMapped => "range not entirely mapped",
            Self::NoMemory => "no memory for a table page",
        })
    }
}

impl core::error::Error for NewError {}
impl core::error::Error for MapError {}
impl core::error::Error for UnmapError {}
