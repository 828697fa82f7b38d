//! The virtio PCI transport [VIRTIO-1.2 §4.1]: the vendor-specific
//! capabilities that locate the configuration structures, the common
//! configuration layout, device status bits, feature bits and the driver's
//! feature negotiation.
//!
//! It owns these encodings and the capability walk over a config-space
//! reader it is given; it never accesses config space or a BAR itself, and
//! a malformed or looping capability list ends the walk with an error
//! instead of hanging or panicking.

/// PCI vendor ID of every virtio device [VIRTIO-1.2 §4.1.2].
pub const VENDOR_ID: u16 = 0x1af4;
/// PCI device ID of a modern (non-transitional) block device:
/// 0x1040 + virtio device ID 2 [VIRTIO-1.2 §4.1.2, §5].
pub const DEVICE_ID_BLOCK: u16 = 0x1042;
/// PCI device ID of a modern (non-transitional) network device:
/// 0x1040 + virtio device ID 1 [VIRTIO-1.2 §4.1.2, §5].
pub const DEVICE_ID_NET: u16 = 0x1041;

/// Generic PCI header registers the driver needs [PCI 3.0 §6.1, §6.2.2].
pub mod header {
    /// Dword holding the vendor ID (low 16 bits) and device ID (high 16
    /// bits).
    pub const ID: u32 = 0x00;
    /// Dword holding the command (low 16 bits) and status (high 16 bits).
    pub const COMMAND_STATUS: u32 = 0x04;
    /// Command register bit 10: INTx emulation disabled.
    pub const COMMAND_INTX_DISABLE: u32 = 1 << 10;
    /// Status register bit 4 (bit 20 of the dword): a capability list exists.
    pub const STATUS_CAP_LIST: u32 = 1 << (16 + 4);
    /// Capabilities pointer (low byte of the dword; low two bits reserved).
    pub const CAP_PTR: u32 = 0x34;
    /// Capability ID of a vendor-specific capability [PCI 3.0 §6.7].
    pub const CAP_ID_VENDOR: u8 = 0x09;
    /// Lowest config-space offset a capability may sit at.
    pub const CAP_MIN_OFFSET: u32 = 0x40;
    /// End of the standard (non-extended) config space.
    pub const CONFIG_END: u32 = 0x100;
}

/// `cfg_type` of a virtio PCI capability [VIRTIO-1.2 §4.1.4].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CfgType {
    /// Common configuration [§4.1.4.3].
    Common = 1,
    /// Notifications [§4.1.4.4].
    Notify = 2,
    /// ISR status [§4.1.4.5].
    Isr = 3,
    /// Device-specific configuration [§4.1.4.6].
    Device = 4,
    /// PCI configuration access window [§4.1.4.8].
    PciCfg = 5,
    /// Shared memory region [§4.1.4.7].
    SharedMemory = 8,
    /// Vendor data [§4.1.4.9].
    Vendor = 9,
}

impl CfgType {
    /// The type for a raw `cfg_type`, `None` if unknown (to be ignored).
    pub fn from_raw(v: u8) -> Option<CfgType> {
        Some(match v {
            1 => CfgType::Common,
            2 => CfgType::Notify,
            3 => CfgType::Isr,
            4 => CfgType::Device,
            5 => CfgType::PciCfg,
            8 => CfgType::SharedMemory,
            9 => CfgType::Vendor,
            _ => return None,
        })
    }
}

/// Byte layout of `struct virtio_pci_cap` and `virtio_pci_notify_cap`
/// [VIRTIO-1.2 §4.1.4, §4.1.4.4].
pub mod cap_layout {
    /// `cap_vndr`: the PCI capability ID (vendor-specific, 0x09).
    pub const CAP_VNDR: usize = 0;
    /// `cap_next`: offset of the next capability.
    pub const CAP_NEXT: usize = 1;
    /// `cap_len`: length of this capability structure.
    pub const CAP_LEN: usize = 2;
    /// `cfg_type`: which structure it locates.
    pub const CFG_TYPE: usize = 3;
    /// `bar`: which BAR holds it (0..=5).
    pub const BAR: usize = 4;
    /// `offset` (le32) within the BAR.
    pub const OFFSET: usize = 8;
    /// `length` (le32) of the structure.
    pub const LENGTH: usize = 12;
    /// `notify_off_multiplier` (le32), notify capabilities only.
    pub const NOTIFY_OFF_MULTIPLIER: usize = 16;
    /// Bytes of `struct virtio_pci_cap`.
    pub const CAP_BYTES: usize = 16;
    /// Bytes of `struct virtio_pci_notify_cap`.
    pub const NOTIFY_CAP_BYTES: usize = 20;
}

