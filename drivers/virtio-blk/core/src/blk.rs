//! The virtio block device [VIRTIO-1.2 §5.2]: request header, status
//! byte, device configuration layout, the driver's DMA memory layout
//! (virtqueue plus one header and status byte per descriptor head) and
//! the limits it reports.
//!
//! It owns these encodings and the arithmetic on them; it never accesses
//! a device, and it decodes every value a device may write without
//! panicking.

use virtio_core::pci::Reg;
use virtio_core::virtqueue::{self, Layout, QueueMemory};

/// Block device feature bits [VIRTIO-1.2 §5.2.3].
pub mod feature {
    /// `size_max` is the largest segment.
    pub const BLK_SIZE_MAX: u64 = 1 << 1;
    /// `seg_max` is the most segments per request.
    pub const BLK_SEG_MAX: u64 = 1 << 2;
    /// `geometry` is valid.
    pub const BLK_GEOMETRY: u64 = 1 << 4;
    /// The device is read-only.
    pub const BLK_RO: u64 = 1 << 5;
    /// `blk_size` is the optimal block size.
    pub const BLK_BLK_SIZE: u64 = 1 << 6;
    /// The flush command exists.
    pub const BLK_FLUSH: u64 = 1 << 9;
    /// Topology information is valid.
    pub const BLK_TOPOLOGY: u64 = 1 << 10;
    /// Several request queues.
    pub const BLK_MQ: u64 = 1 << 12;
}

/// Block features the driver uses when the device offers them (besides
/// `virtio_core::pci::REQUIRED_FEATURES`).
pub const WANTED_FEATURES: u64 = feature::BLK_FLUSH
    | feature::BLK_BLK_SIZE
    | feature::BLK_SIZE_MAX
    | feature::BLK_SEG_MAX
    | feature::BLK_RO;

/// Bytes in a virtio-blk sector: the unit of `capacity` and `sector`,
/// whatever `blk_size` says [VIRTIO-1.2 §5.2.4].
pub const SECTOR_BYTES: u64 = 512;

/// Request types [VIRTIO-1.2 §5.2.6].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum RequestType {
    /// Read: device → buffer.
    In = 0,
    /// Write: buffer → device.
    Out = 1,
    /// Flush the write cache (`VIRTIO_BLK_F_FLUSH`).
    Flush = 4,
    /// Device ID string (20 bytes).
    GetId = 8,
}

/// `struct virtio_blk_req` header: 16 bytes the device reads
/// [VIRTIO-1.2 §5.2.6].
pub mod req {
    /// `type` (le32), see [`super::RequestType`].
    pub const TYPE: u64 = 0;
    /// `reserved` (le32), zero.
    pub const RESERVED: u64 = 4;
    /// `sector` (le64): first 512-byte sector.
    pub const SECTOR: u64 = 8;
    /// Bytes of the header.
    pub const HEADER_BYTES: u64 = 16;
    /// Alignment the driver gives each header.
    pub const HEADER_ALIGN: u64 = 16;
    /// Bytes of the status the device writes last.
    pub const STATUS_BYTES: u64 = 1;
}

/// A request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    /// What to do.
    pub kind: RequestType,
    /// First 512-byte sector (0 for a flush).
    pub sector: u64,
}

impl RequestHeader {
    /// Writes the header at `offset` of `mem`.
    pub fn write(&self, mem: &mut impl QueueMemory, offset: u64) {
        mem.write_u32(offset + req::TYPE, self.kind as u32);
        mem.write_u32(offset + req::RESERVED, 0);
        mem.write_u64(offset + req::SECTOR, self.sector);
    }
}

/// Status byte values [VIRTIO-1.2 §5.2.6].
pub mod status {
    /// Success.
    pub const OK: u8 = 0;
    /// Device or driver error.
    pub const IOERR: u8 = 1;
    /// Request unsupported by the device.
    pub const UNSUPP: u8 = 2;
    /// Written by the driver before submission, never by a device: still
    /// there on completion means the device did not write the status.
    pub const PENDING: u8 = 0xff;
}

/// How a request ended, from its status byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// `OK`.
    Ok,
    /// `IOERR`.
    IoError,
    /// `UNSUPP`.
    Unsupported,
    /// The status byte was not written ([`status::PENDING`]) or holds a
    /// value the spec does not define.
    Invalid(u8),
}

