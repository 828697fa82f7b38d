//! The virtio-blk driver task: an isolated EL0 task holding exactly one PCI
//! function (a modern virtio-blk device with VIRTIO_F_ACCESS_PLATFORM, so
//! its DMA goes through the SMMU), its interrupt, and a call capability on
//! the IOMMU server. It serves the block protocol (`block-server`); it
//! never sees a physical address and never maps memory it does not own.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

userlib::entry!(main);

fn main(info: &userlib::TaskInfo<'static>) -> i32 {
    block_server::run_driver(info, "virtio-blk", virtio_blk::VirtioBlk::open)
}
