//! The block service loop, shared by every block driver task (NVMe,
//! virtio-blk): one protocol (`block-api`) whatever the device. It checks
//! each request, has the IOMMU server map the client's own buffer for the
//! device (the client's grant is forwarded: zero copy, no bounce buffer),
//! hands the batch to the device, and on completion unmaps the buffers in
//! one request and reports I/Os whose DMA the IOMMU faulted. Owns the
//! per-client I/O bookkeeping; never touches a device register (that is the
//! `BlockDevice` implementation) and never answers an I/O before its
//! buffer is unmapped.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod device;
pub mod serve;

pub use device::{BlockDevice, DeviceIo};
pub use serve::{Config, Counters, serve};
