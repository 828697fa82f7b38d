//! The wire form of one field of a request or a response, written once per
//! field type by the protocol that uses it: [`RequestField`] and
//! [`ResponseField`], parameterised by the protocol's error type (so that
//! each protocol gives even `u8` or `u32` its own layout). The generated
//! encoders and decoders lay the fields out in declaration order, each
//! taking its entries ([`Cursor`]), and check the header's count against
//! them.
//!
//! A field is either fixed (`MIN == MAX` entries) or a list (`MIN..=MAX`
//! entries); a message has at most one list, which takes the entries the
//! fixed fields leave. A request field may also take `ARG_BITS` bits of
//! the request header's `arg` (fields take them from the lowest bit up, in
//! declaration order; bits no field takes must be zero). Reading never
//! panics, never allocates, and refuses anything but what writing
//! produces.

use crate::Refused;

/// A request field: `MIN..=MAX` entries of `ENTRY` bytes after the request
/// header, and `ARG_BITS` bits of the header's `arg`.
pub trait RequestField<'a, E>: Sized {
    /// Bytes per entry.
    const ENTRY: usize;
    /// Bits of the header's `arg` this field takes (0..=32).
    const ARG_BITS: u32 = 0;
    /// Fewest entries.
    const MIN: usize = 1;
    /// Most entries (the message bounds a list further).
    const MAX: usize = 1;
    /// Entries this value takes.
    fn entries(&self) -> usize {
        Self::MIN
    }
    /// This value's `arg` bits (below `1 << ARG_BITS`).
    fn arg(&self) -> u32 {
        0
    }
    /// Writes exactly `entries() * ENTRY` zeroed bytes; refuses a value the
    /// protocol never sends.
    fn write(&self, out: &mut [u8]) -> Result<(), E>;
    /// Reads from the field's `arg` bits and exactly `n * ENTRY` bytes,
    /// `MIN <= n <= MAX`.
    fn read(arg: u32, b: &'a [u8]) -> Result<Self, E>;
}

/// A response field: `MIN..=MAX` entries of `ENTRY` bytes each, counted in
/// the response header.
pub trait ResponseField<'a, E>: Sized {
    /// Bytes per entry.
    const ENTRY: usize;
    /// Fewest entries.
    const MIN: usize = 1;
    /// Most entries.
    const MAX: usize = 1;
    /// Entries this value takes.
    fn entries(&self) -> usize {
        Self::MIN
    }
    /// Writes exactly `entries() * ENTRY` bytes.
    fn write(&self, out: &mut [u8]);
    /// Reads from exactly `n * ENTRY` bytes, `MIN <= n <= MAX`.
    fn read(b: &'a [u8]) -> Result<Self, E>;
}

/// Lays out fields one after another: where each one's entries start, and
/// how many entries the (at most one) list takes.
#[doc(hidden)]
pub struct Cursor<'a> {
    body: &'a [u8],
    at: usize,
    list: usize,
    list_taken: bool,
    arg: u32,
    shift: u32,
}

impl<'a> Cursor<'a> {
    /// A cursor over a message body whose header counts `count` entries,
    /// of which `fixed` belong to fixed fields, and carries `arg`.
    pub fn new(body: &'a [u8], count: usize, fixed: usize, arg: u32) -> Result<Self, Refused> {
        let list = count.checked_sub(fixed).ok_or(Refused::Malformed)?;
        Ok(Self {
            body,
            at: 0,
            list,
            list_taken: false,
            arg,
            shift: 0,
        })
    }

    /// The next field's `bits` bits of the header's `arg`.
    pub fn arg(&mut self, bits: u32) -> u32 {
        let v = self.arg.checked_shr(self.shift).unwrap_or(0);
        self.shift += bits;
        match 1u32.checked_shl(bits) {
            Some(m) => v & (m - 1),
            None => v,
        }
    }

    /// The bytes of the next field: `min == max` entries if fixed, else the
    /// list's share, which must lie in `min..=max`.
    pub fn take(&mut self, entry: usize, min: usize, max: usize) -> Result<&'a [u8], Refused> {
        let n = if min == max {
            min
        } else {
            self.list_taken = true;
            self.list
        };
        if n < min || n > max {
            return Err(Refused::Malformed);
        }
        let len = n.checked_mul(entry).ok_or(Refused::Malformed)?;
        let end = self.at.checked_add(len).ok_or(Refused::Malformed)?;
        let b = self.body.get(self.at..end).ok_or(Refused::Malformed)?;
        self.at = end;
        Ok(b)
    }

    /// Refuses entries, bytes or `arg` bits no field took.
    pub fn finish(self) -> Result<(), Refused> {
        let arg_left = self.arg.checked_shr(self.shift).unwrap_or(0);
        if (self.list_taken || self.list == 0) && self.at == self.body.len() && arg_left == 0 {
            Ok(())
        } else {
            Err(Refused::Malformed)
        }
    }
}

/// Checks a field's entry count before encoding: fewer than `min` is
/// [`Refused::Malformed`], more than `max` [`Refused::TooMany`].
#[doc(hidden)]
pub fn check_entries(n: usize, min: usize, max: usize) -> Result<usize, Refused> {
    if n < min {
        Err(Refused::Malformed)
    } else if n > max {
        Err(Refused::TooMany)
    } else {
        Ok(n)
    }
}

/// Entries a field always takes; 0 for a list.
#[doc(hidden)]
pub const fn fixed_entries(min: usize, max: usize) -> usize {
    if min == max { min } else { 0 }
}
