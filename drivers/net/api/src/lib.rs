//! The frame-level network protocol: the one definition the network driver
//! (virtio-net) serves and the network stack speaks, so that the stack
//! sends and receives Ethernet frames without knowing the device. Encoding
//! only: no I/O, no allocation, never panics on any input.
//!
//! A message is at most [`MSG_MAX`] bytes, smaller than a frame, so data
//! never travels in messages: a `Send` or `Receive` call grants the client's
//! own `dma_alloc` memory and its messages carry only [`Frame`] descriptors
//! (offset and length in that grant). The driver copies frames between the
//! grant and its own IOMMU-mapped slots with the kernel's `GrantCopy`
//! (`userlib::grant_read`, `grant_write`): the client's memory is never
//! mapped for the device.
//!
//! Each request is declared once, in `protocol.rs`, with the
//! `ipc_proto::protocol!` macro the IOMMU and block protocols use too;
//! field wire forms are in `field.rs`.
//!
//! # Wire format (little-endian, at most [`MSG_MAX`] bytes)
//!
//! Request: header `{op: u16, count: u16, arg: u32}`, then `count` entries.
//!
//! | op | arg | entries | grant |
//! |---|---|---|---|
//! | 1 `Info`, 4 `Stats` | 0 | none | none |
//! | 2 `Send` | 0 | 1..=[`MAX_FRAMES`] 8-byte [`Frame`]s `{offset: u32, len: u16, 0: u16}` | the frames |
//! | 3 `Receive` | `max` (1..=[`MAX_FRAMES`]) in bits 0..16 | none | `max * `[`FRAME_STRIDE`] bytes |
//! | 5 `SetMode` | mode: 1 bypass, 2 strict | none | none |
//!
//! Response: header `{status: u16 (0 = ok, else a [`NetError`] code),
//! count: u16, 0: u32}`, then `count` entries: `Info` one 16-byte
//! `{mac: [u8; 6], mtu: u16, link_up: u8, 0: u8, rx_slots: u16,
//! tx_slots: u16, 0: u16}`; `Sent` one 8-byte `{accepted: u16, 0: [u8; 6]}`;
//! `Received` 0..=[`MAX_FRAMES`] [`Frame`]s; `Stats` [`NetStats::FIELDS`]
//! 8-byte counters; `ModeSet` none. An error response has no entries.
//!
//! # Receiving without polling
//!
//! `Receive` never blocks. When it returned fewer frames than `max`, the
//! driver sets [`RX_READY`] in the client's notification word (a `notify`
//! capability in the system description) the next time a frame arrives,
//! once: edge-triggered. A client loops `Receive` until it gets fewer than
//! `max`, then sleeps in `recv`/`wait` until [`RX_READY`].
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

mod field;
mod protocol;

pub use ipc_proto::{HEADER_BYTES, List, MSG_MAX, Transport, WireEntry};
pub use protocol::{Client, Handler, Op, Request, Response};

/// Frame descriptors of a `Send` or a `Received`.
pub type Frames<'a> = List<'a, Frame>;

/// Bytes in one frame descriptor.
pub const FRAME_BYTES: usize = 8;
/// Most frames one `Send` or `Received` carries.
pub const MAX_FRAMES: usize = (MSG_MAX - HEADER_BYTES) / FRAME_BYTES;
/// Bytes of an Ethernet header (destination, source, EtherType).
pub const ETH_HEADER: usize = 14;
/// The MTU every driver of this protocol offers (Ethernet payload bytes).
pub const MTU: u16 = 1500;
/// Shortest frame accepted for sending: an Ethernet header.
pub const MIN_FRAME: usize = ETH_HEADER;
/// Longest frame: the MTU plus the Ethernet header (no FCS, no VLAN tag).
pub const MAX_FRAME: usize = MTU as usize + ETH_HEADER;
/// Where `Receive` puts frame `i` in the grant: at `i * FRAME_STRIDE`.
pub const FRAME_STRIDE: usize = 2048;
/// The notification bit a driver sets when a frame arrived after a
/// `Receive` that came back short. The system description's `notify`
/// capability from the driver to its client must allow it.
pub const RX_READY: u64 = 1;
/// Bytes of the `Info` answer body.
pub(crate) const INFO_BYTES: usize = 16;

