//! The NVMe driver task: an isolated EL0 task holding exactly one PCI
//! function (the NVMe controller), its interrupt, and a call capability on
//! the IOMMU server, which maps every buffer the controller may reach. It
//! serves the block protocol (`block-server`); it never sees a physical
//! address and never maps memory it does not own.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

userlib::entry!(main);

fn main(info: &userlib::TaskInfo<'static>) -> i32 {
    block_server::run_driver(info, "nvme", nvme::Nvme::open)
}
