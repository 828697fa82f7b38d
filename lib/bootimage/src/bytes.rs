//! Bounds-checked little-endian field access on byte slices (decoding) and
//! appending (encoding). It owns the arithmetic on offsets: every read is
//! checked, every sum is checked, and nothing here ever panics or indexes
//! a slice directly.

use alloc::vec::Vec;

use crate::Error;

/// `bytes[off..off + len]`, or [`Error::Truncated`].
pub fn range(bytes: &[u8], off: usize, len: usize) -> Result<&[u8], Error> {
    let end = off.checked_add(len).ok_or(Error::Truncated)?;
    bytes.get(off..end).ok_or(Error::Truncated)
}

/// A table of `count` records of `size` bytes at `off`.
pub fn table(bytes: &[u8], off: usize, count: usize, size: usize) -> Result<&[u8], Error> {
    range(bytes, off, count.checked_mul(size).ok_or(Error::Truncated)?)
}

/// Record `i` of a table of `size`-byte records.
pub fn record(table: &[u8], i: usize, size: usize) -> Result<&[u8], Error> {
    range(table, i.checked_mul(size).ok_or(Error::Truncated)?, size)
}

fn array<const N: usize>(bytes: &[u8], off: usize) -> Result<[u8; N], Error> {
    let mut out = [0u8; N];
    out.copy_from_slice(range(bytes, off, N)?);
    Ok(out)
}

/// The byte at `off`.
pub fn u8_at(bytes: &[u8], off: usize) -> Result<u8, Error> {
    bytes.get(off).copied().ok_or(Error::Truncated)
}

/// The little-endian `u16` at `off`.
pub fn u16_at(bytes: &[u8], off: usize) -> Result<u16, Error> {
    array(bytes, off).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `off`.
pub fn u32_at(bytes: &[u8], off: usize) -> Result<u32, Error> {
    array(bytes, off).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `off`.
pub fn u64_at(bytes: &[u8], off: usize) -> Result<u64, Error> {
    array(bytes, off).map(u64::from_le_bytes)
}

/// The little-endian `u32` at `off`, as a `usize` offset or length.
pub fn usize_at(bytes: &[u8], off: usize) -> Result<usize, Error> {
    usize::try_from(u32_at(bytes, off)?).map_err(|_| Error::Truncated)
}

/// A UTF-8 string of `len` bytes at `off`, at most `max` bytes, non-empty
/// unless `allow_empty`.
pub fn str_at(
    bytes: &[u8],
    off: usize,
    len: usize,
    max: usize,
    allow_empty: bool,
) -> Result<&str, Error> {
    if len > max || (len == 0 && !allow_empty) {
        return Err(Error::BadString);
    }
    core::str::from_utf8(range(bytes, off, len)?).map_err(|_| Error::BadString)
}

/// Appends little-endian fields.
pub trait Put {
    /// Appends a `u16`.
    fn put_u16(&mut self, v: u16);
    /// Appends a `u32`.
    fn put_u32(&mut self, v: u32);
    /// Appends zeros until the length is a multiple of `align`.
    fn pad_to(&mut self, align: usize);
}

impl Put for Vec<u8> {
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn pad_to(&mut self, align: usize) {
        while !self.len().is_multiple_of(align) {
            self.push(0);
        }
    }
}

/// `v` as a `u32` field, or [`Error::TooLarge`].
pub fn to_u32(v: usize) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| Error::TooLarge)
}

/// `v` as a `u16` field, or [`Error::TooLarge`].
pub fn to_u16(v: usize) -> Result<u16, Error> {
    u16::try_from(v).map_err(|_| Error::TooLarge)
}
