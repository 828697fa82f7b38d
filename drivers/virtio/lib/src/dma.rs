//! The driver's own DMA memory (virtqueue rings, request headers, status
//! bytes) as [`QueueMemory`] for `virtio-core`.
//!
//! It owns the buffer; every access is one volatile scalar load or store
//! (never a Rust reference: the device writes this memory), and an access
//! out of range, impossible once the queue checked the length, reads 0 and
//! drops the write rather than panic.

use core::sync::atomic::{Ordering, fence};

use userlib::DmaBuffer;
use virtio_core::virtqueue::QueueMemory;

/// The driver's DMA buffer.
#[derive(Debug)]
pub struct DmaMem(pub DmaBuffer);

impl QueueMemory for DmaMem {
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn read_u8(&self, offset: u64) -> u8 {
        self.0.read(offset).unwrap_or(0)
    }
    fn read_u16(&self, offset: u64) -> u16 {
        u16::from_le(self.0.read(offset).unwrap_or(0))
    }
    fn read_u32(&self, offset: u64) -> u32 {
        u32::from_le(self.0.read(offset).unwrap_or(0))
    }
    fn write_u8(&mut self, offset: u64, v: u8) {
        let _ = self.0.write(offset, v);
    }
    fn write_u16(&mut self, offset: u64, v: u16) {
        let _ = self.0.write(offset, v.to_le());
    }
    fn write_u32(&mut self, offset: u64, v: u32) {
        let _ = self.0.write(offset, v.to_le());
    }
    fn write_u64(&mut self, offset: u64, v: u64) {
        let _ = self.0.write(offset, v.to_le());
    }
    fn publish_barrier(&mut self) {
        // DSB ST: earlier stores reach the (coherent) device first.
        userlib::publish_to_device();
    }
    fn consume_barrier(&self) {
        // DMB ISHLD on aarch64: later loads are not satisfied before the
        // used index was read.
        fence(Ordering::Acquire);
    }
}
