//! `userlib`: everything a task needs to run on the kernel, and the only
//! place a task's `unsafe` lives (module `sys`): the entry point
//! ([`entry!`]), the panic handler, a 1 MiB heap, console logging
//! ([`log!`]) and one typed wrapper per syscall of [`abi::syscall`], each
//! returning [`SysResult`]. Tasks are single-threaded.
//!
//! It must never give safe code a reference to memory a device can write,
//! and never decide policy: the kernel checks every argument.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod bench;
pub mod console;
pub mod ipc;
pub mod mem;
pub mod pci;
pub mod raw;
pub mod rng;
pub mod rt;
#[allow(unsafe_code)]
mod sys;
pub mod task;
pub mod time;

pub use abi::syscall::{LOG_MAX, MSG_MAX, PIN_BATCH_MAX, PinOp};
pub use abi::{Error, SysResult};
pub use bootimage::{Client, TaskInfo};
pub use console::log;
pub use ipc::{
    Grant, RecvInfo, RecvKind, Wait, call, grant_read, grant_write, irq_ack, notify, recv, reply,
    reply_recv, wait,
};
pub use mem::{DeviceRegion, DmaBuffer, dma_alloc, mmio_map, pci_map_bar, publish_to_device};
pub use mmio::{Reg, TimedOut, Value, poll_until};
pub use pci::{pci_config_read, pci_config_write, pci_enable_bus_master, smmu_enabled};
pub use rt::incarnation;
pub use sys::frame_pins;
pub use task::{
    KERNEL_STATS_TASKS, TaskTime, exit, frame_stats, kernel_integrity, kernel_stats, yield_now,
};
pub use time::{Counter, counter, sleep, time};

/// Looks up a capability by name, falling back to the task's only
/// capability if it has exactly one (so a task serving one endpoint works
/// whatever the system file calls it).
pub fn cap_or_only(info: &TaskInfo<'_>, name: &str) -> Option<u32> {
    info.cap(name).or_else(|| {
        let mut caps = info.caps();
        match (caps.next(), caps.next()) {
            (Some((_, index)), None) => Some(index),
            _ => None,
        }
    })
}

/// The argument `key` parsed as a decimal `u64`, or `default` if absent.
/// `Err` carries the text that did not parse.
pub fn arg_u64<'a>(info: &TaskInfo<'a>, key: &str, default: u64) -> Result<u64, &'a str> {
    match info.arg(key) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|_| text),
    }
}
