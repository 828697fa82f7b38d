//! Replaying counts through the model.

use serde::Serialize;

use crate::{Counts, Key, Mode, Model};

/// Where the CPU time of one I/O goes, µs per I/O.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Breakdown {
    /// The block path without the IOMMU.
    pub base_us: f64,
    /// IPC round trips.
    pub ipc_us: f64,
    /// Map and unmap requests in the IOMMU server (bookkeeping).
    pub requests_us: f64,
    /// Page-table entries written and cleared.
    pub pte_us: f64,
    /// TLBI and CMD_SYNC commands written to the queue.
    pub commands_us: f64,
    /// CMDQ_PROD writes.
    pub doorbells_us: f64,
    /// Waiting for CMD_SYNCs to complete.
    pub sync_wait_us: f64,
}

impl Breakdown {
    /// CPU µs per I/O, all components.
    pub fn total_us(&self) -> f64 {
        self.base_us
            + self.ipc_us
            + self.requests_us
            + self.pte_us
            + self.commands_us
            + self.doorbells_us
            + self.sync_wait_us
    }
}

/// Which limit set the projected IOPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Bound {
    /// The device's IOPS ceiling.
    Device,
    /// Queue depth over the latency of one I/O (Little's law).
    Latency,
    /// The cores' CPU time.
    Cpu,
}

/// The projection of one point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Projection {
    /// Projected IOPS on the modelled hardware.
    pub iops: f64,
    /// IOPS over the bypass point of the same device, workload and queue
    /// depth; `None` from [`project`], and from [`project_all`] when that
    /// group has no bypass point.
    pub ratio_to_bypass: Option<f64>,
    /// The limit that set [`Projection::iops`].
    pub bound: Bound,
    /// CPU µs per I/O by component.
    pub cpu: Breakdown,
    /// Time one I/O spends outside the device, µs: its CPU time, plus for a
    /// strict mode with shared syncs the rest of the sync it waits for (its
    /// reply is held for a whole sync though it pays only its share of it).
    pub latency_added_us: f64,
}

/// Projects one point:
/// CPU per I/O = Σ count × cost + base (the sync wait on the CPU path);
/// IOPS = min(device ceiling, QD / (device latency + latency added),
/// cores / CPU per I/O).
pub fn project(model: &Model, counts: &Counts) -> Projection {
    let c = counts;
    let cpu = Breakdown {
        base_us: model.cpu_base_us,
        ipc_us: c.ipc_round_trips * model.ipc_round_trip_us,
        requests_us: c.map_requests * model.map_request_us
            + c.unmap_requests * model.unmap_request_us,
        pte_us: (c.map_requests + c.unmap_requests) * c.pages_per_request * model.pte_write_us,
        commands_us: (c.tlbi_commands + c.cmd_syncs) * model.cmd_write_us,
        doorbells_us: c.doorbells * model.doorbell_us,
        sync_wait_us: c.cmd_syncs * model.sync_wait_us,
    };
    let cpu_us = cpu.total_us();
    let strict = matches!(c.mode, Mode::Strict | Mode::StrictPerUnmap);
    let unshared_wait = if strict && c.cmd_syncs > 0.0 {
        (1.0 - c.cmd_syncs).max(0.0) * model.sync_wait_us
    } else {
        0.0
    };
    let latency_added_us = cpu_us + unshared_wait;

    let by_device = model.device_max_iops;
    let by_latency = f64::from(c.queue_depth) * 1e6 / (model.device_latency_us + latency_added_us);
    let by_cpu = if cpu_us > 0.0 {
        f64::from(model.cores) * 1e6 / cpu_us
    } else {
        f64::INFINITY
    };
    let (iops, bound) = [
        (by_device, Bound::Device),
        (by_latency, Bound::Latency),
        (by_cpu, Bound::Cpu),
    ]
    .into_iter()
    .fold((f64::INFINITY, Bound::Device), |best, x| {
        if x.0 < best.0 { x } else { best }
    });

    Projection {
        iops,
        ratio_to_bypass: None,
        bound,
        cpu,
        latency_added_us,
    }
}

/// Projects every point and fills in each one's ratio to the bypass point
/// of its group (same device, workload, queue depth; bypass is the point
/// whose counts are in [`Mode::Bypass`], the first if several). Order is
/// kept.
pub fn project_all(model: &Model, points: &[(Key, Counts)]) -> Vec<(Key, Projection)> {
    let projected: Vec<(Key, Projection)> = points
        .iter()
        .map(|(k, c)| (k.clone(), project(model, c)))
        .collect();
    projected
        .iter()
        .map(|(key, p)| {
            let bypass = points
                .iter()
                .zip(&projected)
                .find(|((k, c), _)| c.mode == Mode::Bypass && k.same_group(key))
                .map(|(_, (_, b))| b.iops);
            let ratio_to_bypass = bypass.filter(|b| *b > 0.0).map(|b| p.iops / b);
            (
                key.clone(),
                Projection {
                    ratio_to_bypass,
                    ..*p
                },
            )
        })
        .collect()
}
