//! The pure half every virtio driver shares [VIRTIO-1.2]: the PCI
//! transport's layouts and feature negotiation (`pci`), the split virtqueue
//! (`virtqueue`), and the bookkeeping of requests in flight (`inflight`).
//! Device types keep their own formats in their own crates (virtio-blk's
//! in `virtio-blk-core`).
//!
//! It owns encodings and driver-side state only: it never touches a register
//! or DMA memory except through the [`virtqueue::QueueMemory`] trait it is
//! handed, never reads time (deadlines are passed in), and never panics on
//! anything a device writes.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod inflight;
pub mod pci;
pub mod virtqueue;
