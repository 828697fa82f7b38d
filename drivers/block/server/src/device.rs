//! What a block driver implements for the shared block-service loop: a
//! device that takes batches of I/Os whose buffers are already mapped for
//! it (at IOVAs) and reports completions. Owns nothing; defines the
//! contract. An implementation never sees a physical address and never
//! blocks in `submit` or `completions`.
//!
//! The fencing contract: an I/O the device gives up (its deadline passed)
//! is reported at once with its error, but while the device may still act
//! on it, it is *fenced*: [`BlockDevice::is_fenced`] says so, the loop
//! keeps its slot and its buffer's mapping (so its IOVA cannot be handed
//! to another I/O), and the device keeps whatever else the command points
//! at. Only when the device is provably done with it (its completion
//! arrived late, an abort of it completed, or the device was reset) does
//! [`BlockDevice::released`] name the slot, and the loop unmaps the buffer
//! and frees the slot.

use abi::Iova;
use block_api::{BlockError, Info, IoKind};
use iommu_client::Iommu;

/// One I/O ready for the device: its buffer (`bytes` long) is mapped for
/// the device's DMA at the contiguous IOVA range starting at `iova`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceIo {
    /// The loop's name for it, `0..queue_depth`, unique while in flight;
    /// the device reports its completion by this slot.
    pub slot: u16,
    /// What to do.
    pub kind: IoKind,
    /// First sector (in `Info::sector_size` units converted from 512-byte
    /// sectors by the loop: always 512-byte sectors here).
    pub lba: u64,
    /// Length in 512-byte sectors (0 for a flush).
    pub sectors: u32,
    /// Device address of the first byte (0 for a flush).
    pub iova: Iova,
    /// Bytes to move (0 for a flush).
    pub bytes: u64,
}

/// A device behind the block service.
pub trait BlockDevice {
    /// Geometry and limits (`queue_depth` = most I/Os the device takes at
    /// once; the loop never exceeds it).
    fn info(&self) -> Info;

    /// Hands `ios` to the device, ringing its doorbell once for the batch.
    /// All or nothing: on `Err` none of them was started (e.g. the device is
    /// in an error state: `DeviceError`).
    fn submit(&mut self, ios: &[DeviceIo]) -> Result<(), BlockError>;

    /// Appends every completion the device has posted since the last call,
    /// without waiting: `(slot, status)`. I/Os the device did not complete
    /// within its command timeout are reported here as
    /// `Err(BlockError::Timeout)` (and never reported again).
    fn completions(&mut self, out: &mut alloc::vec::Vec<(u16, Result<(), BlockError>)>);

    /// Whether `slot`, just reported with an error by `completions`, is
    /// fenced: the device may still read or write its buffer, so the loop
    /// keeps the slot and the buffer's mapping until `released` names it.
    fn is_fenced(&self, slot: u16) -> bool;

    /// Appends every fenced slot the device is now done with (late
    /// completion, abort, reset) since the last call; each once. The loop
    /// then unmaps its buffer and frees the slot.
    fn released(&mut self, out: &mut alloc::vec::Vec<u16>);

    /// The interrupt the device raises: (capability index, notification
    /// bit). `None`: the loop polls `completions` while I/Os are in flight.
    fn irq(&self) -> Option<(u32, u64)>;

    /// Called when the interrupt's notification arrived, before
    /// `completions` and before the loop acknowledges the interrupt: e.g.
    /// read virtio's ISR status to deassert INTx.
    fn on_interrupt(&mut self);

    /// Benchmark mode switch, first half: quiesce the device (the loop
    /// guarantees nothing is in flight but fenced I/Os) so that it no
    /// longer reads or writes the driver's memory, then remove that
    /// memory's IOMMU mapping. The reset releases every fenced slot
    /// (reported by the next `released`).
    fn stop(&mut self, iommu: &Iommu) -> Result<(), BlockError>;

    /// Second half, once the IOMMU server applied the new policy: map the
    /// same memory again (its device address may change: under bypass it
    /// is the bus address) and bring the device up again.
    fn restart(self, iommu: &Iommu) -> Result<Self, BlockError>
    where
        Self: Sized;
}
