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
mod policy;
pub mod serve;

pub use device::{BlockDevice, DeviceIo};
pub use serve::{Config, Counters, serve};

use core::fmt::Display;

use block_api::Limits;

use iommu_client::Iommu;
use userlib::{TaskInfo, log};

/// How often a driver whose device has no interrupt looks at its
/// completions while I/Os are in flight.
const POLL_US: u64 = 1_000;

/// With an interrupt, the longest the loop waits before it looks for
/// timed-out I/Os anyway (their timeout is seconds). Longer than the
/// kernel's 10 ms tick on purpose: a wait that ends before the next tick
/// makes the kernel re-arm its timer when the wait starts and again when
/// the interrupt ends it, about twice per I/O at queue depth 1, and under
/// QEMU TCG each re-arming costs 9–23 µs (counter reads around the
/// compare-register write).
const IRQ_CHECK_US: u64 = 50_000;

/// The whole of a block driver task after its device is chosen: finds its
/// capabilities by name (`iommu` call, `dev` PCI function, `blk` serve, and
/// optionally `irq` with notification bit `arg("irq_bit")`, default 0),
/// limits each client to `arg("client_limit")` I/Os in flight plus unreaped
/// (default [`Limits::DEFAULT_PER_CLIENT`]) and serves at most
/// `arg("max_clients")` clients at once (default [`Limits::DEFAULT_CLIENTS`]),
/// opens the device with `open(iommu, dev, irq, queue_depth)` and serves
/// the block protocol forever. Returns only on failure (the exit code).
pub fn run_driver<D: BlockDevice, E: Display>(
    info: &TaskInfo<'_>,
    name: &'static str,
    open: impl FnOnce(&Iommu, u32, Option<(u32, u64)>, u16) -> Result<D, E>,
) -> i32 {
    let (Some(iommu), Some(dev), Some(blk)) = (info.cap("iommu"), info.cap("dev"), info.cap("blk"))
    else {
        log!("{name}: needs capabilities iommu (call), dev (pci), blk (serve)");
        return 1;
    };
    let iommu = Iommu::new(iommu);
    let irq_bit = userlib::arg_u64(info, "irq_bit", 0).unwrap_or(0).min(63);
    let irq = info.cap("irq").map(|c| (c, 1u64 << irq_bit));
    let queue_depth = userlib::arg_u64(info, "queue_depth", 64)
        .unwrap_or(64)
        .clamp(1, 1024) as u16;
    let device = match open(&iommu, dev, irq, queue_depth) {
        Ok(d) => d,
        Err(e) => {
            log!("{name}: device unusable: {e}");
            return 1;
        }
    };
    let g = device.info();
    log!(
        "{name}: ready: {} sectors of {} bytes, max transfer {} KiB, queue depth {}, completions by {}",
        g.sectors,
        g.sector_size,
        g.max_transfer / 1024,
        g.queue_depth,
        if device.irq().is_some() {
            "interrupt"
        } else {
            "polling"
        }
    );
    let cfg = Config {
        fault_injection: info.arg("fault_injection") == Some("on"),
        poll_us: if device.irq().is_some() {
            IRQ_CHECK_US
        } else {
            POLL_US
        },
        name,
        bench: info.arg("bench") == Some("on"),
        // Only the first incarnation crashes: the restarted one must work.
        crash_after_ios: userlib::arg_u64(info, "crash_after_ios", u64::MAX)
            .ok()
            .filter(|&n| n != u64::MAX && userlib::incarnation() == 0),
        limits: Limits::new(
            userlib::arg_u64(info, "client_limit", Limits::DEFAULT_PER_CLIENT.into())
                .unwrap_or(Limits::DEFAULT_PER_CLIENT.into()),
            userlib::arg_u64(info, "max_clients", Limits::DEFAULT_CLIENTS.into())
                .unwrap_or(Limits::DEFAULT_CLIENTS.into()),
        ),
    };
    serve(device, &iommu, blk, cfg)
}
