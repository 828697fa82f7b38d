//! The network stack task: smoltcp's TCP/IPv4 over the network driver
//! (`net-api`, see `link`), serving TCP sockets to other tasks
//! (`sock-api`, see `sockets`). It holds a call capability on the driver,
//! the endpoint it serves, and nothing else: no device, no physical
//! address, no IOMMU capability. Every frame reaches it as bytes the
//! driver copied; smoltcp parses them, and nothing a peer sends can make
//! it panic (smoltcp refuses what does not parse; the socket table refuses
//! what a client sends that it should not).
//!
//! The loop: wait (for a socket call, for the driver's "frames arrived"
//! notification, or for smoltcp's next timer), fetch received frames,
//! poll the interface, answer the held socket calls that can now be
//! answered, and hand the frames smoltcp queued to the driver.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod link;
mod serve;

userlib::entry!(main);

fn main(info: &userlib::TaskInfo<'static>) -> i32 {
    serve::run(info)
}
