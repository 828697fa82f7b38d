//! The IOMMU protocol's list entries ([`WireEntry`] layouts): [`Extent`]
//! and [`FaultRecord`] (an IOVA is `ipc-proto`'s 8-byte entry). Lists of
//! them are `ipc-proto`'s [`List`](ipc_proto::List): a borrowed slice or a
//! view over validated message bytes. Never panics on bytes it did not
//! validate.

use abi::{Iova, StreamId};
use ipc_proto::wire::{put, u16_at, u32_at, u64_at, zero};
use ipc_proto::{List, Refused, WireEntry};

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
    fn read(b: &[u8]) -> Result<Self, Refused> {
        match (u64_at(b, 0), u64_at(b, 8)) {
            (Some(start), Some(len)) if b.len() == Self::SIZE => Ok(Self { start, len }),
            _ => Err(Refused::Malformed),
        }
    }
    fn write(&self, b: &mut [u8]) {
        put(b, 0, &self.start.to_le_bytes());
        put(b, 8, &self.len.to_le_bytes());
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

impl FaultRecord {
    /// A blank record (StreamID 0, nothing counted): fills the buffer a
    /// `Faults` answer is read into.
    pub const EMPTY: FaultRecord = FaultRecord {
        sid: StreamId(0),
        kind: 0,
        write: false,
        iova: Iova::new(0),
        count: 0,
    };
}

impl WireEntry for FaultRecord {
    const SIZE: usize = 24;
    fn read(b: &[u8]) -> Result<Self, Refused> {
        if b.len() != Self::SIZE || !zero(b, 7, 8) || !zero(b, 12, 16) {
            return Err(Refused::Malformed);
        }
        let write = match b.get(6) {
            Some(0) => false,
            Some(1) => true,
            _ => return Err(Refused::Malformed),
        };
        match (u32_at(b, 0), u16_at(b, 4), u32_at(b, 8), u64_at(b, 16)) {
            (Some(sid), Some(kind), Some(count), Some(iova)) => Ok(Self {
                sid: StreamId(sid),
                kind,
                write,
                iova: Iova::new(iova),
                count,
            }),
            _ => Err(Refused::Malformed),
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

/// The IOVAs of a `Mapped` response.
pub type Iovas<'a> = List<'a, Iova>;
