//! The virtio-net driver's pure half [VIRTIO-1.2 §5.1], over the shared
//! `virtio-core` (PCI transport, split virtqueue): the network feature
//! bits, the device configuration and the `virtio_net_hdr` (`net`), and
//! the bookkeeping of the driver's receive and transmit buffer slots
//! (`rings`).
//!
//! It owns encodings and slot state only: it touches DMA memory only
//! through the [`virtio_core::virtqueue::QueueMemory`] it is handed, maps
//! nothing (the driver asks the IOMMU server), never reads time, and never
//! panics on anything a device writes: a used element or header out of
//! range is an error or a counted, dropped frame.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod net;
pub mod rings;

#[cfg(test)]
mod fake;
