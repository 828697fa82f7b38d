//! The virtio PCI transport as an EL0 driver task sees it [VIRTIO-1.2
//! §4.1]: the configuration structures its vendor capabilities name, mapped
//! once with typed accessors (`transport`), and the task's own DMA memory as
//! queue memory for `virtio-core`'s split virtqueue (`dma`), and the steps
//! of bringing a function up that do not depend on its type (`open`).
//! Every virtio driver (virtio-blk, virtio-net) uses these; none forks
//! them.
//!
//! It owns register and memory access only; the encodings and the queue
//! logic are `virtio-core`'s, device types' formats their own crates'.
#![no_std]
#![forbid(unsafe_code)]

pub mod dma;
pub mod open;
pub mod transport;

pub use open::OpenError;
