//! Lists of fixed-size entries in a message, without allocation: a
//! [`List`] is either a borrowed slice (what an encoder is given) or a view
//! over validated message bytes (what a decoder returns). Both compare and
//! iterate alike. Entry layouts belong to the protocols ([`WireEntry`]);
//! this module never panics on bytes it did not validate.

use core::fmt;

use abi::Iova;

use crate::Refused;
use crate::wire::{put, u64_at};

/// A fixed-size entry of a message.
pub trait WireEntry: Copy + PartialEq + fmt::Debug {
    /// Bytes per entry.
    const SIZE: usize;
    /// Decodes one entry from exactly [`Self::SIZE`] bytes, refusing
    /// non-zero reserved bytes and invalid values.
    fn read(b: &[u8]) -> Result<Self, Refused>;
    /// Encodes into exactly [`Self::SIZE`] bytes.
    fn write(&self, b: &mut [u8]);
}

/// An 8-byte little-endian device address.
impl WireEntry for Iova {
    const SIZE: usize = 8;
    fn read(b: &[u8]) -> Result<Self, Refused> {
        match u64_at(b, 0) {
            Some(v) if b.len() == Self::SIZE => Ok(Iova::new(v)),
            _ => Err(Refused::Malformed),
        }
    }
    fn write(&self, b: &mut [u8]) {
        put(b, 0, &self.get().to_le_bytes());
    }
}

#[derive(Clone, Copy)]
enum Repr<'a, T> {
    Slice(&'a [T]),
    /// Validated bytes: a whole number of entries, each of which reads.
    Wire(&'a [u8]),
}

/// A list of entries: a borrowed slice, or a view over validated bytes.
#[derive(Clone, Copy)]
pub struct List<'a, T> {
    repr: Repr<'a, T>,
}

impl<'a, T: WireEntry> List<'a, T> {
    /// A list over `items` (for encoding).
    pub const fn new(items: &'a [T]) -> Self {
        Self {
            repr: Repr::Slice(items),
        }
    }

    /// Validates `count` entries at the start of `bytes`, which must hold
    /// exactly that many; the first entry that does not read refuses the
    /// whole list with its error.
    pub fn from_wire(bytes: &'a [u8], count: usize) -> Result<Self, Refused> {
        if count.checked_mul(T::SIZE) != Some(bytes.len()) {
            return Err(Refused::Malformed);
        }
        for chunk in bytes.chunks_exact(T::SIZE) {
            T::read(chunk)?;
        }
        Ok(Self {
            repr: Repr::Wire(bytes),
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match self.repr {
            Repr::Slice(s) => s.len(),
            Repr::Wire(b) => b.len() / T::SIZE,
        }
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entry `i`, if there is one.
    pub fn get(&self, i: usize) -> Option<T> {
        match self.repr {
            Repr::Slice(s) => s.get(i).copied(),
            Repr::Wire(b) => {
                let at = i.checked_mul(T::SIZE)?;
                T::read(b.get(at..at.checked_add(T::SIZE)?)?).ok()
            }
        }
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = T> + 'a {
        let this = *self;
        (0..this.len()).filter_map(move |i| this.get(i))
    }

    /// Copies the entries into `out`; returns how many fit.
    pub fn copy_to(&self, out: &mut [T]) -> usize {
        let mut n = 0;
        for (slot, v) in out.iter_mut().zip(self.iter()) {
            *slot = v;
            n += 1;
        }
        n
    }

    /// Writes the entries back to back into `out` (sized by the caller);
    /// false if `out` is too short.
    pub fn write_all(&self, out: &mut [u8]) -> bool {
        let mut at = 0;
        for e in self.iter() {
            let Some(dst) = out.get_mut(at..at + T::SIZE) else {
                return false;
            };
            e.write(dst);
            at += T::SIZE;
        }
        true
    }
}

impl<T: WireEntry> PartialEq for List<'_, T> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<T: WireEntry> Eq for List<'_, T> {}

impl<T: WireEntry> fmt::Debug for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