/// Highest BAR number a capability may name [VIRTIO-1.2 §4.1.4].
pub const MAX_BAR: u8 = 5;

/// One decoded virtio PCI capability [VIRTIO-1.2 §4.1.4].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCap {
    /// What the structure is (`None`: a type this driver does not know).
    pub cfg_type: Option<CfgType>,
    /// BAR holding it.
    pub bar: u8,
    /// Offset within the BAR.
    pub offset: u32,
    /// Length of the structure.
    pub length: u32,
    /// For [`CfgType::Notify`]: the queue notify offset multiplier.
    pub notify_off_multiplier: u32,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl VirtioCap {
    /// Decodes a vendor capability from its config-space bytes (at least
    /// [`cap_layout::CAP_BYTES`], [`cap_layout::NOTIFY_CAP_BYTES`] for a
    /// notify capability). `None` if too short, if `cap_len` is too small
    /// for its type, or if it is not a vendor capability.
    pub fn decode(bytes: &[u8]) -> Option<VirtioCap> {
        use cap_layout::*;
        if bytes.len() < CAP_BYTES || bytes[CAP_VNDR] != header::CAP_ID_VENDOR {
            return None;
        }
        let cap_len = usize::from(bytes[CAP_LEN]);
        let cfg_type = CfgType::from_raw(bytes[CFG_TYPE]);
        let need = if cfg_type == Some(CfgType::Notify) {
            NOTIFY_CAP_BYTES
        } else {
            CAP_BYTES
        };
        if cap_len < need || bytes.len() < need {
            return None;
        }
        Some(VirtioCap {
            cfg_type,
            bar: bytes[BAR],
            offset: le32(bytes, OFFSET),
            length: le32(bytes, LENGTH),
            notify_off_multiplier: if need == NOTIFY_CAP_BYTES {
                le32(bytes, NOTIFY_OFF_MULTIPLIER)
            } else {
                0
            },
        })
    }
}

/// Where one configuration structure lives: a window of a BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// BAR number (0..=5).
    pub bar: u8,
    /// Offset of the structure in the BAR.
    pub offset: u64,
    /// Its length.
    pub length: u64,
}

impl Window {
    /// BAR offset of `bytes` bytes at `at` within the window, `None` if
    /// they do not fit inside it.
    pub fn at(&self, at: u64, bytes: u64) -> Option<u64> {
        let end = at.checked_add(bytes)?;
        (end <= self.length).then_some(self.offset.checked_add(at)?)
    }
}

/// The structures a driver needs, from the first usable capability of
/// each type [VIRTIO-1.2 §4.1.4: "the driver SHOULD use the first
/// instance"].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioCaps {
    /// Common configuration.
    pub common: Window,
    /// Notification area.
    pub notify: Window,
    /// Queue notify offset multiplier [§4.1.4.4].
    pub notify_off_multiplier: u32,
    /// ISR status byte.
    pub isr: Window,
    /// Device-specific configuration.
    pub device: Window,
}

/// Why the capability walk failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError {
    /// A config-space read failed.
    Read,
    /// The function has no capability list.
    NoCapabilities,
    /// The list points outside config space or loops.
    BadList,
    /// A required structure (common, notify, ISR, device) is missing.
    Missing(CfgType),
    /// The common configuration is shorter than [`common::LEN`].
    CommonTooShort,
}

/// Most capabilities visited: 48 fit between 0x40 and 0x100.
const MAX_CAPS: usize = 48;

