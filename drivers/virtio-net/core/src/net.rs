//! Network device feature bits [VIRTIO-1.2 §5.1.3], the device
//! configuration [§5.1.4] and `struct virtio_net_hdr` [§5.1.6].
//!
//! The driver negotiates no offload: every frame it sends is complete
//! (no checksum or segmentation left to the device), so every header it
//! writes is all zeros, and a received header asking for any offload it
//! did not negotiate is refused, not trusted.

use virtio_core::pci::Reg;
use virtio_core::virtqueue::QueueMemory;

/// Network feature bits [VIRTIO-1.2 §5.1.3].
pub mod feature {
    /// The device checksums partial packets the driver sends.
    pub const CSUM: u64 = 1 << 0;
    /// The driver handles packets with a partial checksum.
    pub const GUEST_CSUM: u64 = 1 << 1;
    /// `mtu` in the configuration is valid.
    pub const MTU: u64 = 1 << 3;
    /// `mac` in the configuration is valid.
    pub const MAC: u64 = 1 << 5;
    /// The driver takes TSOv4 packets.
    pub const GUEST_TSO4: u64 = 1 << 7;
    /// The driver merges receive buffers.
    pub const MRG_RXBUF: u64 = 1 << 15;
    /// `status` in the configuration is valid.
    pub const STATUS: u64 = 1 << 16;
    /// A control virtqueue exists.
    pub const CTRL_VQ: u64 = 1 << 17;
}

/// Network features the driver uses when the device offers them (besides
/// `virtio_core::pci::REQUIRED_FEATURES`): the MAC address, the link
/// status and the MTU; no offload.
pub const WANTED_FEATURES: u64 = feature::MAC | feature::STATUS | feature::MTU;

/// `struct virtio_net_config` fields the driver reads [VIRTIO-1.2 §5.1.4].
pub mod config {
    use super::Reg;

    /// `mac[6]`: its first byte (the others follow).
    pub const MAC: Reg<u8> = Reg::named(0x00, "MAC");
    /// `status` (`VIRTIO_NET_F_STATUS`).
    pub const STATUS: Reg<u16> = Reg::named(0x06, "STATUS");
    /// `mtu` (`VIRTIO_NET_F_MTU`).
    pub const MTU: Reg<u16> = Reg::named(0x0a, "MTU");
    /// Bytes the driver needs of the structure.
    pub const LEN: u64 = 0x0c;
    /// `status`: the link is up.
    pub const STATUS_LINK_UP: u16 = 1;
}

/// The largest Ethernet frame the driver sends or takes (no FCS), with
/// one 802.1Q tag, unless the device's MTU says less.
pub const MAX_FRAME: u64 = 1518;
/// Ethernet header bytes (without a tag): the smallest frame the driver
/// takes from a device.
pub const ETH_HEADER: u64 = 14;

/// The device configuration, fields absent unless their feature was
/// negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NetConfig {
    /// The MAC address.
    pub mac: Option<[u8; 6]>,
    /// Whether the link is up (up when the device does not report it).
    pub link_up: bool,
    /// The MTU (IP packet size, without the Ethernet header).
    pub mtu: Option<u16>,
}

impl NetConfig {
    /// Decodes the configuration through `read8` and `read16` (a field at
    /// an offset of the device configuration) for the negotiated
    /// `features`. `None` if a read fails.
    pub fn read(
        features: u64,
        mut read8: impl FnMut(u64) -> Option<u8>,
        mut read16: impl FnMut(u64) -> Option<u16>,
    ) -> Option<NetConfig> {
        let mac = if features & feature::MAC != 0 {
            let mut m = [0u8; 6];
            for (i, b) in m.iter_mut().enumerate() {
                *b = read8((config::MAC.offset() + i) as u64)?;
            }
            Some(m)
        } else {
            None
        };
        let link_up = if features & feature::STATUS != 0 {
            read16(config::STATUS.offset() as u64)? & config::STATUS_LINK_UP != 0
        } else {
            true
        };
        let mtu = if features & feature::MTU != 0 {
            Some(read16(config::MTU.offset() as u64)?)
        } else {
            None
        };
        Some(NetConfig { mac, link_up, mtu })
    }

