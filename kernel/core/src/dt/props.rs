//! Raw property decoding: big-endian cells, string lists, `reg`.
//!
//! It owns byte-level decoding only; it never indexes past a slice (every
//! access is checked) and knows nothing of what the properties mean.

use abi::PhysAddr;
use fdt::node::FdtNode;

use super::{DtError, Region};

/// Most `reg` entries read from one node.
const MAX_REG: usize = 16;

/// A property's raw value.
pub fn prop<'a>(node: FdtNode<'_, 'a>, name: &str) -> Option<&'a [u8]> {
    node.property(name).map(|p| p.value)
}

/// A property holding exactly one cell, if present.
pub fn one_u32(node: FdtNode<'_, '_>, name: &'static str) -> Result<Option<u32>, DtError> {
    match prop(node, name) {
        None => Ok(None),
        Some(&[a, b, c, d]) => Ok(Some(u32::from_be_bytes([a, b, c, d]))),
        Some(_) => Err(DtError::BadProperty(name)),
    }
}

/// The big-endian cells of `bytes` (a trailing partial cell is dropped).
pub fn cells(bytes: &[u8]) -> impl Iterator<Item = u32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
}

/// The strings of a NUL-separated string list; invalid UTF-8 ends the list.
pub fn strings(bytes: &[u8]) -> impl Iterator<Item = &str> + '_ {
    bytes
        .split(|&b| b == 0)
        .map_while(|s| core::str::from_utf8(s).ok())
        .filter(|s| !s.is_empty())
}

/// How many cells an address or size occupies (this crate needs at most 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cells {
    /// No cells (a size of 0 cells, e.g. under `/cpus`).
    Zero,
    /// One 32-bit cell.
    One,
    /// Two cells, high first.
    Two,
}

impl Cells {
    /// The encoding for `n` cells, if it fits in 64 bits.
    pub fn new(n: usize) -> Option<Self> {
        match n {
            0 => Some(Self::Zero),
            1 => Some(Self::One),
            2 => Some(Self::Two),
            _ => None,
        }
    }

    /// Number of cells.
    pub fn count(self) -> usize {
        match self {
            Self::Zero => 0,
            Self::One => 1,
            Self::Two => 2,
        }
    }

    /// Reads one value of this many cells.
    pub fn read(self, mut it: impl Iterator<Item = u32>) -> Option<u64> {
        match self {
            Self::Zero => Some(0),
            Self::One => it.next().map(u64::from),
            Self::Two => Some(u64::from(it.next()?) << 32 | u64::from(it.next()?)),
        }
    }
}

/// The node's `reg` entries in its parent's cell sizes, at most [`MAX_REG`].
/// An entry whose address is not 1 or 2 cells, whose size is more than 2
/// cells, or whose end overflows, is an error.
pub fn reg<'a>(node: FdtNode<'_, 'a>) -> impl Iterator<Item = Result<Region, DtError>> + 'a {
    node.raw_reg()
        .into_iter()
        .flatten()
        .take(MAX_REG)
        .map(|raw| {
            const BAD: DtError = DtError::BadProperty("reg");
            let a = Cells::new(raw.address.len() / 4).filter(|c| *c != Cells::Zero);
            let s = Cells::new(raw.size.len() / 4);
            let (Some(a), Some(s)) = (a, s) else {
                return Err(BAD);
            };
            let base = a.read(cells(raw.address)).ok_or(BAD)?;
            let size = s.read(cells(raw.size)).ok_or(BAD)?;
            base.checked_add(size).ok_or(BAD)?;
            Ok(Region {
                base: PhysAddr::new(base),
                size,
            })
        })
}