impl Outcome {
    /// Decodes a status byte.
    pub fn from_status(b: u8) -> Outcome {
        match b {
            status::OK => Outcome::Ok,
            status::IOERR => Outcome::IoError,
            status::UNSUPP => Outcome::Unsupported,
            other => Outcome::Invalid(other),
        }
    }
}

/// `struct virtio_blk_config` fields the driver reads [VIRTIO-1.2 §5.2.4].
pub mod config {
    use super::Reg;

    /// Capacity in 512-byte sectors.
    pub const CAPACITY: Reg<u64> = Reg::named(0x00, "CAPACITY");
    /// Largest segment (`VIRTIO_BLK_F_SIZE_MAX`).
    pub const SIZE_MAX: Reg<u32> = Reg::named(0x08, "SIZE_MAX");
    /// Most segments per request (`VIRTIO_BLK_F_SEG_MAX`).
    pub const SEG_MAX: Reg<u32> = Reg::named(0x0c, "SEG_MAX");
    /// Optimal block size (`VIRTIO_BLK_F_BLK_SIZE`).
    pub const BLK_SIZE: Reg<u32> = Reg::named(0x14, "BLK_SIZE");
    /// Bytes the driver needs of the structure.
    pub const LEN: u64 = 0x18;
}

/// The device configuration, fields absent unless their feature was
/// negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlkConfig {
    /// Capacity in 512-byte sectors.
    pub capacity: u64,
    /// Largest segment in bytes.
    pub size_max: Option<u32>,
    /// Most data segments per request.
    pub seg_max: Option<u32>,
    /// Optimal block size in bytes.
    pub blk_size: Option<u32>,
}

impl BlkConfig {
    /// Decodes the configuration through `read32` (a 32-bit field at an
    /// offset of the device configuration) for the negotiated `features`.
    /// `None` if a read fails.
    pub fn read(features: u64, mut read32: impl FnMut(u64) -> Option<u32>) -> Option<BlkConfig> {
        let mut opt = |bit: u64, f: Reg<u32>| -> Option<Option<u32>> {
            if features & bit != 0 {
                read32(f.offset() as u64).map(Some)
            } else {
                Some(None)
            }
        };
        let size_max = opt(feature::BLK_SIZE_MAX, config::SIZE_MAX)?;
        let seg_max = opt(feature::BLK_SEG_MAX, config::SEG_MAX)?;
        let blk_size = opt(feature::BLK_BLK_SIZE, config::BLK_SIZE)?;
        let lo = read32(config::CAPACITY.lo().offset() as u64)?;
        let hi = read32(config::CAPACITY.hi().offset() as u64)?;
        Some(BlkConfig {
            capacity: u64::from(lo) | (u64::from(hi) << 32),
            size_max,
            seg_max,
            blk_size,
        })
    }

    /// The sector size to report: `blk_size` when it is a power of two
    /// from 512 to 64 KiB, else 512.
    pub fn sector_size(&self) -> u32 {
        match self.blk_size {
            Some(b) if b.is_power_of_two() && (512..=65536).contains(&b) => b,
            _ => SECTOR_BYTES as u32,
        }
    }

    /// The largest transfer: `cap`, limited by `size_max` (the driver
    /// uses one data segment per request, so any `seg_max` ≥ 1 allows it;
    /// 0 means none is possible), rounded down to whole sectors.
    pub fn max_transfer(&self, cap: u32) -> u32 {
        if self.seg_max == Some(0) {
            return 0;
        }
        let limit = self.size_max.map_or(cap, |s| s.min(cap));
        let unit = self.sector_size();
        limit / unit * unit
    }
}

/// Descriptors per request: header, data, status.
pub const DESCS_PER_REQUEST: u16 = 3;

/// The queue size to set up: the smallest power of two holding `depth`
/// requests, at most the device's `device_max` (rounded down to a power of
/// two) [VIRTIO-1.2 §4.1.5.1.3: the driver may use a smaller size].
/// `None` if the device has no such queue.
pub fn queue_size(device_max: u16, depth: u16) -> Option<u16> {
    let want = (u32::from(depth.max(1)) * u32::from(DESCS_PER_REQUEST)).next_power_of_two();
    virtqueue::fit_size(device_max, u16::try_from(want).unwrap_or(u16::MAX))
}

/// Requests a queue of `size` takes at once, no more than `requested`.
pub fn queue_depth(size: u16, requested: u16) -> u16 {
    (size / DESCS_PER_REQUEST).min(requested)
}