    /// The largest frame to send or take: [`MAX_FRAME`], or less if the
    /// device's MTU is smaller than Ethernet's 1,500 (a larger MTU is not
    /// used: the buffers are sized for 1,500).
    pub fn max_frame(&self) -> u64 {
        match self.mtu {
            Some(m) if u64::from(m) < 1500 => u64::from(m) + ETH_HEADER + 4,
            _ => MAX_FRAME,
        }
    }
}

/// Bytes of `struct virtio_net_hdr` for a modern device (`num_buffers`
/// included whether or not `MRG_RXBUF` is negotiated) [VIRTIO-1.2 §5.1.6].
pub const HDR_BYTES: u64 = 12;

/// `struct virtio_net_hdr` offsets.
mod hdr {
    pub const FLAGS: u64 = 0;
    pub const GSO_TYPE: u64 = 1;
    pub const HDR_LEN: u64 = 2;
    pub const GSO_SIZE: u64 = 4;
    pub const CSUM_START: u64 = 6;
    pub const CSUM_OFFSET: u64 = 8;
    pub const NUM_BUFFERS: u64 = 10;
}

/// `flags`: the checksum is partial (needs `GUEST_CSUM`).
pub const HDR_F_NEEDS_CSUM: u8 = 1;
/// `flags`: the checksum was validated by the device.
pub const HDR_F_DATA_VALID: u8 = 2;
/// `gso_type`: not a segmentation offload.
pub const HDR_GSO_NONE: u8 = 0;

/// A `virtio_net_hdr`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NetHdr {
    /// `flags`.
    pub flags: u8,
    /// `gso_type`.
    pub gso_type: u8,
    /// `hdr_len`.
    pub hdr_len: u16,
    /// `gso_size`.
    pub gso_size: u16,
    /// `csum_start`.
    pub csum_start: u16,
    /// `csum_offset`.
    pub csum_offset: u16,
    /// `num_buffers`.
    pub num_buffers: u16,
}

/// Why a received header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HdrError {
    /// A segmentation offload the driver did not negotiate.
    Gso(u8),
    /// A partial checksum, or a flag the spec does not define.
    Flags(u8),
    /// `num_buffers` above 1 without `MRG_RXBUF` [§5.1.6.4]: a claim of
    /// merged buffers that were not negotiated.
    NumBuffers(u16),
}

impl NetHdr {
    /// The header of every frame the driver sends: no offload.
    pub const TX: NetHdr = NetHdr {
        flags: 0,
        gso_type: HDR_GSO_NONE,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
        num_buffers: 0,
    };

    /// Writes it at `at`.
    pub fn write(&self, mem: &mut impl QueueMemory, at: u64) {
        mem.write_u8(at + hdr::FLAGS, self.flags);
        mem.write_u8(at + hdr::GSO_TYPE, self.gso_type);
        mem.write_u16(at + hdr::HDR_LEN, self.hdr_len);
        mem.write_u16(at + hdr::GSO_SIZE, self.gso_size);
        mem.write_u16(at + hdr::CSUM_START, self.csum_start);
        mem.write_u16(at + hdr::CSUM_OFFSET, self.csum_offset);
        mem.write_u16(at + hdr::NUM_BUFFERS, self.num_buffers);
    }

    /// Reads the one at `at`.
    pub fn read(mem: &impl QueueMemory, at: u64) -> NetHdr {
        NetHdr {
            flags: mem.read_u8(at + hdr::FLAGS),
            gso_type: mem.read_u8(at + hdr::GSO_TYPE),
            hdr_len: mem.read_u16(at + hdr::HDR_LEN),
            gso_size: mem.read_u16(at + hdr::GSO_SIZE),
            csum_start: mem.read_u16(at + hdr::CSUM_START),
            csum_offset: mem.read_u16(at + hdr::CSUM_OFFSET),
            num_buffers: mem.read_u16(at + hdr::NUM_BUFFERS),
        }
    }

