//! Lists of fixed-size entries in a message, without allocation: a
//! [`List`] is either a borrowed slice (what an encoder is given) or a view
//! over validated message bytes (what a decoder returns). Both compare and
//! iterate alike. This module owns the entry layouts ([`WireEntry`]); it
//! never panics on bytes it did not validate.

use core::fmt;

use abi::{Iova, StreamId};

use crate::error::ApiError;
use crate::wire::{put, u16_at, u32_at, u64_at, zero};

/// A fixed-size entry of a message.
pub trait WireEntry: Copy + PartialEq + fmt::Debug {
    /// Bytes per entry.
    const SIZE: usize;
    /// Decodes one entry from exactly [`Self::SIZE`] bytes, refusing
    /// non-zero reserved bytes and invalid values.
    fn read(b: &[u8]) -> Result<Self, ApiError>;
    /// Encodes into exactly [`Self::SIZE`] bytes.
    fn write(&self, b: &mut [u8]);
}

/// A 16-byte `{start: u64, len: u64}` entry: a byte range inside the grant
/// (`Map`: start is the offset from the grant's first byte) or an IOVA range
/// (`Unmap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Extent {
    /// Offset into the grant (`Map`) or IOVA (`Unmap`).
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

impl Extent {
    /// An extent of `len` bytes at `start`.
    pub const fn new(start: u64, len: u64) -> Self {
        Self { start, len }
    }

    /// One past the last byte, or `None` on overflow.
    pub const fn end(&self) -> Option<u64> {
        self.start.checked_add(self.len)
    }
}

impl WireEntry for Extent {
    const SIZE: usize = 16;
    fn read(b: &[u8]) -> Result<Self, ApiError> {
        match (u64_at(b, 0), u64_at(b, 8)) {
            (Some(start), Some(len)) if b.len() == Self::SIZE => Ok(Self { start, len }),
            _ => Err(ApiError::Malformed),
        }
    }
    fn write(&self, b: &mut [u8]) {
        put(b, 0, &self.start.to_le_bytes());
        put(b, 8, &self.len.to_le_bytes());
    }
}

impl WireEntry for Iova {
    const SIZE: usize = 8;
    fn read(b: &[u8]) -> Result<Self, ApiError> {
        match u64_at(b, 0) {
            Some(v) if b.len() == Self::SIZE => Ok(Iova::new(v)),
            _ => Err(ApiError::Malformed),
        }
    }
    fn write(&self, b: &mut [u8]) {
        put(b, 0, &self.get().to_le_bytes());
    }
}

/// One coalesced fault: every record the SMMU wrote for one (StreamID,
/// page) since the client last drained its list. 24 bytes on the wire:
/// `{sid: u32, kind: u16, write: u8, 0: u8, count: u32, 0: u32, iova: u64}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FaultRecord {
    /// The device's StreamID.
    pub sid: StreamId,
    /// SMMUv3 event number (e.g. 0x10 F_TRANSLATION, 0x13 F_PERMISSION).
    pub kind: u16,
    /// The faulting access was a write.
    pub write: bool,
    /// The first faulting IOVA seen on that page.
    pub iova: Iova,
    /// Records coalesced into this one (saturating).
    pub count: u32,
}

impl WireEntry for FaultRecord {
    const SIZE: usize = 24;
    fn read(b: &[u8]) -> Result<Self, ApiError> {
        if b.len() != Self::SIZE || !zero(b, 7, 8) || !zero(b, 12, 16) {
            return Err(ApiError::Malformed);
        }
        let write = match b.get(6) {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(ApiError::Malformed),
        };
        match (u32_at(b, 0), u16_at(b, 4), u32_at(b, 8), u64_at(b, 16)) {
            (Some(sid), Some(kind), Some(count), Some(iova)) => Ok(Self {
                sid: StreamId(sid),
                kind,
                write,
                iova: Iova::new(iova),
                count,
            }),
            _ => Err(ApiError::Malformed),
        }
    }
    fn write(&self, b: &mut [u8]) {
        put(b, 0, &self.sid.0.to_le_bytes());
        put(b, 4, &self.kind.to_le_bytes());
        put(b, 6, &[u8::from(self.write), 0]);
        put(b, 8, &self.count.to_le_bytes());
        put(b, 12, &[0; 4]);
        put(b, 16, &self.iova.get().to_le_bytes());
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

/// The IOVAs of a `Mapped` response.
pub type Iovas<'a> = List<'a, Iova>;

impl<'a, T: WireEntry> List<'a, T> {
    /// A list over `items` (for encoding).
    pub const fn new(items: &'a [T]) -> Self {
        Self {
            repr: Repr::Slice(items),
        }
    }

    /// Validates `count` entries at the start of `bytes`, which must hold
    /// exactly that many.
    pub(crate) fn from_wire(bytes: &'a [u8], count: usize) -> Result<Self, ApiError> {
        if count.checked_mul(T::SIZE) != Some(bytes.len()) {
            return Err(ApiError::Malformed);
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

    /// Writes the entries back to back into `out` (sized by the caller).
    pub(crate) fn write_all(&self, out: &mut [u8]) -> bool {
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
