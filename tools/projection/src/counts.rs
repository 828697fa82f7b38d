//! What one benchmark point counted, and how points are named.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Mode;

/// The operations counted for one benchmark point (one device × workload ×
/// queue depth × mode) in a QEMU run. Every `f64` field is a mean **per
/// I/O** (total count divided by [`Counts::ios`]), so a sync shared by 16
/// I/Os counts as `1/16` each.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// The mode the point ran in.
    #[serde(serialize_with = "mode_out", deserialize_with = "mode_in")]
    pub mode: Mode,
    /// I/Os completed in the run (a total, not per I/O).
    pub ios: u64,
    /// I/Os kept in flight by the benchmark task.
    pub queue_depth: u32,
    /// IPC round trips per I/O: client ↔ driver (submit, reap) and
    /// driver ↔ IOMMU server (map, unmap, fault queries).
    pub ipc_round_trips: f64,
    /// TLBI commands written to the SMMU command queue per I/O.
    pub tlbi_commands: f64,
    /// CMD_SYNCs issued and waited for per I/O.
    pub cmd_syncs: f64,
    /// Writes of CMDQ_PROD (the command-queue doorbell) per I/O.
    pub doorbells: f64,
    /// Map requests the IOMMU server handled per I/O.
    pub map_requests: f64,
    /// Unmap requests (ranges) the IOMMU server handled per I/O.
    pub unmap_requests: f64,
    /// Pages (page-table entries) per map or unmap request: 1 for 4 KiB
    /// I/Os, the default when absent.
    #[serde(default = "one")]
    pub pages_per_request: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for Counts {
    /// Nothing counted: a bypass point at queue depth 1 with one page per
    /// request, to be filled in with `..Counts::default()`.
    fn default() -> Self {
        Self {
            mode: Mode::Bypass,
            ios: 0,
            queue_depth: 1,
            ipc_round_trips: 0.0,
            tlbi_commands: 0.0,
            cmd_syncs: 0.0,
            doorbells: 0.0,
            map_requests: 0.0,
            unmap_requests: 0.0,
            pages_per_request: 1.0,
        }
    }
}

fn mode_out<S: Serializer>(mode: &Mode, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(mode)
}

fn mode_in<'de, D: Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
    let name = String::deserialize(d)?;
    name.parse()
        .map_err(|e| serde::de::Error::custom(format!("mode {name:?}: {e:?}")))
}

/// Names one benchmark point. Points with the same device, workload and
/// queue depth are compared with each other; the one whose counts are in
/// [`Mode::Bypass`] is their ceiling.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    /// Device, e.g. `nvme` or `virtio-blk`.
    pub device: String,
    /// Workload, e.g. `randread-4k`.
    pub workload: String,
    /// I/Os kept in flight.
    pub queue_depth: u32,
    /// Mode label as the run printed it (e.g. `strict`, `deferred:256:10000`).
    /// A label only: which point is bypass is read from [`Counts::mode`].
    pub mode: String,
}

impl Key {
    /// A key from its four parts.
    pub fn new(device: &str, workload: &str, queue_depth: u32, mode: &str) -> Self {
        Self {
            device: device.to_owned(),
            workload: workload.to_owned(),
            queue_depth,
            mode: mode.to_owned(),
        }
    }

    /// Whether `other` is a point of the same comparison (same device,
    /// workload and queue depth).
    pub fn same_group(&self, other: &Key) -> bool {
        self.device == other.device
            && self.workload == other.workload
            && self.queue_depth == other.queue_depth
    }
}
