//! The virtio-net driver task: an isolated EL0 task holding exactly one PCI
//! function (a modern virtio-net device with VIRTIO_F_ACCESS_PLATFORM, so
//! its DMA goes through the SMMU), its interrupt, a call capability on the
//! IOMMU server (as an untrusted, hence strict, client), the endpoint it
//! serves `net-api` on, and a notification capability towards its one
//! client. It never sees a physical address, never maps memory it does not
//! own, and never maps its client's memory at all: frames are copied
//! through the call's grant.
//!
//! Capabilities: `iommu` (call), `dev` (pci), `net` (serve), `irq`
//! (optional; notification bit `arg("irq_bit")`, default 0), `notify`
//! (optional: `RX_READY` to the data client). Frames (`Send`, `Receive`)
//! are served to exactly one data client: the endpoint's only caller, or
//! the one `arg("client")` names; other callers of the endpoint (a
//! benchmark's control task) may ask `Info`, `Stats` and `SetMode` only.
//! Arguments: `bench = "on"` lets callers switch the IOMMU policy
//! (`SetMode`).
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

mod device;
mod serve;

use iommu_client::Iommu;
use userlib::{TaskInfo, log};

use device::{Nic, RX_SLOTS, TX_SLOTS};

userlib::entry!(main);

fn main(info: &TaskInfo<'static>) -> i32 {
    let (Some(iommu), Some(dev), Some(net)) = (info.cap("iommu"), info.cap("dev"), info.cap("net"))
    else {
        log!("virtio-net: needs capabilities iommu (call), dev (pci), net (serve)");
        return 1;
    };
    let client = match info.arg("client") {
        Some(name) => info
            .clients()
            .find(|c| c.endpoint == "net" && c.name == name),
        None => {
            let mut all = info.clients().filter(|c| c.endpoint == "net");
            match (all.next(), all.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        }
    };
    let Some(client) = client else {
        log!(
            "virtio-net: no data client: endpoint `net` needs exactly one caller, or arg `client` naming one of them"
        );
        return 1;
    };
    let iommu = Iommu::new(iommu);
    let irq_bit = userlib::arg_u64(info, "irq_bit", 0).unwrap_or(0).min(63);
    let irq = info.cap("irq").map(|c| (c, 1u64 << irq_bit));
    let nic = match Nic::open(&iommu, dev, irq) {
        Ok(n) => n,
        Err(e) => {
            log!("virtio-net: device unusable: {e}");
            return 1;
        }
    };
    let m = nic.mac();
    log!(
        "virtio-net: ready: MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, MTU {}, link {}, StreamID {:#x}, {RX_SLOTS} receive slots mapped once, {TX_SLOTS} transmit slots mapped per batch, completions by {}; frames for {} (badge {})",
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        nic.mtu(),
        if nic.link_up() { "up" } else { "down" },
        nic.stream_id().0,
        if nic.irq().is_some() {
            "interrupt"
        } else {
            "polling"
        },
        client.name,
        client.badge,
    );
    serve::serve(
        nic,
        &iommu,
        serve::Config {
            endpoint: net,
            client: client.badge,
            notify: info.cap("notify"),
            bench: info.arg("bench") == Some("on"),
        },
    )
}