/// The driver's one DMA region: the virtqueue, then a request header and
/// a status byte per descriptor index (used by chain heads, so a request
/// abandoned after a timeout keeps its own header and status until the
/// device returns it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaLayout {
    /// The virtqueue.
    pub queue: Layout,
    /// Offset of the header array.
    pub headers: u64,
    /// Offset of the status byte array.
    pub statuses: u64,
    /// Bytes needed.
    pub len: u64,
}

impl DmaLayout {
    /// The layout for a queue of `size` (a power of two).
    pub fn new(size: u16) -> Option<DmaLayout> {
        let queue = Layout::new(0, size)?;
        let headers = queue.end.div_ceil(req::HEADER_ALIGN) * req::HEADER_ALIGN;
        let statuses = headers + req::HEADER_BYTES * u64::from(size);
        let len = statuses + req::STATUS_BYTES * u64::from(size);
        Some(DmaLayout {
            queue,
            headers,
            statuses,
            len,
        })
    }

    /// Offset of the header used by the chain headed by `head`.
    pub fn header(&self, head: u16) -> u64 {
        self.headers + req::HEADER_BYTES * u64::from(head)
    }

    /// Offset of the status byte used by the chain headed by `head`.
    pub fn status(&self, head: u16) -> u64 {
        self.statuses + req::STATUS_BYTES * u64::from(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_core::virtqueue::testmem::VecMem;

    #[test]
    fn header_bytes() {
        let mut m = VecMem::new(32);
        RequestHeader {
            kind: RequestType::Out,
            sector: 0x0102_0304_0506_0708,
        }
        .write(&mut m, 16);
        assert_eq!(
            &m.bytes[16..32],
            &[1, 0, 0, 0, 0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1]
        );
        assert_eq!(RequestType::Flush as u32, 4);
        assert_eq!(RequestType::GetId as u32, 8);
    }

    #[test]
    fn status_decode() {
        assert_eq!(Outcome::from_status(0), Outcome::Ok);
        assert_eq!(Outcome::from_status(1), Outcome::IoError);
        assert_eq!(Outcome::from_status(2), Outcome::Unsupported);
        assert_eq!(
            Outcome::from_status(status::PENDING),
            Outcome::Invalid(0xff)
        );
    }

    #[test]
    fn config_read_respects_features() {
        let cfg = |off: u64| -> Option<u32> {
            Some(match off {
                0x00 => 0x0020_0000,
                0x04 => 1,
                0x08 => 65536,
                0x0c => 254,
                0x14 => 4096,
                _ => 0xdead,
            })
        };
        let c = BlkConfig::read(0, cfg).unwrap();
        assert_eq!(
            c,
            BlkConfig {
                capacity: 0x1_0020_0000,
                ..Default::default()
            }
        );
        assert_eq!(c.sector_size(), 512);
        assert_eq!(c.max_transfer(128 * 1024), 128 * 1024);
        let all = feature::BLK_SIZE_MAX | feature::BLK_SEG_MAX | feature::BLK_BLK_SIZE;
        let c = BlkConfig::read(all, cfg).unwrap();
        assert_eq!(
            (c.size_max, c.seg_max, c.blk_size),
            (Some(65536), Some(254), Some(4096))
        );
        assert_eq!(c.sector_size(), 4096);
        assert_eq!(c.max_transfer(128 * 1024), 65536);
        let odd = BlkConfig {
            size_max: Some(5000),
            blk_size: Some(1000),
            ..c
        };
        assert_eq!(odd.sector_size(), 512);
        assert_eq!(odd.max_transfer(128 * 1024), 4608);
        assert_eq!(
            BlkConfig {
                seg_max: Some(0),
                ..c
            }
            .max_transfer(4096),
            0
        );
    }

    #[test]
    fn queue_sizing() {
        assert_eq!(queue_size(256, 64), Some(256));
        assert_eq!(queue_depth(256, 64), 64);
        assert_eq!(queue_size(256, 200), Some(256));
        assert_eq!(queue_depth(256, 200), 85);
        assert_eq!(queue_size(256, 1), Some(4));
        assert_eq!(queue_size(100, 64), Some(64));
        assert_eq!(queue_size(0, 64), None);
        assert_eq!(queue_size(u16::MAX, u16::MAX), Some(32768));
    }

    #[test]
    fn dma_layout() {
        let l = DmaLayout::new(256).unwrap();
        assert_eq!(l.headers % 16, 0);
        assert!(l.headers >= l.queue.end);
        assert_eq!(l.header(255) + 16, l.statuses);
        assert_eq!(l.status(255) + 1, l.len);
        assert!(l.len <= 3 * 4096);
    }
}
