//! The virtio-blk driver's pure half [VIRTIO-1.2 §5.2]: the block request
//! format and the device configuration (`blk`), over the shared
//! `virtio-core` (PCI transport, split virtqueue).
//!
//! It owns encodings only: it touches DMA memory only through the
//! [`virtio_core::virtqueue::QueueMemory`] it is handed, and never panics on
//! anything a device writes.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod blk;