    /// Checks a header the device wrote for a received frame, with no
    /// offload and no `MRG_RXBUF` negotiated.
    pub fn check_rx(&self) -> Result<(), HdrError> {
        if self.gso_type != HDR_GSO_NONE {
            return Err(HdrError::Gso(self.gso_type));
        }
        if self.flags & !HDR_F_DATA_VALID != 0 {
            return Err(HdrError::Flags(self.flags));
        }
        // The spec wants 1, but QEMU (7.2 and 10.0) writes `num_buffers`
        // only with `MRG_RXBUF` and leaves the driver's 0 otherwise. Without
        // merged buffers the field means nothing to the driver: 0 and 1
        // are taken, a claim of more is refused.
        if self.num_buffers > 1 {
            return Err(HdrError::NumBuffers(self.num_buffers));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use virtio_core::virtqueue::testmem::VecMem;

    #[test]
    fn header_layout_and_round_trip() {
        let mut m = VecMem::new(32);
        let h = NetHdr {
            flags: 2,
            gso_type: 0,
            hdr_len: 0x0102,
            gso_size: 0x0304,
            csum_start: 0x0506,
            csum_offset: 0x0708,
            num_buffers: 1,
        };
        h.write(&mut m, 4);
        assert_eq!(
            &m.bytes[4..16],
            &[2, 0, 2, 1, 4, 3, 6, 5, 8, 7, 1, 0],
            "little-endian, in spec order"
        );
        assert_eq!(NetHdr::read(&m, 4), h);
        NetHdr::TX.write(&mut m, 4);
        assert_eq!(&m.bytes[4..16], &[0; 12]);
    }

    #[test]
    fn received_headers_asking_for_offloads_are_refused() {
        let ok = NetHdr {
            num_buffers: 1,
            ..NetHdr::TX
        };
        assert_eq!(ok.check_rx(), Ok(()));
        let valid = NetHdr {
            flags: HDR_F_DATA_VALID,
            ..ok
        };
        assert_eq!(valid.check_rx(), Ok(()));
        let csum = NetHdr {
            flags: HDR_F_NEEDS_CSUM,
            ..ok
        };
        assert_eq!(csum.check_rx(), Err(HdrError::Flags(1)));
        let tso = NetHdr { gso_type: 1, ..ok };
        assert_eq!(tso.check_rx(), Err(HdrError::Gso(1)));
        assert_eq!(
            NetHdr::TX.check_rx(),
            Ok(()),
            "QEMU leaves num_buffers 0 without MRG_RXBUF"
        );
        let merged = NetHdr {
            num_buffers: 2,
            ..ok
        };
        assert_eq!(merged.check_rx(), Err(HdrError::NumBuffers(2)));
    }

    #[test]
    fn config_reads_only_negotiated_fields() {
        let space: [u8; 12] = [0x52, 0x54, 0, 0x12, 0x34, 0x56, 0, 0, 1, 0, 0xdc, 0x05];
        let r8 = |o: u64| space.get(o as usize).copied();
        let r16 = |o: u64| {
            let o = o as usize;
            Some(u16::from_le_bytes([*space.get(o)?, *space.get(o + 1)?]))
        };
        let none = NetConfig::read(0, r8, r16).unwrap();
        assert_eq!(
            none,
            NetConfig {
                mac: None,
                link_up: true,
                mtu: None
            }
        );
        let all = NetConfig::read(WANTED_FEATURES, r8, r16).unwrap();
        assert_eq!(all.mac, Some([0x52, 0x54, 0, 0x12, 0x34, 0x56]));
        assert!(!all.link_up, "status 0: link down");
        assert_eq!(all.mtu, Some(1500));
        assert_eq!(all.max_frame(), MAX_FRAME);
        let small = NetConfig {
            mtu: Some(576),
            ..all
        };
        assert_eq!(small.max_frame(), 576 + 18);
        // A failed read is no configuration.
        assert_eq!(NetConfig::read(feature::MTU, r8, |_| None), None);
    }
}