abi::stable_codes! {
    /// Why a request failed. Stable codes; 0 is success.
    pub enum NetError: u16 {
        /// The message does not decode.
        Malformed = 1,
        /// Unknown operation.
        UnknownOp = 2,
        /// A frame lies outside the call's grant, the grant is too small for
        /// `Receive`'s `max`, or there is no grant.
        NotGranted = 3,
        /// A frame shorter than [`MIN_FRAME`] or longer than [`MAX_FRAME`].
        BadLength = 4,
        /// `SetMode` outside a benchmark system.
        NotPermitted = 5,
        /// `SetMode` while frames are in flight.
        Busy = 6,
        /// The IOMMU server refused to map or unmap.
        Iommu = 7,
        /// The device is in an error state.
        DeviceError = 8,
        /// `Send` or `Receive` from a caller other than the driver's one
        /// data client (other callers may ask `Info`, `Stats`, `SetMode`).
        NotClient = 9,
    }
}

/// The IOMMU policies a benchmark compares (`SetMode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetMode {
    /// No translation: the ceiling.
    Bypass,
    /// Strict: every unmap completed (synced) before the slot is reused.
    Strict,
}

impl NetMode {
    /// The mode's name in reports.
    pub const fn name(self) -> &'static str {
        match self {
            NetMode::Bypass => "bypass",
            NetMode::Strict => "strict",
        }
    }

    pub(crate) const fn code(self) -> u32 {
        match self {
            NetMode::Bypass => 1,
            NetMode::Strict => 2,
        }
    }

    pub(crate) const fn from_code(c: u32) -> Option<NetMode> {
        match c {
            1 => Some(NetMode::Bypass),
            2 => Some(NetMode::Strict),
            _ => None,
        }
    }
}

ipc_proto::counters! {
    /// A driver's counters since boot (answer to `Stats`), little-endian
    /// `u64`s in this order.
    pub struct NetStats {
        /// Frames handed to the client.
        pub rx_frames: u64,
        /// Their bytes (no virtio header).
        pub rx_bytes: u64,
        /// Frames the device returned that failed the checks (header,
        /// length) and were dropped.
        pub rx_dropped: u64,
        /// Frames the device sent.
        pub tx_frames: u64,
        /// Their bytes (no virtio header).
        pub tx_bytes: u64,
        /// Frames of accepted `Send`s not taken for want of a free slot.
        pub tx_rejected: u64,
        /// Device interrupts handled.
        pub irqs: u64,
        /// Map calls to the IOMMU server.
        pub iommu_maps: u64,
        /// Unmap calls to the IOMMU server.
        pub iommu_unmaps: u64,
        /// CMD_SYNCs the driver's unmaps waited for.
        pub iommu_syncs: u64,
        /// Requests refused (malformed, outside the grant, bad length, ...).
        pub refused: u64,
        /// `RX_READY` notifications sent.
        pub notifications: u64,
    }
}

/// One frame in a call's grant: 8 bytes on the wire,
/// `{offset: u32, len: u16, 0: u16}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Byte offset of its first byte (the Ethernet header) in the grant.
    pub offset: u32,
    /// Its length in bytes.
    pub len: u16,
}

impl Frame {
    /// One past its last byte in the grant.
    pub const fn end(&self) -> u64 {
        self.offset as u64 + self.len as u64
    }

    /// Whether it is a frame a client may send from a grant of
    /// `grant_len` bytes: [`NetError::BadLength`] or
    /// [`NetError::NotGranted`] if not.
    pub fn check(&self, grant_len: u64) -> Result<(), NetError> {
        let len = usize::from(self.len);
        if !(MIN_FRAME..=MAX_FRAME).contains(&len) {
            return Err(NetError::BadLength);
        }
        if self.end() > grant_len {
            return Err(NetError::NotGranted);
        }
        Ok(())
    }
}

/// The interface, the answer to `Info`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Info {
    /// The device's MAC address.
    pub mac: [u8; 6],
    /// Largest Ethernet payload.
    pub mtu: u16,
    /// Whether the link is up.
    pub link_up: bool,
    /// Receive slots the driver keeps posted.
    pub rx_slots: u16,
    /// Transmit slots: at most this many frames in flight.
    pub tx_slots: u16,
}

#[cfg(test)]
mod tests;