/// Walks the capability list through `read32` (a dword of config space at
/// a 4-aligned offset) and collects the virtio structures
/// [VIRTIO-1.2 §4.1.4]. Capabilities naming a BAR above 5 or of unknown
/// type are skipped, as the spec requires.
pub fn find_caps(mut read32: impl FnMut(u32) -> Option<u32>) -> Result<VirtioCaps, CapError> {
    let status = read32(header::COMMAND_STATUS).ok_or(CapError::Read)?;
    if status & header::STATUS_CAP_LIST == 0 {
        return Err(CapError::NoCapabilities);
    }
    let mut next = read32(header::CAP_PTR).ok_or(CapError::Read)? & 0xfc;
    let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
    let mut visited = 0;
    while next != 0 {
        if !(header::CAP_MIN_OFFSET..header::CONFIG_END).contains(&next) || visited == MAX_CAPS {
            return Err(CapError::BadList);
        }
        visited += 1;
        let mut bytes = [0u8; cap_layout::NOTIFY_CAP_BYTES];
        let first = read32(next).ok_or(CapError::Read)?;
        bytes[..4].copy_from_slice(&first.to_le_bytes());
        let at = next;
        next = u32::from(bytes[cap_layout::CAP_NEXT]) & 0xfc;
        if bytes[cap_layout::CAP_VNDR] != header::CAP_ID_VENDOR {
            continue;
        }
        let dwords = cap_layout::NOTIFY_CAP_BYTES / 4;
        for i in 1..dwords {
            let off = at + 4 * i as u32;
            // A capability may end at the top of config space: what lies
            // beyond it stays zero and `decode` checks `cap_len`.
            if off >= header::CONFIG_END {
                break;
            }
            let v = read32(off).ok_or(CapError::Read)?;
            bytes[4 * i..4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
        let Some(cap) = VirtioCap::decode(&bytes) else {
            continue;
        };
        if cap.bar > MAX_BAR {
            continue;
        }
        let w = Window {
            bar: cap.bar,
            offset: u64::from(cap.offset),
            length: u64::from(cap.length),
        };
        match cap.cfg_type {
            Some(CfgType::Common) if common.is_none() => common = Some(w),
            Some(CfgType::Notify) if notify.is_none() => {
                notify = Some((w, cap.notify_off_multiplier))
            }
            Some(CfgType::Isr) if isr.is_none() => isr = Some(w),
            Some(CfgType::Device) if device.is_none() => device = Some(w),
            _ => {}
        }
    }
    let common = common.ok_or(CapError::Missing(CfgType::Common))?;
    if common.length < common::LEN {
        return Err(CapError::CommonTooShort);
    }
    let (notify, notify_off_multiplier) = notify.ok_or(CapError::Missing(CfgType::Notify))?;
    Ok(VirtioCaps {
        common,
        notify,
        notify_off_multiplier,
        isr: isr.ok_or(CapError::Missing(CfgType::Isr))?,
        device: device.ok_or(CapError::Missing(CfgType::Device))?,
    })
}

/// A register of a configuration structure: the shared [`Reg`], its offset
/// within the structure and its width `T`. 64-bit fields are accessed as
/// two 32-bit halves, [`Reg::lo`] then [`Reg::hi`] [VIRTIO-1.2 §4.1.3.1].
pub use mmio::Reg;

/// `struct virtio_pci_common_cfg` [VIRTIO-1.2 §4.1.4.3].
pub mod common {
    use super::Reg;

    /// Selects which 32 feature bits `DEVICE_FEATURE` shows.
    pub const DEVICE_FEATURE_SELECT: Reg<u32> = Reg::named(0x00, "DEVICE_FEATURE_SELECT");
    /// Device feature bits `32 * select ..`, read-only.
    pub const DEVICE_FEATURE: Reg<u32> = Reg::named(0x04, "DEVICE_FEATURE");
    /// Selects which 32 feature bits `DRIVER_FEATURE` takes.
    pub const DRIVER_FEATURE_SELECT: Reg<u32> = Reg::named(0x08, "DRIVER_FEATURE_SELECT");
    /// Driver (accepted) feature bits `32 * select ..`.
    pub const DRIVER_FEATURE: Reg<u32> = Reg::named(0x0c, "DRIVER_FEATURE");
    /// MSI-X vector for configuration changes.
    pub const MSIX_CONFIG: Reg<u16> = Reg::named(0x10, "MSIX_CONFIG");
    /// Number of virtqueues, read-only.
    pub const NUM_QUEUES: Reg<u16> = Reg::named(0x12, "NUM_QUEUES");
    /// Device status, see [`super::Status`].
    pub const DEVICE_STATUS: Reg<u8> = Reg::named(0x14, "DEVICE_STATUS");
    /// Changes whenever the device configuration changes, read-only.
    pub const CONFIG_GENERATION: Reg<u8> = Reg::named(0x15, "CONFIG_GENERATION");
    /// Selects the queue the `QUEUE_*` fields refer to.
    pub const QUEUE_SELECT: Reg<u16> = Reg::named(0x16, "QUEUE_SELECT");
    /// Queue size: the device's maximum on reset (0: no such queue); the
    /// driver may write a smaller power of two.
    pub const QUEUE_SIZE: Reg<u16> = Reg::named(0x18, "QUEUE_SIZE");
    /// MSI-X vector for the queue.
    pub const QUEUE_MSIX_VECTOR: Reg<u16> = Reg::named(0x1a, "QUEUE_MSIX_VECTOR");
    /// Write 1 to enable the queue.
    pub const QUEUE_ENABLE: Reg<u16> = Reg::named(0x1c, "QUEUE_ENABLE");
    /// The queue's notify offset (times the multiplier), read-only.
    pub const QUEUE_NOTIFY_OFF: Reg<u16> = Reg::named(0x1e, "QUEUE_NOTIFY_OFF");
    /// Device address of the descriptor table.
    pub const QUEUE_DESC: Reg<u64> = Reg::named(0x20, "QUEUE_DESC");
    /// Device address of the driver (available) ring.
    pub const QUEUE_DRIVER: Reg<u64> = Reg::named(0x28, "QUEUE_DRIVER");
    /// Device address of the device (used) ring.
    pub const QUEUE_DEVICE: Reg<u64> = Reg::named(0x30, "QUEUE_DEVICE");
    /// Bytes the driver needs of the structure (up to `QUEUE_DEVICE`).
    pub const LEN: u64 = 0x38;
    /// "No MSI-X vector": interrupts go through INTx and the ISR
    /// [VIRTIO-1.2 §4.1.5.1.2].
    pub const NO_VECTOR: u16 = 0xffff;
}

/// The ISR status byte [VIRTIO-1.2 §4.1.4.5]; reading it clears it and
/// deasserts INTx.
pub mod isr {
    use super::Reg;

    /// The ISR status register.
    pub const STATUS: Reg<u8> = Reg::named(0, "STATUS");
    /// A virtqueue was used.
    pub const QUEUE: u8 = 1 << 0;
    /// The device configuration changed.
    pub const CONFIG: u8 = 1 << 1;
}

/// Device status bits [VIRTIO-1.2 §2.1].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u8);

impl Status {
    /// The reset value: writing it resets the device.
    pub const RESET: Status = Status(0);
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest knows how to drive it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error it cannot recover from without a reset.
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    /// The driver gave up on the device.
    pub const FAILED: u8 = 128;

    /// Whether every bit of `bits` is set.
    pub const fn has(self, bits: u8) -> bool {
        self.0 & bits == bits
    }

    /// Whether the device needs a reset.
    pub const fn needs_reset(self) -> bool {
        self.has(Self::DEVICE_NEEDS_RESET)
    }
}

/// Device-independent feature bits [VIRTIO-1.2 §6]; each device type
/// declares its own (virtio-blk's in `virtio-blk-core`).
pub mod feature {
    /// Indirect descriptors.
    pub const INDIRECT_DESC: u64 = 1 << 28;
    /// `used_event` / `avail_event` notification suppression.
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// Virtio 1.x (modern) device.
    pub const VERSION_1: u64 = 1 << 32;
    /// The device's DMA goes through the platform IOMMU: without it the
    /// device bypasses the SMMU.
    pub const ACCESS_PLATFORM: u64 = 1 << 33;
    /// Packed virtqueues.
    pub const RING_PACKED: u64 = 1 << 34;
}

/// Features no driver here works without: a modern device whose DMA is
/// translated by the IOMMU.
pub const REQUIRED_FEATURES: u64 = feature::VERSION_1 | feature::ACCESS_PLATFORM;

/// Why negotiation failed: the required bits the device lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingFeatures(pub u64);

/// The driver's feature set for a device offering `device`
/// [VIRTIO-1.2 §3.1.1 step 4]: refuses a device without
/// [`REQUIRED_FEATURES`] (without `ACCESS_PLATFORM` its DMA would bypass
/// the IOMMU), accepts those of the device type's `wanted` features it
/// offers, and nothing else.
pub fn negotiate(device: u64, wanted: u64) -> Result<u64, MissingFeatures> {
    let missing = REQUIRED_FEATURES & !device;
    if missing != 0 {
        return Err(MissingFeatures(missing));
    }
    Ok(device & (REQUIRED_FEATURES | wanted))
}

/// BAR offset of queue notification for a queue whose `queue_notify_off`
/// is `notify_off` [VIRTIO-1.2 §4.1.4.4]; `None` if the 16-bit notify
/// register would not fit in the notification window.
pub fn notify_offset(caps: &VirtioCaps, notify_off: u16) -> Option<u64> {
    let at = u64::from(notify_off).checked_mul(u64::from(caps.notify_off_multiplier))?;
    caps.notify.at(at, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config space with QEMU's virtio-blk capability list.
    fn qemu_config() -> [u8; 256] {
        let mut c = [0u8; 256];
        c[0x06] = 0x10; // status: capability list
        c[0x34] = 0x84;
        // MSI-X at 0x98 in QEMU, then vendor caps 0x84, 0x70, 0x60, 0x50, 0x40.
        let caps: [(usize, u8, u8, u8, u32, u32); 5] = [
            (0x84, 0x70, 20, 5, 0, 0),           // PCI cfg
            (0x70, 0x60, 20, 2, 0x3000, 0x1000), // notify
            (0x60, 0x50, 16, 4, 0x2000, 0x1000), // device
            (0x50, 0x40, 16, 3, 0x1000, 0x1000), // ISR
            (0x40, 0x98, 16, 1, 0x0000, 0x1000), // common
        ];
        for (at, next, len, ty, off, length) in caps {
            c[at] = 0x09;
            c[at + 1] = next;
            c[at + 2] = len;
            c[at + 3] = ty;
            c[at + 4] = if ty == 5 { 0 } else { 4 };
            c[at + 8..at + 12].copy_from_slice(&off.to_le_bytes());
            c[at + 12..at + 16].copy_from_slice(&length.to_le_bytes());
            if ty == 2 {
                c[at + 16..at + 20].copy_from_slice(&4u32.to_le_bytes());
            }
        }
        c[0x98] = 0x11; // MSI-X, end of list
        c
    }

    fn reader(c: &[u8; 256]) -> impl FnMut(u32) -> Option<u32> + '_ {
        |off| {
            let o = off as usize;
            (o.is_multiple_of(4) && o + 4 <= 256).then(|| le32(c, o))
        }
    }

    #[test]
    fn walks_qemu_list() {
        let c = qemu_config();
        let caps = find_caps(reader(&c)).unwrap();
        assert_eq!(
            caps.common,
            Window {
                bar: 4,
                offset: 0,
                length: 0x1000
            }
        );
        assert_eq!(caps.isr.offset, 0x1000);
        assert_eq!(caps.device.offset, 0x2000);
        assert_eq!(caps.notify.offset, 0x3000);
        assert_eq!(caps.notify_off_multiplier, 4);
        assert_eq!(notify_offset(&caps, 0), Some(0x3000));
        assert_eq!(notify_offset(&caps, 3), Some(0x300c));
        assert_eq!(notify_offset(&caps, 0x400), None);
    }

    #[test]
    fn refuses_missing_and_bad_lists() {
        let mut c = qemu_config();
        c[0x43] = 7; // common becomes an unknown type
        assert_eq!(
            find_caps(reader(&c)),
            Err(CapError::Missing(CfgType::Common))
        );
        let mut c = qemu_config();
        c[0x41] = 0x84; // loop
        assert_eq!(find_caps(reader(&c)), Err(CapError::BadList));
        let mut c = qemu_config();
        c[0x06] = 0;
        assert_eq!(find_caps(reader(&c)), Err(CapError::NoCapabilities));
        let mut c = qemu_config();
        c[0x72] = 16; // notify cap too short for its multiplier
        assert_eq!(
            find_caps(reader(&c)),
            Err(CapError::Missing(CfgType::Notify))
        );
        let mut c = qemu_config();
        c[0x44] = 6; // common in a BAR that does not exist
        assert_eq!(
            find_caps(reader(&c)),
            Err(CapError::Missing(CfgType::Common))
        );
    }

    #[test]
    fn every_single_byte_corruption_is_handled() {
        let base = qemu_config();
        for at in 0..256 {
            for v in [0u8, 0x09, 0x40, 0xfc, 0xff] {
                let mut c = base;
                c[at] = v;
                let _ = find_caps(reader(&c));
            }
        }
    }

    #[test]
    fn negotiation_requires_access_platform() {
        let all = u64::MAX;
        let wanted = 1 << 9 | 1 << 5;
        assert_eq!(negotiate(all, wanted), Ok(REQUIRED_FEATURES | wanted));
        assert_eq!(
            negotiate(feature::VERSION_1 | 1 << 9, wanted),
            Err(MissingFeatures(feature::ACCESS_PLATFORM))
        );
        assert_eq!(
            negotiate(feature::ACCESS_PLATFORM, wanted),
            Err(MissingFeatures(feature::VERSION_1))
        );
        let got = negotiate(REQUIRED_FEATURES | feature::RING_EVENT_IDX | 1 << 9, 1 << 5).unwrap();
        assert_eq!(got, REQUIRED_FEATURES);
    }

    #[test]
    fn common_layout_matches_spec() {
        assert_eq!(common::QUEUE_DEVICE.hi().offset(), 0x34);
        assert_eq!(common::QUEUE_DESC.width(), 8);
        assert_eq!(common::DEVICE_STATUS.width(), 1);
        assert_eq!(common::LEN, common::QUEUE_DEVICE.offset() as u64 + 8);
    }
}
